//! `task_run_etl_pipeline` on echo-local against a real `lightrag-server` (scripts/lightrag.sh,
//! started by scripts/test.sh): indexed once however often it runs, nothing half-flagged when the
//! server is down, and the conversation's deletion removes its document; and the whole path from
//! a real recording through the portal, the in-process queue and the dashboard's delete.

use std::time::Duration;

use crate::support::*;
use common::config::RagSettings;
use common::providers::rag::{LightRagClient, LightRagConfig, QueryRequest, RagIndex, file_source};
use common::queue::worker::{Delivery, Done, TaskError, TaskRunner};
use common::queue::{Task, TaskPublisher};
use common::store::{ConversationPatch, NewConversation, NewProject};
use serde_json::json;

fn delivery() -> Delivery {
    Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None }
}

pub(crate) fn server() -> (String, Option<String>) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let url = var("LIGHTRAG_TEST_URL").unwrap_or_else(|| {
        panic!(
            "the ETL tests need a running lightrag-server 1.5.7: run `bash scripts/test.sh`, or \
             `eval \"$(bash scripts/lightrag.sh start)\"` and export LIGHTRAG_TEST_URL=$LIGHTRAG_SERVER_URL \
             LIGHTRAG_TEST_API_KEY=$LIGHTRAG_API_KEY"
        )
    });
    (url, var("LIGHTRAG_TEST_API_KEY"))
}

/// Segment ids are the documents' names on the one test server, but every echo-local starts its
/// own SQLite at 1: start this one's ids at a random height so tests never share a document.
pub(crate) fn distinct_segment_ids(app: &TestApp) {
    let start = 1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as i64 * 1000;
    let db = app.db();
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'conversation_segment'", []).unwrap();
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('conversation_segment', ?1)", [start]).unwrap();
}

async fn app(url: &str, key: Option<String>, llm: &FakeLlm) -> TestApp {
    let rag = RagSettings { server_url: Some(url.into()), api_key: key, enable_audio_input: true, contextual_llm: llm.slot() };
    let app = TestApp::start_with(move |o| o.settings.rag = rag).await;
    distinct_segment_ids(&app);
    app
}

/// A finalized conversation of an enhanced project with two transcribed chunks.
async fn finalized_conversation(app: &TestApp, marker: &str) -> String {
    let project = uuid::Uuid::new_v4().to_string();
    let new = NewProject { id: project.clone(), is_enhanced_audio_processing_enabled: Some(true), ..Default::default() };
    app.local.store.create_project(new).await.unwrap();
    let cid = uuid::Uuid::new_v4().to_string();
    app.local.store.create_conversation(NewConversation { id: cid.clone(), project_id: project, ..Default::default() }).await.unwrap();
    app.text_chunk(&cid, 2, &format!("Later we talked about {marker} and the harbour.")).await;
    app.text_chunk(&cid, 1, "  We started with the market square.  ").await;
    let patch = ConversationPatch { is_all_chunks_transcribed: Some(true), ..Default::default() };
    app.local.store.update_conversation(&cid, patch).await.unwrap();
    cid
}

