//! `/api/resources`: ECHO's legacy project documents (PDFs), rows of the Postgres table
//! `document` beside Directus (spec/api.md §2.7, data-model.md §3.20). The only function that
//! talks to Postgres, so its client lives here (`db`).

use std::time::Duration;

use axum::Router;
use common::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod db;
pub mod documents;
mod responses;
mod routes;

pub use db::{Database, DbError};

/// What the function refuses to start without (D63): S3 for the content redirect; the queue URLs
/// only because `Services::connect` builds every client. `DATABASE_URL` unset is a 503, not a refusal.
pub const REQUIRED_SETTINGS: &[&str] =
    &["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL"];

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub db: Database,
}

common::deref_to_services!(AppState);

impl AppState {
    /// echo-local and tests: without a usable `DATABASE_URL` the routes answer 503.
    pub fn new(services: Services) -> Self {
        let db = database(&services).unwrap_or_else(|err| {
            tracing::error!(%err, "DATABASE_URL is unusable; /api/resources answers 503");
            Database::unconfigured()
        });
        AppState { services, db }
    }

    /// The Lambda: a `DATABASE_URL` that does not parse stops the start-up (D63); an unset one
    /// is allowed (the routes answer 503, as data-model.md §4.11 makes it optional).
    pub fn try_new(services: Services) -> Result<Self, DbError> {
        let db = database(&services)?;
        Ok(AppState { services, db })
    }
}

fn database(services: &Services) -> Result<Database, DbError> {
    let settings = &services.settings.database;
    match &settings.url {
        Some(url) => Database::from_url(url, Duration::from_secs(settings.timeout_seconds)),
        None => {
            tracing::info!("DATABASE_URL is not set; /api/resources answers 503");
            Ok(Database::unconfigured())
        }
    }
}

/// The resource routes with their OpenAPI entries (each handler's `#[utoipa::path]`).
pub fn api() -> OpenApiRouter<AppState> {
    use routes::*;
    OpenApiRouter::default().routes(routes!(get_resource, update_resource, delete_resource)).routes(routes!(resource_content))
}

/// The resource routes alone, for mounting beside other groups.
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
