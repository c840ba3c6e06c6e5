//! The Postgres client behind the `document` table, shaped for Lambda.
//!
//! Why tokio-postgres (with tokio-postgres-rustls): it is async on the runtime the function
//! already runs (nothing to offload), speaks TLS through rustls (no OpenSSL in the
//! provided.al2023 image), and is a single connection object with no pool. One execution
//! environment runs one request at a time (or a few that pipeline over the same connection in
//! multi-concurrency mode), so a pool would only hold idle connections against the database's
//! limit. sqlx would bring its own pool, macros and a larger dependency tree for four statements.
//! Every statement goes through `query_typed`: an unnamed statement with typed parameters in one
//! round trip, so no prepared statement lives on the session (RDS Proxy pins sessions that
//! hold one) and no `SET` is ever sent.
//!
//! The connection is opened on first use and kept for the life of the execution environment. A
//! connection found closed is reopened before use; one that fails under a statement is dropped
//! and the statement is tried once more on a fresh connection (every statement here is
//! idempotent: a read, an update to the same values, a delete of one id). Opening and each
//! statement are bounded by `DATABASE_TIMEOUT_SECONDS`; a statement over it is cancelled on the
//! server and its connection dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No usable `DATABASE_URL`.
    #[error("DATABASE_URL is not configured")]
    NotConfigured,
    /// Cannot connect, connection lost, timed out, or the table is missing: answered as 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bug, a row that does not fit): answered as 500.
    #[error("database error: {0}")]
    Other(String),
}

/// The database handle every request shares; cheap to clone.
#[derive(Clone)]
pub struct Database(Option<Arc<Connection>>);

struct Connection {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    timeout: Duration,
    client: Mutex<Option<Arc<Client>>>,
}

impl Database {
    /// Answers every call with `NotConfigured`.
    pub fn unconfigured() -> Self {
        Database(None)
    }

    /// Parses the URL; nothing connects until the first statement.
    pub fn from_url(url: &str, timeout: Duration) -> Result<Self, DbError> {
        let mut config: tokio_postgres::Config =
            libpq_ssl_modes(url).parse().map_err(|e| DbError::Other(format!("DATABASE_URL does not parse: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("echo-lambda-resources");
        }
        let tls = MakeRustlsConnect::new(tls_config());
        Ok(Database(Some(Arc::new(Connection { config, tls, timeout, client: Mutex::new(None) }))))
    }

    /// Runs one statement and returns its rows.
    pub async fn query(&self, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>, DbError> {
        let conn = self.0.as_ref().ok_or(DbError::NotConfigured)?;
        let (client, fresh) = conn.client().await?;
        match conn.run(&client, sql, params).await {
            Err(Failure::Lost(reason)) if !fresh => {
                tracing::info!(%reason, "database connection lost; reconnecting once");
                conn.forget(&client).await;
                let (client, _) = conn.client().await?;
                conn.run(&client, sql, params).await.map_err(|f| f.into_error())
            }
            other => other.map_err(|f| f.into_error()),
        }
    }
}

/// Why a statement failed, for the retry decision.
enum Failure {
    /// The connection is gone (closed, I/O error, terminated by the server, timed out).
    Lost(String),
    Error(DbError),
}

impl Failure {
    fn into_error(self) -> DbError {
        match self {
            Failure::Lost(reason) => DbError::Unavailable(reason),
            Failure::Error(e) => e,
        }
    }
}

impl Connection {
    /// The open connection, or a new one (`true` when new).
    async fn client(&self) -> Result<(Arc<Client>, bool), DbError> {
        // Held while connecting, so concurrent requests share one new connection; waiting for it
        // is bounded too, so requests queued behind a hanging connect do not add up.
        let waited = tokio::time::timeout(self.timeout, self.client.lock()).await;
        let mut slot = waited.map_err(|_| DbError::Unavailable(format!("waited over {:?} for the connection", self.timeout)))?;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok((client.clone(), false));
        }
        let connecting = self.config.connect(self.tls.clone());
        let (client, connection) = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(DbError::Unavailable(format!("connecting: {e}"))),
            Err(_) => return Err(DbError::Unavailable(format!("connecting took over {:?}", self.timeout))),
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "database connection ended");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok((client, true))
    }

    /// Drops `client` from the slot unless a newer one already replaced it.
    async fn forget(&self, client: &Arc<Client>) {
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
    }

    async fn run(&self, client: &Arc<Client>, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>, Failure> {
        match tokio::time::timeout(self.timeout, client.query_typed(sql, params)).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) if connection_lost(&e) => {
                self.forget(client).await;
                Err(Failure::Lost(e.to_string()))
            }
            Ok(Err(e)) => Err(Failure::Error(classify(&e))),
            Err(_) => {
                // Stop the statement on the server too; the connection is not reused either way.
                let (token, tls) = (client.cancel_token(), self.tls.clone());
                let limit = self.timeout;
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(limit, token.cancel_query(tls)).await;
                });
                self.forget(client).await;
                Err(Failure::Error(DbError::Unavailable(format!("statement took over {:?}", self.timeout))))
            }
        }
    }
}

