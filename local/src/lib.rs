//! `echo-local`: every router on one port, an embedded S3 endpoint (s3s + s3s-fs, signatures and
//! POST policies checked), the in-process queue, and SQLite, all under one data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use common::blob::Blob;
use common::config::{Settings, StoreSettings};
use common::offload::OffloadPool;
use common::queue::in_process::InProcessQueue;
use common::store::{NewChat, NewProject, SharedStore, SqliteStore, Store};
use common::web::http::CorsPolicy;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub mod embedded_s3;
pub mod local_sqs;

/// The demo project's ids: the same ones `events/` uses, so events replay against a fresh
/// echo-local.
pub const DEMO_PROJECT_ID: &str = "11111111-1111-4111-8111-111111111111";
pub const DEMO_TAG_ID: &str = "22222222-2222-4222-8222-222222222222";
/// A dashboard chat in the demo project (the frontend creates chats; echo-local has no frontend).
pub const DEMO_CHAT_ID: &str = "66666666-6666-4666-8666-666666666666";

const LOCAL_BUCKET: &str = "echo";
const LOCAL_ACCESS_KEY: &str = "echo-local";
const LOCAL_SECRET_KEY: &str = "echo-local-secret";

/// How to start echo-local (flags and env of the binary end up here).
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub api_addr: SocketAddr,
    pub s3_addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Settings from the environment; echo-local fills in what it runs itself.
    pub settings: Settings,
    /// Offload pool for the store (the process-wide one unless a test sizes its own).
    pub pool: Option<OffloadPool>,
    /// Extra time every store call holds its blocking thread (tests and benchmarks).
    pub store_stall: Duration,
    pub seed_demo: bool,
    /// Run the workers in the background (echo-local does; tests drive them with
    /// `Local::run_tasks`).
    pub background_workers: bool,
    /// Retries wait this share of SQS's backoff (15 s doubling up to 900 s).
    pub retry_scale: f64,
}

impl LocalOptions {
    pub fn from_env(settings: Settings) -> anyhow::Result<Self> {
        let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        Ok(LocalOptions {
            api_addr: env("ECHO_LOCAL_ADDR", "127.0.0.1:8000").parse().context("ECHO_LOCAL_ADDR")?,
            s3_addr: env("ECHO_LOCAL_S3_ADDR", "127.0.0.1:8001").parse().context("ECHO_LOCAL_S3_ADDR")?,
            data_dir: PathBuf::from(env("ECHO_LOCAL_DATA_DIR", ".echo-local")),
            settings,
            pool: None,
            store_stall: Duration::ZERO,
            seed_demo: true,
            background_workers: true,
            retry_scale: 0.1,
        })
    }

    /// Random loopback ports and a given data directory: what tests use.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let settings = Settings::from_lookup(|_| None).expect("defaults are valid");
        LocalOptions {
            api_addr: "127.0.0.1:0".parse().unwrap(),
            s3_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.into(),
            settings,
            pool: None,
            store_stall: Duration::ZERO,
            seed_demo: true,
            background_workers: false,
            retry_scale: 0.0,
        }
    }
}

/// A running echo-local.
pub struct Local {
    pub api_url: String,
    pub s3_url: Option<String>,
    pub settings: Arc<Settings>,
    pub store: SharedStore,
    pub queue: InProcessQueue,
    pub state: participant::AppState,
    pub audio_worker: Arc<audio_worker::AudioWorker>,
    pub network_worker: Arc<network_worker::NetworkWorker>,
    tasks: Vec<JoinHandle<()>>,
}

