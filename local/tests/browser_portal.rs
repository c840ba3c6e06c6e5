//! A real browser runs the participant recording flow against echo-local: headless Chromium
//! loads `browser_portal.html` from a page server on another origin, which does what ECHO's
//! portal does (credentialed cross-origin API calls, a presigned multipart POST straight to the
//! embedded S3 endpoint with an upload progress listener, which the browser preflights), and
//! writes its outcome into the DOM. A page from an origin that is not allowed gets nothing.
//!
//! Needs Chromium: `apt-get install chromium`, or `CHROME=/path/to/chrome`.

// The api binary's helpers, of which this one uses a few.
#[allow(dead_code)]
#[path = "api/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::{Value, json};
use support::*;

const PAGE: &str = include_str!("browser_portal.html");
/// What the page generates: 2 s of 16 kHz mono 16-bit PCM plus the 44-byte WAV header.
const WAV_BYTES: u64 = 44 + 2 * 16_000 * 2;
const BROWSER_TIMEOUT: Duration = Duration::from_secs(25);

/// Serves the page on a random loopback port; returns its origin.
async fn page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROME") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join("chromium")).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("this test drives headless Chromium: `apt-get install chromium` (or set CHROME to a Chrome/Chromium binary)")
        })
}

/// What one page load left behind: the page's result and the browser's network log.
struct PageRun {
    result: Value,
    net: NetLog,
}

/// Loads `url` in a fresh headless Chromium, waits for the page's script (virtual time stands
/// still while requests are in flight) and reads `#result` from the dumped DOM.
async fn run_page(url: &str) -> PageRun {
    let profile = tempfile::tempdir().unwrap();
    let netlog = profile.path().join("netlog.json");
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Names never resolve, so nothing but 127.0.0.1 is ever contacted.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap_or_else(|e| {
        panic!("starting {:?}: {e}; this test needs Chromium: `apt-get install chromium` (or set CHROME)", command.as_std().get_program())
    });
    let output = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("Chromium did not finish {url} within {BROWSER_TIMEOUT:?}"))
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "Chromium failed ({}) on {url}: {stderr}", output.status);
    let text = dom
        .split_once(r#"<pre id="result">"#)
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(text, _)| text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u{a0}").replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("no #result in the DOM of {url}:\n{dom}\n{stderr}"));
    let result = serde_json::from_str(&text).unwrap_or_else(|_| panic!("the page did not finish: #result is {text:?}"));
    PageRun { result, net: NetLog::read(&netlog) }
}

/// Chromium's `--log-net-log` file, reduced to what the assertions need.
struct NetLog {
    /// (method, url) of every request the network stack started, preflights included.
    requests: Vec<(String, String)>,
    /// Every address a TCP connection was attempted to.
    connects: Vec<String>,
}

impl NetLog {
    fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading the net log {}: {e}", path.display()));
        let log: Value = serde_json::from_str(&text).expect("the net log is complete JSON once Chromium exits");
        let types = log["constants"]["logEventTypes"].as_object().unwrap();
        let type_of = |name: &str| types[name].as_u64().unwrap();
        let (start_job, tcp_connect) = (type_of("URL_REQUEST_START_JOB"), type_of("TCP_CONNECT"));
        let mut net = NetLog { requests: Vec::new(), connects: Vec::new() };
        for event in log["events"].as_array().unwrap() {
            let params = &event["params"];
            match event["type"].as_u64() {
                Some(t) if t == start_job => {
                    if let (Some(method), Some(url)) = (params["method"].as_str(), params["url"].as_str()) {
                        net.requests.push((method.to_string(), url.to_string()));
                    }
                }
                Some(t) if t == tcp_connect => {
                    for address in params["address_list"].as_array().into_iter().flatten() {
                        net.connects.push(address.as_str().unwrap().to_string());
                    }
                }
                _ => {}
            }
        }
        net
    }

    fn sent(&self, method: &str, url: &str) -> bool {
        self.requests.iter().any(|(m, u)| m == method && u == url)
    }

    fn only_loopback(&self) {
        assert!(!self.connects.is_empty());
        for address in &self.connects {
            assert!(address.starts_with("127.0.0.1:"), "the browser connected to {address}");
        }
    }
}

fn portal_url(page_origin: &str, app: &TestApp, extra: &str) -> String {
    format!("{page_origin}/?api={}&project={PROJECT}{extra}", app.local.api_url)
}

