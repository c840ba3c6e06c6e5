//! The Directus store's transport rules and error mapping (spec/data-model.md §2.1, §2.6),
//! against an unreachable address and a scripted stand-in that answers what Directus answers
//! when things go wrong, recording every request it gets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use common::Dependency;
use common::store::*;
use serde_json::{Value, json};

const TOKEN: &str = "static-admin-token";
const PROJECT_ID: &str = "8e5f9e3a-2f3a-4a4e-9d4b-1c2d3e4f5a6b";
const CHUNK_ID: &str = "1b7e3c1e-6a0f-4a57-8a61-7b2a1f0c9d11";
const CONVERSATION_ID: &str = "0d0c8a5e-4c53-4f0a-a3f4-2b1f8e7d6c5b";

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    authorization: Option<String>,
    body: Option<Value>,
}

struct Answer {
    status: u16,
    body: Option<Value>,
    delay: Duration,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer { status, body: Some(body), delay: Duration::ZERO }
}

fn errors(status: u16, code: &str, message: &str, field: Option<&str>) -> Answer {
    let mut extensions = json!({ "code": code });
    if let Some(field) = field {
        extensions["field"] = json!(field);
    }
    answer(status, json!({ "errors": [{ "message": message, "extensions": extensions }] }))
}

#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted(State(script): State<Script>, headers: HeaderMap, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    script.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path_and_query: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        authorization: headers.get("authorization").map(|v| v.to_str().unwrap().to_string()),
        body: serde_json::from_slice(&bytes).ok(),
    });
    let next = script.answers.lock().unwrap().pop_front();
    let Some(next) = next else {
        return (StatusCode::IM_A_TEAPOT, "the script ran out of answers").into_response();
    };
    tokio::time::sleep(next.delay).await;
    let status = StatusCode::from_u16(next.status).unwrap();
    match next.body {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    }
}

struct Fake {
    script: Script,
    store: DirectusStore,
}

impl Fake {
    async fn start(answers: Vec<Answer>) -> Self {
        Self::start_with(answers, Duration::from_secs(5), 500).await
    }