/// Errors after which the connection cannot be used again.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let code = e.code().map(SqlState::code).unwrap_or_default();
    e.is_closed() || io || code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

/// Server answers that mean "the database cannot serve documents now", not a bug here: no such
/// table or column (the schema is not there), no access, too many connections, shutting down,
/// cancelled, a read-only replica after a failover.
fn classify(e: &tokio_postgres::Error) -> DbError {
    let unavailable = match e.code().map(SqlState::code) {
        Some(code) => {
            ["08", "53", "57", "28", "3D"].iter().any(|class| code.starts_with(class))
                || matches!(code, "42P01" | "42703" | "42501" | "25006")
        }
        None => false,
    };
    if unavailable { DbError::Unavailable(e.to_string()) } else { DbError::Other(e.to_string()) }
}

/// libpq's `verify-ca` / `verify-full` and `allow` mean nothing to tokio-postgres's URL parser.
/// The rustls connector always verifies the chain and the host name, so both verify modes are
/// its `require`; `allow` becomes `prefer`.
fn libpq_ssl_modes(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_string() };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair {
            "sslmode=verify-full" | "sslmode=verify-ca" => "sslmode=require".to_string(),
            "sslmode=allow" => "sslmode=prefer".to_string(),
            other => other.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Mozilla's roots, compiled in (no file read at start-up). RDS Proxy presents an ACM
/// certificate that chains to them; a direct RDS endpoint uses the RDS CA, which does not.
fn tls_config() -> rustls::ClientConfig {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    // ring explicitly: aws-sdk brings aws-lc-rs too, so there is no single process default.
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_ssl_modes_map_to_what_tokio_postgres_parses() {
        assert_eq!(libpq_ssl_modes("postgresql://u:p@h/db"), "postgresql://u:p@h/db");
        assert_eq!(libpq_ssl_modes("postgresql://h/db?sslmode=verify-full&x=1"), "postgresql://h/db?sslmode=require&x=1");
        assert_eq!(libpq_ssl_modes("postgresql://h/db?a=b&sslmode=verify-ca"), "postgresql://h/db?a=b&sslmode=require");
        assert_eq!(libpq_ssl_modes("postgresql://h/db?sslmode=allow"), "postgresql://h/db?sslmode=prefer");
        for url in ["postgresql://h/db?sslmode=verify-full", "postgres://u:p@h:5432/db?sslmode=disable"] {
            assert!(Database::from_url(url, Duration::from_secs(1)).is_ok(), "{url}");
        }
        assert!(matches!(Database::from_url("postgresql://h/db?sslmode=bogus", Duration::from_secs(1)), Err(DbError::Other(_))));
    }

    #[tokio::test]
    async fn without_a_url_every_statement_is_not_configured() {
        let err = Database::unconfigured().query("SELECT 1", &[]).await.unwrap_err();
        assert!(matches!(err, DbError::NotConfigured));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_an_error() {
        // A port nothing listens on: the connection is refused at once.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let db = Database::from_url(&format!("postgresql://echo@127.0.0.1:{port}/echo"), Duration::from_secs(2)).unwrap();
        let err = db.query("SELECT 1", &[]).await.unwrap_err();
        assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    }
}
