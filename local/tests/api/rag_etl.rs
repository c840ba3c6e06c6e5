//! `task_run_etl_pipeline` on echo-local against a real `lightrag-server` (scripts/lightrag.sh,
//! started by scripts/test.sh): indexed once however often it runs, nothing half-flagged when the
//! server is down, and the conversation's deletion removes its document.

use std::time::Duration;

use crate::support::*;
use common::config::RagSettings;
use common::providers::rag::{LightRagClient, LightRagConfig, QueryRequest, RagIndex, file_source};
use common::queue::Task;
use common::queue::worker::{Delivery, Done, TaskError, TaskRunner};
use common::store::{ConversationPatch, NewConversation, NewProject};
use serde_json::json;

fn delivery() -> Delivery {
    Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None }
}

fn server() -> (String, Option<String>) {
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

async fn app(url: &str, key: Option<String>, llm: &FakeLlm) -> TestApp {
    let rag = RagSettings { server_url: Some(url.into()), api_key: key, enable_audio_input: true, contextual_llm: llm.slot() };
    TestApp::start_with(move |o| o.settings.rag = rag).await
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