    async fn start_with(answers: Vec<Answer>, timeout: Duration, page_size: u32) -> Self {
        let script = Script::default();
        script.answers.lock().unwrap().extend(answers);
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let store = DirectusStore::new(DirectusConfig {
            base_url: format!("{url}/"),
            token: TOKEN.into(),
            timeout,
            page_size,
            retry_delays: vec![Duration::from_millis(20), Duration::from_millis(80)],
        })
        .unwrap();
        Fake { script, store }
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    fn methods(&self) -> Vec<String> {
        self.seen().iter().map(|s| s.method.to_string()).collect()
    }
}

fn project_row() -> Value {
    json!({ "id": PROJECT_ID, "is_conversation_allowed": true, "language": "en", "tags": [] })
}

fn chunk_row() -> Value {
    json!({ "id": CHUNK_ID, "conversation_id": CONVERSATION_ID, "timestamp": "2025-10-16T12:00:00.000Z", "path": null })
}

fn new_chunk() -> NewChunk {
    NewChunk {
        created_at: None,
        id: CHUNK_ID.into(),
        conversation_id: CONVERSATION_ID.into(),
        timestamp: Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap(),
        path: None,
        source: Some("PORTAL_TEXT".into()),
        transcript: Some("hello".into()),
    }
}

fn new_participant() -> NewNotificationParticipant {
    NewNotificationParticipant { email: "ada@example.org".into(), project_id: PROJECT_ID.into(), conversation_id: None, email_opt_in: true }
}

fn assert_unavailable(err: StoreError) {
    assert!(matches!(err, StoreError::Unavailable { backend: Dependency::Directus, .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_directus_is_unavailable() {
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = common::config::StoreSettings::Directus {
        base_url: format!("http://127.0.0.1:{port}"),
        token: Some(TOKEN.into()),
        timeout_seconds: 2,
        page_size: 500,
    };
    let store = DirectusStore::from_settings(&settings).unwrap();
    let started = Instant::now();
    assert_unavailable(store.get_project(PROJECT_ID).await.unwrap_err());
    // Two retries, after 200 ms and 800 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_unavailable(store.get_conversation(CONVERSATION_ID).await.unwrap_err());
    assert_unavailable(store.list_chunks(CONVERSATION_ID, ChunkOrder::NewestFirst).await.unwrap_err());
    assert_unavailable(store.create_chunk(new_chunk()).await.unwrap_err());
    assert_unavailable(store.create_notification_participant(new_participant()).await.unwrap_err());
    assert_unavailable(store.set_all_chunks_transcribed(CONVERSATION_ID, false).await.unwrap_err());
    assert_unavailable(store.delete_chunk(CHUNK_ID).await.unwrap_err());
    let err = store.get_project(PROJECT_ID).await.unwrap_err();
    assert!(err.to_string().contains("connection failed"), "{err}");
    assert_eq!(common::ApiError::from(err).status(), 503);
}

#[tokio::test]
async fn reads_are_searches_with_a_limit_and_the_token() {
    let fake = Fake::start(vec![answer(200, json!({ "data": [project_row()] }))]).await;
    let project = fake.store.get_project(PROJECT_ID).await.unwrap().unwrap();
    assert_eq!(project.id, PROJECT_ID);
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method.as_str(), "SEARCH");
    assert_eq!(seen[0].path_and_query, "/items/project");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer static-admin-token"));
    let query = &seen[0].body.as_ref().unwrap()["query"];
    assert_eq!(query["filter"], json!({ "id": { "_eq": PROJECT_ID } }));
    assert_eq!(query["limit"], 1);
    assert_eq!(query["deep"]["tags"]["_limit"], 1000);
    assert!(query["fields"].as_array().unwrap().contains(&json!("tags.text")));
}

#[tokio::test]
async fn a_read_is_retried_on_502_503_504_and_timeouts() {
    let fake = Fake::start(vec![
        errors(503, "SERVICE_UNAVAILABLE", "Service unavailable", None),
        answer(502, json!({})),
        answer(200, json!({ "data": [project_row()] })),
    ])
    .await;
    assert!(fake.store.get_project(PROJECT_ID).await.unwrap().is_some());
    assert_eq!(fake.methods(), ["SEARCH", "SEARCH", "SEARCH"]);

    let fake = Fake::start((0..3).map(|_| answer(504, json!({}))).collect()).await;
    assert_unavailable(fake.store.get_project(PROJECT_ID).await.unwrap_err());
    assert_eq!(fake.seen().len(), 3, "one try and two retries");

    let slow = || Answer { status: 200, body: Some(json!({ "data": [] })), delay: Duration::from_millis(800) };
    let fake = Fake::start_with(vec![slow(), slow(), slow()], Duration::from_millis(200), 500).await;
    let err = fake.store.get_chunk(CHUNK_ID).await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_unavailable(err);
    assert_eq!(fake.seen().len(), 3);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_not_retried() {
    let fake = Fake::start(vec![errors(429, "REQUESTS_EXCEEDED", "Too many requests", None)]).await;
    assert_unavailable(fake.store.get_project(PROJECT_ID).await.unwrap_err());
    assert_eq!(fake.seen().len(), 1);

    let fake = Fake::start(vec![errors(500, "INTERNAL_SERVER_ERROR", "boom", None)]).await;
    let err = fake.store.get_project(PROJECT_ID).await.unwrap_err();
    assert!(matches!(err, StoreError::Other(_)), "{err:?}");
    assert_eq!(common::ApiError::from(err).status(), 500);
    assert_eq!(fake.seen().len(), 1);

    let fake = Fake::start(vec![errors(401, "INVALID_CREDENTIALS", "Invalid user credentials.", None)]).await;
    let err = fake.store.get_project(PROJECT_ID).await.unwrap_err();
    assert!(matches!(&err, StoreError::Other(m) if m.contains("DIRECTUS_TOKEN")), "{err:?}");
}

#[tokio::test]
async fn a_create_without_id_is_never_retried() {
    let fake = Fake::start(vec![errors(503, "SERVICE_UNAVAILABLE", "down", None), answer(200, json!({ "data": {} }))]).await;
    assert_unavailable(fake.store.create_notification_participant(new_participant()).await.unwrap_err());
    assert_eq!(fake.methods(), ["POST"], "a retry could create a second row");
    let body = fake.seen()[0].body.clone().unwrap();
    assert!(body.get("id").is_none() && body.get("email_opt_out_token").is_none(), "Directus generates both: {body}");
    assert_eq!(body["project_id"], PROJECT_ID);
}

#[tokio::test]
async fn a_create_with_id_is_retried_and_a_taken_id_on_the_retry_is_success() {
    let fake = Fake::start(vec![
        answer(504, json!({})),
        errors(400, "RECORD_NOT_UNIQUE", "Value for field \"id\" in collection \"conversation_chunk\" has to be unique.", Some("id")),
        answer(200, json!({ "data": [chunk_row()] })),
    ])
    .await;
    let chunk = fake.store.create_chunk(new_chunk()).await.unwrap();
    assert_eq!(chunk.id, CHUNK_ID);
    assert_eq!(fake.methods(), ["POST", "POST", "SEARCH"], "the row the first try wrote is read back");
    let seen = fake.seen();
    assert!(seen[0].path_and_query.starts_with("/items/conversation_chunk?fields="), "{}", seen[0].path_and_query);
    assert_eq!(seen[0].body.as_ref().unwrap()["timestamp"], "2025-10-16T12:00:00.000Z");

    // On the first try, a taken id is "already exists".
    let fake = Fake::start(vec![errors(400, "RECORD_NOT_UNIQUE", "has to be unique", Some("id"))]).await;
    let err = fake.store.create_chunk(new_chunk()).await.unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyExists { collection: "conversation_chunk", id } if id == CHUNK_ID), "{err:?}");
}

#[tokio::test]
async fn validation_and_permission_errors_name_collection_and_field() {
    let fake = Fake::start(vec![errors(
        400,
        "FAILED_VALIDATION",
        "Validation failed for field \"is_conversation_allowed\". Value is required.",
        Some("is_conversation_allowed"),
    )])
    .await;
    let err = fake.store.create_project(NewProject { id: PROJECT_ID.into(), ..Default::default() }).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { collection: "project", field, .. } if field == "is_conversation_allowed"), "{err:?}");

    let fake = Fake::start(vec![errors(
        403,
        "FORBIDDEN",
        "You don't have permission to access field \"nope\" in collection \"conversation\" or it does not exist. Queried in root.",
        None,
    )])
    .await;
    let err = fake.store.get_conversation(CONVERSATION_ID).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { collection: "conversation", field, .. } if field == "nope"), "{err:?}");
    assert_eq!(common::ApiError::from(err).status(), 500);

    let fake = Fake::start(vec![errors(400, "INVALID_FOREIGN_KEY", "Invalid foreign key.", None)]).await;
    let err = fake.store.create_chunk(new_chunk()).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { collection: "conversation_chunk", .. }), "{err:?}");
}

