//! A stand-in for Sentry's ingestion on 127.0.0.1, speaking its envelope endpoint
//! (`POST /api/{project}/envelope/`): it checks the project and the public key in
//! `X-Sentry-Auth` as Sentry does (401 otherwise), keeps every event it accepts, and answers
//! only after `delay`, so a test can tell whether the sender waited for the answer.

#![allow(dead_code)] // each includer uses a part

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

pub const PROJECT: &str = "4242";
pub const PUBLIC_KEY: &str = "echo-test-public-key";

/// One event item of an accepted envelope.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: Value,
    /// When the endpoint answered (after `delay`).
    pub answered_at: Instant,
}

#[derive(Clone)]
pub struct FakeSentry {
    pub dsn: String,
    events: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<u32>>,
    delay: Duration,
    server: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeSentry {
    pub async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let state = Ingest { events: events.clone(), refused: refused.clone(), delay };
        let app = Router::new().route("/api/{project}/envelope/", post(envelope)).with_state(state);
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSentry { dsn: format!("http://{PUBLIC_KEY}@{addr}/{PROJECT}"), events, refused, delay, server: Arc::new(server) }
    }

    pub fn events(&self) -> Vec<Received> {
        self.events.lock().unwrap().clone()
    }

    /// Envelopes turned away for a wrong project or key.
    pub fn refused(&self) -> u32 {
        *self.refused.lock().unwrap()
    }

    /// Waits up to `within` for `n` events.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let until = Instant::now() + within;
        while self.events().len() < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.events()
    }
}

impl Drop for FakeSentry {
    fn drop(&mut self) {
        if Arc::strong_count(&self.server) == 1 {
            self.server.abort();
        }
    }
}

#[derive(Clone)]
struct Ingest {
    events: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<u32>>,
    delay: Duration,
}

/// `X-Sentry-Auth: Sentry sentry_version=7, sentry_key=<public key>, sentry_client=...`.
fn public_key(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("x-sentry-auth")?.to_str().ok()?;
    let fields = auth.strip_prefix("Sentry ")?;
    fields.split(',').filter_map(|f| f.trim().split_once('=')).find(|(k, _)| *k == "sentry_key").map(|(_, v)| v.to_string())
}

async fn envelope(State(ingest): State<Ingest>, Path(project): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if project != PROJECT || public_key(&headers).as_deref() != Some(PUBLIC_KEY) {
        *ingest.refused.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    // Envelope: a header line, then per item a header line and its payload line.
    let text = String::from_utf8_lossy(&body).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut events = Vec::new();
    for pair in lines[1.min(lines.len())..].chunks(2) {
        let header: Value = serde_json::from_str(pair[0]).unwrap_or_default();
        if header["type"] == "event"
            && let Some(payload) = pair.get(1)
        {
            events.push(serde_json::from_str::<Value>(payload).expect("an event payload is JSON"));
        }
    }
    tokio::time::sleep(ingest.delay).await;
    let answered_at = Instant::now();
    ingest.events.lock().unwrap().extend(events.into_iter().map(|event| Received { event, answered_at }));
    StatusCode::OK
}