/// Runs the task and then its continuations (without their delay) until it completes.
async fn run_to_completion(app: &TestApp, cid: &str) -> Done {
    let mut task = Task::RunEtlPipeline { conversation_id: cid.into(), segment_id: None, continuation: 0 };
    for _ in 0..120 {
        let done = app.local.network_worker.run(&task, &delivery()).await.unwrap();
        let next = app.published().into_iter().rev().find(|m| m["task"] == "task_run_etl_pipeline" && m["args"]["conversation_id"] == cid);
        match (&done, next) {
            (Done::Skipped(reason), Some(message)) if reason.contains("continuation") => {
                task = serde_json::from_value(json!({"task": "task_run_etl_pipeline", "args": message["args"]}))
                    .unwrap_or_else(|e| panic!("{e}: {message}"));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return done,
        }
    }
    panic!("the ETL did not finish");
}

#[tokio::test]
async fn the_etl_indexes_a_conversation_once_and_deletion_removes_it() {
    let (url, key) = server();
    let llm = FakeLlm::start(LlmBehaviour::Reply(String::new())).await;
    let app = app(&url, key.clone(), &llm).await;
    let marker = format!("etlmarker{}", uuid::Uuid::new_v4().simple());
    llm.set(LlmBehaviour::Reply(json!({ "CONTEXTUAL_TRANSCRIPT": format!("Residents discussed {marker} at length.") }).to_string()));
    let cid = finalized_conversation(&app, &marker).await;

    assert_eq!(run_to_completion(&app, &cid).await, Done::Completed);
    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(conversation.is_audio_processing_finished, Some(true));
    let segments = app.local.store.conversation_segments(&cid).await.unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(segments[0].lightrag_flag);
    let expected = format!("We started with the market square.\n\nLater we talked about {marker} and the harbour.");
    assert_eq!(segments[0].transcript.as_deref(), Some(expected.as_str()), "by timestamp, trimmed, blank-line joined");
    assert_eq!(segments[0].contextual_transcript.as_deref(), Some(format!("Residents discussed {marker} at length.").as_str()));
    let system = llm.requests.lock().unwrap()[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(system.contains("name : None") && system.contains("language : None"), "{system}");

    // Twice = once: the second run finds the flag.
    assert!(matches!(run_to_completion(&app, &cid).await, Done::Skipped(_)));
    let reset = ConversationPatch { is_audio_processing_finished: Some(false), ..Default::default() };
    app.local.store.update_conversation(&cid, reset).await.unwrap();
    assert_eq!(run_to_completion(&app, &cid).await, Done::Completed, "a flagged segment finishes the conversation");
    assert_eq!(app.local.store.conversation_segments(&cid).await.unwrap().len(), 1, "one segment");

    let rag = LightRagClient::new(LightRagConfig::new(url, key)).unwrap();
    let mut query = QueryRequest::new(format!("What about {marker}?"), "naive");
    query.chunk_top_k = Some(250);
    let found = |data: common::providers::rag::QueryData| data.chunks.iter().any(|c| c.content.contains(&marker));
    assert!(found(rag.query_data(&query).await.unwrap()), "indexed: one document with the contextual transcript");

    let segment_ids = app.local.store.segment_ids(&cid).await.unwrap();
    assert!(app.local.store.delete_conversation(&cid).await.unwrap());
    let delete = Task::DeleteConversationArtifacts { conversation_id: cid.clone(), segment_ids: segment_ids.clone() };
    assert_eq!(app.local.network_worker.run(&delete, &delivery()).await, Ok(Done::Completed));
    let data = rag.query_data(&query).await.unwrap();
    assert!(!found(data.clone()) && data.chunks.iter().all(|c| c.file_path.as_deref() != Some(&file_source(segment_ids[0]))), "{data:?}");
}

#[tokio::test]
async fn with_the_server_down_the_message_comes_back_and_nothing_is_flagged() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let llm = FakeLlm::start(LlmBehaviour::Status(500, "down".into())).await;
    let app = app(&format!("http://127.0.0.1:{port}"), None, &llm).await;
    let cid = finalized_conversation(&app, "unreachable").await;
    let task = Task::RunEtlPipeline { conversation_id: cid.clone(), segment_id: None, continuation: 0 };
    // Through the queue: the delivery fails transiently and the message comes back.
    app.local.queue.publish(task.clone(), Duration::ZERO).await.unwrap();
    assert_eq!(app.local.queue.deliver_due(app.local.network_worker.as_ref(), 5).await, 1);
    assert_eq!(app.local.queue.pending(), 1, "the message is back in the queue");
    assert!(app.local.queue.dead_letters().is_empty());
    assert_ne!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().is_audio_processing_finished, Some(true));
    let outcome = app.local.network_worker.run(&task, &delivery()).await;
    assert!(matches!(outcome, Err(TaskError::Transient(_))), "{outcome:?}");
    assert_ne!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().is_audio_processing_finished, Some(true));
    let segments = app.local.store.conversation_segments(&cid).await.unwrap();
    assert!(segments.iter().all(|s| !s.lightrag_flag), "{segments:?}");
    assert_eq!(segments[0].contextual_transcript, segments[0].transcript, "an LLM failure falls back to the raw transcript");
    // The retry reuses the segment.
    let _ = app.local.network_worker.run(&task, &delivery()).await;
    assert_eq!(app.local.store.conversation_segments(&cid).await.unwrap().len(), 1);
}

#[tokio::test]
async fn pass_c_queues_the_backlog_and_the_finish_hook_queues_the_etl() {
    let (url, key) = server();
    let llm = FakeLlm::start(LlmBehaviour::Reply("plain".into())).await;
    let app = app(&url, key, &llm).await;
    let cid = finalized_conversation(&app, "backlog").await;
    let collect = Task::CollectAndFinishUnfinishedConversations {};
    assert_eq!(app.local.network_worker.run(&collect, &delivery()).await, Ok(Done::Completed));
    let queued = |app: &TestApp| {
        app.published().iter().filter(|m| m["task"] == "task_run_etl_pipeline" && m["args"]["conversation_id"] == cid).count()
    };
    assert_eq!(queued(&app), 1, "pass C");
    let reset = ConversationPatch { is_all_chunks_transcribed: Some(false), ..Default::default() };
    app.local.store.update_conversation(&cid, reset).await.unwrap();
    let hook = Task::FinishConversationHook { conversation_id: cid.clone() };
    assert_eq!(app.local.network_worker.run(&hook, &delivery()).await, Ok(Done::Completed));
    assert_eq!(queued(&app), 2, "the finish hook");
}

