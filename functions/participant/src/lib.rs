//! `/api/participant`: the recording portal's 13 public endpoints (spec/api.md §2.2).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use common::blob::Blob;
use common::config::Settings;
use common::store::SharedStore;
use common::tasks::SharedPublisher;

mod rate_limit;
mod routes;
pub mod schemas;

pub use rate_limit::RateLimiter;

/// Legacy upload-chunk refuses files above this (D15).
pub const DIRECT_UPLOAD_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: SharedStore,
    pub blob: Blob,
    pub tasks: SharedPublisher,
    pub settings: Arc<Settings>,
    pub upload_limiter: Arc<RateLimiter>,
}

impl AppState {
    pub fn new(store: SharedStore, blob: Blob, tasks: SharedPublisher, settings: Arc<Settings>) -> Self {
        let upload_limiter = Arc::new(RateLimiter::new(settings.api.upload_url_rate_limit_per_minute));
        AppState { store, blob, tasks, settings, upload_limiter }
    }

    /// Production wiring: the configured store, S3 and the SQS queues.
    pub async fn connect(settings: Arc<Settings>) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let store = common::store::connect(&settings).await?;
        let blob = Blob::connect(&settings.s3).await?;
        let tasks = common::tasks::connect_sqs(&settings).await?;
        Ok(Self::new(store, blob, tasks, settings))
    }
}

/// The participant routes alone, for mounting beside other groups.
pub fn routes(state: AppState) -> Router {
    use routes::*;
    Router::new()
        .route("/api/participant/projects/{project_id}", get(get_project))
        .route("/api/participant/projects/{project_id}/conversations/initiate", post(initiate_conversation))
        .route("/api/participant/projects/{project_id}/conversations/{conversation_id}", get(get_conversation))
        .route("/api/participant/projects/{project_id}/conversations/{conversation_id}/chunks", get(list_chunks))
        .route("/api/participant/projects/{project_id}/conversations/{conversation_id}/chunks/{chunk_id}", delete(delete_chunk))
        .route("/api/participant/conversations/{conversation_id}/upload-text", post(upload_text))
        .route(
            "/api/participant/conversations/{conversation_id}/upload-chunk",
            // Above our own 4 MiB answer, below Lambda's 6 MB request limit.
            post(upload_chunk).layer(DefaultBodyLimit::max(6 * 1024 * 1024)),
        )
        .route("/api/participant/conversations/{conversation_id}/get-upload-url", post(get_upload_url))
        .route("/api/participant/conversations/{conversation_id}/confirm-upload", post(confirm_upload))
        .route("/api/participant/conversations/{conversation_id}/finish", post(finish_conversation))
        .route("/api/participant/report/subscribe", post(subscribe))
        .route("/api/participant/{project_id}/report/unsubscribe", post(unsubscribe))
        .route("/api/participant/report/unsubscribe/eligibility", get(unsubscribe_eligibility))
        .with_state(state)
}

/// The function's whole router: its routes, `/api/health`, CORS and the shared layers.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    common::http::api_app(routes(state), &settings)
}
