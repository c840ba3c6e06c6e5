//! The participant binary, started against a minimal Lambda Runtime and Extensions API as Lambda
//! starts an environment, registers the graceful-shutdown extension, answers an invocation, and
//! on SIGTERM logs its last line and exits 0 (common::telemetry::flush_logs_on_shutdown; the workers
//! and the scheduler call the same function).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

#[derive(Clone, Default)]
struct RuntimeApi {
    event: String,
    served: Arc<Mutex<bool>>,
    answered: Arc<Mutex<Option<&'static str>>>,
    extension_registered: Arc<Mutex<bool>>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    // One invocation; later polls wait, as Lambda's do between invocations.
    if std::mem::replace(&mut *api.served.lock().unwrap(), true) {
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    headers.insert("lambda-runtime-aws-request-id", "req-1".parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
    headers.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:eu-west-1:123456789012:function:test".parse().unwrap());
    (headers, api.event.clone())
}

async fn answered(State(api): State<RuntimeApi>, kind: &'static str) -> StatusCode {
    api.answered.lock().unwrap().get_or_insert(kind);
    StatusCode::ACCEPTED
}

async fn register(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    *api.extension_registered.lock().unwrap() = true;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-extension-identifier", "ext-1".parse().unwrap());
    (headers, r#"{"functionName":"echo-participant","functionVersion":"$LATEST","handler":"bootstrap"}"#.into())
}

fn runtime_api(api: RuntimeApi) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(|s| answered(s, "response")))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(|s| answered(s, "error")))
        .route("/2018-06-01/runtime/init/error", post(|s| answered(s, "init error")))
        .route("/2020-01-01/extension/register", post(register))
        // The no-op extension subscribes to nothing: its poll never gets an event.
        .route("/2020-01-01/extension/event/next", get(std::future::pending::<()>))
        .with_state(api)
}

#[tokio::test]
async fn sigterm_flushes_the_last_log_line_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let event = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/health.json")).unwrap();
    let api = RuntimeApi { event, ..Default::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, runtime_api(api.clone())).into_future());

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_participant"))
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", "echo-participant".into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO".into()),
            ("AWS_REGION", "eu-west-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("ECHO_STORE", "sqlite".into()),
            ("ECHO_SQLITE_PATH", dir.path().join("echo.sqlite3").display().to_string()),
            ("DIRECTUS_TOKEN", "unused".into()),
            ("STORAGE_S3_BUCKET", "echo".into()),
            ("STORAGE_S3_ENDPOINT", "http://127.0.0.1:9".into()),
            ("STORAGE_S3_KEY", "test".into()),
            ("STORAGE_S3_SECRET", "test".into()),
            ("AUDIO_QUEUE_URL", "http://127.0.0.1:9/123456789012/audio".into()),
            ("NETWORK_QUEUE_URL", "http://127.0.0.1:9/123456789012/network".into()),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let started = Instant::now();
    while api.answered.lock().unwrap().is_none() {
        assert!(child.try_wait().unwrap().is_none(), "the function exited before answering");
        assert!(started.elapsed() < Duration::from_secs(30), "the function did not answer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*api.answered.lock().unwrap(), Some("response"));
    assert!(*api.extension_registered.lock().unwrap(), "the shutdown extension registered during init");

    let pid = child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(kill.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output()).await.expect("exits after SIGTERM").unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains(common::telemetry::SHUTDOWN_LOG), "the shutdown line ends stdout:\n{stdout}\nstderr:\n{stderr}");
}
