//! Error reports to Sentry (data-model.md §4.1): panics, 5xx answers and final task failures, when
//! `SENTRY_DSN` is set and `DISABLE_SENTRY` is not; `BUILD_VERSION` is the release. Nothing is
//! created, sent or waited for otherwise.
//!
//! Each request and task runs in an `ErrorScope`: a hub of its own whose events carry its tags
//! (`request_id`, `task`). What it reported is flushed before the request or task returns, so
//! Lambda never freezes the environment with an event still queued; the flush (a wait on the
//! SDK's sender thread) goes through `offload`.

use std::future::Future;
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use sentry::{Hub, Level, SentryFutureExt};

/// How long a request or task waits for its reports to be sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// At shutdown Lambda gives the process 500 ms in all.
const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_millis(300);

static CLIENT: OnceLock<Arc<sentry::Client>> = OnceLock::new();

/// The internal reason of a 5xx answer (web/error.rs puts it on the response), reported instead
/// of the public `detail`.
#[derive(Debug, Clone)]
pub struct FailureReason(pub String);

/// The client the settings ask for: `None` without `SENTRY_DSN` or with `DISABLE_SENTRY` true;
/// an error for a DSN that does not parse. Creating one installs the panic hook.
pub fn client_from(get: impl Fn(&str) -> Option<String>) -> Result<Option<Arc<sentry::Client>>, String> {
    let var = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let Some(dsn) = var("SENTRY_DSN") else { return Ok(None) };
    if crate::config::parse_bool(var("DISABLE_SENTRY").as_deref()) {
        return Ok(None);
    }
    let dsn: sentry::types::Dsn = dsn.parse().map_err(|e| format!("SENTRY_DSN does not parse: {e}"))?;
    let release = var("BUILD_VERSION").unwrap_or_else(|| "dev".into());
    let environment = if release == "dev" { "development" } else { "production" };
    let options = sentry::ClientOptions {
        dsn: Some(dsn),
        release: Some(release.into()),
        environment: Some(environment.into()),
        server_name: var("AWS_LAMBDA_FUNCTION_NAME").map(Into::into),
        // Not the SDK's panic integration: it flushes on the panicking thread, a tokio worker.
        default_integrations: false,
        integrations: vec![Arc::new(sentry::integrations::backtrace::ProcessStacktraceIntegration)],
        ..Default::default()
    };
    install_panic_hook();
    Ok(Some(Arc::new(sentry::Client::from(sentry::apply_defaults(options)))))
}

/// Sets up error reporting from the environment (`telemetry::init_tracing` calls it first
/// thing). A DSN that does not parse is logged and reporting stays off.
pub(crate) fn init() {
    match client_from(|name| std::env::var(name).ok()) {
        Ok(Some(client)) => {
            Hub::main().bind_client(Some(client.clone()));
            let _ = CLIENT.set(client);
            tracing::info!("error reports go to Sentry");
        }
        Ok(None) => {}
        Err(err) => tracing::error!(%err, "error reporting is off"),
    }
}

/// Waits for every queued report to be sent (the shutdown hook calls it).
pub async fn flush_all() {
    if let Some(client) = CLIENT.get() {
        flush_client(client.clone(), SHUTDOWN_FLUSH_TIMEOUT).await;
    }
}

async fn flush_client(client: Arc<sentry::Client>, timeout: Duration) {
    if crate::offload::offload(move || client.flush(Some(timeout))).await.is_err() {
        tracing::warn!("could not wait for the error reports to be sent");
    }
}

/// Captures a panic through the hub of the work in hand (so with its tags), without waiting:
/// the request or task flushes it when it ends.
fn install_panic_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            Hub::with_active(|hub| {
                hub.capture_event(sentry::integrations::panic::PanicIntegration::new().event_from_panic_info(info));
            });
            next(info);
        }));
    });
}

/// The reporting scope of one request or task.
#[derive(Clone)]
pub struct ErrorScope(Arc<Hub>);

impl ErrorScope {
    /// A scope under the current one, its events tagged with `tags` (and the enclosing scope's).
    pub fn new(tags: &[(&str, &str)]) -> Self {
        let scope = ErrorScope(Arc::new(Hub::new_from_top(Hub::current())));
        for (key, value) in tags {
            scope.set_tag(key, value);
        }
        scope
    }

    pub fn set_tag(&self, key: &str, value: &str) {
        if self.is_active() {
            self.0.configure_scope(|scope| scope.set_tag(key, value));
        }
    }

    /// Whether reports go anywhere.
    pub fn is_active(&self) -> bool {
        self.0.client().is_some_and(|c| c.is_enabled())
    }

    /// Runs `f` in this scope: what it reports (a panic included) carries the tags.
    pub fn bind<F: Future>(&self, f: F) -> sentry::SentryFuture<F> {
        f.bind_hub(self.0.clone())
    }

    /// Reports an error message; whether it was taken for sending.
    pub fn report(&self, message: &str) -> bool {
        !self.0.capture_message(message, Level::Error).is_nil()
    }

    /// Waits until what this scope reported is sent; returns at once when it reported nothing.
    pub async fn flush_if_reported(&self) {
        if self.0.last_event_id().is_some()
            && let Some(client) = self.0.client()
        {
            flush_client(client, FLUSH_TIMEOUT).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(vars: &[(&str, &str)]) -> Result<Option<Arc<sentry::Client>>, String> {
        let vars: std::collections::HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        client_from(|name| vars.get(name).cloned())
    }

    const DSN: &str = "http://public@127.0.0.1:9/42";

    #[test]
    fn off_without_a_dsn_or_when_disabled() {
        assert!(client(&[]).unwrap().is_none());
        assert!(client(&[("SENTRY_DSN", "  ")]).unwrap().is_none());
        assert!(client(&[("SENTRY_DSN", DSN), ("DISABLE_SENTRY", "True")]).unwrap().is_none());
        assert!(client(&[("SENTRY_DSN", DSN), ("DISABLE_SENTRY", "1")]).unwrap().is_none());
        assert!(client(&[("SENTRY_DSN", DSN), ("DISABLE_SENTRY", "no")]).unwrap().is_some());
        let err = client(&[("SENTRY_DSN", "not a dsn")]).unwrap_err();
        assert!(err.contains("SENTRY_DSN"), "{err}");
    }

    #[test]
    fn build_version_is_the_release() {
        let on = client(&[("SENTRY_DSN", DSN), ("BUILD_VERSION", "v1.2.3")]).unwrap().unwrap();
        assert_eq!(on.options().release.as_deref(), Some("v1.2.3"));
        assert_eq!(on.options().environment.as_deref(), Some("production"));
        let dev = client(&[("SENTRY_DSN", DSN)]).unwrap().unwrap();
        assert_eq!(dev.options().release.as_deref(), Some("dev"));
        assert_eq!(dev.options().environment.as_deref(), Some("development"));
    }

    #[tokio::test]
    async fn a_scope_without_a_client_reports_nothing() {
        let scope = ErrorScope::new(&[("request_id", "r-1")]);
        assert!(!scope.is_active());
        assert!(!scope.report("nobody hears this"));
        scope.flush_if_reported().await;
    }
}
