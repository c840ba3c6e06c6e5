//! `cargo bench --bench offload`: the cost of one offloaded call, and ECHO's failure scenario
//! (50 clients on a participant route whose store call blocks 100 ms) for several pool sizes,
//! with `/api/health` probed during the load. Numbers go to docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::offload::OffloadPool;
use local::{DEMO_PROJECT_ID, LocalOptions};

const CLIENTS: usize = 50;
const STALL: Duration = Duration::from_millis(100);
const LOAD_SECONDS: u64 = 8;
/// Load before the measured window: with one thread the first requests wait less than the
/// steady state's queue of 50, so measuring from the start reports the ramp.
const WARMUP: Duration = Duration::from_secs(3);
const OVERHEAD_CALLS: usize = 20_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn offload_overhead() {
    let pool = OffloadPool::new(64);
    // Warm the blocking threads.
    for _ in 0..1000 {
        pool.run(|| ()).await.unwrap();
    }
    let mut offloaded = Vec::with_capacity(OVERHEAD_CALLS);
    let mut bare = Vec::with_capacity(OVERHEAD_CALLS);
    for _ in 0..OVERHEAD_CALLS {
        let t = Instant::now();
        pool.run(|| std::hint::black_box(())).await.unwrap();
        offloaded.push(t.elapsed());
        let t = Instant::now();
        tokio::task::spawn_blocking(|| std::hint::black_box(())).await.unwrap();
        bare.push(t.elapsed());
    }
    offloaded.sort();
    bare.sort();
    println!("offload overhead per call ({OVERHEAD_CALLS} calls, empty closure, round trip from a tokio task)");
    println!("  common::offload      p50 {}  p99 {}", us(percentile(&offloaded, 0.5)), us(percentile(&offloaded, 0.99)));
    println!("  bare spawn_blocking  p50 {}  p99 {}", us(percentile(&bare, 0.5)), us(percentile(&bare, 0.99)));
}

async fn echo_failure_scenario(pool_size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::for_tests(dir.path());
    options.pool = Some(OffloadPool::new(pool_size));
    options.store_stall = STALL;
    let app = local::start(options).await.unwrap();
    let project_url = format!("{}/api/participant/projects/{DEMO_PROJECT_ID}", app.api_url);
    let health_url = format!("{}/api/health", app.api_url);
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS + 4).timeout(Duration::from_secs(60)).build().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let measure_from = Instant::now() + WARMUP;
    let deadline = measure_from + Duration::from_secs(LOAD_SECONDS);
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, stop) = (client.clone(), project_url.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let res = client.get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap();
                let done = Instant::now();
                if done >= measure_from && done <= deadline {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        }));
    }
    let probe_client = reqwest::Client::new();
    let mut health = Vec::new();
    tokio::time::sleep_until(measure_from.into()).await;
    while Instant::now() < deadline {
        let t = Instant::now();
        assert_eq!(probe_client.get(&health_url).send().await.unwrap().status(), 200);
        health.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        latencies.extend(w.await.unwrap());
    }
    latencies.sort();
    health.sort();
    let throughput = latencies.len() as f64 / LOAD_SECONDS as f64;
    println!(
        "  THREAD_POOL_SIZE={pool_size:<3} {throughput:7.1} req/s  p50 {:>9}  p99 {:>9}  | /api/health p99 {:>8} (max {}, {} probes)",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&health, 0.99)),
        ms(*health.last().unwrap()),
        health.len()
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not used here.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        offload_overhead().await;
        println!(
            "ECHO's failure scenario: {CLIENTS} clients on GET /api/participant/projects/{{id}}, \
             store call blocks {} ms, {LOAD_SECONDS} s each after {} s of warm-up",
            STALL.as_millis(),
            WARMUP.as_secs()
        );
        for size in [1, 16, 64] {
            echo_failure_scenario(size).await;
        }
    });
}
