//! `/api/stateless` (api.md §2.6): the RunPod transcription webhook, and the four RAG routes
//! over LightRAG's server (`rag_routes`, their operations in `rag`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::Services;
use common::providers::llm::LlmClient;
use common::providers::rag::RagIndex;
use common::web::error::detail_response;
use common::web::http::QueryParams;
use serde_json::{Value, json};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub mod rag;
mod rag_routes;
mod responses;
/// What the function refuses to start without (D63); S3 and both queue URLs only because
/// `Services::connect` builds every client.
pub const REQUIRED_SETTINGS: &[&str] =
    &["DIRECTUS_TOKEN", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL"];

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    /// LightRAG's server; `None` without `LIGHTRAG_SERVER_URL` (the RAG routes answer 503).
    pub rag: Option<Arc<dyn RagIndex>>,
    /// simple_query's model (the LIGHTRAG_LITELLM_INFERENCE slot).
    pub llm: LlmClient,
}

common::deref_to_services!(AppState);

impl AppState {
    pub fn new(services: Services) -> Self {
        let rag = common::providers::rag::from_settings(&services.settings.rag).unwrap_or_else(|err| {
            tracing::error!(%err, "LIGHTRAG_SERVER_URL is unusable; the RAG routes answer 503");
            None
        });
        AppState { llm: LlmClient::from_settings(&services.settings), rag, services }
    }
}

/// The stateless routes with their OpenAPI entries (each handler's `#[utoipa::path]`).
pub fn api() -> OpenApiRouter<AppState> {
    // A status payload with segments can be large; Lambda's own limit is 6 MB.
    use rag_routes::*;
    OpenApiRouter::default()
        .routes(routes!(webhook_transcribe).layer(DefaultBodyLimit::max(6 * 1024 * 1024)))
        .routes(routes!(rag_insert).layer(DefaultBodyLimit::max(6 * 1024 * 1024)))
        .routes(routes!(rag_simple_query))
        .routes(routes!(rag_get_lightrag_prompt))
        .routes(routes!(rag_delete_conversation))
}

/// The stateless routes alone, for mounting beside other groups.
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

/// Constant-time comparison, so the answer time does not leak how much of a guess was right.
fn same_secret(given: &str, secret: &str) -> bool {
    let (a, b) = (given.as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `X-Webhook-Token` or `?token=` must equal `RUNPOD_WEBHOOK_SECRET`; no secret refuses all (D21).
fn authorized(state: &AppState, headers: &HeaderMap, query: &QueryParams) -> bool {
    let Some(secret) = state.settings.api.runpod_webhook_secret.as_deref() else { return false };
    let header = headers.get("x-webhook-token").and_then(|v| v.to_str().ok());
    [header, query.str("token")].into_iter().flatten().any(|token| same_secret(token, secret))
}

/// `POST /api/stateless/webhook/transcribe`: RunPod's job result, handled inline (§5.4). Ignored
/// payloads still answer 200 `null`; only transient failures answer 503, so RunPod retries (D14).
#[utoipa::path(
    post,
    path = "/api/stateless/webhook/transcribe",
    tag = "stateless",
    params(
        ("token" = Option<String>, Query, description = "The shared secret, when not sent as X-Webhook-Token"),
    ),
    request_body(content = Object, description = "RunPod's job status object: id, status, output", content_type = "application/json"),
    responses(
        (
            status = 200,
            description = "JSON null, also for payloads that are ignored (another job, no chunk)",
            body = Option<String>,
            example = json!(null),
        ),
        (status = 401, description = "Invalid webhook token", body = common::web::openapi::ErrorBody),
    ),
    security(("webhook_token" = [])),
)]
async fn webhook_transcribe(State(state): State<AppState>, headers: HeaderMap, query: QueryParams, body: Bytes) -> Response {
    if !authorized(&state, &headers, &query) {
        tracing::warn!("RunPod webhook with a missing or wrong token");
        return detail_response(StatusCode::UNAUTHORIZED, json!("Invalid webhook token"));
    }
    // A result with segments can be megabytes: parse it off the async workers.
    let payload: Value = if body.len() > 64 * 1024 {
        match common::offload::offload(move || serde_json::from_slice(&body).unwrap_or(Value::Null)).await {
            Ok(payload) => payload,
            Err(err) => return common::ApiError::from(err).into_response(),
        }
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    match common::flows::runpod_completion::complete(&state.services, &payload).await {
        Ok(completion) => {
            tracing::info!(?completion, job = payload.get("id").and_then(serde_json::Value::as_str), "RunPod webhook handled");
            axum::Json(Value::Null).into_response()
        }
        Err(err) => common::ApiError::from(err).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
        assert!(!same_secret("s3cret!", "s3cret"));
        assert!(!same_secret("", "s3cret"));
    }
}
