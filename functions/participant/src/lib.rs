//! `/api/participant`: the recording portal's 13 public endpoints (spec/api.md §2.2).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use common::Services;

mod rate_limit;
mod routes;
pub mod schemas;

pub use rate_limit::RateLimiter;

/// Legacy upload-chunk refuses files above this (D15).
pub const DIRECT_UPLOAD_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub upload_limiter: Arc<RateLimiter>,
}

common::deref_to_services!(AppState);

impl AppState {
    pub fn new(services: Services) -> Self {
        let upload_limiter = Arc::new(RateLimiter::new(services.settings.api.upload_url_rate_limit_per_minute));
        AppState { services, upload_limiter }
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
