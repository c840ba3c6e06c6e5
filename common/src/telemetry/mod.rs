//! Logging for every function: the subscriber set up at start-up, the last line flushed when
//! Lambda stops the environment, metrics as Embedded Metric Format lines (metrics.rs), and error
//! reports to Sentry (error_reports.rs).

use futures::FutureExt;

pub mod error_reports;
pub mod metrics;

/// Logs as JSON in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`) and as text elsewhere; the level comes
/// from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else info. Then error reporting, when
/// `SENTRY_DSN` asks for it (before any request or task, so every thread sees the client).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().map(|l| l.to_lowercase());
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().with_current_span(true).with_span_list(false).without_time().try_init()
    } else {
        builder.with_target(false).try_init()
    };
    error_reports::init();
}

/// The line a function logs when Lambda stops its environment (SIGTERM), after which the process
/// exits cleanly.
pub const SHUTDOWN_LOG: &str = "shutting down: logs flushed";

/// Lambda sends SIGTERM (and waits up to 500 ms) only to functions with an extension, so this
/// registers lambda_runtime's no-op internal one; on the signal it logs a last line and flushes
/// stdout/stderr so nothing buffered is lost (and waits for queued error reports). Call before
/// the runtime starts. Without an Extensions API (some local emulators) it logs why and the
/// function runs without the hook.
pub async fn flush_logs_on_shutdown() {
    let hook = || async {
        error_reports::flush_all().await;
        tracing::info!("{SHUTDOWN_LOG}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    };
    // lambda_runtime panics when the extension cannot register; that must not stop the function.
    let registered = std::panic::AssertUnwindSafe(lambda_runtime::spawn_graceful_shutdown_handler(hook)).catch_unwind().await;
    if registered.is_err() {
        tracing::warn!("no graceful-shutdown hook: the Lambda Extensions API refused the registration");
    }
}

tokio::task_local! {
    static TRACE_HEADER: String;
}

/// Runs `f` with an X-Ray trace header (`Root=...;Parent=...;Sampled=...`) as the current one:
/// the HTTP layer scopes a request with Lambda's, a worker a record with its `AWSTraceHeader`.
pub async fn with_trace_header<F: std::future::Future>(header: Option<String>, f: F) -> F::Output {
    match header {
        Some(header) => TRACE_HEADER.scope(header, f).await,
        None => f.await,
    }
}

/// The trace header of the work in hand: the scoped one, else `_X_AMZN_TRACE_ID` (lambda_runtime
/// sets it per invocation when it runs one invocation at a time).
pub fn current_trace_header() -> Option<String> {
    TRACE_HEADER.try_with(String::clone).ok().or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok()).filter(|h| !h.is_empty())
}
