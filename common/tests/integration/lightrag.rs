//! The LightRAG client against a real `lightrag-server` 1.5.7 (scripts/lightrag.sh, started by
//! scripts/test.sh), and its error mapping against a scripted stand-in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use common::providers::rag::*;
use serde_json::{Value, json};

/// Tests that write to the shared server hold it shared; the golden test holds it alone, so
/// the corpus stands still while it compares.
pub static SERVER_LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The test server's URL and key, or a failure that says how to get them.
pub fn server() -> LightRagClient {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(url) = var("LIGHTRAG_TEST_URL") else {
        panic!(
            "this test needs a running lightrag-server 1.5.7: run `bash scripts/test.sh` (it starts one), or \
             `eval \"$(bash scripts/lightrag.sh start)\"` and export LIGHTRAG_TEST_URL=$LIGHTRAG_SERVER_URL \
             LIGHTRAG_TEST_API_KEY=$LIGHTRAG_API_KEY (stop it with `scripts/lightrag.sh stop $ECHO_LIGHTRAG_DIR`)"
        )
    };
    LightRagClient::new(LightRagConfig::new(url, var("LIGHTRAG_TEST_API_KEY"))).unwrap()
}

/// A segment id no other test or earlier run on the same server uses.
pub fn fresh_segment_id() -> i64 {
    1_000_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000) as i64
}

