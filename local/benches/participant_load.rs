//! `cargo bench --bench participant_load`: echo-local's own binary in a process of its own, and
//! 500 concurrent clients for 60 s doing what the portal does, mixed: read the project, initiate a
//! conversation, read it, get a presigned POST, upload to the embedded S3, confirm, list chunks.
//! Reports requests, errors (any non-2xx or transport error), p50/p95/p99 per kind, and
//! echo-local's RSS after a warm-up and after the run. Numbers go to docs/benchmarks.md.
//! `LOAD_CLIENTS`, `LOAD_SECONDS` change the shape; `ECHO_LOCAL_BIN` runs another build.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/echo_local_process.rs"]
mod echo_local_process;
use echo_local_process::EchoLocalProcess;

const PROJECT: &str = "11111111-1111-4111-8111-111111111111";
/// Under the audio worker's 1 KiB minimum: each confirmed chunk is refused by the worker at once,
/// so the run measures the API, not ffmpeg.
const UPLOAD_BYTES: usize = 512;
/// echo-local may grow by this much under the run (its SQLite cache, connection buffers, the
/// in-process queue's record of what it published and gave up on).
const RSS_GROWTH_BOUND_MIB: u64 = 96;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    errors: BTreeMap<String, u64>,
}

struct Client {
    http: reqwest::Client,
    api: String,
    tally: Arc<Mutex<Tally>>,
}

impl Client {
    async fn timed(&self, kind: &'static str, req: reqwest::RequestBuilder) -> Option<Value> {
        let started = Instant::now();
        let outcome = match req.send().await {
            Ok(res) if res.status().is_success() => res.bytes().await.map_err(|e| e.to_string()),
            Ok(res) => Err(format!("{kind}: {}", res.status())),
            Err(err) => Err(format!("{kind}: {}", if err.is_timeout() { "timeout".into() } else { err.to_string() })),
        };
        let elapsed = started.elapsed();
        let mut tally = self.tally.lock().unwrap();
        match outcome {
            Ok(bytes) => {
                tally.latencies.entry(kind).or_default().push(elapsed);
                Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            Err(err) => {
                *tally.errors.entry(err).or_default() += 1;
                None
            }
        }
    }

    /// One portal session; None when a step failed (counted already).
    async fn session(&self) -> Option<()> {
        let api = &self.api;
        self.timed("read project", self.http.get(format!("{api}/participant/projects/{PROJECT}"))).await?;
        let initiate =
            self.http.post(format!("{api}/participant/projects/{PROJECT}/conversations/initiate")).json(&json!({"name": "load"}));
        let cid = self.timed("initiate", initiate).await?["id"].as_str()?.to_string();
        self.timed("read conversation", self.http.get(format!("{api}/participant/projects/{PROJECT}/conversations/{cid}"))).await?;
        let presign = self
            .http
            .post(format!("{api}/participant/conversations/{cid}/get-upload-url"))
            .json(&json!({"filename": "chunk-1760616030000.webm", "content_type": "audio/webm"}));
        let upload = self.timed("presign", presign).await?;
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in upload["fields"].as_object()? {
            form = form.text(name.clone(), value.as_str()?.to_string());
        }
        let file = reqwest::multipart::Part::bytes(vec![7u8; UPLOAD_BYTES]).file_name("blob").mime_str("audio/webm").ok()?;
        self.timed("s3 upload", self.http.post(upload["upload_url"].as_str()?).multipart(form.part("file", file))).await?;
        let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"});
        self.timed("confirm", self.http.post(format!("{api}/participant/conversations/{cid}/confirm-upload")).json(&confirm)).await?;
        self.timed("list chunks", self.http.get(format!("{api}/participant/projects/{PROJECT}/conversations/{cid}/chunks"))).await?;
        Some(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn main() {
    let clients = env_or("LOAD_CLIENTS", 500) as usize;
    let seconds = env_or("LOAD_SECONDS", 60);
    let local = EchoLocalProcess::start();
    let api = local.api.clone();

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(clients).build().unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = Arc::new(Client { http, api, tally: tally.clone() });

    // Warm-up: a few sessions, so the first reading is past start-up allocations.
    rt.block_on(async {
        for _ in 0..50 {
            client.session().await;
        }
    });
    *tally.lock().unwrap() = Tally::default();
    let before = local.rss_kib();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let sessions: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        client.session().await;
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    });
    let elapsed = started.elapsed();
    let after = local.rss_kib();
    std::thread::sleep(Duration::from_secs(5));
    let settled = local.rss_kib();
    drop(local);

    let tally = tally.lock().unwrap();
    let mut all: Vec<Duration> = Vec::new();
    println!("participant_load: {clients} clients, {:.1} s, {sessions} sessions", elapsed.as_secs_f64());
    println!("| kind | requests | p50 ms | p95 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (kind, latencies) in &tally.latencies {
        let mut sorted = latencies.clone();
        sorted.sort();
        all.extend(&sorted);
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        println!(
            "| {kind} | {} | {} | {} | {} | {} |",
            sorted.len(),
            ms(percentile(&sorted, 0.50)),
            ms(percentile(&sorted, 0.95)),
            ms(percentile(&sorted, 0.99)),
            ms(*sorted.last().unwrap())
        );
    }
    all.sort();
    let errors: u64 = tally.errors.values().sum();
    println!(
        "all: {} requests ({:.0}/s), {errors} errors, p50 {:.1} ms, p99 {:.1} ms",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0
    );
    for (error, count) in tally.errors.iter() {
        println!("  error x{count}: {error}");
    }
    println!(
        "echo-local RSS: {} MiB after warm-up, {} MiB at the end, {} MiB 5 s later (bound: +{RSS_GROWTH_BOUND_MIB} MiB)",
        before / 1024,
        after / 1024,
        settled / 1024
    );
    assert_eq!(errors, 0, "every request succeeds");
    assert!(settled.saturating_sub(before) <= RSS_GROWTH_BOUND_MIB * 1024, "echo-local grew by more than {RSS_GROWTH_BOUND_MIB} MiB");
}
