//! `/api/conversations`: the dashboard's conversation endpoints, the participant's get-reply
//! stream and the health SSE stream (spec/api.md §2.3).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::routing::{delete, get, post};
use common::Services;
use common::llm::LlmClient;

mod health;
mod reply;
mod routes;

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

pub fn routes(state: AppState) -> Router {
    use routes::*;
    Router::new()
        .route("/api/conversations/health/stream", get(health::stream))
        .route("/api/conversations/{conversation_id}", delete(delete_conversation))
        .route("/api/conversations/{conversation_id}/counts", get(counts))
        .route("/api/conversations/{conversation_id}/content", get(content))
        .route("/api/conversations/{conversation_id}/chunks/{chunk_id}/content", get(chunk_content))
        .route("/api/conversations/{conversation_id}/transcript", get(transcript))
        .route("/api/conversations/{conversation_id}/token-count", get(token_count))
        .route("/api/conversations/{conversation_id}/get-reply", post(reply::get_reply))
        .route("/api/conversations/{conversation_id}/summarize", post(summarize))
        .route("/api/conversations/{conversation_id}/retranscribe", post(retranscribe))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    common::http::api_app(routes(state), &settings)
}