/// Polls the track id until every document is processed (or failed).
pub async fn wait_indexed(rag: &LightRagClient, track_id: &str) -> Vec<TrackedDocument> {
    for _ in 0..240 {
        let docs = rag.track_status(track_id).await.unwrap();
        if !docs.is_empty() && docs.iter().all(|d| matches!(d.status, Some(DocStatus::Processed | DocStatus::Failed))) {
            return docs;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("track {track_id} was not indexed within 60 s");
}

/// Inserts, retrying while another test's deletion runs (the server answers 409 "clearing or
/// deleting": `Unavailable`, as a task would retry).
pub async fn insert(rag: &LightRagClient, id: i64, text: &str) -> Inserted {
    for _ in 0..240 {
        match rag.insert_segment(id, text).await {
            Err(RagError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(250)).await,
            other => return other.unwrap(),
        }
    }
    panic!("the server stayed busy for 60 s");
}

fn chunk_paths(data: &QueryData) -> Vec<String> {
    data.chunks.iter().filter_map(|c| c.file_path.clone()).collect()
}

#[tokio::test]
async fn insert_track_query_delete_on_the_real_server() {
    let _shared = SERVER_LOCK.read().await;
    let rag = server();
    let id = fresh_segment_id();
    let marker = format!("quokkamarker{id}");
    let text = format!("The residents talked about the {marker} garden. Everyone wanted more benches near the {marker} fountain.");
    let Inserted::Accepted { track_id } = insert(&rag, id, &text).await else { panic!("a new segment is accepted") };
    let docs = wait_indexed(&rag, &track_id).await;
    assert_eq!(docs.len(), 1);
    assert_eq!((docs[0].id.as_str(), docs[0].file_path.as_deref()), (document_id(id).as_str(), Some(file_source(id).as_str())));
    assert_eq!(docs[0].status, Some(DocStatus::Processed), "{docs:?}");

    // A second insert of the same segment is "already there", with the stored status.
    assert_eq!(insert(&rag, id, "other text").await, Inserted::AlreadyThere { status: Some(DocStatus::Processed) });

    let mut request = QueryRequest::new(format!("What about the {marker} garden?"), "mix");
    request.top_k = Some(250);
    request.chunk_top_k = Some(250);
    let data = rag.query_data(&request).await.unwrap();
    assert!(chunk_paths(&data).contains(&file_source(id)), "{data:?}");
    let chunk = data.chunks.iter().find(|c| c.file_path.as_deref() == Some(&file_source(id))).unwrap();
    assert!(chunk.content.contains(&marker) && chunk.chunk_id.as_deref().unwrap().starts_with(&document_id(id)));
    assert!(data.entities.iter().any(|e| e.file_path.as_deref().is_some_and(|p| p.contains(&file_source(id)))), "{data:?}");

    rag.delete_segment_document(id).await.unwrap();
    let after = rag.query_data(&request).await.unwrap();
    assert!(!chunk_paths(&after).contains(&file_source(id)), "deleted: {after:?}");
    assert!(after.chunks.iter().all(|c| !c.content.contains(&marker)));
    // Gone for real: the same segment can be inserted again, and deleted again.
    assert!(matches!(insert(&rag, id, &text).await, Inserted::Accepted { .. }));
    rag.delete_segment_document(id).await.unwrap();
    // A document that never existed deletes fine; an unknown track id follows nothing.
    rag.delete_segment_document(fresh_segment_id()).await.unwrap();
    assert!(rag.track_status("insert_19700101_000000_00000000").await.unwrap().is_empty());
}

#[tokio::test]
async fn the_real_server_refuses_a_wrong_key_and_empty_text() {
    let good = server();
    let url = std::env::var("LIGHTRAG_TEST_URL").unwrap();
    let wrong = LightRagClient::new(LightRagConfig::new(url, Some("not-the-key".into()))).unwrap();
    let err = wrong.query_data(&QueryRequest::new("anything", "mix")).await.unwrap_err();
    assert!(matches!(err, RagError::Other(ref m) if m.contains("403")), "a wrong key is terminal: {err:?}");
    let err = good.insert_segment(fresh_segment_id(), "").await.unwrap_err();
    assert!(matches!(err, RagError::Other(ref m) if m.contains("422")), "{err:?}");
}

/// `"METHOD /path"` and the `X-API-Key` it carried.
type Seen = (String, Option<String>);

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<(u16, Value)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted(State(script): State<Script>, req: axum::extract::Request) -> (StatusCode, axum::Json<Value>) {
    let key = req.headers().get("x-api-key").map(|v| v.to_str().unwrap().to_string());
    script.seen.lock().unwrap().push((format!("{} {}", req.method(), req.uri().path()), key));
    let (status, body) = script.answers.lock().unwrap().pop_front().unwrap_or((418, json!({"detail": "script ran out"})));
    (StatusCode::from_u16(status).unwrap(), axum::Json(body))
}

async fn stand_in(answers: Vec<(u16, Value)>) -> (LightRagClient, Script) {
    let script = Script { answers: Arc::new(Mutex::new(answers.into())), ..Default::default() };
    let app = Router::new().fallback(scripted).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut config = LightRagConfig::new(url, Some("k".into()));
    config.busy_retry_delays = vec![Duration::from_millis(1); 3];
    (LightRagClient::new(config).unwrap(), script)
}

#[tokio::test]
async fn busy_deletes_are_retried_then_unavailable() {
    let busy = (200, json!({"status": "busy", "message": "pipeline busy"}));
    let started = (200, json!({"status": "deletion_started"}));
    let idle = (200, json!({"busy": false, "destructive_busy": false}));
    let (rag, script) = stand_in(vec![busy.clone(), busy.clone(), started, idle]).await;
    rag.delete_segment_document(5001).await.unwrap();
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|(r, _)| r == "DELETE /documents/delete_document").count(), 3);
    assert_eq!(seen.last().unwrap().0, "GET /documents/pipeline_status", "waits for the deletion to end");
    assert!(seen.iter().all(|(_, key)| key.as_deref() == Some("k")), "X-API-Key on every call");

    let (rag, _) = stand_in(vec![busy; 4]).await;
    assert!(matches!(rag.delete_segment_document(5001).await, Err(RagError::Unavailable(_))), "busy to the end");
    let (rag, _) = stand_in(vec![(200, json!({"status": "not_allowed"}))]).await;
    assert!(matches!(rag.delete_segment_document(5001).await, Err(RagError::Other(_))));
}

#[tokio::test]
async fn errors_map_as_the_spec_says() {
    let clearing = json!({"detail": "Pipeline is clearing or deleting documents, please retry"});
    let (rag, _) =
        stand_in(vec![(409, clearing), (503, json!({"detail": "down"})), (400, json!({"detail": "bad"})), (500, json!({}))]).await;
    assert!(matches!(rag.insert_segment(1, "t").await, Err(RagError::Unavailable(_))), "clearing: retry later");
    assert!(matches!(rag.insert_segment(1, "t").await, Err(RagError::Unavailable(_))), "5xx");
    assert!(matches!(rag.insert_segment(1, "t").await, Err(RagError::Other(_))), "4xx");
    assert!(matches!(rag.query_data(&QueryRequest::new("q", "mix")).await, Err(RagError::Unavailable(_))), "5xx");
    let (rag, _) = stand_in(vec![(200, json!({"status": "failure", "message": "Query returned no results", "data": {}}))]).await;
    assert_eq!(rag.query_data(&QueryRequest::new("q", "mix")).await.unwrap(), QueryData::default());
    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gone = LightRagClient::new(LightRagConfig::new(format!("http://127.0.0.1:{port}"), None)).unwrap();
    assert!(matches!(gone.delete_segment_document(1).await, Err(RagError::Unavailable(_))));
}
