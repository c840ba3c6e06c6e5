//! `/api/chats`: the dashboard's "Ask" page (spec/api.md §2.5): the chat's context, adding and
//! removing context conversations, locking them, and the streamed answer with auto-select.

use axum::Router;
use common::Services;
use common::providers::llm::LlmClient;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod answer;
pub mod auto_select;
mod context;
mod responses;
mod routes;
mod selection;
mod system;

/// What the function refuses to start without (D63): the store, session checks, and the SMALL
/// (titles, follow-ups, auto-select) and chat-answer slots, each with its provider's credential.
pub const REQUIRED_SETTINGS: &[&str] = &["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "SMALL_LITELLM", "LIGHTRAG_LITELLM_INFERENCE"];

/// `MAX_CHAT_CONTEXT_LENGTH`: the token budget of a chat's context.
pub const MAX_CHAT_CONTEXT_LENGTH: usize = 100_000;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub llm: LlmClient,
}

common::deref_to_services!(AppState);

impl AppState {
    pub fn new(services: Services) -> Self {
        AppState { llm: LlmClient::from_settings(&services.settings), services }
    }
}

/// The chat routes with their OpenAPI entries.
pub fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::default()
        .routes(routes!(get_context))
        .routes(routes!(add_context))
        .routes(routes!(delete_context))
        .routes(routes!(lock_conversations))
        .routes(routes!(answer::post_chat))
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