impl Local {
    /// Delivers queued tasks to the workers until none is due (delayed ones wait); how many.
    pub async fn run_tasks(&self) -> usize {
        let max_attempts = self.settings.queues.task_max_attempts;
        self.queue.run_until_idle(&[self.audio_worker.as_ref(), self.network_worker.as_ref()], max_attempts, 100).await
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The OpenAPI document of every function's routes, from the same annotations the routers use.
pub fn openapi() -> utoipa::openapi::OpenApi {
    common::web::openapi::document([
        participant::openapi(),
        conversations::openapi(),
        projects::openapi(),
        stateless::openapi(),
        resources::openapi(),
        chats::openapi(),
    ])
}

/// The API: every function's routes on one router, and `GET /api/openapi.json`.
pub fn api_router(services: common::Services) -> Router {
    let settings = services.settings.clone();
    let document = Arc::new(openapi());
    let routes = participant::routes(participant::AppState::new(services.clone()))
        .merge(conversations::routes(conversations::AppState::new(services.clone())))
        .merge(projects::routes(projects::AppState::new(services.clone())))
        .merge(chats::routes(chats::AppState::new(services.clone())))
        .merge(stateless::routes(stateless::AppState::new(services.clone())))
        // Served from DATABASE_URL when it is set; 503 "Resources are unavailable" otherwise.
        .merge(resources::routes(resources::AppState::new(services)))
        .route("/api/openapi.json", axum::routing::get(move || async move { axum::Json(document.as_ref().clone()) }));
    common::web::http::api_app(routes, &settings)
}

pub async fn start(mut options: LocalOptions) -> anyhow::Result<Local> {
    let data_dir = options.data_dir.clone();
    tokio::fs::create_dir_all(&data_dir).await.with_context(|| format!("creating {}", data_dir.display()))?;
    let mut tasks = Vec::new();

    // Storage: the embedded endpoint unless the environment names a real one.
    let settings = &mut options.settings;
    let mut s3_url = None;
    if settings.s3.endpoint.is_none() {
        let bucket = settings.s3.bucket.get_or_insert_with(|| LOCAL_BUCKET.into()).clone();
        let access = settings.s3.access_key.get_or_insert_with(|| LOCAL_ACCESS_KEY.into()).clone();
        let secret = settings.s3.secret_key.get_or_insert_with(|| LOCAL_SECRET_KEY.into()).clone();
        let listener =
            TcpListener::bind(options.s3_addr).await.with_context(|| format!("binding the S3 endpoint to {}", options.s3_addr))?;
        let addr = listener.local_addr()?;
        let cors = CorsPolicy::new(settings.allowed_origins(), settings.api.disable_cors, CorsPolicy::STORAGE_METHODS);
        let app = embedded_s3::router(embedded_s3::EmbeddedS3 {
            root: data_dir.join("s3"),
            bucket,
            access_key: access,
            secret_key: secret,
            max_upload_bytes: settings.s3.upload_max_bytes,
            cors,
        })
        .await?;
        tasks.push(tokio::spawn(async move {
            // into_make_service: the routes are built once, not per connection (see API below).
            if let Err(err) = axum::serve(listener, app.into_make_service()).await {
                tracing::error!(%err, "embedded S3 endpoint stopped");
            }
        }));
        let url = format!("http://{addr}");
        settings.s3.endpoint = Some(url.clone());
        s3_url = Some(url);
    }
    if let StoreSettings::Sqlite { path } = &mut settings.store
        && std::env::var_os("ECHO_SQLITE_PATH").is_none()
    {
        *path = data_dir.join("echo.sqlite3");
    }

    let settings = Arc::new(options.settings);
    let pool = options.pool.unwrap_or_else(|| common::offload::global().clone());
    let store: SharedStore = match &settings.store {
        StoreSettings::Sqlite { path } => Arc::new(SqliteStore::open_with_stall(path, pool, options.store_stall).await?),
        StoreSettings::Directus { .. } => common::store::connect(&settings).await?,
    };
    if options.seed_demo {
        seed_demo_project(store.as_ref()).await?;
    }
    let blob = Blob::connect(&settings.s3).await?;
    let queue = InProcessQueue::with_retry_scale(options.retry_scale);
    let services = common::Services { store: store.clone(), blob, tasks: Arc::new(queue.clone()), settings: settings.clone() };
    let state = participant::AppState::new(services.clone());

    let listener = TcpListener::bind(options.api_addr).await.with_context(|| format!("binding the API to {}", options.api_addr))?;
    let api_addr = listener.local_addr()?;
    // echo-local's own view of its queue (not part of the API): what waits, what was given up.
    let view = queue.clone();
    let app = api_router(services).route(
        "/_local/queue",
        axum::routing::get(move || {
            let view = view.clone();
            async move {
                let dead: Vec<serde_json::Value> = view
                    .dead_letters()
                    .into_iter()
                    .map(|d| serde_json::json!({"queue": d.queue, "task": d.task, "error": d.error, "body": d.body}))
                    .collect();
                axum::Json(serde_json::json!({"pending": view.pending(), "published": view.snapshot().len(), "dead_letters": dead}))
            }
        }),
    );
    // The SQS endpoint `cargo lambda watch` publishes to, and the figures the functions log as
    // EMF lines in Lambda, in Prometheus' text format.
    let metrics = || async { common::telemetry::metrics::prometheus() };
    let app = app.merge(local_sqs::router(queue.clone())).route("/_local/metrics", axum::routing::get(metrics));
    tasks.push(tokio::spawn(async move {
        // Served as a Router, axum rebuilds the route table for every connection (~25 kB each,
        // docs/benchmarks.md "Memory under load"); into_make_service builds it once.
        if let Err(err) = axum::serve(listener, app.into_make_service()).await {
            tracing::error!(%err, "API server stopped");
        }
    }));

    let audio_worker = Arc::new(audio_worker::AudioWorker::new(state.services.clone()));
    let network_worker = Arc::new(network_worker::NetworkWorker::new(state.services.clone()));
    if options.background_workers {
        let (queue, audio, network, max_attempts) =
            (queue.clone(), audio_worker.clone(), network_worker.clone(), settings.queues.task_max_attempts);
        tasks.push(tokio::spawn(async move {
            loop {
                queue.run_until_idle(&[audio.as_ref(), network.as_ref()], max_attempts, 100).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }
    Ok(Local { api_url: format!("http://{api_addr}"), s3_url, settings, store, queue, state, audio_worker, network_worker, tasks })
}

/// Creates the demo project, its tag and its chat unless they exist.
pub async fn seed_demo_project(store: &dyn Store) -> anyhow::Result<()> {
    if store.get_project(DEMO_PROJECT_ID).await?.is_none() {
        seed_project(store).await?;
    }
    if store.get_chat(DEMO_CHAT_ID).await?.is_none() {
        let chat = NewChat { id: DEMO_CHAT_ID.into(), project_id: DEMO_PROJECT_ID.into(), name: None, auto_select: Some(true) };
        store.create_chat(chat).await?;
    }
    Ok(())
}

async fn seed_project(store: &dyn Store) -> anyhow::Result<()> {
    store
        .create_project(NewProject {
            id: DEMO_PROJECT_ID.into(),
            name: Some("Demo project".into()),
            language: Some("en".into()),
            is_conversation_allowed: true,
            is_get_reply_enabled: Some(true),
            is_project_notification_subscription_allowed: Some(true),
            default_conversation_title: Some("Demo conversation".into()),
            default_conversation_description: Some("Talk about anything; this is echo-local.".into()),
            default_conversation_finish_text: Some("Thank you for recording!".into()),
            image_generation_model: Some("MODEST".into()),
            ..Default::default()
        })
        .await?;
    store.create_project_tag(DEMO_TAG_ID, DEMO_PROJECT_ID, Some("Demo tag"), Some(1)).await?;
    Ok(())
}