#[tokio::test]
async fn chromium_records_a_conversation_through_the_portal_flow() {
    let started = Instant::now();
    let origin = page_server().await;
    let app = TestApp::start_with(|o| o.settings.api.participant_base_url = origin.clone()).await;
    let s3 = app.local.s3_url.clone().expect("the embedded S3 endpoint runs");

    let PageRun { result, net } = run_page(&portal_url(&origin, &app, "")).await;
    assert_eq!(result["ok"], true, "the page failed: {result}");
    assert_eq!(result["steps"], json!(["project", "initiate", "get-upload-url", "upload", "confirm-upload", "chunks", "finish"]));
    // The browser preflighted the upload (progress listener) and the API writes, then sent them.
    let bucket_url = format!("{s3}/echo");
    assert!(net.sent("OPTIONS", &bucket_url) && net.sent("POST", &bucket_url), "no preflighted upload: {:?}", net.requests);
    let initiate = format!("{}/api/participant/projects/{PROJECT}/conversations/initiate", app.local.api_url);
    assert!(net.sent("OPTIONS", &initiate) && net.sent("POST", &initiate), "{:?}", net.requests);
    net.only_loopback();

    let value = &result["value"];
    let (cid, chunk_id) = (value["conversation_id"].as_str().unwrap(), value["chunk_id"].as_str().unwrap());
    let file_url = value["file_url"].as_str().unwrap();
    assert_eq!(value["audio_bytes"], WAV_BYTES);
    assert_eq!(value["upload"]["status"], 204, "{value}");
    let progress = &value["upload"]["progress"];
    assert!(progress["events"].as_u64().unwrap() >= 1, "upload progress was reported: {progress}");
    assert!(progress["loaded"].as_u64().unwrap() > WAV_BYTES, "the whole form went up: {progress}");
    assert_eq!(value["chunk_ids"], json!([chunk_id]));
    assert_eq!(value["finish"], "OK");

    // Server side: the object at its key with the uploaded size, the chunk row, the tasks.
    let key = app.local.state.blob.key_from_url(file_url).unwrap();
    assert!(key.starts_with(&format!("conversation/{cid}/chunks/{chunk_id}-chunk-")) && key.ends_with(".wav"), "{key}");
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), Some(WAV_BYTES));
    let stored = std::fs::read(app.dir.path().join("s3/echo").join(&key)).unwrap();
    assert_eq!((&stored[..4], &stored[8..12]), (&b"RIFF"[..], &b"WAVE"[..]), "the file part was stored, not the form");
    let chunk = app.local.store.get_chunk(chunk_id).await.unwrap().expect("the confirmed chunk");
    assert_eq!((chunk.conversation_id.as_str(), chunk.path.as_deref()), (cid, Some(file_url)));
    let published = app.published();
    assert!(published.iter().any(|m| m["task"] == "task_process_conversation_chunk" && m["args"]["chunk_id"] == chunk_id));
    assert!(
        published.iter().any(|m| m["task"] == "task_finish_conversation_hook" && m["args"]["conversation_id"] == cid),
        "finish published the hook: {published:?}"
    );
    eprintln!("browser flow took {:?}", started.elapsed());
}

#[tokio::test]
async fn chromium_on_a_disallowed_origin_gets_nothing_and_creates_nothing() {
    let allowed = page_server().await;
    let other = page_server().await;
    let app = TestApp::start_with(|o| o.settings.api.participant_base_url = allowed.clone()).await;

    // The first call is a simple GET: the server answers, but the browser withholds the answer.
    let PageRun { result, net } = run_page(&portal_url(&other, &app, "")).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["steps"], json!(["project"]));
    assert!(result["error"].as_str().unwrap().contains("Failed to fetch"), "{result}");
    net.only_loopback();

    // Starting with the write: the preflight is refused and the POST is never sent.
    let PageRun { result, net } = run_page(&portal_url(&other, &app, "&skip=project")).await;
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["steps"], json!(["initiate"]));
    assert!(result["error"].as_str().unwrap().contains("Failed to fetch"), "{result}");
    let initiate = format!("{}/api/participant/projects/{PROJECT}/conversations/initiate", app.local.api_url);
    assert!(net.sent("OPTIONS", &initiate), "{:?}", net.requests);
    assert!(!net.sent("POST", &initiate), "the browser sent the refused write: {:?}", net.requests);
    net.only_loopback();

    let db = app.db();
    let conversations: i64 = db.query_row("SELECT count(*) FROM conversation", [], |row| row.get(0)).unwrap();
    assert_eq!(conversations, 0, "no conversation was created");
    assert!(app.published().is_empty(), "nothing was queued: {:?}", app.published());
    let objects = std::fs::read_dir(app.dir.path().join("s3/echo")).map(|dir| dir.count()).unwrap_or(0);
    assert_eq!(objects, 0, "nothing was stored");
}
