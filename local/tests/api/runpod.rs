//! RunPod transcription (processing.md §5.4) against a local server speaking RunPod's serverless
//! protocol: jobs are submitted once and left running; the webhook (`stateless`) or the poller
//! (`network-worker`) finishes them; results of any other job than the chunk's current one are
//! ignored; failures and the request limit end in the chunk's `error`.

use std::time::Duration;

use crate::support::*;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use common::queue::worker::{Delivery, Done, QueueOps, TaskRunner};
use common::queue::{Task, TaskMessage};
use common::store::ChunkOrder;
use serde_json::{Value, json};

fn delivery() -> Delivery {
    Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None }
}

fn transcribe(chunk: &str, conversation: &str) -> Task {
    Task::TranscribeChunk {
        conversation_chunk_id: chunk.into(),
        conversation_id: conversation.into(),
        use_pii_redaction: false,
        provider_job_id: None,
        continuation: 0,
    }
}

/// echo-local transcribing with `runpod`, on a port fixed up front so that API_BASE_URL (in the
/// webhook URL RunPod gets) points at it.
async fn runpod_app(runpod: &FakeRunpod, adjust: impl FnOnce(&mut local::LocalOptions)) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    TestApp::start_with(|o| {
        o.api_addr = format!("127.0.0.1:{port}").parse().unwrap();
        o.settings.api.api_base_url = format!("http://127.0.0.1:{port}/api");
        runpod.configure(&mut o.settings);
        adjust(o);
    })
    .await
}

/// An audio chunk of `source` (the bytes are never decoded: RunPod fetches the presigned URL).
async fn audio_chunk(app: &TestApp, conversation: &str, source: &str) -> String {
    let chunk = app.stored_chunk(conversation, "a.mp3", vec![7u8; 2048], chrono::Utc::now()).await;
    if source != "PORTAL_AUDIO" {
        let db = app.db();
        db.execute("UPDATE conversation_chunk SET source = ?2 WHERE id = ?1", [&chunk.id, source]).unwrap();
    }
    chunk.id
}

async fn chunk(app: &TestApp, id: &str) -> common::store::Chunk {
    app.local.store.get_chunk(id).await.unwrap().unwrap()
}

/// echo-local with one portal chunk whose RunPod job (`job-1`) was submitted: (app, conversation,
/// chunk).
async fn submitted_chunk(runpod: &FakeRunpod) -> (TestApp, String, String) {
    let app = runpod_app(runpod, |_| {}).await;
    let cid = app.initiate().await;
    let id = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
    app.local.network_worker.run(&transcribe(&id, &cid), &delivery()).await.unwrap();
    (app, cid, id)
}

/// The poller's check of the chunk's current job.
async fn check_of(app: &TestApp, id: &str) -> Task {
    let status_link = chunk(app, id).await.runpod_job_status_link.unwrap();
    Task::ProcessRunpodChunkResponse { chunk_id: id.to_string(), status_link }
}

fn webhook(app: &TestApp, query: &str) -> String {
    app.url(&format!("/api/stateless/webhook/transcribe{query}"))
}