/// A conversation recorded through the portal (a real recording, converted with ffmpeg), with
/// transcription by a local OpenAI-protocol server: finish -> transcribed -> segment -> indexed
/// -> `is_audio_processing_finished`, all through echo-local's queue; then once more changes
/// nothing, and the dashboard's delete leaves no document.
#[tokio::test]
async fn a_recording_is_indexed_end_to_end_and_its_deletion_removes_the_document() {
    let (url, key) = server();
    let marker = format!("recmarker{}", uuid::Uuid::new_v4().simple());
    let spoken: &'static str = Box::leak(format!("We would like a bench in the park near the {marker} fountain.").into_boxed_str());
    let whisper = FakeWhisper::start(spoken).await;
    let llm = FakeLlm::start(LlmBehaviour::Reply(
        json!({ "CONTEXTUAL_TRANSCRIPT": format!("A resident asks for a bench by the {marker}.") }).to_string(),
    ))
    .await;
    let rag = RagSettings { server_url: Some(url.clone()), api_key: key.clone(), enable_audio_input: true, contextual_llm: llm.slot() };
    let slot = llm.slot();
    let app = TestApp::start_with(|o| {
        whisper.configure(&mut o.settings);
        o.settings.llm.summary = slot;
        o.settings.rag = rag;
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
    })
    .await;
    distinct_segment_ids(&app);
    app.db()
        .execute("UPDATE project SET is_enhanced_audio_processing_enabled = 1, directus_user_id = ?1 WHERE id = ?2", [OWNER, PROJECT])
        .unwrap();

    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "chunk-1760616030000.webm", "audio/webm").await;
    let (status, _) = app.browser_upload(&upload, fixture_audio("webm.webm"), "audio/webm").await;
    assert!((200..300).contains(&status));
    let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z"});
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/confirm-upload"), confirm).await.0, 200);
    assert_eq!(app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await.0, 200);
    drain(&app).await;

    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(conversation.is_all_chunks_transcribed, Some(true), "transcribed");
    assert_eq!(conversation.is_audio_processing_finished, Some(true), "indexed and flagged");
    let segments = app.local.store.conversation_segments(&cid).await.unwrap();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(segments[0].lightrag_flag);
    assert_eq!(segments[0].transcript.as_deref(), Some(spoken));
    let client = LightRagClient::new(LightRagConfig::new(url, key)).unwrap();
    let files = chunk_files(&client, &marker).await;
    assert_eq!(files, std::collections::BTreeSet::from([file_source(segments[0].id)]), "one document, the segment's");
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());

    // Twice = once: finishing again and re-running the ETL keep one segment and one document.
    app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    let again = Task::RunEtlPipeline { conversation_id: cid.clone(), segment_id: None, continuation: 0 };
    app.local.queue.publish(again, Duration::ZERO).await.unwrap();
    drain(&app).await;
    assert_eq!(app.local.store.conversation_segments(&cid).await.unwrap().len(), 1);
    assert_eq!(chunk_files(&client, &marker).await, files);

    let (status, body) = app.call(reqwest::Method::DELETE, &format!("/api/conversations/{cid}"), Some(&token(OWNER, false)), None).await;
    assert_eq!(status, 200, "{body}");
    drain(&app).await;
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());
    assert!(chunk_files(&client, &marker).await.is_empty(), "the deleted conversation leaves no document");
    assert_eq!(app.local.store.get_segment(segments[0].id).await.unwrap(), None);
}

/// Runs the queue, its delayed messages included (the ETL's 60 s waits, the delete's delay),
/// until nothing is left.
async fn drain(app: &TestApp) {
    for _ in 0..200 {
        app.local.run_tasks().await;
        if app.local.queue.pending() == 0 {
            return;
        }
        app.local.queue.expedite();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the queue did not drain: {} pending", app.local.queue.pending());
}

/// The file paths of the raw chunks that hold `marker` (a wide naive query, unfiltered).
pub(crate) async fn chunk_files(rag: &LightRagClient, marker: &str) -> std::collections::BTreeSet<String> {
    // The marker alone: the stand-in embeddings' cosine must clear the server's 0.2 threshold.
    let mut query = QueryRequest::new(marker, "naive");
    query.chunk_top_k = Some(1000);
    let data = rag.query_data(&query).await.unwrap();
    data.chunks.iter().filter(|c| c.content.contains(marker)).filter_map(|c| c.file_path.clone()).collect()
}
