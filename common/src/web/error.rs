//! One error type for every HTTP answer that is not a success: always JSON `{"detail": ...}`
//! (spec/api.md §1.4), 503 with `Retry-After` and the dependency's name when one is down.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Dependency;
use crate::blob::BlobError;
use crate::flows::merge::MergeError;
use crate::flows::pipeline::PipelineError;
use crate::flows::summary::SummaryError;
use crate::offload::OffloadError;
use crate::providers::llm::LlmError;
use crate::providers::rag::RagError;
use crate::queue::PublishError;
use crate::store::StoreError;

/// One entry of a FastAPI-shaped 422 body.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValidationIssue {
    #[serde(rename = "type")]
    pub kind: String,
    pub loc: Vec<Value>,
    pub msg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// A 400 whose detail is an object (report subscribe keeps ECHO's shape).
    #[error("bad request: {0}")]
    BadRequestObject(Value),
    #[error("invalid session")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("validation failed")]
    Validation(Vec<ValidationIssue>),
    #[error("{0}")]
    TooManyRequests(String),
    /// 503 naming the setting a feature lacks (an LLM slot without its key): no `Retry-After`,
    /// waiting will not help.
    #[error("{0}")]
    NotConfigured(String),
    #[error("{} ({reason})", .dependency.unavailable_detail())]
    Unavailable { dependency: Dependency, reason: String },
    /// A 500 with a specific detail; `reason` is logged, never sent.
    #[error("{detail}: {reason}")]
    Internal { detail: String, reason: String },
}

impl ApiError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(detail.into())
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::Forbidden(detail.into())
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        Self::Internal { detail: "Internal Server Error".into(), reason: reason.to_string() }
    }
    pub fn internal_with(detail: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Internal { detail: detail.into(), reason: reason.to_string() }
    }
    pub fn unavailable(dependency: Dependency, reason: impl std::fmt::Display) -> Self {
        Self::Unavailable { dependency, reason: reason.to_string() }
    }
    /// A single 422 entry, as FastAPI reports one bad field.
    pub fn invalid(loc: Vec<Value>, kind: &str, msg: impl Into<String>) -> Self {
        Self::Validation(vec![ValidationIssue { kind: kind.into(), loc, msg: msg.into() }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::BadRequestObject(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn detail(&self) -> Value {
        match self {
            ApiError::BadRequestObject(v) => v.clone(),
            ApiError::Unauthorized => json!("Invalid session"),
            ApiError::Validation(issues) => json!(issues),
            ApiError::Unavailable { dependency, .. } => json!(dependency.unavailable_detail()),
            ApiError::Internal { detail, .. } => json!(detail),
            ApiError::BadRequest(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::Conflict(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::TooManyRequests(d)
            | ApiError::NotConfigured(d) => json!(d),
        }
    }
}

/// A JSON `{"detail": ...}` response with any status (also used by the router's fallbacks).
pub fn detail_response(status: StatusCode, detail: Value) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable { dependency, reason } => {
                tracing::warn!(?dependency, %reason, "dependency unavailable")
            }
            ApiError::Internal { reason, .. } => tracing::error!(%reason, "internal error"),
            _ => {}
        }
        let mut response = detail_response(self.status(), self.detail());
        if matches!(self, ApiError::Unavailable { .. }) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if self.status().is_server_error() {
            // What the error report says (web::http's observe), never sent to the client.
            response.extensions_mut().insert(crate::telemetry::error_reports::FailureReason(self.to_string()));
        }
        response
    }
}

// Every conversion into `ApiError` lives here: the HTTP edge sits above the store, storage,
// queue, providers and flows, so none of them imports it (docs/architecture.md, "Errors").

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable { backend, reason } => ApiError::unavailable(backend, reason),
            err @ StoreError::AlreadyExists { .. } => ApiError::Conflict(err.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<OffloadError> for ApiError {
    fn from(err: OffloadError) -> Self {
        ApiError::internal(err)
    }
}

impl From<BlobError> for ApiError {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::Unavailable(reason) => ApiError::unavailable(Dependency::Storage, reason),
            other => ApiError::internal(other),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::Unavailable(reason) => ApiError::unavailable(Dependency::Queue, reason),
            PublishError::Config(reason) => ApiError::internal(reason),
        }
    }
}

impl From<LlmError> for ApiError {
    fn from(err: LlmError) -> Self {
        match err {
            LlmError::Unavailable(reason) => ApiError::unavailable(Dependency::Llm, reason),
            LlmError::NotConfigured(setting) => ApiError::NotConfigured(format!("The LLM is not configured: set {setting}")),
            other => ApiError::internal(other),
        }
    }
}

impl From<RagError> for ApiError {
    fn from(err: RagError) -> Self {
        match err {
            RagError::Unavailable(reason) => ApiError::unavailable(Dependency::Rag, reason),
            other => ApiError::internal(other),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::Store(e) => e.into(),
            PipelineError::Publish(e) => e.into(),
        }
    }
}

impl From<MergeError> for ApiError {
    fn from(err: MergeError) -> Self {
        match err {
            MergeError::NoChunks => ApiError::not_found("Conversation not found"),
            MergeError::NoContent => ApiError::not_found("No content found"),
            MergeError::Failed(reason) => ApiError::bad_request(format!("Failed to merge audio files: {reason}")),
            MergeError::Store(e) => e.into(),
            MergeError::Blob(e) => e.into(),
        }
    }
}

impl From<SummaryError> for ApiError {
    fn from(err: SummaryError) -> Self {
        match err {
            SummaryError::Store(e) => e.into(),
            SummaryError::Llm(e) => e.into(),
            SummaryError::Prompt(e) => ApiError::internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(err: ApiError) -> (StatusCode, Option<String>, Value) {
        let res = err.into_response();
        let status = res.status();
        let retry = res.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_string());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_error_is_json_detail() {
        assert_eq!(
            body(ApiError::not_found("Project not found")).await,
            (StatusCode::NOT_FOUND, None, json!({"detail": "Project not found"}))
        );
        assert_eq!(body(ApiError::Unauthorized).await.2, json!({"detail": "Invalid session"}));
        assert_eq!(
            body(ApiError::internal_with("Failed to confirm upload", "secret reason")).await,
            (StatusCode::INTERNAL_SERVER_ERROR, None, json!({"detail": "Failed to confirm upload"}))
        );
    }

    #[tokio::test]
    async fn outage_is_503_naming_the_backend() {
        let (status, retry, value) = body(ApiError::unavailable(Dependency::Storage, "connection refused")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry.as_deref(), Some("5"));
        assert_eq!(value, json!({"detail": "Storage is unavailable, please try again later"}));
    }

    #[tokio::test]
    async fn validation_has_fastapi_shape() {
        let (status, _, value) = body(ApiError::invalid(vec![json!("body"), json!("name")], "missing", "Field required")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(value, json!({"detail": [{"type": "missing", "loc": ["body", "name"], "msg": "Field required"}]}));
    }
}