fn names(app: &TestApp) -> Vec<String> {
    app.published().iter().map(|m| m["task"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_job_is_submitted_once_and_left_running() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |_| {}).await;
    let cid = app.initiate().await;
    let portal = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
    let upload = audio_chunk(&app, &cid, "DASHBOARD_UPLOAD").await;
    let network = app.local.network_worker.clone();

    assert_eq!(network.run(&transcribe(&portal, &cid), &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &portal).await;
    assert_eq!(c.runpod_job_status_link, Some(format!("{}/status/job-1", runpod.endpoint("whisper-priority"))), "portal audio goes first");
    assert_eq!(c.runpod_request_count, 1);
    assert_eq!((c.transcript, c.error), (None, None), "nothing waits for the job");
    let (body, auth) = runpod.runs()[0].clone();
    assert_eq!(auth, format!("Bearer {RUNPOD_KEY}"));
    assert_eq!(body["input"]["conversation_chunk_id"], portal.as_str());
    assert_eq!(body["input"]["language"], "en");
    assert_eq!(body["input"]["hotwords"], Value::Null);
    let audio = body["input"]["audio"].as_str().unwrap();
    assert!(audio.contains("X-Amz-Signature") && audio.contains("X-Amz-Expires=259200"), "a 3-day presigned GET: {audio}");
    assert_eq!(body["webhook"], format!("{}/stateless/webhook/transcribe?token=hook%2Dsecret", app.local.settings.api.api_base_url));

    // A duplicate delivery while the job is queued asks RunPod and submits nothing.
    assert!(matches!(network.run(&transcribe(&portal, &cid), &delivery()).await, Ok(Done::Skipped(_))));
    runpod.set_status("job-1", "IN_PROGRESS");
    assert!(matches!(network.run(&transcribe(&portal, &cid), &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(runpod.runs().len(), 1);
    assert_eq!(runpod.state.lock().unwrap().status_requests, 2);
    assert_eq!(chunk(&app, &portal).await.runpod_request_count, 1);

    // Other sources use the normal endpoint, and the link names the endpoint that took the job.
    assert_eq!(network.run(&transcribe(&upload, &cid), &delivery()).await, Ok(Done::Completed));
    assert_eq!(chunk(&app, &upload).await.runpod_job_status_link, Some(format!("{}/status/job-2", runpod.endpoint("whisper"))));
}

#[tokio::test]
async fn the_webhook_completes_the_chunk_only_with_the_secret() {
    let runpod = FakeRunpod::start().await;
    let (app, cid, id) = submitted_chunk(&runpod).await;
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await.0, 200);
    app.local.run_tasks().await;
    runpod.complete("job-1", json!({"conversation_chunk_id": id, "joined_text": "A bench in the park.", "language": "en"}));
    let payload = runpod.payload("job-1");
    let before = chunk(&app, &id).await;
    let published = app.published().len();

    // No token, a wrong one (header or query), or an empty one: 401 and nothing changes.
    for (query, header) in [("", None), ("?token=nope", None), ("", Some("nope")), ("?token=", None)] {
        let mut req = app.client.post(webhook(&app, query)).json(&payload);
        if let Some(h) = header {
            req = req.header("x-webhook-token", h);
        }
        let (status, body) = read(req.send().await.unwrap()).await;
        assert_eq!((status, body), (401, json!({"detail": "Invalid webhook token"})), "{query} {header:?}");
    }
    assert_eq!(chunk(&app, &id).await, before);
    assert_eq!(app.published().len(), published);

    // The right token in the header completes the chunk and runs the completion trigger.
    let res = app.client.post(webhook(&app, "")).header("x-webhook-token", WEBHOOK_SECRET).json(&payload).send().await.unwrap();
    assert_eq!(read(res).await, (200, Value::Null));
    let done = chunk(&app, &id).await;
    assert_eq!(
        (done.transcript.as_deref(), done.error.as_deref(), done.runpod_job_status_link.as_deref()),
        (Some("A bench in the park."), None, None)
    );
    assert_eq!(names(&app)[published..], ["task_finish_conversation_hook"], "the conversation was finished: the hook follows");

    // RunPod's own retry of the same result (query token this time) is ignored: 200, no change.
    assert_eq!(runpod.call_webhook("job-1").await, Some(200));
    assert_eq!(chunk(&app, &id).await, done);
    assert_eq!(app.published().len(), published + 1);
    // Malformed payloads are ignored too.
    for body in [
        json!([1, 2]),
        json!({"id": "job-1", "output": []}),
        json!({"id": "job-1", "output": {"joined_text": "x"}}),
        json!({"id": "job-1", "status": "COMPLETED", "output": {"conversation_chunk_id": "not-a-uuid", "joined_text": "x"}}),
    ] {
        let res = app.client.post(webhook(&app, &format!("?token={WEBHOOK_SECRET}"))).json(&body).send().await.unwrap();
        assert_eq!(read(res).await, (200, Value::Null), "{body}");
    }
}

#[tokio::test]
async fn without_a_secret_the_webhook_refuses_everything_and_jobs_carry_none() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |o| o.settings.api.runpod_webhook_secret = None).await;
    let cid = app.initiate().await;
    let id = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
    app.local.network_worker.run(&transcribe(&id, &cid), &delivery()).await.unwrap();
    assert!(runpod.runs()[0].0.get("webhook").is_none(), "the poller finishes these jobs");
    let res = app.client.post(webhook(&app, "?token=")).json(&json!({})).send().await.unwrap();
    assert_eq!(read(res).await.0, 401);
}

#[tokio::test]
async fn a_result_for_another_job_than_the_chunks_is_ignored() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |_| {}).await;
    let cid = app.initiate().await;
    let id = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
    let network = app.local.network_worker.clone();
    network.run(&transcribe(&id, &cid), &delivery()).await.unwrap();
    // RunPod cancelled the first job: the next delivery submits a new one.
    runpod.set_status("job-1", "CANCELLED");
    assert_eq!(network.run(&transcribe(&id, &cid), &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &id).await;
    assert_eq!((c.runpod_job_status_link.unwrap().ends_with("/status/job-2"), c.runpod_request_count), (true, 2));

    // The old job finishes after all: its webhook changes nothing.
    runpod.complete("job-1", json!({"conversation_chunk_id": id, "joined_text": "old"}));
    assert_eq!(runpod.call_webhook("job-1").await, Some(200));
    let c = chunk(&app, &id).await;
    assert_eq!(c.transcript, None);
    assert!(c.runpod_job_status_link.unwrap().ends_with("/status/job-2"));
    runpod.complete("job-2", json!({"conversation_chunk_id": id, "joined_text": "new"}));
    assert_eq!(runpod.call_webhook("job-2").await, Some(200));
    assert_eq!(chunk(&app, &id).await.transcript.as_deref(), Some("new"));
}

#[tokio::test]
async fn failed_jobs_mark_the_chunk_and_stop_the_polling() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |_| {}).await;
    let cid = app.initiate().await;
    let (a, b) = (audio_chunk(&app, &cid, "PORTAL_AUDIO").await, audio_chunk(&app, &cid, "PORTAL_AUDIO").await);
    let network = app.local.network_worker.clone();
    network.run(&transcribe(&a, &cid), &delivery()).await.unwrap();
    network.run(&transcribe(&b, &cid), &delivery()).await.unwrap();

    // FAILED without an error text, through the webhook.
    runpod.set_status("job-1", "FAILED");
    runpod.state.lock().unwrap().jobs.get_mut("job-1").unwrap().output = json!({"conversation_chunk_id": a});
    assert_eq!(runpod.call_webhook("job-1").await, Some(200));
    let c = chunk(&app, &a).await;
    assert_eq!((c.error.as_deref(), c.runpod_job_status_link, c.transcript), (Some("RunPod job failed: Unknown error"), None, None));

    // output.error set, found by the poll.
    runpod.complete("job-2", json!({"conversation_chunk_id": b, "error": "CUDA out of memory"}));
    let link = chunk(&app, &b).await.runpod_job_status_link.unwrap();
    let check = Task::ProcessRunpodChunkResponse { chunk_id: b.clone(), status_link: link };
    assert_eq!(network.run(&check, &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &b).await;
    assert_eq!((c.error.as_deref(), c.runpod_job_status_link), (Some("RunPod error: CUDA out of memory"), None));
    assert!(app.local.store.runpod_pending_chunks().await.unwrap().is_empty(), "nothing left to poll");
    // A duplicate check finds the link gone: stale, skipped.
    assert!(matches!(network.run(&check, &delivery()).await, Ok(Done::Skipped(_))));
}

