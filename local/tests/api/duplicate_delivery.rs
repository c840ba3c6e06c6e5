//! SQS delivers at least once, sometimes twice at the same moment (processing.md §1.4): two
//! copies of one message run concurrently end as one run; the collector, diarization, storage
//! deletion and the RunPod poller run twice end as once.

use crate::support::*;
use common::queue::Task;
use common::queue::worker::{Delivery, Done, TaskError, TaskRunner};
use common::store::ChunkOrder;
use serde_json::json;

fn delivery() -> Delivery {
    Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None }
}

/// Two copies of `task` at the same moment; both must succeed (or skip).
async fn twice_at_once(runner: &dyn TaskRunner, task: &Task) -> [Done; 2] {
    let (first, second) = (delivery(), delivery());
    let (a, b) = tokio::join!(runner.run(task, &first), runner.run(task, &second));
    let done = |outcome: Result<Done, TaskError>| outcome.unwrap_or_else(|e| panic!("{task:?}: {e:?}"));
    [done(a), done(b)]
}

async fn tone(seconds: f64, args: &[&str], file: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    common::audio::generate_tone(&path, seconds, 330, args).await.expect("ffmpeg is needed: apt-get install ffmpeg");
    std::fs::read(&path).unwrap()
}

const CONVERSATION: &str = "c0ffee00-0000-4000-8000-000000000001";
const CHUNK: &str = "c0ffee00-0000-4000-8000-000000000002";