#[tokio::test]
async fn an_answer_without_data_is_an_error_not_an_empty_list() {
    let fake = Fake::start(vec![answer(200, json!({ "meta": {} }))]).await;
    let err = fake.store.list_chunks(CONVERSATION_ID, ChunkOrder::OldestFirst).await.unwrap_err();
    assert!(matches!(&err, StoreError::Other(m) if m.contains("without data")), "{err:?}");
    let fake = Fake::start(vec![Answer { status: 200, body: None, delay: Duration::ZERO }]).await;
    assert!(fake.store.get_chunk(CHUNK_ID).await.is_err());
}

#[tokio::test]
async fn missing_items_on_writes_are_not_found_and_deletes_check_existence() {
    // PATCH of a missing item: 403 (or 204) is "nothing to update", not an error.
    let fake = Fake::start(vec![errors(403, "FORBIDDEN", "You don't have permission to access this.", None)]).await;
    fake.store.set_all_chunks_transcribed(CONVERSATION_ID, false).await.unwrap();
    assert_eq!(fake.methods(), ["PATCH"]);
    assert_eq!(fake.seen()[0].path_and_query, format!("/items/conversation/{CONVERSATION_ID}?fields=id"));

    // delete_chunk: a SEARCH on id, never a GET by id; a missing chunk is not deleted.
    let fake = Fake::start(vec![answer(200, json!({ "data": [] }))]).await;
    assert!(!fake.store.delete_chunk(CHUNK_ID).await.unwrap());
    assert_eq!(fake.methods(), ["SEARCH"]);
    assert_eq!(fake.seen()[0].body.as_ref().unwrap()["query"]["filter"], json!({ "id": { "_eq": CHUNK_ID } }));

    let fake =
        Fake::start(vec![answer(200, json!({ "data": [{ "id": CHUNK_ID }] })), Answer { status: 204, body: None, delay: Duration::ZERO }])
            .await;
    assert!(fake.store.delete_chunk(CHUNK_ID).await.unwrap());
    assert_eq!(fake.methods(), ["SEARCH", "DELETE"]);
}

