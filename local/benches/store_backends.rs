//! `cargo bench --bench store_backends`: the participant route `GET /api/participant/projects/{id}`
//! (one project read with its tags) on echo-local with the SQLite store and with the Directus
//! store, under 50 and 500 concurrent clients. Numbers go to docs/benchmarks.md.
//!
//! Directus comes from `DIRECTUS_TEST_URL` / `DIRECTUS_TEST_TOKEN` when they are set; otherwise
//! this starts one with `scripts/directus.sh start ../shared/data/directus-snapshot` on a free
//! loopback port and stops it at the end.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::config::StoreSettings;
use futures::future::BoxFuture;
use local::{DEMO_PROJECT_ID, LocalOptions};

const CLIENT_COUNTS: [usize; 2] = [50, 500];
const WARMUP: Duration = Duration::from_secs(2);
const MEASURE: Duration = Duration::from_secs(10);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A Directus this run started, stopped on drop.
struct OwnDirectus {
    script: PathBuf,
    port: u16,
}

impl Drop for OwnDirectus {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(&self.script).args(["stop", "--purge"]).env("DIRECTUS_PORT", self.port.to_string()).status();
    }
}

fn directus() -> (String, String, Option<OwnDirectus>) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let (Some(url), Some(token)) = (var("DIRECTUS_TEST_URL"), var("DIRECTUS_TEST_TOKEN")) {
        return (url, token, None);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = repo.join("scripts/directus.sh");
    let snapshot = var("ECHO_DIRECTUS_SNAPSHOT").map(PathBuf::from).unwrap_or_else(|| repo.join("../shared/data/directus-snapshot"));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    eprintln!("starting Directus on port {port} with {}", script.display());
    let out = Command::new("bash")
        .arg(&script)
        .arg("start")
        .arg(&snapshot)
        .env("DIRECTUS_PORT", port.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running scripts/directus.sh");
    let own = OwnDirectus { script, port };
    assert!(out.status.success(), "scripts/directus.sh start failed");
    let env = String::from_utf8(out.stdout).unwrap();
    let value = |name: &str| {
        env.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing in the script's output: {env}"))
            .to_string()
    };
    (value("DIRECTUS_BASE_URL"), value("DIRECTUS_TOKEN"), Some(own))
}

struct Outcome {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

type Call = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// `clients` loops of `call`, measured after the warm-up.
async fn load(call: Call, clients: usize) -> Outcome {
    let started = Instant::now();
    let (measure_from, measure_to) = (started + WARMUP, started + WARMUP + MEASURE);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (call, stop) = (call.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0usize);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = call().await;
                let done = Instant::now();
                // Every request that completes inside the window counts, whenever it started: a
                // request that must also start inside it undercounts when latency is seconds.
                if done >= measure_from && done <= measure_to {
                    if ok {
                        latencies.push(done - t);
                    } else {
                        failed += 1;
                    }
                }
            }
            (latencies, failed)
        }));
    }
    tokio::time::sleep_until(measure_to.into()).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcome = Outcome { ok: 0, failed: 0, latencies: Vec::new() };
    for worker in workers {
        let (latencies, failed) = worker.await.unwrap();
        outcome.ok += latencies.len();
        outcome.failed += failed;
        outcome.latencies.extend(latencies);
    }
    outcome.latencies.sort();
    outcome
}

fn report(name: &str, clients: usize, outcome: &Outcome) {
    let throughput = outcome.ok as f64 / MEASURE.as_secs_f64();
    println!(
        "  {name:<34} {clients:>3} clients  {throughput:8.1} req/s  p50 {:>9}  p99 {:>9}  max {:>9}  failed {}",
        ms(percentile(&outcome.latencies, 0.5)),
        ms(percentile(&outcome.latencies, 0.99)),
        ms(outcome.latencies.last().copied().unwrap_or_default()),
        outcome.failed
    );
}

fn http_get(url: String, clients: usize) -> Call {
    let client = reqwest::Client::builder().pool_max_idle_per_host(clients).timeout(Duration::from_secs(60)).build().unwrap();
    Arc::new(move || {
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            match client.get(&url).send().await {
                Ok(res) => res.status() == 200 && res.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

async fn backend(name: &str, store: Option<StoreSettings>) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::for_tests(dir.path());
    if let Some(store) = store {
        options.settings.store = store;
    }
    let app = local::start(options).await.unwrap();
    let url = format!("{}/api/participant/projects/{DEMO_PROJECT_ID}", app.api_url);
    let res = reqwest::get(&url).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    for clients in CLIENT_COUNTS {
        report(&format!("{name}: echo-local route"), clients, &load(http_get(url.clone(), clients), clients).await);
    }
    if name == "directus" {
        // The same read without echo-local's HTTP layer: what Directus alone serves.
        let store = app.store.clone();
        let direct: Call = Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.get_project(DEMO_PROJECT_ID).await.is_ok_and(|p| p.is_some()) })
        });
        for clients in CLIENT_COUNTS {
            report("directus: store.get_project alone", clients, &load(direct.clone(), clients).await);
        }
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (url, token, own) = directus();
    runtime.block_on(async {
        println!(
            "GET /api/participant/projects/{{id}} on echo-local, {} s per run after {} s warm-up \
             (2 cores shared by clients, echo-local and the store)",
            MEASURE.as_secs(),
            WARMUP.as_secs()
        );
        backend("sqlite", None).await;
        backend("directus", Some(StoreSettings::Directus { base_url: url, token: Some(token), timeout_seconds: 10, page_size: 500 })).await;
    });
    drop(own);
}