#[tokio::test]
async fn the_request_limit_ends_in_an_error_instead_of_another_job() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |o| o.settings.transcription.runpod_whisper_max_request_threshold = 1).await;
    let cid = app.initiate().await;
    let id = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
    let network = app.local.network_worker.clone();
    network.run(&transcribe(&id, &cid), &delivery()).await.unwrap();
    runpod.set_status("job-1", "TIMED_OUT");
    assert!(matches!(network.run(&transcribe(&id, &cid), &delivery()).await, Ok(Done::Skipped(_))));
    let c = chunk(&app, &id).await;
    assert_eq!((c.error.as_deref(), c.runpod_job_status_link), (Some(network_worker::REQUEST_LIMIT_ERROR), None));
    assert_eq!(runpod.runs().len(), 1, "no second submission");
}

/// `raw_transcript`, `hallucination_score`, `hallucination_reason`, `desired_language`,
/// `detected_language`, `detected_language_confidence`.
type CompletionFields = (Option<String>, Option<f64>, Option<String>, Option<String>, Option<String>, Option<f64>);

#[tokio::test]
async fn the_poller_checks_every_pending_chunk_and_a_check_completes_it() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |_| {}).await;
    let cid = app.initiate().await;
    let (a, b) = (audio_chunk(&app, &cid, "PORTAL_AUDIO").await, audio_chunk(&app, &cid, "PORTAL_AUDIO").await);
    let idle = app.text_chunk(&cid, 5, "typed").await;
    let network = app.local.network_worker.clone();
    network.run(&transcribe(&a, &cid), &delivery()).await.unwrap();
    network.run(&transcribe(&b, &cid), &delivery()).await.unwrap();

    let before = app.published().len();
    let poller = Task::UpdateRunpodTranscriptionResponse {};
    assert_eq!(network.run(&poller, &delivery()).await, Ok(Done::Completed));
    let checks: Vec<Task> =
        app.local.queue.snapshot()[before..].iter().map(|m| TaskMessage::parse(&m.body).unwrap().task).collect::<Vec<_>>();
    let mut expected: Vec<Task> =
        [&a, &b].into_iter().map(|id| Task::ProcessRunpodChunkResponse { chunk_id: id.clone(), status_link: String::new() }).collect();
    for (task, job) in expected.iter_mut().zip(["job-1", "job-2"]) {
        let Task::ProcessRunpodChunkResponse { status_link, .. } = task else { unreachable!() };
        *status_link = format!("{}/status/{job}", runpod.endpoint("whisper-priority"));
    }
    expected.sort_by_key(|t| format!("{t:?}"));
    let mut got = checks.clone();
    got.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(got, expected, "one check per chunk with a job; none for {idle}");

    // job-1 finished with a translation; job-2 is still queued.
    runpod.complete(
        "job-1",
        json!({
            "conversation_chunk_id": a, "joined_text": "Een bank in het park.", "translation_text": "A bench in the park.",
            "translation_error": true, "language": "en", "detected_language": "nl", "detected_language_confidence": 0.93,
        }),
    );
    for check in &checks {
        network.run(check, &delivery()).await.unwrap();
    }
    let done = chunk(&app, &a).await;
    assert_eq!((done.transcript.as_deref(), done.error, done.runpod_job_status_link), (Some("A bench in the park."), None, None));
    let db = app.db();
    let row: CompletionFields = db
        .query_row(
            "SELECT raw_transcript, hallucination_score, hallucination_reason, desired_language, detected_language, \
             detected_language_confidence FROM conversation_chunk WHERE id = ?1",
            [&a],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            Some("Een bank in het park.".into()),
            Some(0.5),
            Some("There seems to be an internal model error with translation.".into()),
            Some("en".into()),
            Some("nl".into()),
            Some(0.93)
        )
    );
    let statuses: i64 = db
        .query_row(
            "SELECT count(*) FROM processing_status WHERE conversation_chunk_id = ?1 AND event IN \
             ('task_process_runpod_chunk_response.completed', 'load_runpod_transcription_response.completed')",
            [&a],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(statuses, 2);
    let pending = chunk(&app, &b).await;
    assert_eq!((pending.transcript, pending.runpod_job_status_link.is_some()), (None, true), "still queued");
    assert_eq!(runpod.runs().len(), 2, "checks never submit while a job runs");
}