#[tokio::test]
async fn lists_are_paged_under_a_total_order() {
    let row = |i: u32| {
        let id = format!("00000000-0000-4000-8000-00000000000{i}");
        json!({ "id": id, "conversation_id": CONVERSATION_ID, "timestamp": "2025-10-16T12:00:00Z" })
    };
    let fake = Fake::start_with(
        vec![
            answer(200, json!({ "data": [row(1), row(2)] })),
            answer(200, json!({ "data": [row(3), row(4)] })),
            answer(200, json!({ "data": [row(5)] })),
        ],
        Duration::from_secs(5),
        2,
    )
    .await;
    let chunks = fake.store.list_chunks(CONVERSATION_ID, ChunkOrder::NewestFirst).await.unwrap();
    assert_eq!(chunks.len(), 5);
    let queries: Vec<Value> = fake.seen().into_iter().map(|s| s.body.unwrap()["query"].clone()).collect();
    assert_eq!(queries.len(), 3, "stops at the first short page");
    for (page, query) in queries.iter().enumerate() {
        assert_eq!(query["limit"], 2);
        assert_eq!(query["offset"], page * 2);
        assert_eq!(query["sort"], json!(["-timestamp", "-id"]));
        assert_eq!(query["filter"], json!({ "conversation_id": { "_eq": CONVERSATION_ID } }));
    }
}

#[tokio::test]
async fn a_route_that_does_not_exist_is_terminal_and_never_retried() {
    let fake = Fake::start(vec![errors(404, "ROUTE_NOT_FOUND", "Route /items/conversaton doesn't exist.", None)]).await;
    let err = fake.store.get_project(PROJECT_ID).await.unwrap_err();
    assert!(matches!(&err, StoreError::Invalid { collection: "project", .. }), "{err:?}");
    assert_eq!(fake.seen().len(), 1, "one request");
    assert_eq!(common::ApiError::from(err).status(), 500);
    let fake = Fake::start(vec![errors(404, "ROUTE_NOT_FOUND", "Route doesn't exist.", None)]).await;
    let err = fake.store.list_chunks(CONVERSATION_ID, ChunkOrder::OldestFirst).await.unwrap_err();
    let task: common::queue::worker::TaskError = err.into();
    assert!(matches!(task, common::queue::worker::TaskError::Terminal(_)), "dead-lettered at once, not retried five times: {task:?}");
}

#[tokio::test]
async fn a_projects_conversations_read_their_tags_with_a_deep_limit() {
    let tags: Vec<Value> = (0..3).map(|i| json!({ "id": i, "project_tag_id": format!("tag-{i}") })).collect();
    let row = json!({ "id": CONVERSATION_ID, "project_id": PROJECT_ID, "tags": tags });
    let fake = Fake::start(vec![answer(200, json!({ "data": [row] }))]).await;
    let conversations = fake.store.list_conversations(PROJECT_ID).await.unwrap();
    assert_eq!(conversations[0].tag_ids, ["tag-0", "tag-1", "tag-2"]);
    let query = fake.seen()[0].body.clone().unwrap()["query"].clone();
    // Without `_limit` Directus cuts every nested list at 100 rows (data-model.md §2.3).
    assert_eq!(query["deep"]["tags"]["_limit"], 1000, "{query}");
    assert!(query["fields"].as_array().unwrap().iter().any(|f| f == "tags.project_tag_id"), "{query}");
}
