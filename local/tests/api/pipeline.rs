//! The whole recording pipeline on echo-local: a real recording uploaded through the
//! participant flow, converted, transcribed by a local server speaking the OpenAI transcription
//! protocol, finished, merged and summarised (a local chat-completions server), all through the
//! in-process queue and the same worker handlers Lambda runs.

use crate::support::*;
use common::store::ChunkOrder;
use serde_json::json;

#[tokio::test]
async fn a_recording_is_processed_end_to_end() {
    let whisper = FakeWhisper::start("We would like a bench in the park.").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("Participants asked for a bench in the park.".into())).await;
    let app = whisper.app_with(&llm).await;
    let cid = app.initiate().await;

    // The portal's upload: a webm recording (so conversion runs), straight to S3, then confirm.
    let recording = fixture_audio("webm.webm");
    let upload = app.upload_url(&cid, "chunk-1760616030000.webm", "audio/webm").await;
    let (status, _) = app.browser_upload(&upload, recording.clone(), "audio/webm").await;
    assert!((200..300).contains(&status));
    let (status, _) = app
        .post(
            &format!("/api/participant/conversations/{cid}/confirm-upload"),
            json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z"}),
        )
        .await;
    assert_eq!(status, 200);
    // Finish before the workers ran, as the portal does.
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await.0, 200);

    let delivered = app.local.run_tasks().await;
    assert!(delivered >= 6, "process, transcribe, finish (twice), merge, summarise: {delivered}");
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());

    let chunks = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].transcript.as_deref(), Some("We would like a bench in the park."));
    assert!(chunks[0].path.as_deref().unwrap().ends_with(".mp3"), "the chunk now points at its mp3: {:?}", chunks[0].path);
    let sent = whisper.requests.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "transcribed once");
    assert_eq!(sent[0]["model"], "whisper-1");
    assert_eq!(sent[0]["language"], "en");

    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(conversation.is_finished, Some(true));
    assert_eq!(conversation.is_all_chunks_transcribed, Some(true));
    assert_eq!(conversation.summary.as_deref(), Some("Participants asked for a bench in the park."));
    let merged = conversation.merged_audio_path.clone().expect("merged audio");
    assert!(merged.contains(&format!("audio-conversations/merged-{cid}-")));
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("webm.webm");
    std::fs::write(&original, &recording).unwrap();
    let expected = common::audio::duration(&original).await.expect("ffprobe reads the fixture");
    let duration = conversation.duration.unwrap();
    assert!((duration - expected).abs() <= 0.5, "merged {duration} s, recording {expected} s");
    assert!(llm.requests.lock().unwrap()[0]["messages"][0]["content"].as_str().unwrap().contains("We would like a bench in the park."));

    // Running everything again changes nothing: no new transcription, summary or merge.
    app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    app.local.run_tasks().await;
    assert_eq!(whisper.requests.lock().unwrap().len(), 1);
    assert_eq!(llm.request_count(), 1);
    assert_eq!(app.local.state.blob.list("audio-conversations/").await.unwrap().len(), 1);
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().merged_audio_path, Some(merged));
}

#[tokio::test]
async fn without_a_provider_chunks_stay_pending_and_say_so() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "a.mp3", "audio/mpeg").await;
    app.browser_upload(&upload, fixture_audio("mp3.mp3"), "audio/mpeg").await;
    app.post(
        &format!("/api/participant/conversations/{cid}/confirm-upload"),
        json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z"}),
    )
    .await;
    app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    app.local.run_tasks().await;
    let chunk = &app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap()[0];
    assert_eq!((chunk.transcript.as_deref(), chunk.error.as_deref()), (None, None), "pending");
    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(conversation.is_finished, Some(true));
    assert_ne!(conversation.is_all_chunks_transcribed, Some(true));
    let db = app.db();
    // A skip inside the step is its `.completed` row carrying the exit message (§1.5).
    let rows: Vec<(String, Option<String>)> = {
        let sql = "SELECT event, message FROM processing_status \
                   WHERE conversation_chunk_id = ?1 AND event LIKE 'task_transcribe_chunk%' ORDER BY id";
        let mut stmt = db.prepare(sql).unwrap();
        stmt.query_map([&chunk.id], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let events: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["task_transcribe_chunk.started", "task_transcribe_chunk.completed"], "{rows:?}");
    let message = rows[1].1.clone().unwrap();
    assert!(message.starts_with("no transcription provider is configured"), "the exit message itself: {message}");
    assert!(app.local.queue.dead_letters().is_empty());
}

/// Uploads `recording` through the portal's presigned POST and confirms it; the chunk id.
async fn record_chunk(app: &TestApp, cid: &str, recording: Vec<u8>, timestamp: &str) -> String {
    let upload = app.upload_url(cid, "chunk.mp3", "audio/mpeg").await;
    let (status, text) = app.browser_upload(&upload, recording, "audio/mpeg").await;
    assert!((200..300).contains(&status), "{status} {text}");
    let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": timestamp});
    let (status, body) = app.post(&format!("/api/participant/conversations/{cid}/confirm-upload"), confirm).await;
    assert_eq!(status, 200, "{body}");
    upload["chunk_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_chunk_confirmed_after_the_finish_hook_ran_is_processed_and_merged_again() {
    let whisper = FakeWhisper::start("Some words.").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("A summary.".into())).await;
    let app = whisper.app_with(&llm).await;
    let cid = app.initiate().await;
    let recording = fixture_audio("mp3.mp3");
    let first = record_chunk(&app, &cid, recording.clone(), "2025-10-16T12:00:30Z").await;
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await.0, 200);
    app.local.run_tasks().await;
    // The finish hook ran to completion: merged, summarised, finalised.
    let finalised = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(finalised.is_all_chunks_transcribed, Some(true));
    let merged_once = finalised.merged_audio_path.clone().expect("merged after the first finish");
    let duration_once = finalised.duration.unwrap();
    let hooks = |app: &TestApp| app.published().iter().filter(|m| m["task"] == "task_finish_conversation_hook").count();
    let hooks_before = hooks(&app);

    // The late chunk: the portal's last upload arrives after all that.
    let late = record_chunk(&app, &cid, recording, "2025-10-16T12:01:30Z").await;
    app.local.run_tasks().await;
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());
    let chunks = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [first.as_str(), late.as_str()]);
    let late_chunk = &chunks[1];
    assert!(late_chunk.path.as_deref().unwrap().ends_with(".mp3"), "converted: {:?}", late_chunk.path);
    assert_ne!(late_chunk.path, chunks[0].path);
    assert_eq!(late_chunk.transcript.as_deref(), Some("Some words."), "transcribed");
    assert_eq!(whisper.requests.lock().unwrap().len(), 2);
    assert!(hooks(&app) > hooks_before, "its transcript re-ran the finish hook");

    // Finalised again, and the merge now holds both chunks.
    let again = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!((again.is_finished, again.is_all_chunks_transcribed), (Some(true), Some(true)));
    let merged_twice = again.merged_audio_path.clone().unwrap();
    assert_ne!(merged_twice, merged_once, "a new chunk set is a new merge");
    let both: Vec<&common::store::Chunk> = chunks.iter().collect();
    let key = common::flows::merge::merged_key(&cid, &common::flows::merge::fingerprint(&both));
    assert_eq!(merged_twice, app.local.state.blob.url_for_key(&key), "the merge of both chunks");
    assert!(app.local.state.blob.head(&key).await.unwrap().is_some());
    let duration_twice = again.duration.unwrap();
    assert!((duration_twice - 2.0 * duration_once).abs() <= 0.5, "merged {duration_twice} s, one chunk {duration_once} s");
}