#[tokio::test]
async fn a_job_runpod_no_longer_knows_is_submitted_again() {
    let runpod = FakeRunpod::start().await;
    let (app, _, id) = submitted_chunk(&runpod).await;
    runpod.forget("job-1");
    let check = check_of(&app, &id).await;
    assert_eq!(app.local.network_worker.run(&check, &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &id).await;
    assert_eq!((c.runpod_job_status_link.unwrap().ends_with("/status/job-2"), c.runpod_request_count), (true, 2));
    assert!(!names(&app).contains(&"task_transcribe_chunk".to_string()), "submitted by the check itself");
}

#[tokio::test]
async fn a_refused_status_request_submits_a_new_job_instead_of_failing_the_chunk() {
    let runpod = FakeRunpod::start().await;
    let (app, _, id) = submitted_chunk(&runpod).await;
    runpod.state.lock().unwrap().status_failure = Some(400);
    let check = check_of(&app, &id).await;
    assert_eq!(app.local.network_worker.run(&check, &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &id).await;
    assert_eq!((c.error, c.runpod_job_status_link.unwrap().ends_with("/status/job-2")), (None, true));
}

#[tokio::test]
async fn a_job_runpod_failed_on_its_own_fails_its_chunk_and_stops_the_polling() {
    // RunPod's own failures carry no `output` with the chunk id; the check knows the chunk.
    let runpod = FakeRunpod::start().await;
    let (app, _, id) = submitted_chunk(&runpod).await;
    runpod.set_status("job-1", "FAILED");
    let check = check_of(&app, &id).await;
    assert_eq!(app.local.network_worker.run(&check, &delivery()).await, Ok(Done::Completed));
    let c = chunk(&app, &id).await;
    assert_eq!((c.error.as_deref(), c.runpod_job_status_link), (Some("RunPod job failed: Unknown error"), None));
    assert_eq!(runpod.runs().len(), 1, "nothing resubmitted");
}

#[tokio::test]
async fn a_check_on_a_chunk_that_failed_otherwise_only_stops_the_polling() {
    let runpod = FakeRunpod::start().await;
    let (app, _, id) = submitted_chunk(&runpod).await;
    let link = chunk(&app, &id).await.runpod_job_status_link.unwrap();
    let error = common::store::ChunkPatch { error: Some("Transcription failed: gave up".into()), ..Default::default() };
    app.local.store.update_chunk(&id, error).await.unwrap();
    let asked = runpod.state.lock().unwrap().status_requests;
    let check = Task::ProcessRunpodChunkResponse { chunk_id: id.clone(), status_link: link };
    assert!(matches!(app.local.network_worker.run(&check, &delivery()).await, Ok(Done::Skipped(_))));
    assert_eq!(chunk(&app, &id).await.runpod_job_status_link, None, "the poller lets go of it");
    assert_eq!(runpod.state.lock().unwrap().status_requests, asked, "RunPod was not asked");
}

#[derive(Default)]
struct NoOps;

#[async_trait::async_trait]
impl QueueOps for NoOps {
    async fn dead_letter(&self, _body: &str, _task: &str, _error: &str) -> Result<(), String> {
        Ok(())
    }
    async fn retry_after(&self, _receipt_handle: &str, _delay: Duration) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn a_runpod_outage_retries_the_message() {
    let runpod = FakeRunpod::start().await;
    let (app, cid, id) = submitted_chunk(&runpod).await;
    let before = chunk(&app, &id).await;
    runpod.state.lock().unwrap().status_failure = Some(503);
    let check = Task::ProcessRunpodChunkResponse { chunk_id: id.clone(), status_link: before.runpod_job_status_link.clone().unwrap() };
    let mut event = SqsEvent::default();
    for (message_id, task) in [("check", check), ("transcribe", transcribe(&id, &cid))] {
        let mut record = SqsMessage::default();
        record.message_id = Some(message_id.into());
        record.receipt_handle = Some(message_id.into());
        record.body = Some(TaskMessage::new(task).to_json());
        record.attributes.insert("ApproximateReceiveCount".into(), "1".into());
        event.records.push(record);
    }
    let response = common::queue::worker::handle_batch(app.local.network_worker.as_ref(), &NoOps, event, 5, None).await;
    let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(failed, ["check", "transcribe"], "both retried later");
    assert_eq!(chunk(&app, &id).await, before, "nothing recorded for a transient failure");
    assert_eq!(runpod.runs().len(), 1);
}

#[tokio::test]
async fn a_recording_is_transcribed_by_runpod_through_the_webhook_end_to_end() {
    let runpod = FakeRunpod::start().await;
    runpod.state.lock().unwrap().auto_complete = Some("We would like a bench in the park.".into());
    let llm = FakeLlm::start(LlmBehaviour::Reply("Participants asked for a bench.".into())).await;
    let slot = llm.slot();
    let app = runpod_app(&runpod, |o| o.settings.llm.summary = slot).await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "a.mp3", "audio/mpeg").await;
    app.browser_upload(&upload, fixture_audio("mp3.mp3"), "audio/mpeg").await;
    let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z"});
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/confirm-upload"), confirm).await.0, 200);
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await.0, 200);

    // Processing and submission; then RunPod calls the webhook, whose completion trigger queues
    // the finish hook, and the rest of the pipeline follows.
    // No poller runs here (echo-local has no schedules): only the webhook can finish the job.
    app.local.run_tasks().await;
    let started = std::time::Instant::now();
    loop {
        app.local.run_tasks().await;
        let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
        if conversation.summary.is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the pipeline did not finish: {:?}", app.local.queue.dead_letters());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chunks = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].transcript.as_deref(), Some("We would like a bench in the park."));
    assert_eq!((chunks[0].runpod_job_status_link.as_deref(), chunks[0].runpod_request_count), (None, 1));
    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(conversation.is_all_chunks_transcribed, Some(true));
    assert_eq!(conversation.summary.as_deref(), Some("Participants asked for a bench."));
    assert_eq!(runpod.runs().len(), 1);
    let hook = runpod.runs()[0].0["webhook"].as_str().unwrap().to_string();
    assert!(hook.starts_with(&format!("{}/stateless/webhook/transcribe?token=", app.url("/api"))), "{hook}");
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());
    // The webhook did it: RunPod called it once and it answered 200, and nobody polled.
    let state = runpod.state.lock().unwrap();
    assert_eq!(state.webhook_calls, [("job-1".to_string(), Some(200))]);
    assert_eq!((state.status_requests, state.unauthorized), (0, 0), "no status request: the poller never ran");
    drop(state);
    let polls = ["task_update_runpod_transcription_response", "task_process_runpod_chunk_response"];
    assert!(!names(&app).iter().any(|n| polls.contains(&n.as_str())), "{:?}", names(&app));
}

#[tokio::test]
async fn a_multi_project_is_transcribed_without_a_forced_language() {
    let runpod = FakeRunpod::start().await;
    let app = runpod_app(&runpod, |_| {}).await;
    let cid = app.initiate().await;
    let project = app.local.store.get_conversation(&cid).await.unwrap().unwrap().project_id;
    let network = app.local.network_worker.clone();
    for (i, language) in ["multi", "nl"].into_iter().enumerate() {
        app.db().execute("UPDATE project SET language = ?2 WHERE id = ?1", [&project, language]).unwrap();
        let id = audio_chunk(&app, &cid, "PORTAL_AUDIO").await;
        assert_eq!(network.run(&transcribe(&id, &cid), &delivery()).await, Ok(Done::Completed));
        let input = runpod.runs()[i].0["input"].clone();
        match language {
            // Whisper detects the language itself when it is given none (processing.md §10).
            "multi" => assert!(input.get("language").is_none(), "no forced language: {input}"),
            other => assert_eq!(input["language"], other),
        }
    }
}
