//! Every file in events/ goes through lambda_http's event parsing into the participant
//! function's router, as the Lambda runtime hands it over: an event that no longer parses, or a
//! route that no longer answers it, fails here.

mod support;

use std::path::PathBuf;

use common::store::NewConversation;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::*;
use tower::ServiceExt;

const CONVERSATION: &str = "33333333-3333-4333-8333-333333333333";
const CHUNK: &str = "44444444-4444-4444-8444-444444444444";
const UNSUBSCRIBE_TOKEN: &str = "55555555-5555-4555-8555-555555555555";

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

async fn invoke(app: &TestApp, file: &str) -> (u16, Value) {
    let path = events_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file} does not parse as an API Gateway event: {e}"));
    let router = participant::router(app.local.state.clone());
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-process-time"), "{file}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{file}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

#[tokio::test]
async fn every_participant_event_reaches_its_route() {
    let app = TestApp::start().await;
    // The ids the events carry: the demo project and tag, plus a conversation and a chunk.
    app.local
        .store
        .create_conversation(NewConversation {
            id: CONVERSATION.into(),
            project_id: PROJECT.into(),
            participant_name: Some("Ada".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("participant/confirm-upload.json")).unwrap()).unwrap();
    let confirm: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    let key = app.local.state.blob.key_from_url(confirm["file_url"].as_str().unwrap()).unwrap();
    app.local.state.blob.put(&key, vec![0u8; 2048].into(), Some("audio/webm")).await.unwrap();

    let expectations: &[(&str, u16)] = &[
        ("health.json", 200),
        ("participant/get-project.json", 200),
        ("participant/initiate-conversation.json", 200),
        ("participant/get-conversation.json", 200),
        ("participant/upload-text.json", 200),
        ("participant/upload-chunk.json", 200),
        ("participant/get-upload-url.json", 200),
        ("participant/confirm-upload.json", 200),
        ("participant/list-chunks.json", 200),
        ("participant/delete-chunk.json", 200),
        ("participant/finish.json", 200),
        ("participant/report-subscribe.json", 200),
    ];
    for (file, expected) in expectations {
        let (status, body) = invoke(&app, file).await;
        assert_eq!(status, *expected, "{file}: {body}");
    }
    assert_eq!(app.local.store.get_chunk(CHUNK).await.unwrap(), None, "delete-chunk removed the confirmed chunk");
    let chunks = app.local.store.list_chunks(CONVERSATION, common::store::ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.len(), 2, "upload-text and upload-chunk left one chunk each");

    // The unsubscribe events name a fixed token; give the subscribed row that token.
    let db = rusqlite::Connection::open(app.dir.path().join("echo.sqlite3")).unwrap();
    let changed = db
        .execute(
            "UPDATE project_report_notification_participants SET email_opt_out_token = ?1 WHERE email = 'ada@example.org'",
            [UNSUBSCRIBE_TOKEN],
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(invoke(&app, "participant/report-unsubscribe.json").await, (200, json!({"success": true})));
    assert_eq!(invoke(&app, "participant/unsubscribe-eligibility.json").await, (200, json!({"data": {"eligible": false}})));
}

#[tokio::test]
async fn every_event_file_is_covered() {
    let mut files = Vec::new();
    for dir in [events_dir(), events_dir().join("participant")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path.strip_prefix(events_dir()).unwrap().to_string_lossy().to_string());
            }
        }
    }
    files.sort();
    let source = include_str!("lambda_events.rs");
    for file in files {
        assert!(source.contains(&format!("\"{file}\"")), "events/{file} is not exercised by this test");
    }
}