/// A conversation and an ogg chunk with fixed ids, so two apps can be compared.
async fn conversation_with_chunk(app: &TestApp, recording: Vec<u8>) {
    app.local
        .store
        .create_conversation(common::store::NewConversation {
            id: CONVERSATION.into(),
            project_id: PROJECT.into(),
            participant_name: Some("Ada".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = format!("conversation/{CONVERSATION}/chunks/{CHUNK}-rec.ogg");
    app.local.state.blob.put(&key, recording.into(), None).await.unwrap();
    use chrono::TimeZone;
    app.local
        .store
        .create_chunk(common::store::NewChunk {
            id: CHUNK.into(),
            conversation_id: CONVERSATION.into(),
            timestamp: chrono::Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap(),
            path: Some(app.local.state.blob.url_for_key(&key)),
            source: Some("PORTAL_AUDIO".into()),
            transcript: None,
            created_at: None,
        })
        .await
        .unwrap();
}

/// A chunk: id, object key, transcript, error.
type ChunkState = (String, Option<String>, Option<String>, Option<String>);
/// is_finished, is_all_chunks_transcribed, summary, merged object, duration (tenths of a second).
type ConversationState = (Option<bool>, Option<bool>, Option<String>, Option<String>, Option<i64>);

/// What a run leaves behind, free of ports and clocks.
#[derive(Debug, PartialEq)]
struct Outcome {
    chunks: Vec<ChunkState>,
    conversation: ConversationState,
    objects: Vec<String>,
    dead_letters: usize,
}

async fn outcome(app: &TestApp) -> Outcome {
    let blob = &app.local.state.blob;
    let chunks = app.local.store.list_chunks(CONVERSATION, ChunkOrder::OldestFirst).await.unwrap();
    let c = app.local.store.get_conversation(CONVERSATION).await.unwrap().unwrap();
    // The merge's key holds a fingerprint of the chunks' URLs, whose S3 port differs per app:
    // named here as "the merge of the current chunk set".
    let merge_of_the_set =
        common::flows::merge::merged_key(CONVERSATION, &common::flows::merge::fingerprint(&chunks.iter().collect::<Vec<_>>()));
    let name = |key: String| if key == merge_of_the_set { "the merge of the chunk set".to_string() } else { key };
    let mut objects = Vec::new();
    for prefix in [format!("conversation/{CONVERSATION}/"), format!("chunks/{CONVERSATION}/"), "audio-conversations/".into()] {
        objects.extend(blob.list(&prefix).await.unwrap().into_iter().map(name));
    }
    Outcome {
        chunks: chunks.into_iter().map(|k| (k.id, k.path.as_deref().and_then(|p| blob.key_from_url(p)), k.transcript, k.error)).collect(),
        conversation: (
            c.is_finished,
            c.is_all_chunks_transcribed,
            c.summary,
            c.merged_audio_path.as_deref().and_then(|p| blob.key_from_url(p)).map(name),
            c.duration.map(|d| (d * 10.0).round() as i64),
        ),
        objects,
        dead_letters: app.local.queue.dead_letters().len(),
    }
}

/// The pipeline's messages one after another, each delivered once or as two concurrent copies;
/// then whatever the runs queued is delivered too.
async fn run_pipeline(app: &TestApp, copies: usize) -> Outcome {
    let (audio, network) = (app.local.audio_worker.clone(), app.local.network_worker.clone());
    let steps: [(&dyn TaskRunner, Task); 5] = [
        (audio.as_ref(), Task::ProcessConversationChunk { chunk_id: CHUNK.into(), use_pii_redaction: false }),
        (
            network.as_ref(),
            Task::TranscribeChunk {
                conversation_chunk_id: CHUNK.into(),
                conversation_id: CONVERSATION.into(),
                use_pii_redaction: false,
                provider_job_id: None,
                continuation: 0,
            },
        ),
        (network.as_ref(), Task::FinishConversationHook { conversation_id: CONVERSATION.into() }),
        (audio.as_ref(), Task::MergeConversationChunks { conversation_id: CONVERSATION.into() }),
        (network.as_ref(), Task::SummarizeConversation { conversation_id: CONVERSATION.into() }),
    ];
    for (runner, task) in &steps {
        if copies == 2 {
            twice_at_once(*runner, task).await;
        } else {
            assert!(runner.run(task, &delivery()).await.is_ok(), "{task:?}");
        }
    }
    app.local.run_tasks().await;
    outcome(app).await
}

#[tokio::test]
async fn two_copies_of_every_pipeline_message_at_once_end_as_one_run() {
    let recording = tone(3.0, &["-c:a", "libvorbis"], "tone.ogg").await;
    let whisper = FakeWhisper::start("Two copies, one transcript.").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("One summary.".into())).await;

    let once = whisper.app_with(&llm).await;
    conversation_with_chunk(&once, recording.clone()).await;
    let expected = run_pipeline(&once, 1).await;
    assert_eq!(expected.chunks[0].2.as_deref(), Some("Two copies, one transcript."));
    assert_eq!(expected.conversation.2.as_deref(), Some("One summary."));
    assert_eq!(expected.conversation.3.as_deref(), Some("the merge of the chunk set"), "{expected:?}");
    assert_eq!(expected.objects.len(), 3, "the upload, its mp3, the merge: {:?}", expected.objects);

    let twice = whisper.app_with(&llm).await;
    conversation_with_chunk(&twice, recording).await;
    assert_eq!(run_pipeline(&twice, 2).await, expected);
}

#[tokio::test]
async fn two_copies_of_a_long_recording_at_once_split_into_one_set_of_pieces() {
    let app = TestApp::start().await;
    // 420 s at 320 kbps is about 16 MiB of mp3: two pieces.
    conversation_with_chunk(&app, tone(420.0, &["-c:a", "libmp3lame", "-b:a", "320k"], "tone.mp3").await).await;
    let task = Task::ProcessConversationChunk { chunk_id: CHUNK.into(), use_pii_redaction: false };
    twice_at_once(app.local.audio_worker.as_ref(), &task).await;
    let pieces = app.local.store.list_chunks(CONVERSATION, ChunkOrder::OldestFirst).await.unwrap();
    let ids: Vec<String> = pieces.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 2, "one set of pieces, not two: {pieces:?}");
    assert!(!ids.contains(&CHUNK.to_string()), "the original row is deleted after the split");
    assert_eq!((pieces[1].timestamp - pieces[0].timestamp).num_seconds(), 210);
    let objects = app.local.state.blob.list(&format!("chunks/{CONVERSATION}/")).await.unwrap();
    assert_eq!(objects.len(), 2, "{objects:?}");
    // Each piece is transcribed; duplicates of those messages are absorbed by the transcript guard.
    let transcribe: std::collections::BTreeSet<String> = app
        .published()
        .iter()
        .filter(|m| m["task"] == "task_transcribe_chunk")
        .map(|m| m["args"]["conversation_chunk_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(transcribe, ids.into_iter().collect());
}

#[tokio::test]
async fn the_collector_finishes_idle_conversations_and_redrives_unfinalised_ones_once() {
    let whisper = FakeWhisper::start("Said and done.").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("Summary.".into())).await;
    let app = whisper.app_with(&llm).await;
    let db = app.db();
    let ago = |minutes: i64| common::datetime::format(&(chrono::Utc::now() - chrono::Duration::minutes(minutes)));
    // idle: unfinished, created 10 min ago, last chunk 6 min ago -> pass A finishes it.
    // active: unfinished, created 10 min ago, a chunk 1 min ago -> left alone.
    // fresh: unfinished, created 1 min ago -> left alone.
    // stuck: finished 2 h ago but never finalised -> pass B re-drives it.
    // old: finished, not finalised, created 2 days ago -> beyond pass B's 24 h.
    let mut ids = std::collections::BTreeMap::new();
    for (name, created, chunk, finished) in [
        ("idle", 10, Some(6), false),
        ("active", 10, Some(1), false),
        ("fresh", 1, None, false),
        ("stuck", 120, Some(119), true),
        ("old", 2880, Some(2879), true),
    ] {
        let cid = app.initiate().await;
        if let Some(minutes) = chunk {
            let id = app.text_chunk(&cid, 0, &format!("words of {name}")).await;
            db.execute("UPDATE conversation_chunk SET timestamp = ?2 WHERE id = ?1", [&id, &ago(minutes)]).unwrap();
        }
        db.execute(
            "UPDATE conversation SET created_at = ?2, is_finished = ?3 WHERE id = ?1",
            rusqlite::params![cid, ago(created), finished],
        )
        .unwrap();
        ids.insert(name, cid);
    }

    // The schedule's event, through the scheduler, onto the queue the network worker drains.
    let event = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let mut after = Vec::new();
    for run in 0..2 {
        assert_eq!(
            scheduler::handle(&event, &app.local.queue, None).await.unwrap(),
            Some("task_collect_and_finish_unfinished_conversations")
        );
        app.local.run_tasks().await;
        let mut states = std::collections::BTreeMap::new();
        for (name, cid) in &ids {
            let c = app.local.store.get_conversation(cid).await.unwrap().unwrap();
            states.insert(*name, (c.is_finished == Some(true), c.is_all_chunks_transcribed == Some(true), c.summary));
        }
        if run == 0 {
            let done = |text: &str| (true, true, Some(text.to_string()));
            assert_eq!(states["idle"], done("Summary."));
            assert_eq!(states["stuck"], done("Summary."));
            assert_eq!(states["active"], (false, false, None));
            assert_eq!(states["fresh"], (false, false, None));
            assert_eq!(states["old"], (true, false, None));
        }
        after.push(states);
    }
    assert_eq!(after[0], after[1], "a second collector run changes nothing");
    assert_eq!(llm.request_count(), 2, "one summary each for idle and stuck, however often collected");
    let hooks: Vec<String> = app
        .published()
        .iter()
        .filter(|m| m["task"] == "task_finish_conversation_hook")
        .map(|m| m["args"]["conversation_id"].as_str().unwrap().to_string())
        .collect();
    assert!(hooks.contains(&ids["idle"]) && hooks.contains(&ids["stuck"]));
    for name in ["active", "fresh", "old"] {
        assert!(!hooks.contains(&ids[name]), "{name} was not collected");
    }
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());
}

#[tokio::test]
async fn diarization_twice_writes_what_once_writes() {
    // RunPod's diarization endpoint; each job answers the same analysis.
    let output = json!({"noise_ratio": 0.2, "silence_ratio": 0.3, "cross_talk_instances": 2, "joined_diarization": [{"speaker": "A"}]});
    let runpod = FakeDiarization::start(output).await;
    let base = runpod.base.clone();
    let app = TestApp::start_with(|o| {
        o.settings.runpod_diarization = true;
        o.settings.diarization.base_url = Some(base);
        o.settings.diarization.api_key = Some(FakeDiarization::KEY.into());
    })
    .await;
    let cid = app.initiate().await;
    let chunk = app.stored_chunk(&cid, "a.mp3", tone(1.0, &["-c:a", "libmp3lame"], "tone.mp3").await, chrono::Utc::now()).await.id;
    let stored = || {
        let db = app.db();
        db.query_row(
            "SELECT noise_ratio, silence_ratio, cross_talk_instances, diarization FROM conversation_chunk WHERE id = ?1",
            [&chunk],
            |r| Ok((r.get::<_, Option<f64>>(0)?, r.get::<_, Option<f64>>(1)?, r.get::<_, Option<f64>>(2)?, r.get::<_, Option<String>>(3)?)),
        )
        .unwrap()
    };
    let task = Task::GetRunpodDiarization { chunk_id: chunk.clone() };
    assert_eq!(app.local.network_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    let once = stored();
    assert_eq!((once.0, once.1, once.2), (Some(0.2), Some(0.3), Some(2.0)));
    // Sequentially and concurrently: a duplicate repeats the job (spec: last write wins) and
    // leaves the same fields.
    assert_eq!(app.local.network_worker.run(&task, &delivery()).await, Ok(Done::Completed));
    assert_eq!(stored(), once);
    let both = twice_at_once(app.local.network_worker.as_ref(), &task).await;
    assert_eq!(both, [Done::Completed, Done::Completed]);
    assert_eq!(stored(), once);
    assert_eq!(runpod.runs.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn deleting_a_chunks_objects_twice_deletes_them_once() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let (doomed, kept) = (
        app.stored_chunk(&cid, "a.mp3", b"doomed".to_vec(), chrono::Utc::now()).await,
        app.stored_chunk(&cid, "b.mp3", b"kept".to_vec(), chrono::Utc::now()).await,
    );
    let doomed_key = app.local.state.blob.key_from_url(doomed.path.as_deref().unwrap()).unwrap();
    let kept_key = app.local.state.blob.key_from_url(kept.path.as_deref().unwrap()).unwrap();
    // Its mp3 beside the upload, as conversion leaves it.
    let mp3 = format!("conversation/{cid}/chunks/{}-a-converted.mp3", doomed.id);
    app.local.state.blob.put(&mp3, b"mp3".to_vec().into(), None).await.unwrap();

    // The participant's delete queues the task (delayed) and removes the row.
    let (status, _) = app.delete(&format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks/{}", doomed.id)).await;
    assert_eq!(status, 200);
    let message = app.published().into_iter().rev().find(|m| m["task"] == "task_delete_storage_objects").unwrap();
    let task = common::queue::TaskMessage::parse(&message.to_string()).unwrap().task;

    let network = app.local.network_worker.as_ref();
    assert_eq!(twice_at_once(network, &task).await, [Done::Completed, Done::Completed]);
    assert_eq!(network.run(&task, &delivery()).await, Ok(Done::Completed), "and a third, later");
    let blob = &app.local.state.blob;
    assert_eq!(blob.head(&doomed_key).await.unwrap(), None);
    assert_eq!(blob.head(&mp3).await.unwrap(), None);
    assert_eq!(blob.list(&format!("conversation/{cid}/")).await.unwrap(), [kept_key], "the other chunk's object stays");
}

#[tokio::test]
async fn the_runpod_poller_twice_completes_each_chunk_once() {
    let runpod = FakeRunpod::start().await;
    let app = TestApp::start_with(|o| runpod.configure(&mut o.settings)).await;
    let cid = app.initiate().await;
    let network = app.local.network_worker.clone();
    let mut chunks = Vec::new();
    for _ in 0..2 {
        let id = app.stored_chunk(&cid, "a.mp3", vec![7u8; 2048], chrono::Utc::now()).await.id;
        let transcribe = Task::TranscribeChunk {
            conversation_chunk_id: id.clone(),
            conversation_id: cid.clone(),
            use_pii_redaction: false,
            provider_job_id: None,
            continuation: 0,
        };
        network.run(&transcribe, &delivery()).await.unwrap();
        chunks.push(id);
    }
    runpod.complete("job-1", json!({"conversation_chunk_id": chunks[0], "joined_text": "first"}));
    runpod.complete("job-2", json!({"conversation_chunk_id": chunks[1], "joined_text": "second"}));

    // Two overlapping poller runs (and every check they queue, each twice at once).
    let before = app.published().len();
    twice_at_once(network.as_ref(), &Task::UpdateRunpodTranscriptionResponse {}).await;
    let checks: Vec<Task> = app.local.queue.snapshot()[before..]
        .iter()
        .map(|m| common::queue::TaskMessage::parse(&m.body).unwrap().task)
        .filter(|t| matches!(t, Task::ProcessRunpodChunkResponse { .. }))
        .collect();
    assert_eq!(checks.len(), 4, "each run queues a check per pending chunk");
    for check in &checks {
        twice_at_once(network.as_ref(), check).await;
    }
    app.local.run_tasks().await;
    for (id, text) in chunks.iter().zip(["first", "second"]) {
        let c = app.local.store.get_chunk(id).await.unwrap().unwrap();
        assert_eq!((c.transcript.as_deref(), c.error, c.runpod_job_status_link, c.runpod_request_count), (Some(text), None, None, 1));
    }
    assert_eq!(runpod.runs().len(), 2, "nothing submitted again");
    assert!(app.local.store.runpod_pending_chunks().await.unwrap().is_empty());
    // A third poller run finds nothing to check.
    let before = app.published().len();
    assert_eq!(network.run(&Task::UpdateRunpodTranscriptionResponse {}, &delivery()).await, Ok(Done::Completed));
    assert_eq!(app.published().len(), before);
}
