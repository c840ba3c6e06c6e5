//! The legacy upload-chunk form as an extractor: the audio file, its timestamp and source.

use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use chrono::{DateTime, Utc};
use common::ApiError;
use serde_json::json;

/// A read upload-chunk form. Fields are checked as they arrive; a missing file is reported before
/// a missing timestamp.
pub struct ChunkUpload {
    pub file_name: String,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
    pub timestamp: DateTime<Utc>,
    pub source: Option<String>,
}

impl<S: Send + Sync> FromRequest<S> for ChunkUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body that is not multipart has none of the form's fields (422, as FastAPI answers).
        let form = Multipart::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::invalid(vec![json!("body")], "multipart", rejection.body_text()))?;
        read_form(form).await
    }
}

async fn read_form(mut form: Multipart) -> Result<ChunkUpload, ApiError> {
    let mut file: Option<(String, Option<String>, Vec<u8>)> = None;
    let mut timestamp = None;
    let mut source = None;
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "chunk" => {
                let name = field.file_name().unwrap_or("chunk").to_string();
                let content_type = field.content_type().map(str::to_string);
                let mut data = Vec::new();
                while let Some(bytes) = field.chunk().await.map_err(multipart_error)? {
                    data.extend_from_slice(&bytes);
                    if data.len() > crate::DIRECT_UPLOAD_MAX_BYTES {
                        return Err(too_large());
                    }
                }
                file = Some((name, content_type, data));
            }
            "timestamp" => {
                let text = field.text().await.map_err(multipart_error)?;
                let parsed = common::datetime::parse(&text).ok_or_else(|| {
                    ApiError::invalid(vec![json!("body"), json!("timestamp")], "datetime_parsing", "Input should be a valid datetime")
                })?;
                timestamp = Some(parsed);
            }
            "source" => source = Some(field.text().await.map_err(multipart_error)?),
            _ => {}
        }
    }
    let (file_name, content_type, data) =
        file.ok_or_else(|| ApiError::invalid(vec![json!("body"), json!("chunk")], "missing", "Field required"))?;
    let timestamp = timestamp.ok_or_else(|| ApiError::invalid(vec![json!("body"), json!("timestamp")], "missing", "Field required"))?;
    Ok(ChunkUpload { file_name, content_type, data, timestamp, source })
}

fn multipart_error(err: MultipartError) -> ApiError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::invalid(vec![json!("body")], "multipart", err.body_text())
    }
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge("File too large for direct upload. Use get-upload-url instead.".into())
}
