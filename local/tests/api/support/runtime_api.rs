//! A minimal Lambda Runtime API on 127.0.0.1, as Lambda serves it to a function's process: hands
//! out the queued events one at a time (later polls wait, as between invocations), records what
//! the function answers, and accepts the registration of the graceful-shutdown extension. The
//! local-invoke test and the start-up benchmark (which includes this file) run real binaries
//! against it.

#![allow(dead_code)] // each includer uses a part

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

/// The trace header every invocation carries, as Lambda passes X-Ray's to the function.
pub const TRACE_ID: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

/// What the function posted for one invocation: `response` or `error`, and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub at: Instant,
    pub request_id: String,
    pub kind: &'static str,
    pub body: String,
}

#[derive(Clone, Default)]
pub struct RuntimeApi {
    events: Arc<Mutex<VecDeque<String>>>,
    answers: Arc<Mutex<Vec<Answer>>>,
    handed_out: Arc<Mutex<u64>>,
}

impl RuntimeApi {
    pub fn with_events(events: impl IntoIterator<Item = String>) -> Self {
        let api = RuntimeApi::default();
        api.events.lock().unwrap().extend(events);
        api
    }

    /// Serves on a random loopback port until the task is aborted; its address.
    pub async fn serve(&self) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2020-01-01/extension/register", post(register_extension))
            .route("/2020-01-01/extension/event/next", get(std::future::pending::<()>))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    fn record(&self, request_id: String, kind: &'static str, body: Bytes) {
        let body = String::from_utf8_lossy(&body).into_owned();
        self.answers.lock().unwrap().push(Answer { at: Instant::now(), request_id, kind, body });
    }
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    let Some(event) = api.events.lock().unwrap().pop_front() else {
        return std::future::pending().await;
    };
    let n = {
        let mut count = api.handed_out.lock().unwrap();
        *count += 1;
        *count
    };
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 300_000;
    headers.insert("lambda-runtime-aws-request-id", format!("req-{n}").parse().unwrap());
    headers.insert("lambda-runtime-deadline-ms", deadline.to_string().parse().unwrap());
    headers.insert("lambda-runtime-invoked-function-arn", "arn:aws:lambda:eu-west-1:123456789012:function:local".parse().unwrap());
    headers.insert("lambda-runtime-trace-id", TRACE_ID.parse().unwrap());
    (headers, event)
}

async fn respond(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.record(id, "response", body);
    StatusCode::ACCEPTED
}

async fn error(State(api): State<RuntimeApi>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    api.record(id, "error", body);
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    api.record("init".into(), "error", body);
    StatusCode::ACCEPTED
}

async fn register_extension() -> (HeaderMap, &'static str) {
    let mut headers = HeaderMap::new();
    headers.insert("lambda-extension-identifier", "ext-1".parse().unwrap());
    (headers, r#"{"functionName":"local","functionVersion":"$LATEST","handler":"bootstrap"}"#)
}
