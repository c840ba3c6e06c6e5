//! What the framework rejects before a handler runs comes out as the API's JSON errors (D1):
//! a path that is not UTF-8 reaches its route as one (so a bad id is that route's own 404), a
//! body that cannot be read is a 413 or 422, and any plain-text error left is wrapped.

use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::json;

use crate::web::error::{ApiError, detail_response};

/// What a path segment re-encodes (RFC 3986 `pchar` keeps the rest).
const SEGMENT: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}').add(b'%');

/// Segments whose percent-decoding is not UTF-8 are replaced by their lossy decoding (U+FFFD for
/// the bad bytes), re-encoded: the route still matches and its handler sees an id that is no key.
pub fn utf8_path(mut req: Request) -> Request {
    let path = req.uri().path();
    if percent_decode_str(path).decode_utf8().is_ok() {
        return req;
    }
    let fixed: Vec<String> = path
        .split('/')
        .map(|segment| {
            let bytes: Vec<u8> = percent_decode_str(segment).collect();
            match std::str::from_utf8(&bytes) {
                Ok(_) => segment.to_string(),
                Err(_) => utf8_percent_encode(&String::from_utf8_lossy(&bytes), SEGMENT).to_string(),
            }
        })
        .collect();
    let mut target = fixed.join("/");
    if let Some(query) = req.uri().query() {
        target = format!("{target}?{query}");
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(path_and_query) = target.parse() {
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// A body that could not be read: 413 past the route's limit, else a 422 naming the body.
pub fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("Request body too large".into())
    } else {
        ApiError::invalid(vec![json!("body")], "body_read", rejection.body_text())
    }
}

/// The last net: an error answer that is not JSON (an extractor's plain-text rejection) becomes
/// `{"detail": <its text>}` with the same status and headers.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("Error").to_string() } else { text };
    tracing::info!(status = status.as_u16(), %detail, "a plain-text rejection answered as JSON");
    let mut out = detail_response(status, json!(detail));
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn fixed(uri: &str) -> String {
        utf8_path(Request::get(uri).body(Body::empty()).unwrap()).uri().to_string()
    }

    #[test]
    fn only_segments_that_are_not_utf8_change() {
        assert_eq!(fixed("/api/participant/projects/abc?x=%FF"), "/api/participant/projects/abc?x=%FF");
        assert_eq!(fixed("/api/participant/projects/%FF"), "/api/participant/projects/%EF%BF%BD");
        assert_eq!(fixed("/a/%C3%A9/%C3%28/b?q=1"), "/a/%C3%A9/%EF%BF%BD(/b?q=1");
    }
}
