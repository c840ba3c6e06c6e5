//! Task handlers one by one: twice on the same message ends as once; poison messages are
//! acknowledged and recorded; a transient failure fails only its own record of a batch.

use std::time::Duration;

use crate::support::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use common::queue::worker::{Delivery, Done, QueueOps, TaskError, TaskRunner, handle_batch};
use common::queue::{Task, TaskMessage};
use common::store::ChunkOrder;
use serde_json::json;

fn delivery() -> Delivery {
    Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None }
}

/// An audio chunk of the conversation made from a generated tone.
async fn tone_chunk(app: &TestApp, cid: &str, seconds: f64, args: &[&str], file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    common::audio::generate_tone(&path, seconds, 330, args).await.expect("ffmpeg is needed: apt-get install ffmpeg");
    app.stored_chunk(cid, file, std::fs::read(&path).unwrap(), chrono::Utc::now()).await.id
}

/// The chunk's `diarization` column as stored (the Store does not read it back).
fn stored_diarization(app: &TestApp, chunk: &str) -> Option<serde_json::Value> {
    let db = app.db();
    let text: Option<String> = db.query_row("SELECT diarization FROM conversation_chunk WHERE id = ?1", [chunk], |r| r.get(0)).unwrap();
    text.map(|t| serde_json::from_str(&t).unwrap())
}

/// Whether a request carries `Bearer {key}`: every fake provider refuses one without it, with 401.
fn keyed(headers: &axum::http::HeaderMap, key: &str) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Bearer {key}").as_str())
}

