//! The blocking-offload pool: the only way synchronous work that can wait (SQLite, std::fs,
//! hashing, zip building) runs. A semaphore of `THREAD_POOL_SIZE` permits around
//! `tokio::task::spawn_blocking`, so a tokio worker thread never blocks and the number of
//! blocking calls in flight stays bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use tracing::Instrument;

pub const DEFAULT_POOL_SIZE: usize = 64;
pub const MAX_POOL_SIZE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("offloaded task panicked: {0}")]
    Panicked(String),
    #[error("offloaded task was cancelled")]
    Cancelled,
}

/// How busy the pool is right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OffloadStats {
    pub size: usize,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Debug, Clone)]
pub struct OffloadPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    size: usize,
    permits: Semaphore,
    running: AtomicUsize,
    waiting: AtomicUsize,
    /// The most running / waiting at once since `take_peaks` last read them (the metrics).
    peak_running: AtomicUsize,
    peak_waiting: AtomicUsize,
}

impl OffloadPool {
    pub fn new(size: usize) -> Self {
        let size = size.clamp(1, MAX_POOL_SIZE);
        let zero = || AtomicUsize::new(0);
        let permits = Semaphore::new(size);
        Self { inner: Arc::new(Inner { size, permits, running: zero(), waiting: zero(), peak_running: zero(), peak_waiting: zero() }) }
    }

    pub fn stats(&self) -> OffloadStats {
        OffloadStats {
            size: self.inner.size,
            running: self.inner.running.load(Ordering::Relaxed),
            waiting: self.inner.waiting.load(Ordering::Relaxed),
        }
    }

    /// The most calls running and waiting at once since the last call (a sample of the gauges
    /// alone would mostly read the quiet moment after the work); starts the next window at now.
    pub fn take_peaks(&self) -> (usize, usize) {
        let i = &self.inner;
        let running = i.peak_running.swap(i.running.load(Ordering::Relaxed), Ordering::Relaxed);
        let waiting = i.peak_waiting.swap(i.waiting.load(Ordering::Relaxed), Ordering::Relaxed);
        (running, waiting)
    }

    /// Runs `f` on tokio's blocking threads once a permit is free, inside the caller's span.
    pub async fn run<F, T>(&self, f: F) -> Result<T, OffloadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let inner = &self.inner;
        let waiting = inner.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        inner.peak_waiting.fetch_max(waiting, Ordering::Relaxed);
        let permit = inner.permits.acquire().await;
        inner.waiting.fetch_sub(1, Ordering::Relaxed);
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = permit.map_err(|_| OffloadError::Cancelled)?;

        let running = inner.running.fetch_add(1, Ordering::Relaxed) + 1;
        inner.peak_running.fetch_max(running, Ordering::Relaxed);
        let _running = RunningGuard(&inner.running);
        // The span and its subscriber travel with the work, so its log lines keep the request id.
        let span = tracing::Span::current();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let handle = tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(f)));
        match handle.instrument(tracing::Span::current()).await {
            Ok(value) => Ok(value),
            Err(err) if err.is_panic() => Err(OffloadError::Panicked(panic_message(err.into_panic()))),
            Err(_) => Err(OffloadError::Cancelled),
        }
    }
}

struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Parses `THREAD_POOL_SIZE`: whitespace trimmed, any signed integer clamped to 1..=1024,
/// anything else falls back to the default (the bool says whether it did).
pub fn parse_pool_size(raw: Option<&str>) -> (usize, bool) {
    let Some(raw) = raw else {
        return (DEFAULT_POOL_SIZE, false);
    };
    let text = raw.trim();
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return (DEFAULT_POOL_SIZE, true);
    }
    if text.starts_with('-') {
        return (1, false);
    }
    // Any magnitude is allowed: a number too long for u64 is simply above the cap.
    let size = digits.parse::<u64>().map_or(MAX_POOL_SIZE, |n| n.clamp(1, MAX_POOL_SIZE as u64) as usize);
    (size, false)
}

