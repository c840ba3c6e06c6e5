//! `/api/conversations`: the dashboard's conversation endpoints, the participant's get-reply
//! stream and the health SSE stream (spec/api.md §2.3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use common::Services;
use common::providers::llm::LlmClient;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod health;
mod reply;
mod responses;
mod retranscribe;
mod routes;

/// What the function refuses to start without (D63): the store, session checks, storage, the queues,
/// and the MEDIUM (get-reply) and summary slots, each with its provider's credential.
pub const REQUIRED_SETTINGS: &[&str] = &[
    "DIRECTUS_TOKEN",
    "DIRECTUS_SECRET",
    "STORAGE_S3_BUCKET",
    "STORAGE_S3_ENDPOINT",
    "AUDIO_QUEUE_URL",
    "NETWORK_QUEUE_URL",
    "MEDIUM_LITELLM",
    "SUMMARY_LITELLM",
];

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub llm: LlmClient,
    /// token-count answers per conversation, kept 500 s in this execution environment.
    token_counts: Arc<Mutex<HashMap<String, (usize, Instant)>>>,
}

common::deref_to_services!(AppState);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState { llm: LlmClient::from_settings(&services.settings), services, token_counts: Arc::default() }
    }
}

/// The conversation routes with their OpenAPI entries (each handler's `#[utoipa::path]` names
/// its method and path). The literal health/stream path wins over `{conversation_id}` in axum.
pub fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::default()
        .routes(routes!(health::stream))
        .routes(routes!(delete_conversation))
        .routes(routes!(counts))
        .routes(routes!(content))
        .routes(routes!(chunk_content))
        .routes(routes!(transcript))
        .routes(routes!(token_count))
        .routes(routes!(reply::get_reply))
        .routes(routes!(summarize))
        .routes(routes!(retranscribe))
}

pub fn routes(state: AppState) -> Router {
    api().split_for_parts().0.with_state(state)
}

/// This group's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().into_openapi()
}

pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    common::web::http::api_app(routes(state), &settings)
}
