//! `cargo bench --bench memory_load`: the echo-local binary (a child process, so its RSS is its
//! own) under 50 and 500 keep-alive clients on `GET /api/participant/projects/{id}`, with the
//! SQLite store and with the Directus store (a stand-in here answering every SEARCH after 100 ms),
//! at THREAD_POOL_SIZE 64 (the default), 16 and 256. Reports req/s (completions in the window),
//! p50/p99, the p99 of a `/api/health` probe sent every 20 ms during the load, and peak RSS
//! (VmHWM). Numbers go to docs/benchmarks.md.
//!
//! Env: `BENCH_SECONDS` (20), `BENCH_CLIENTS` ("50,500"), `BENCH_POOLS` ("64,16,256"),
//! `BENCH_STORES` ("sqlite,directus"), `ECHO_LOCAL_BIN` (default: the binary cargo built with
//! this bench, i.e. the bench profile; point it at target/release/echo-local for the release one),
//! `BENCH_ENV` ("K=V,K=V" added to echo-local's environment, e.g. MALLOC_ARENA_MAX=2).
//!
//! The clients speak minimal HTTP/1.1 over one connection each (as wrk does), so the load
//! generator costs little of the 2 cores it shares with echo-local.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, Uri};
use local::{DEMO_PROJECT_ID, DEMO_TAG_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WARMUP: Duration = Duration::from_secs(2);
const DIRECTUS_LATENCY: Duration = Duration::from_millis(100);

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Room for 500 client sockets, their 500 server ends and echo-local's Directus connections.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The Directus stand-in: every request answers after `DIRECTUS_LATENCY`; SEARCH on `project`
/// and `project_chat` finds the demo rows, any other SEARCH finds nothing.
async fn directus_stand_in(method: Method, uri: Uri) -> axum::Json<serde_json::Value> {
    tokio::time::sleep(DIRECTUS_LATENCY).await;
    let t = "2025-01-01T00:00:00.000Z";
    let data = match (method.as_str(), uri.path()) {
        ("SEARCH", "/items/project") => serde_json::json!([{
            "id": DEMO_PROJECT_ID, "created_at": t, "updated_at": t, "name": "Demo project", "language": "en",
            "is_conversation_allowed": true, "is_get_reply_enabled": true, "is_project_notification_subscription_allowed": true,
            "default_conversation_title": "Demo conversation", "default_conversation_description": "Talk about anything.",
            "default_conversation_finish_text": "Thank you for recording!", "image_generation_model": "MODEST",
            "tags": [{"id": DEMO_TAG_ID, "project_id": DEMO_PROJECT_ID, "text": "Demo tag", "sort": 1, "created_at": t, "updated_at": t}]
        }]),
        ("SEARCH", "/items/project_chat") => {
            serde_json::json!([{"id": local::DEMO_CHAT_ID, "project_id": DEMO_PROJECT_ID, "name": null, "auto_select": true}])
        }
        _ => serde_json::json!([]),
    };
    axum::Json(serde_json::json!({ "data": data }))
}

async fn start_stand_in() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(directus_stand_in);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// One keep-alive HTTP/1.1 connection answering with a Content-Length.
struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str, path: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").into_bytes();
        Ok(Conn { stream, request, buf: Vec::with_capacity(4096) })
    }

    /// Sends the request, reads the whole answer; whether it was a 200.
    async fn get(&mut self) -> std::io::Result<bool> {
        self.stream.write_all(&self.request).await?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            let head = std::str::from_utf8(&self.buf[..end]).map_err(|_| std::io::ErrorKind::InvalidData)?.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or(std::io::ErrorKind::InvalidData)?;
            while self.buf.len() < end + 4 + length {
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(head.starts_with("http/1.1 200"));
        }
    }
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

