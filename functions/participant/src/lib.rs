//! `/api/participant`: the recording portal's 13 public endpoints (spec/api.md §2.2).

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use common::Services;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

mod rate_limit;
mod responses;
mod routes;
pub mod schemas;
mod upload;

pub use rate_limit::RateLimiter;

/// What the function refuses to start without (D63): the store, storage, and the queues it publishes to.
pub const REQUIRED_SETTINGS: &[&str] =
    &["DIRECTUS_TOKEN", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL"];

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

/// The participant routes with their OpenAPI entries: each handler's `#[utoipa::path]` names its
/// method and path, so a route is written once.
pub fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::default()
        .routes(routes!(get_project))
        .routes(routes!(initiate_conversation))
        .routes(routes!(get_conversation))
        .routes(routes!(list_chunks))
        .routes(routes!(delete_chunk))
        .routes(routes!(upload_text))
        // Above our own 4 MiB answer, below Lambda's 6 MB request limit.
        .routes(routes!(upload_chunk).layer(DefaultBodyLimit::max(6 * 1024 * 1024)))
        .routes(routes!(get_upload_url))
        .routes(routes!(confirm_upload))
        .routes(routes!(finish_conversation))
        .routes(routes!(subscribe))
        .routes(routes!(unsubscribe))
        .routes(routes!(unsubscribe_eligibility))
}

/// The participant routes alone, for mounting beside other groups.
pub fn routes(state: AppState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

/// The function's whole router: its routes, `/api/health`, CORS and the shared layers.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    common::web::http::api_app(routes(state), &settings)
}