static GLOBAL: OnceLock<OffloadPool> = OnceLock::new();

/// The process-wide pool, sized from `THREAD_POOL_SIZE` on first use.
pub fn global() -> &'static OffloadPool {
    GLOBAL.get_or_init(|| {
        let raw = std::env::var("THREAD_POOL_SIZE").ok();
        let (size, fell_back) = parse_pool_size(raw.as_deref());
        if fell_back {
            tracing::warn!(value = ?raw, default = DEFAULT_POOL_SIZE, "THREAD_POOL_SIZE is not an integer; using the default");
        }
        OffloadPool::new(size)
    })
}

/// Runs blocking work on the process-wide pool.
pub async fn offload<F, T>(f: F) -> Result<T, OffloadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    global().run(f).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peaks_remember_the_busiest_moment_until_read() {
        let pool = OffloadPool::new(1);
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move || held.recv().unwrap()).await.unwrap() }
        });
        let second = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| ()).await.unwrap() }
        });
        while pool.stats() != (OffloadStats { size: 1, running: 1, waiting: 1 }) {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.take_peaks(), (1, 1));
        release.send(()).unwrap();
        first.await.unwrap();
        second.await.unwrap();
        // The next window began busy; the one after that saw nothing.
        assert_eq!(pool.take_peaks(), (1, 1));
        assert_eq!(pool.take_peaks(), (0, 0));
    }

    #[test]
    fn pool_size_parsing_follows_the_rules() {
        assert_eq!(parse_pool_size(None), (64, false));
        assert_eq!(parse_pool_size(Some(" 16 ")), (16, false));
        assert_eq!(parse_pool_size(Some("+8")), (8, false));
        assert_eq!(parse_pool_size(Some("0")), (1, false));
        assert_eq!(parse_pool_size(Some("-5")), (1, false));
        assert_eq!(parse_pool_size(Some("5000")), (1024, false));
        assert_eq!(parse_pool_size(Some("99999999999999999999999999")), (1024, false));
        assert_eq!(parse_pool_size(Some("abc")), (64, true));
        assert_eq!(parse_pool_size(Some("1.5")), (64, true));
        assert_eq!(parse_pool_size(Some("")), (64, true));
        assert_eq!(parse_pool_size(Some("-")), (64, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_runs_more_than_its_size_at_once() {
        let pool = OffloadPool::new(3);
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (pool, peak, now) = (pool.clone(), peak.clone(), now.clone());
            tasks.push(tokio::spawn(async move {
                pool.run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = pool.stats();
        assert_eq!(busy.running, 3);
        assert!(busy.waiting > 0, "{busy:?}");
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(pool.stats(), OffloadStats { size: 3, running: 0, waiting: 0 });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_leaves_the_runtime_free() {
        // One worker thread: if the sleep ran on it, the timer below could not fire early.
        let pool = OffloadPool::new(1);
        let started = Instant::now();
        let blocked = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| std::thread::sleep(Duration::from_millis(300))).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(started.elapsed() < Duration::from_millis(200));
        blocked.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_frees_the_permit() {
        let pool = OffloadPool::new(1);
        let err = pool.run(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(err, OffloadError::Panicked(ref m) if m == "boom"), "{err:?}");
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
        assert_eq!(pool.stats().running, 0);
    }

    #[tokio::test]
    async fn carries_the_callers_span() {
        use tracing_subscriber::layer::SubscriberExt;
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let subscriber = tracing_subscriber::registry();
        let _guard = tracing::subscriber::set_default(subscriber.with(tracing_subscriber::fmt::layer().with_test_writer()));
        let span = tracing::info_span!("request", request_id = "r-1");
        let pool = OffloadPool::new(2);
        pool.run(move || {
            let id = tracing::Span::current().metadata().map(|m| m.name());
            seen_tx.send(id).unwrap();
        })
        .instrument(span)
        .await
        .unwrap();
        assert_eq!(seen_rx.recv().unwrap(), Some("request"));
    }
}