struct Echo {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_echo(pool: &str, directus: Option<&str>) -> Echo {
    let bin = std::env::var("ECHO_LOCAL_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_echo-local").into());
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(bin);
    cmd.env("ECHO_LOCAL_ADDR", &addr)
        .env("ECHO_LOCAL_S3_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("ECHO_LOCAL_DATA_DIR", dir.path())
        .env("THREAD_POOL_SIZE", pool)
        .env_remove("ECHO_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(url) = directus {
        cmd.env("ECHO_STORE", "directus").env("DIRECTUS_BASE_URL", url).env("DIRECTUS_TOKEN", "bench-token");
    }
    for kv in env_list("BENCH_ENV", "") {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let child = cmd.spawn().expect("starting echo-local");
    let echo = Echo { child, addr, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = Conn::open(&echo.addr, "/api/health").await
            && conn.get().await.unwrap_or(false)
        {
            break;
        }
        assert!(Instant::now() < deadline, "echo-local did not answer /api/health within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    echo
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Run {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
    health: Vec<Duration>,
    idle_kib: u64,
    peak_kib: u64,
    end_kib: u64,
    /// The most anonymous memory (heap, stacks) seen in the 100 ms samples; the rest of RSS is
    /// the binary's mapped pages.
    anon_kib: u64,
    threads: u64,
}

async fn run(echo: &Echo, clients: usize, measure: Duration) -> Run {
    let pid = echo.child.id();
    let idle_kib = proc_status(pid, "VmRSS:").unwrap_or(0);
    let path = format!("/api/participant/projects/{DEMO_PROJECT_ID}");
    let started = Instant::now();
    let (from, to) = (started + WARMUP, started + WARMUP + measure);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..clients {
        let (addr, path, stop) = (echo.addr.clone(), path.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut latencies, mut failed) = (Vec::new(), 0usize);
            let mut conn = None;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if conn.is_none() {
                    conn = Conn::open(&addr, &path).await.ok();
                }
                let ok = match conn.as_mut() {
                    Some(c) => c.get().await.unwrap_or(false),
                    None => false,
                };
                if !ok {
                    conn = None;
                }
                let done = Instant::now();
                // A request counts where it completes: inside the window.
                if done >= from && done <= to {
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
    let probe = {
        let (addr, stop) = (echo.addr.clone(), stop.clone());
        tokio::spawn(async move {
            let mut conn = Conn::open(&addr, "/api/health").await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = Instant::now();
                assert!(conn.get().await.unwrap(), "/api/health failed under load");
                if t >= from && t <= to {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        })
    };
    let (mut threads, mut anon_kib) = (0, 0);
    while Instant::now() < to {
        threads = threads.max(proc_status(pid, "Threads:").unwrap_or(0));
        anon_kib = anon_kib.max(proc_status(pid, "RssAnon:").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut out =
        Run { ok: 0, failed: 0, latencies: Vec::new(), health: probe.await.unwrap(), idle_kib, peak_kib: 0, end_kib: 0, anon_kib, threads };
    for w in workers {
        let (latencies, failed) = w.await.unwrap();
        out.ok += latencies.len();
        out.failed += failed;
        out.latencies.extend(latencies);
    }
    out.peak_kib = proc_status(pid, "VmHWM:").unwrap_or(0);
    out.end_kib = proc_status(pid, "VmRSS:").unwrap_or(0);
    out.latencies.sort();
    out.health.sort();
    out
}

fn main() {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let measure = Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20));
    let clients: Vec<usize> = env_list("BENCH_CLIENTS", "50,500").iter().map(|c| c.parse().expect("BENCH_CLIENTS")).collect();
    runtime.block_on(async {
        let stand_in = start_stand_in().await;
        println!(
            "GET /api/participant/projects/{{id}}, {} s after {} s warm-up; Directus stand-in answers after {} ms",
            measure.as_secs(),
            WARMUP.as_secs(),
            DIRECTUS_LATENCY.as_millis()
        );
        println!(
            "{:<9} {:>5} {:>7} {:>9} {:>8} {:>8} {:>10} {:>6} {:>8} {:>8} {:>9} {:>7} {:>7}",
            "store",
            "pool",
            "clients",
            "req/s",
            "p50 ms",
            "p99 ms",
            "health p99",
            "failed",
            "idle MB",
            "peak MB",
            "anon peak",
            "end MB",
            "threads"
        );
        for store in env_list("BENCH_STORES", "sqlite,directus") {
            for pool in env_list("BENCH_POOLS", "64,16,256") {
                for &n in &clients {
                    let directus = (store == "directus").then_some(stand_in.as_str());
                    let echo = start_echo(&pool, directus).await;
                    let r = run(&echo, n, measure).await;
                    println!(
                        "{store:<9} {pool:>5} {n:>7} {:>9.1} {:>8.1} {:>8.1} {:>10.2} {:>6} {:>8.1} {:>8.1} {:>9.1} {:>7.1} {:>7}",
                        r.ok as f64 / measure.as_secs_f64(),
                        ms(percentile(&r.latencies, 0.5)),
                        ms(percentile(&r.latencies, 0.99)),
                        ms(percentile(&r.health, 0.99)),
                        r.failed,
                        r.idle_kib as f64 / 1024.0,
                        r.peak_kib as f64 / 1024.0,
                        r.anon_kib as f64 / 1024.0,
                        r.end_kib as f64 / 1024.0,
                        r.threads
                    );
                }
            }
        }
    });
}
