//! Error reports reach Sentry (data-model.md §4.1, common::telemetry::error_reports): a 5xx
//! answer and a final task failure from the real binaries run as Lambda runs them (the settings
//! of `cargo lambda watch` beside an echo-local, as local_invoke.rs), a panicking handler through
//! the router every function shares; each with its tags, and sent before the answer leaves (the
//! stand-in answers only after a delay, so an unflushed report would still be on its way). With
//! `DISABLE_SENTRY`, or without a DSN, nothing is sent.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tower::ServiceExt;

use crate::local_invoke::{invoke, status_of, watch_env};
use crate::support::sentry::FakeSentry;

/// How long the stand-in holds each envelope before answering.
const INGEST_DELAY: Duration = Duration::from_millis(400);

/// echo-local in `dir/.echo-local` and the watch settings pointed at it.
async fn beside_echo_local(dir: &Path) -> (local::Local, BTreeMap<String, String>) {
    let mut options = local::LocalOptions::for_tests(dir.join(".echo-local"));
    options.background_workers = false;
    let local = local::start(options).await.expect("echo-local starts");
    let (api, s3) = (local.api_url.trim_start_matches("http://").to_string(), local.s3_url.clone().unwrap());
    let s3 = s3.trim_start_matches("http://").to_string();
    let env = watch_env().into_iter().map(|(k, v)| (k, v.replace("127.0.0.1:8000", &api).replace("127.0.0.1:8001", &s3))).collect();
    (local, env)
}

fn event(name: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/").to_string() + name).unwrap()
}

