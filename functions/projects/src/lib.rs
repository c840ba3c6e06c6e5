//! `/api/projects`: create and clone projects, export transcripts, reports, and the topic
//! library (spec/api.md §2.4).

use axum::Router;
use axum::routing::{get, post};
use common::Services;
use common::llm::LlmClient;

mod report;
mod routes;
mod transcripts;

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

pub fn routes(state: AppState) -> Router {
    use routes::*;
    Router::new()
        .route("/api/projects", post(create_project))
        .route("/api/projects/", post(trailing_slash))
        .route("/api/projects/{project_id}/transcripts", get(transcripts::download))
        .route("/api/projects/{project_id}/create-library", post(create_library))
        .route("/api/projects/{project_id}/create-view", post(create_view))
        .route("/api/projects/{project_id}/create-report", post(report::create_report))
        .route("/api/projects/{project_id}/clone", post(clone_project))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    common::http::api_app(routes(state), &settings)
}
