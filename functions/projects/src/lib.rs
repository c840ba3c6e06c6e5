//! `/api/projects`: create and clone projects, export transcripts, reports, and the topic
//! library (spec/api.md §2.4).

use axum::Router;
use common::Services;
use common::providers::llm::LlmClient;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod report;
mod responses;
mod routes;
mod transcripts;

/// What the function refuses to start without (D63): the store, session checks, the network queue,
/// and the MEDIUM slot (reports) with its provider's credential.
pub const REQUIRED_SETTINGS: &[&str] = &["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "NETWORK_QUEUE_URL", "MEDIUM_LITELLM"];

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

/// The project routes with their OpenAPI entries (each handler's `#[utoipa::path]` names its
/// method and path).
pub fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::default()
        .routes(routes!(create_project))
        .routes(routes!(trailing_slash))
        .routes(routes!(transcripts::download))
        .routes(routes!(create_library))
        .routes(routes!(create_view))
        .routes(routes!(report::create_report))
        .routes(routes!(clone_project))
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