/// The event's message, however the SDK put it.
fn message(event: &Value) -> String {
    event["message"].as_str().or_else(|| event["logentry"]["message"].as_str()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_5xx_answer_is_reported_with_its_request_id_before_the_invocation_ends() {
    let sentry = FakeSentry::start(INGEST_DELAY).await;
    let dir = tempfile::tempdir().unwrap();
    let (_local, mut env) = beside_echo_local(dir.path()).await;
    env.insert("SENTRY_DSN".into(), sentry.dsn.clone());
    env.insert("BUILD_VERSION".into(), "2026.12.3-e5f6".into());
    let request = event("resources/get-resource.json");
    let request_id = serde_json::from_str::<Value>(&request).unwrap()["requestContext"]["requestId"].as_str().unwrap().to_string();

    // The watch settings name no database: the documented 503.
    let answers = invoke("resources", &[request], &env, dir.path()).await;
    assert_eq!(status_of(&answers[0]), 503, "{}", answers[0].body);
    let events = sentry.events();
    assert_eq!(events.len(), 1, "one report, sent before the answer (no waiting here): {events:?}");
    assert!(events[0].answered_at <= answers[0].at, "the function answered before Sentry had taken the report");
    let report = &events[0].event;
    assert_eq!(report["tags"]["request_id"], request_id.as_str(), "{report}");
    // The SDK leaves out the protocol's default level, `error`.
    assert!(report.get("level").is_none_or(|l| l == "error"), "{report}");
    let text = message(report);
    assert!(text.contains("answered 503") && text.contains("Resources are unavailable"), "{text}");
    assert!(text.contains("/api/resources/"), "{text}");
    assert_eq!(report["release"], "2026.12.3-e5f6");
    assert_eq!(report["environment"], "production");
    assert_eq!(report["server_name"], "resources", "the function's name");
    assert_eq!(sentry.refused(), 0);
    let log = std::fs::read_to_string(dir.path().join("resources.log")).unwrap();
    assert!(log.contains("error reports go to Sentry"), "{log}");
}

#[tokio::test]
async fn a_final_task_failure_is_reported_with_the_task_and_the_invocations_request_id() {
    let sentry = FakeSentry::start(INGEST_DELAY).await;
    let dir = tempfile::tempdir().unwrap();
    let (local, mut env) = beside_echo_local(dir.path()).await;
    env.insert("SENTRY_DSN".into(), sentry.dsn.clone());

    // No LightRAG server in the watch settings: the ETL fails terminally on its first delivery.
    let answers = invoke("network-worker", &[event("tasks/run-etl-pipeline.json")], &env, dir.path()).await;
    let response: Value = serde_json::from_str(&answers[0].body).unwrap();
    assert_eq!(response["batchItemFailures"], serde_json::json!([]), "acknowledged after dead-lettering");
    let parked: Vec<String> = local.queue.dead_letters().into_iter().map(|d| d.task).collect();
    assert_eq!(parked, ["task_run_etl_pipeline"], "dead-lettered through echo-local's SQS endpoint");

    let events = sentry.events();
    assert_eq!(events.len(), 1, "one report, sent before the answer: {events:?}");
    assert!(events[0].answered_at <= answers[0].at);
    let report = &events[0].event;
    assert_eq!(report["tags"]["task"], "task_run_etl_pipeline", "{report}");
    assert_eq!(report["tags"]["request_id"], answers[0].request_id.as_str(), "the Lambda invocation's id");
    assert!(report["tags"]["message_id"].as_str().is_some_and(|id| !id.is_empty()), "{report}");
    let text = message(report);
    assert!(text.contains("task_run_etl_pipeline failed for good") && text.contains("RAG is not configured"), "{text}");
    assert_eq!(report["release"], "dev");
    assert_eq!(report["environment"], "development");
}

// Two workers: the stand-in keeps answering while a failing run drops the client, whose sender
// thread waits for it (on one thread that would hang instead of failing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_reported_with_its_request_id_before_the_answer() {
    use axum::body::Body;
    use axum::http::Request;
    use common::web::http::{CorsPolicy, finish_router};
    use sentry::SentryFutureExt;

    let sentry_server = FakeSentry::start(INGEST_DELAY).await;
    let dsn = sentry_server.dsn.clone();
    let client = common::telemetry::error_reports::client_from(|name| (name == "SENTRY_DSN").then(|| dsn.clone()))
        .expect("the DSN parses")
        .expect("a DSN turns reporting on");
    // The client for this test only: a hub of its own, not the process's.
    let hub = Arc::new(sentry::Hub::new(Some(client), Default::default()));
    let routes = axum::Router::new().route(
        "/api/participant/boom",
        axum::routing::get(|| async {
            if std::hint::black_box(true) {
                panic!("handler bug 5f2c");
            }
            "unreachable"
        }),
    );
    let app = finish_router(routes, CorsPolicy::new(vec![], false, CorsPolicy::API_METHODS));
    let request = Request::get("/api/participant/boom").header("x-request-id", "req-panic-7").body(Body::empty()).unwrap();
    let res = app.oneshot(request).bind_hub(hub).await.unwrap();
    assert_eq!(res.status(), 500);

    let events = sentry_server.events();
    assert_eq!(events.len(), 1, "the panic, and no second report for its 500, sent before the answer: {events:?}");
    let report = &events[0].event;
    assert_eq!(report["tags"]["request_id"], "req-panic-7", "{report}");
    let exception = &report["exception"]["values"][0];
    assert_eq!(exception["value"], "handler bug 5f2c", "{report}");
    assert_eq!(exception["mechanism"]["type"], "panic");
    assert_eq!(exception["mechanism"]["handled"], false);
    assert_eq!(sentry_server.refused(), 0);
}

#[tokio::test]
async fn nothing_is_reported_when_disabled_or_without_a_dsn() {
    let sentry = FakeSentry::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let (_local, env) = beside_echo_local(dir.path()).await;
    let request = event("resources/get-resource.json");

    let mut disabled = env.clone();
    disabled.insert("SENTRY_DSN".into(), sentry.dsn.clone());
    disabled.insert("DISABLE_SENTRY".into(), "true".into());
    let answers = invoke("resources", std::slice::from_ref(&request), &disabled, dir.path()).await;
    assert_eq!(status_of(&answers[0]), 503);
    let log = std::fs::read_to_string(dir.path().join("resources.log")).unwrap();
    assert!(!log.contains("error reports go to Sentry"), "{log}");

    let answers = invoke("resources", &[request], &env, dir.path()).await;
    assert_eq!(status_of(&answers[0]), 503);
    let log = std::fs::read_to_string(dir.path().join("resources.log")).unwrap();
    assert!(!log.contains("error reports go to Sentry"), "no DSN, no client: {log}");

    // Long enough for a report the functions did not wait for to arrive.
    let events = sentry.wait_for(1, Duration::from_secs(1)).await;
    assert!(events.is_empty() && sentry.refused() == 0, "{events:?}");
}