fn unauthorized() -> axum::response::Response {
    axum::response::IntoResponse::into_response((axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"}))))
}

fn names(app: &TestApp) -> Vec<String> {
    app.published().iter().map(|m| m["task"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn processing_a_chunk_twice_converts_once() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 3.0, &["-c:a", "libvorbis"], "rec.ogg").await;
    let task = Task::ProcessConversationChunk { chunk_id: chunk.clone(), use_pii_redaction: false };
    assert_eq!(app.local.audio_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    let after_one = app.local.store.get_chunk(&chunk).await.unwrap().unwrap();
    let objects_one = app.local.state.blob.list(&format!("conversation/{cid}/")).await.unwrap();
    assert!(after_one.path.as_deref().unwrap().ends_with("-rec.mp3"), "{:?}", after_one.path);
    assert_eq!(objects_one.len(), 2, "the raw upload stays beside its mp3");

    assert_eq!(app.local.audio_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    assert_eq!(app.local.store.get_chunk(&chunk).await.unwrap().unwrap(), after_one);
    assert_eq!(app.local.state.blob.list(&format!("conversation/{cid}/")).await.unwrap(), objects_one);
    assert_eq!(names(&app).iter().filter(|n| *n == "task_transcribe_chunk").count(), 2, "transcription is queued each time; it runs once");
}

#[tokio::test]
async fn a_long_recording_splits_into_the_same_pieces_every_time() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    // 420 s at 320 kbps is about 16 MiB of mp3: two pieces.
    let chunk = tone_chunk(&app, &cid, 420.0, &["-c:a", "libmp3lame", "-b:a", "320k"], "long.mp3").await;
    // An original created well before now, so that a piece stamped "now" cannot pass.
    let created = chrono::DateTime::parse_from_rfc3339("2025-10-16T12:00:00.000Z").unwrap().with_timezone(&chrono::Utc);
    app.db().execute("UPDATE conversation_chunk SET created_at = '2025-10-16T12:00:00.000Z' WHERE id = ?1", [&chunk]).unwrap();
    let task = Task::ProcessConversationChunk { chunk_id: chunk.clone(), use_pii_redaction: false };
    assert_eq!(app.local.audio_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    let pieces = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(pieces.len(), 2, "{pieces:?}");
    // created_at = the original's + the piece's offset (processing.md §4.2 step 6).
    let offsets: Vec<i64> = pieces.iter().map(|p| (p.created_at.unwrap() - created).num_seconds()).collect();
    assert_eq!(offsets, [0, 210], "{pieces:?}");
    assert!(pieces.iter().all(|p| p.id != chunk), "the original row is deleted after the split");
    assert!(pieces[0].path.as_deref().unwrap().contains(&format!("chunks/{cid}/{}_0-of-2.mp3", pieces[0].id)));
    assert_eq!((pieces[1].timestamp - pieces[0].timestamp).num_seconds(), 210);
    let objects = app.local.state.blob.list(&format!("chunks/{cid}/")).await.unwrap();
    assert_eq!(objects.len(), 2);
    for piece in &pieces {
        let key = app.local.state.blob.key_from_url(piece.path.as_deref().unwrap()).unwrap();
        assert!(app.local.state.blob.head(&key).await.unwrap().unwrap() < 15 * 1024 * 1024);
    }
    // A redelivery finds the original gone: nothing changes.
    assert!(matches!(app.local.audio_worker.run(&task, &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap(), pieces);
    assert_eq!(app.local.state.blob.list(&format!("chunks/{cid}/")).await.unwrap(), objects);
    let transcribe: Vec<String> = app
        .published()
        .iter()
        .filter(|m| m["task"] == "task_transcribe_chunk")
        .map(|m| m["args"]["conversation_chunk_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(transcribe, pieces.iter().map(|p| p.id.clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn transcription_finish_summary_and_merge_run_once_however_often_delivered() {
    let whisper = FakeWhisper::start("hello there").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("A greeting.".into())).await;
    let app = whisper.app_with(&llm).await;
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 2.0, &["-c:a", "libmp3lame"], "a.mp3").await;
    let network = app.local.network_worker.clone();
    let transcribe = Task::TranscribeChunk {
        conversation_chunk_id: chunk.clone(),
        conversation_id: cid.clone(),
        use_pii_redaction: false,
        provider_job_id: None,
        continuation: 0,
    };
    assert_eq!(network.run(&transcribe, &delivery()).await, Ok(Done::Completed));
    assert!(matches!(network.run(&transcribe, &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(whisper.requests.lock().unwrap().len(), 1);

    let finish = Task::FinishConversationHook { conversation_id: cid.clone() };
    assert_eq!(network.run(&finish, &delivery()).await, Ok(Done::Completed));
    // Finalised with nothing new: a redelivery queues no second merge and summary.
    assert!(matches!(network.run(&finish, &delivery()).await, Ok(Done::Skipped(_))));
    let queued = |name: &str| app.published().iter().filter(|m| m["task"] == name).count();
    assert_eq!((queued("task_merge_conversation_chunks"), queued("task_summarize_conversation")), (1, 1));
    let summarize = Task::SummarizeConversation { conversation_id: cid.clone() };
    assert_eq!(network.run(&summarize, &delivery()).await, Ok(Done::Completed));
    assert!(matches!(network.run(&summarize, &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(llm.request_count(), 1);
    let merge = Task::MergeConversationChunks { conversation_id: cid.clone() };
    assert_eq!(app.local.audio_worker.run(&merge, &delivery()).await, Ok(Done::Completed));
    let once = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    // A conversation whose merge already matches its chunk set stops there (processing.md §4.3
    // step 4): nothing is downloaded, probed or written again.
    app.db().execute("UPDATE conversation SET duration = 12345.0 WHERE id = ?1", [&cid]).unwrap();
    assert_eq!(app.local.audio_worker.run(&merge, &delivery()).await, Ok(Done::Skipped("already merged".into())));
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().duration, Some(12345.0), "not merged again");
    let ended: Vec<(String, Option<String>)> = {
        let db = app.db();
        let mut stmt = db
            .prepare("SELECT event, message FROM processing_status WHERE conversation_id = ?1 AND event LIKE 'task_merge%' ORDER BY id")
            .unwrap();
        stmt.query_map([&cid], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let (event, message) = ended.last().unwrap().clone();
    assert_eq!((event.as_str(), message.as_deref()), ("task_merge_conversation_chunks.completed", Some("already merged")), "{ended:?}");
    assert_eq!(ended.len(), 4, "started and completed, twice; no extra row: {ended:?}");
    app.db().execute("UPDATE conversation SET duration = ?2 WHERE id = ?1", rusqlite::params![cid, once.duration]).unwrap();
    let twice = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(
        (once.merged_audio_path.clone(), once.duration, once.summary.clone()),
        (twice.merged_audio_path, twice.duration, twice.summary)
    );
    assert_eq!(app.local.state.blob.list("audio-conversations/").await.unwrap().len(), 1);
    assert_eq!(once.is_all_chunks_transcribed, Some(true));

    // The deletion tasks are no-ops the second time too.
    app.local.store.delete_conversation(&cid).await.unwrap();
    let delete = Task::DeleteConversationArtifacts { conversation_id: cid.clone(), segment_ids: vec![] };
    assert_eq!(network.run(&delete, &delivery()).await, Ok(Done::Completed));
    assert_eq!(network.run(&delete, &delivery()).await, Ok(Done::Completed));
    assert!(app.local.state.blob.list(&format!("conversation/{cid}/")).await.unwrap().is_empty());
}

fn record(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.receipt_handle = Some(id.into());
    m.body = Some(body.into());
    m.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    m
}

#[derive(Default)]
struct RecordingOps {
    dead: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl QueueOps for RecordingOps {
    async fn dead_letter(&self, _body: &str, task: &str, error: &str) -> Result<(), String> {
        self.dead.lock().unwrap().push((task.into(), error.into()));
        Ok(())
    }
    async fn retry_after(&self, _receipt_handle: &str, _delay: Duration) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn poison_messages_are_acknowledged_and_recorded() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let corrupt = app.stored_chunk(&cid, "junk.webm", vec![0x42u8; 8192], chrono::Utc::now()).await.id;
    let mut event = SqsEvent::default();
    event.records.push(record("bad-json", "{nope"));
    event.records.push(record("bad-version", r#"{"task":"task_process_conversation_chunk","version":7,"args":{"chunk_id":"x"}}"#));
    event.records.push(record("wrong-queue", &TaskMessage::new(Task::SummarizeConversation { conversation_id: cid.clone() }).to_json()));
    event.records.push(record(
        "corrupt",
        &TaskMessage::new(Task::ProcessConversationChunk { chunk_id: corrupt.clone(), use_pii_redaction: false }).to_json(),
    ));
    event.records.push(record(
        "gone",
        &TaskMessage::new(Task::ProcessConversationChunk { chunk_id: uuid::Uuid::new_v4().to_string(), use_pii_redaction: false })
            .to_json(),
    ));
    let ops = RecordingOps::default();
    let response = handle_batch(app.local.audio_worker.as_ref(), &ops, event, 5, None).await;
    assert!(response.batch_item_failures.is_empty(), "every poison message is acknowledged");
    let dead = ops.dead.lock().unwrap().clone();
    assert_eq!(
        dead.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        vec!["unparseable", "unparseable", "task_summarize_conversation", "task_process_conversation_chunk"]
    );
    assert!(dead[1].1.contains("version"));
    assert_eq!(dead[3].1, "unsupported or corrupt audio");
    let chunk = app.local.store.get_chunk(&corrupt).await.unwrap().unwrap();
    assert_eq!(chunk.error.as_deref(), Some("Audio processing failed: unsupported or corrupt audio"));
    let db = app.db();
    let failed: i64 = db
        .query_row(
            "SELECT count(*) FROM processing_status \
             WHERE event = 'task_process_conversation_chunk.split_audio_chunk.failed' AND conversation_chunk_id = ?1",
            [&corrupt],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 1);
    // Once the conversation is finished, that error counts as processed: the finish hook follows.
    app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    app.local.run_tasks().await;
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().is_all_chunks_transcribed, Some(true));
}

#[tokio::test]
async fn a_transient_failure_fails_only_its_own_record() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "a.mp3").await;
    // The same store, but storage that cannot be reached.
    let mut settings = (*app.local.settings).clone();
    settings.s3.endpoint = Some("http://127.0.0.1:9".into());
    let mut services = app.local.state.services.clone();
    services.blob = common::blob::Blob::connect(&settings.s3).await.unwrap();
    let audio = audio_worker::AudioWorker::new(services);
    let mut event = SqsEvent::default();
    event.records.push(record(
        "needs-s3",
        &TaskMessage::new(Task::ProcessConversationChunk { chunk_id: chunk.clone(), use_pii_redaction: false }).to_json(),
    ));
    event.records.push(record(
        "no-chunks",
        &TaskMessage::new(Task::MergeConversationChunks { conversation_id: uuid::Uuid::new_v4().to_string() }).to_json(),
    ));
    let ops = RecordingOps::default();
    let response = handle_batch(&audio, &ops, event, 5, None).await;
    let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(failed, vec!["needs-s3".to_string()]);
    assert!(ops.dead.lock().unwrap().is_empty());
    assert_eq!(app.local.store.get_chunk(&chunk).await.unwrap().unwrap().error, None, "nothing recorded for a transient failure");
}

#[tokio::test]
async fn echo_local_shows_what_its_queue_gave_up_on() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let chunk = app.stored_chunk(&cid, "junk.webm", vec![0x42u8; 4096], chrono::Utc::now()).await.id;
    use common::queue::TaskPublisher;
    app.local.queue.publish(Task::ProcessConversationChunk { chunk_id: chunk, use_pii_redaction: false }, Duration::ZERO).await.unwrap();
    app.local.run_tasks().await;
    let (status, view) = app.get("/_local/queue").await;
    assert_eq!(status, 200);
    assert_eq!(view["pending"], 0);
    assert_eq!(view["dead_letters"][0]["task"], "task_process_conversation_chunk");
    assert_eq!(view["dead_letters"][0]["error"], "unsupported or corrupt audio");
    assert_eq!(view["dead_letters"][0]["queue"], "audio");
}

#[tokio::test]
async fn diarization_feeds_the_health_stream() {
    // A local server speaking RunPod's serverless protocol: /run, then /status/{id}.
    let output = json!({"noise_ratio": 0.7, "silence_ratio": 0.1, "cross_talk_instances": 0, "joined_diarization": [{"speaker": "A"}]});
    let runpod = FakeDiarization::start(output).await;
    let (base, asked) = (runpod.base.clone(), runpod.runs.clone());
    let app = TestApp::start_with(|o| {
        o.settings.runpod_diarization = true;
        o.settings.diarization.base_url = Some(base);
        o.settings.diarization.api_key = Some("rp-key".into());
    })
    .await;
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 2.0, &["-c:a", "libmp3lame"], "a.mp3").await;
    // Chunk processing queues diarization next to transcription for portal audio.
    let process = Task::ProcessConversationChunk { chunk_id: chunk.clone(), use_pii_redaction: false };
    app.local.audio_worker.run(&process, &delivery()).await.unwrap();
    assert!(names(&app).contains(&"task_get_runpod_diarization".to_string()));
    let diarize = Task::GetRunpodDiarization { chunk_id: chunk.clone() };
    assert_eq!(app.local.network_worker.run(&diarize, &delivery()).await, Ok(Done::Completed));
    assert_eq!(asked.lock().unwrap()[0]["input"]["language"], "en");
    assert!(asked.lock().unwrap()[0]["input"]["audio"].as_str().unwrap().contains("X-Amz-Signature"));

    let db = app.db();
    let now = common::datetime::format(&chrono::Utc::now());
    db.execute("UPDATE conversation_chunk SET timestamp = ?2 WHERE id = ?1", [&chunk, &now]).unwrap();
    let mut res = app.client.get(app.url(&format!("/api/conversations/health/stream?conversation_ids={cid}"))).send().await.unwrap();
    let mut text = String::new();
    while !text.contains("health_update") {
        let part = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.unwrap().unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&part));
    }
    assert!(text.contains(r#"{"conversation_issue":"HIGH_NOISE"}"#), "{text}");
}

#[tokio::test]
async fn an_assemblyai_job_continues_in_a_new_message_instead_of_sleeping() {
    // A local server speaking AssemblyAI's v2 transcript protocol; the job finishes on demand.
    let submits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, d) = (submits.clone(), done.clone());
    let assemblyai = axum::Router::new()
        .route(
            "/v2/transcript",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                let s = s.clone();
                async move {
                    if !keyed(&headers, "aai-key") || !body.0["audio_url"].as_str().unwrap_or_default().contains("X-Amz-Signature") {
                        return unauthorized();
                    }
                    s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::response::IntoResponse::into_response(axum::Json(json!({"id": "job-1", "status": "queued"})))
                }
            }),
        )
        .route(
            "/v2/transcript/job-1",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let d = d.clone();
                async move {
                    if !keyed(&headers, "aai-key") {
                        return unauthorized();
                    }
                    let job = if d.load(std::sync::atomic::Ordering::SeqCst) {
                        json!({"id": "job-1", "status": "completed", "text": "Late but complete.", "words": []})
                    } else {
                        json!({"id": "job-1", "status": "processing"})
                    };
                    axum::response::IntoResponse::into_response(axum::Json(job))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, assemblyai).await.unwrap() });
    let app = TestApp::start_with(|o| {
        o.settings.transcription.provider_name = Some("AssemblyAI".into());
        o.settings.transcription.assemblyai_base_url = base;
        o.settings.transcription.assemblyai_api_key = Some("aai-key".into());
    })
    .await;
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "a.mp3").await;
    let task = Task::TranscribeChunk {
        conversation_chunk_id: chunk.clone(),
        conversation_id: cid.clone(),
        use_pii_redaction: false,
        provider_job_id: None,
        continuation: 0,
    };
    // Too little time left in this invocation to wait for the job.
    let short = Delivery { deadline: Some(std::time::Instant::now() + Duration::from_secs(1)), ..delivery() };
    assert!(matches!(app.local.network_worker.run(&task, &short).await, Ok(Done::Skipped(_))));
    let queued = app.local.queue.snapshot();
    let continuation = queued.iter().rev().find(|m| m.body.contains("task_transcribe_chunk")).expect("a continuation");
    assert!(continuation.not_before > chrono::Utc::now() + chrono::Duration::seconds(25), "re-published with a delay");
    let next = TaskMessage::parse(&continuation.body).unwrap().task;
    assert_eq!(
        next,
        Task::TranscribeChunk {
            conversation_chunk_id: chunk.clone(),
            conversation_id: cid.clone(),
            use_pii_redaction: false,
            provider_job_id: Some("job-1".into()),
            continuation: 1
        }
    );
    assert_eq!(app.local.store.get_chunk(&chunk).await.unwrap().unwrap().transcript, None);

    // The continuation polls the same job and never submits again.
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app.local.network_worker.run(&next, &delivery()).await, Ok(Done::Completed));
    let done = app.local.store.get_chunk(&chunk).await.unwrap().unwrap();
    assert_eq!(done.transcript.as_deref(), Some("Late but complete."));
    assert_eq!(stored_diarization(&app, &chunk), Some(json!({"schema": "ASSEMBLYAI", "data": []})), "AssemblyAI's words");
    assert_eq!(submits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A local server speaking the RunPod serverless `/run` protocol for the topic modeler; it
/// answers with the status the test sets and keeps what it was sent.
/// A job the topic modeler was sent: its Authorization header and body.
type TopicJob = (Option<String>, serde_json::Value);

struct FakeTopicModeler {
    url: String,
    jobs: std::sync::Arc<std::sync::Mutex<Vec<TopicJob>>>,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl FakeTopicModeler {
    async fn start() -> Self {
        let jobs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let status = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (seen, answer) = (jobs.clone(), status.clone());
        let router = axum::Router::new().route(
            "/run",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                let (seen, answer) = (seen.clone(), answer.clone());
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    seen.lock().unwrap().push((auth, body.0));
                    let code = axum::http::StatusCode::from_u16(answer.load(std::sync::atomic::Ordering::SeqCst)).unwrap();
                    (code, axum::Json(json!({"id": "topic-job", "status": "IN_QUEUE"})))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeTopicModeler { url, jobs, status }
    }

    /// echo-local with this topic modeler configured.
    async fn app(&self) -> TestApp {
        TestApp::start_with(|o| {
            o.settings.topic_modeler.url = Some(self.url.clone());
            o.settings.topic_modeler.api_key = Some("tm-key".into());
        })
        .await
    }

    fn answer(&self, code: u16) {
        self.status.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    fn jobs(&self) -> Vec<TopicJob> {
        self.jobs.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_library_starts_each_view_once_with_every_segment_of_the_project() {
    let modeler = FakeTopicModeler::start().await;
    let app = modeler.app().await;
    let network = app.local.network_worker.clone();
    let db = app.db();
    let (first, second) = (app.initiate().await, app.initiate().await);
    let other = app
        .local
        .store
        .create_project(common::store::NewProject { id: uuid::Uuid::new_v4().to_string(), ..Default::default() })
        .await
        .unwrap();
    let stranger = uuid::Uuid::new_v4().to_string();
    app.local
        .store
        .create_conversation(common::store::NewConversation { id: stranger.clone(), project_id: other.id.clone(), ..Default::default() })
        .await
        .unwrap();
    let segment = |cid: &str| -> i64 {
        db.execute("INSERT INTO conversation_segment (conversation_id, transcript) VALUES (?1, 't')", [cid]).unwrap();
        db.last_insert_rowid()
    };
    let ours = vec![segment(&first), segment(&second), segment(&first)];
    segment(&stranger);

    // The library: one run with the API's id, one view task per default view, on every delivery.
    let run = uuid::Uuid::new_v4().to_string();
    let library = Task::CreateProjectLibrary { project_id: PROJECT.into(), language: "nl".into(), project_analysis_run_id: run.clone() };
    for _ in 0..2 {
        assert_eq!(network.run(&library, &delivery()).await, Ok(Done::Completed));
    }
    let runs: i64 =
        db.query_row("SELECT count(*) FROM project_analysis_run WHERE id = ?1 AND project_id = ?2", [&run, PROJECT], |r| r.get(0)).unwrap();
    assert_eq!(runs, 1);
    let views: Vec<serde_json::Value> = app.published().into_iter().filter(|m| m["task"] == "task_create_view").collect();
    assert_eq!(views.len(), 2, "one per delivery; the view's own guard absorbs the repeat");
    let args = &views[0]["args"];
    assert_eq!((args["project_analysis_run_id"].as_str(), args["language"].as_str()), (Some(run.as_str()), Some("nl")));
    let (query, context) = (args["user_query"].as_str().unwrap().to_string(), args["user_query_context"].as_str().unwrap().to_string());
    // A Dutch library asks the topic modeler in Dutch (processing.md §10).
    assert_eq!(query, "Welke thema's komen steeds terug in deze gesprekken?", "{args}");
    assert!(context.starts_with("Groepeer wat deelnemers zeiden") && context.contains("code \"nl\""), "{args}");

    // The view: the topic modeler gets every segment of the project and nothing else.
    let view = TaskMessage::parse(&views[0].to_string()).unwrap().task;
    assert_eq!(network.run(&view, &delivery()).await, Ok(Done::Completed));
    let jobs = modeler.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0.as_deref(), Some("Bearer tm-key"));
    assert_eq!(
        jobs[0].1,
        json!({"input": {
            "project_analysis_run_id": run,
            "response_language": "nl",
            "segment_ids": ours,
            "user_input": query,
            "user_input_description": context,
            "user_prompt": format!("{query}\n\n\n{context}"),
        }})
    );
    let steps: Vec<String> = {
        let mut stmt = db.prepare("SELECT event FROM processing_status WHERE project_analysis_run_id = ?1 ORDER BY id").unwrap();
        stmt.query_map([&run], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(steps, vec!["task_create_view.started", "task_create_view.completed"]);

    // Once the modeler has written the view, a duplicate delivery starts nothing.
    db.execute("INSERT INTO view (id, project_analysis_run_id, user_input) VALUES ('v1', ?1, ?2)", [&run, &query]).unwrap();
    assert!(matches!(network.run(&view, &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(modeler.jobs().len(), 1);

    // Its failures: 5xx retries, 4xx never can succeed.
    let other_view = Task::CreateView {
        project_analysis_run_id: run.clone(),
        user_query: "What about parking?".into(),
        user_query_context: String::new(),
        language: "en".into(),
    };
    modeler.answer(503);
    assert!(matches!(network.run(&other_view, &delivery()).await, Err(TaskError::Transient(_))));
    modeler.answer(400);
    assert!(matches!(network.run(&other_view, &delivery()).await, Err(TaskError::Terminal(_))));
    assert_eq!(modeler.jobs()[1].1["input"]["user_prompt"], "What about parking?\n\n\n");
}

#[tokio::test]
async fn library_tasks_skip_what_is_gone_and_refuse_without_a_topic_modeler() {
    let modeler = FakeTopicModeler::start().await;
    let app = modeler.app().await;
    let network = app.local.network_worker.clone();
    let db = app.db();
    let run = uuid::Uuid::new_v4().to_string();
    let missing = uuid::Uuid::new_v4().to_string();
    let library = Task::CreateProjectLibrary { project_id: missing.clone(), language: "en".into(), project_analysis_run_id: run.clone() };
    assert_eq!(network.run(&library, &delivery()).await, Ok(Done::Skipped(format!("Project not found: {missing}"))));
    let runs: i64 = db.query_row("SELECT count(*) FROM project_analysis_run", [], |r| r.get(0)).unwrap();
    assert_eq!(runs, 0);
    let message: String = db
        .query_row("SELECT message FROM processing_status WHERE event = 'task_create_project_library.completed'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(message, format!("Project not found: {missing}"), "the exit message (§1.5)");

    let view = |run: &str, query: &str| Task::CreateView {
        project_analysis_run_id: run.into(),
        user_query: query.into(),
        user_query_context: String::new(),
        language: "en".into(),
    };
    assert!(matches!(network.run(&view(&run, "themes?"), &delivery()).await, Ok(Done::Skipped(_))), "unknown run");
    assert!(matches!(network.run(&view("", "themes?"), &delivery()).await, Ok(Done::Skipped(_))), "no run id");
    // A project without segments has nothing to model.
    db.execute(
        "INSERT INTO project_analysis_run (id, project_id, created_at) VALUES (?1, ?2, '2025-10-16T12:00:00.000Z')",
        [&run, PROJECT],
    )
    .unwrap();
    assert_eq!(
        network.run(&view(&run, "themes?"), &delivery()).await,
        Ok(Done::Skipped(format!("No segments found for project: {PROJECT}")))
    );
    assert!(matches!(network.run(&view(&run, " "), &delivery()).await, Ok(Done::Skipped(_))), "no query");
    assert!(modeler.jobs().is_empty());

    let unconfigured = TestApp::start().await;
    let db = unconfigured.db();
    db.execute(
        "INSERT INTO project_analysis_run (id, project_id, created_at) VALUES (?1, ?2, '2025-10-16T12:00:00.000Z')",
        [&run, PROJECT],
    )
    .unwrap();
    let outcome = unconfigured.local.network_worker.run(&view(&run, "themes?"), &delivery()).await;
    assert!(matches!(&outcome, Err(TaskError::Terminal(r)) if r.contains("RUNPOD_TOPIC_MODELER_URL")), "{outcome:?}");
}

/// AssemblyAI answering at once with a finished transcript; counts submissions.
async fn finished_assemblyai(text: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let submits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = submits.clone();
    let assemblyai = axum::Router::new()
        .route(
            "/v2/transcript",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let s = s.clone();
                async move {
                    if !keyed(&headers, "aai-key") {
                        return unauthorized();
                    }
                    s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    axum::response::IntoResponse::into_response(axum::Json(json!({"id": "job-1", "status": "queued"})))
                }
            }),
        )
        .route(
            "/v2/transcript/job-1",
            axum::routing::get(move |headers: axum::http::HeaderMap| async move {
                if !keyed(&headers, "aai-key") {
                    return unauthorized();
                }
                let words = json!([{"text": "we", "start": 0, "end": 90}]);
                axum::response::IntoResponse::into_response(axum::Json(
                    json!({"id": "job-1", "status": "completed", "text": text, "words": words}),
                ))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, assemblyai).await.unwrap() });
    (base, submits)
}

/// echo-local transcribing with Dembrane-25-09 against the fake AssemblyAI and Google.
async fn dembrane_app(assemblyai: String, google: &crate::support::google::FakeGoogle) -> TestApp {
    let (account, vertex) = (google.service_account_json(), google.base.clone());
    TestApp::start_with(|o| {
        o.settings.transcription.provider_name = Some("Dembrane-25-09".into());
        o.settings.transcription.assemblyai_base_url = assemblyai;
        o.settings.transcription.assemblyai_api_key = Some("aai-key".into());
        o.settings.transcription.gcp_sa_json = Some(account);
        o.settings.transcription.vertex_api_base = Some(vertex);
    })
    .await
}

#[tokio::test]
async fn dembrane_25_09_corrects_assemblyai_with_gemini_hearing_the_audio() {
    let (assemblyai, submits) = finished_assemblyai("we met at the bark").await;
    let google = crate::support::google::FakeGoogle::start().await;
    let app = dembrane_app(assemblyai, &google).await;
    let network = app.local.network_worker.clone();
    let cid = app.initiate().await;
    let chunk = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "a.mp3").await;
    let stored = app.local.store.get_chunk(&chunk).await.unwrap().unwrap();
    let mp3 = app.local.state.blob.key_from_url(stored.path.as_deref().unwrap()).unwrap();
    let task = |job: Option<&str>, continuation| Task::TranscribeChunk {
        conversation_chunk_id: chunk.clone(),
        conversation_id: cid.clone(),
        use_pii_redaction: true,
        provider_job_id: job.map(str::to_string),
        continuation,
    };

    // Gemini is down: the finished AssemblyAI job is handed on instead of submitted again.
    google.respond_with(503);
    assert!(matches!(network.run(&task(None, 0), &delivery()).await, Ok(Done::Skipped(_))));
    let next = app.published().into_iter().rev().find(|m| m["task"] == "task_transcribe_chunk").unwrap();
    assert_eq!((next["args"]["provider_job_id"].as_str(), next["args"]["continuation"].as_u64()), (Some("job-1"), Some(1)));
    assert_eq!(app.local.store.get_chunk(&chunk).await.unwrap().unwrap().transcript, None);

    google.respond_with(200);
    google.answer_with(json!({"corrected_transcript": "We met at the park.", "note": "bark -> park"}));
    assert_eq!(network.run(&task(Some("job-1"), 1), &delivery()).await, Ok(Done::Completed));
    assert_eq!(submits.load(std::sync::atomic::Ordering::SeqCst), 1, "AssemblyAI was paid once");
    let done = app.local.store.get_chunk(&chunk).await.unwrap().unwrap();
    assert_eq!(done.transcript.as_deref(), Some("We met at the park."));
    let diarization = stored_diarization(&app, &chunk).unwrap();
    assert_eq!((diarization["schema"].as_str(), diarization["data"]["note"].as_str()), (Some("Dembrane-25-09"), Some("bark -> park")));
    assert_eq!(diarization["data"]["raw"]["text"], "we met at the bark", "the whole AssemblyAI answer is kept");

    // Gemini heard the chunk itself, read the candidate, and was asked to redact.
    let (_, _, body) = google.calls().last().unwrap().clone();
    let parts = &body["contents"][0]["parts"];
    assert_eq!(parts[0]["text"], "we met at the bark");
    let heard =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, parts[1]["inlineData"]["data"].as_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    app.local.state.blob.download_to(&mp3, &dir.path().join("a.mp3")).await.unwrap();
    assert_eq!(heard, std::fs::read(dir.path().join("a.mp3")).unwrap());
    assert!(body["systemInstruction"]["parts"][0]["text"].as_str().unwrap().contains("[NAME]"));
    // A duplicate delivery finds the transcript and calls no one.
    let calls = google.calls().len();
    assert!(matches!(network.run(&task(Some("job-1"), 1), &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(google.calls().len(), calls);
}

#[tokio::test]
async fn dembrane_25_09_stores_silence_as_nothing_to_transcribe_and_refusals_are_final() {
    let (assemblyai, _) = finished_assemblyai("").await;
    let google = crate::support::google::FakeGoogle::start().await;
    let app = dembrane_app(assemblyai, &google).await;
    let cid = app.initiate().await;
    let transcribe = |chunk: &str| Task::TranscribeChunk {
        conversation_chunk_id: chunk.to_string(),
        conversation_id: cid.clone(),
        use_pii_redaction: false,
        provider_job_id: None,
        continuation: 0,
    };
    let quiet = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "quiet.mp3").await;
    // Too little of the invocation left for the correction: it continues in a new message.
    let short = Delivery { deadline: Some(std::time::Instant::now() + Duration::from_secs(60)), ..delivery() };
    assert!(matches!(app.local.network_worker.run(&transcribe(&quiet), &short).await, Ok(Done::Skipped(_))));
    assert!(google.calls().is_empty());
    let next = app.published().into_iter().rev().find(|m| m["task"] == "task_transcribe_chunk").unwrap();
    assert_eq!(next["args"]["provider_job_id"], "job-1");
    google.answer_with(json!({"corrected_transcript": "", "note": "silence"}));
    assert_eq!(app.local.network_worker.run(&transcribe(&quiet), &delivery()).await, Ok(Done::Completed));
    assert_eq!(app.local.store.get_chunk(&quiet).await.unwrap().unwrap().transcript.as_deref(), Some("[Nothing to transcribe]"));
    let system = google.calls()[0].2["systemInstruction"]["parts"][0]["text"].as_str().unwrap().to_string();
    assert!(!system.contains("[NAME]"), "no redaction unless asked");

    let refused = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "refused.mp3").await;
    google.respond_with(400);
    let outcome = app.local.network_worker.run(&transcribe(&refused), &delivery()).await;
    assert!(matches!(&outcome, Err(TaskError::Terminal(r)) if r.contains("400")), "{outcome:?}");
}

#[tokio::test]
async fn collector_pass_b_looks_back_collector_redrive_hours() {
    // A conversation finished 30 hours ago that was never finalized.
    for (hours, redriven) in [(24, false), (48, true)] {
        let app = TestApp::start_with(|o| o.settings.collector_redrive_hours = hours).await;
        let cid = app.initiate().await;
        let created = (chrono::Utc::now() - chrono::Duration::hours(30)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        app.db().execute("UPDATE conversation SET is_finished = 1, created_at = ?2 WHERE id = ?1", [&cid, &created]).unwrap();
        let collect = Task::CollectAndFinishUnfinishedConversations {};
        assert_eq!(app.local.network_worker.run(&collect, &delivery()).await, Ok(Done::Completed));
        let hooks: Vec<String> = app
            .published()
            .iter()
            .filter(|m| m["task"] == "task_finish_conversation_hook")
            .map(|m| m["args"]["conversation_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(hooks.contains(&cid), redriven, "COLLECTOR_REDRIVE_HOURS={hours}: {hooks:?}");
    }
}

#[tokio::test]
async fn whisper_is_told_the_projects_language_and_none_for_multi() {
    let whisper = FakeWhisper::start("hallo").await;
    let app = TestApp::start_with(|o| whisper.configure(&mut o.settings)).await;
    let cid = app.initiate().await;
    let project = app.local.store.get_conversation(&cid).await.unwrap().unwrap().project_id;
    for language in ["multi", "nl"] {
        app.db().execute("UPDATE project SET language = ?2 WHERE id = ?1", [&project, language]).unwrap();
        let chunk = tone_chunk(&app, &cid, 1.0, &["-c:a", "libmp3lame"], "a.mp3").await;
        let task = Task::TranscribeChunk {
            conversation_chunk_id: chunk,
            conversation_id: cid.clone(),
            use_pii_redaction: false,
            provider_job_id: None,
            continuation: 0,
        };
        assert_eq!(app.local.network_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    }
    let sent = whisper.requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    assert!(!sent[0].contains_key("language"), "multi: Whisper detects the language: {:?}", sent[0]);
    assert_eq!(sent[1]["language"], "nl");
    assert!(sent[1]["prompt"].starts_with("Een opgenomen gesprek"), "the Dutch Whisper prompt: {:?}", sent[1]);
}
