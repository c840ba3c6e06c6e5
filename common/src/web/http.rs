//! Router pieces every HTTP function shares: `/api/health`, CORS, `X-Process-Time`, request ids
//! and spans, JSON 404/405/500 answers, FastAPI-shaped 422s, and the Lambda glue.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::telemetry::error_reports::{ErrorScope, FailureReason};
use crate::web::error::{ApiError, ValidationIssue, detail_response};

pub const X_PROCESS_TIME: HeaderName = HeaderName::from_static("x-process-time");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Answers without touching any dependency.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "health",
    responses(
        (status = 200, description = "Always", body = Object, example = json!({"status": "ok"})),
    ),
)]
async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /api/health` with its OpenAPI entry.
pub fn health_api<S: Clone + Send + Sync + 'static>() -> utoipa_axum::router::OpenApiRouter<S> {
    utoipa_axum::router::OpenApiRouter::default().routes(utoipa_axum::routes!(health))
}

/// `GET /api/health`.
pub fn health_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    health_api().split_for_parts().0
}

/// Who may call with credentials from a browser.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<String>,
    any_origin: bool,
    methods: &'static str,
    /// The session cookie: a state-changing request carrying it from another origin is refused.
    session_cookie: Option<String>,
}

impl CorsPolicy {
    pub const API_METHODS: &'static str = "GET, POST, PUT, DELETE, OPTIONS";
    pub const STORAGE_METHODS: &'static str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";

    pub fn new(origins: Vec<String>, any_origin: bool, methods: &'static str) -> Self {
        let origins = origins.into_iter().map(|o| o.trim_end_matches('/').to_string()).collect();
        CorsPolicy { origins, any_origin, methods, session_cookie: None }
    }

    /// Refuses cookie-authenticated `POST`/`PUT`/`PATCH`/`DELETE` whose `Origin` is not allowed:
    /// a foreign page can make a browser send those without a preflight (cross-site form posts).
    pub fn with_session_cookie(mut self, name: impl Into<String>) -> Self {
        self.session_cookie = Some(name.into());
        self
    }

    fn carries_session_cookie(&self, headers: &HeaderMap) -> bool {
        let Some(name) = &self.session_cookie else { return false };
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .any(|(n, v)| n.trim() == name && !v.trim().is_empty())
    }

    pub fn allows(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }
}

/// Echoes an allowed `Origin` with credentials (never `*`), answers preflights itself, refuses
/// cookie-authenticated changes from other origins; every answer varies by `Origin`.
pub async fn cors(State(policy): State<CorsPolicy>, req: Request, next: Next) -> Response {
    let mut res = cors_inner(&policy, req, next).await;
    res.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
    res
}

async fn cors_inner(policy: &CorsPolicy, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let allowed = policy.allows(&origin);
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && !allowed && policy.carries_session_cookie(req.headers()) {
        tracing::warn!(%origin, method = %req.method(), "cookie-authenticated request from a disallowed origin refused");
        return detail_response(StatusCode::FORBIDDEN, json!("Disallowed CORS origin"));
    }
    let is_preflight = req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if is_preflight {
        if !allowed {
            tracing::info!(%origin, "CORS preflight from a disallowed origin");
            return detail_response(StatusCode::BAD_REQUEST, json!("Disallowed CORS origin"));
        }
        let mut res = StatusCode::OK.into_response();
        let h = res.headers_mut();
        put_allow_origin(h, &origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(policy.methods));
        if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        return res;
    }
    let mut res = next.run(req).await;
    if allowed {
        // Exposing "*" means nothing to a credentialed request, so name every header sent.
        // The outer layer adds the process time and request id after this one runs.
        let mut names: Vec<String> = res.headers().keys().map(|k| k.as_str().to_string()).collect();
        names.extend([X_PROCESS_TIME.as_str().to_string(), X_REQUEST_ID.as_str().to_string()]);
        let h = res.headers_mut();
        put_allow_origin(h, &origin);
        if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
    res
}

fn put_allow_origin(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
}

/// The longest caller-sent `X-Request-Id` that is logged and echoed; others get a new id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

fn caller_request_id(req: &Request) -> Option<String> {
    let id = req.headers().get(X_REQUEST_ID)?.to_str().ok()?;
    let plain = !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic());
    plain.then(|| id.to_string())
}

/// Request id (API Gateway's, else the caller's `X-Request-Id`, else new), a span carrying it,
/// `X-Process-Time`, a JSON 500 for a panicking handler, and an error report for a 5xx (the
/// panic itself when there was one), sent before the answer leaves.
async fn observe(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = lambda_request_id(&req).or_else(|| caller_request_id(&req)).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // lambda_http copies the invocation's X-Ray header into the request; tasks published carry it.
    let trace = req.headers().get("x-amzn-trace-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        trace_header = tracing::field::Empty
    );
    if let Some(trace) = &trace {
        span.record("trace_header", trace.as_str());
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let reports = ErrorScope::new(&[("request_id", &request_id)]);
    let run = reports.bind(std::panic::AssertUnwindSafe(next.run(req)).catch_unwind()).instrument(span.clone());
    let outcome = crate::telemetry::with_trace_header(trace, run).await;
    let panicked = outcome.is_err();
    let mut res = outcome.unwrap_or_else(|panic| {
        let reason =
            panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
        span.in_scope(|| tracing::error!(%reason, "handler panicked"));
        detail_response(StatusCode::INTERNAL_SERVER_ERROR, json!("Internal Server Error"))
    });
    if res.status().is_server_error() && !panicked {
        let reason = res.extensions().get::<FailureReason>().map_or("", |r| r.0.as_str());
        reports.report(&format!("{method} {path} answered {}: {reason}", res.status().as_u16()));
    }
    reports.flush_if_reported().await;
    let elapsed = format!("{:.6}", started.elapsed().as_secs_f64());
    let h = res.headers_mut();
    h.insert(X_PROCESS_TIME, HeaderValue::from_str(&elapsed).expect("a number is a valid header"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(X_REQUEST_ID, v);
    }
    span.in_scope(|| tracing::info!(status = res.status().as_u16(), process_time = %elapsed, "request done"));
    res
}

fn lambda_request_id(req: &Request) -> Option<String> {
    use lambda_http::request::RequestContext;
    match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV1(ctx) => ctx.request_id.clone(),
        RequestContext::ApiGatewayV2(ctx) => ctx.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Adds what every function's router needs around its own routes.
pub fn finish_router(routes: Router, cors_policy: CorsPolicy) -> Router {
    let routes = routes
        .fallback(|| async { detail_response(StatusCode::NOT_FOUND, json!("Not Found")) })
        .method_not_allowed_fallback(|| async { detail_response(StatusCode::METHOD_NOT_ALLOWED, json!("Method Not Allowed")) });
    // The path is made UTF-8 before routing, so a path id that is not answers the route's own 404.
    let routes = tower::ServiceExt::map_request(routes, crate::web::rejections::utf8_path);
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(crate::web::rejections::json_errors))
        .layer(middleware::from_fn_with_state(cors_policy, cors))
        .layer(middleware::from_fn(observe))
}

/// An HTTP function's whole app: its routes, `/api/health`, and the shared layers with the
/// API's CORS origins, and the request metrics.
pub fn api_app(routes: Router, settings: &crate::config::Settings) -> Router {
    let cors = CorsPolicy::new(settings.allowed_origins(), settings.api.disable_cors, CorsPolicy::API_METHODS)
        .with_session_cookie(settings.auth.session_cookie_name.clone());
    finish_router(routes.merge(health_routes()), cors).layer(middleware::from_fn(count_request))
}

/// Status class and latency (to the response head; a stream's body is not waited for) by API
/// group, as EMF (`telemetry::metrics`).
async fn count_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    crate::telemetry::metrics::api_request(&path, res.status().as_u16(), started.elapsed());
    res
}

/// Hands a router to the Lambda runtime; concurrent when `AWS_LAMBDA_MAX_CONCURRENCY` > 1.
/// Buffered responses only: the body is collected, then lambda_http picks text or base64 by
/// content type.
pub async fn run_lambda(router: Router) -> Result<(), lambda_http::Error> {
    use tower::ServiceExt;
    crate::telemetry::flush_logs_on_shutdown().await;
    let handler = tower::service_fn(move |req: lambda_http::Request| {
        let router = router.clone();
        async move {
            let res = router.oneshot(req).await.unwrap_or_else(|never| match never {});
            let (parts, body) = res.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await?;
            Ok::<_, lambda_http::Error>(lambda_http::Response::from_parts(parts, lambda_http::Body::from(bytes.to_vec())))
        }
    });
    lambda_http::run_concurrent(handler).await
}

/// For functions with streaming routes: every response of the function streams (API Gateway
/// invokes it with InvokeWithResponseStream), for up to 15 minutes.
pub async fn run_lambda_streaming(router: Router) -> Result<(), lambda_http::Error> {
    crate::telemetry::flush_logs_on_shutdown().await;
    lambda_http::run_with_streaming_response_concurrent(router).await
}

/// Query parameters with FastAPI's rules: booleans accept true/false/1/0/yes/no/on/off.
pub struct QueryParams(pub std::collections::HashMap<String, String>);

impl QueryParams {
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        let Some(raw) = self.0.get(name) else { return Ok(default) };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ApiError::invalid(
                vec![json!("query"), json!(name)],
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
            )),
        }
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::invalid(vec![json!("query"), json!(name)], "missing", "Field required"))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        Ok(QueryParams(pairs))
    }
}

/// A `text/event-stream` response fed by a channel, with the no-buffering headers get-reply and
/// the health stream send; the body ends when the sender is dropped.
pub fn event_stream_response(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx)) });
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// One frame of the AI-SDK data stream: `{code}:{JSON string}\n` (`0` text, `3` error), as
/// get-reply and the chat send it.
pub fn data_stream_frame(code: char, text: &str) -> Bytes {
    Bytes::from(format!("{code}:{}\n", serde_json::to_string(text).expect("strings serialize")))
}

/// A JSON body; any failure is a 422 in FastAPI's shape, naming the field.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(crate::web::rejections::body_error)?;
        // As FastAPI: a body that is not declared JSON is not read as JSON (so a cross-site
        // `text/plain` or form post, which needs no preflight, never reaches a handler).
        if !json && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::invalid(
                vec![json!("body")],
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            ));
        }
        parse_json_body(&bytes).map(JsonBody)
    }
}

/// `application/json` or `application/*+json`, parameters aside.
pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime.strip_prefix("application/").is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(vec![json!("body")], "missing", "Field required"));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::invalid(vec![json!("body"), json!(e.column())], "json_invalid", format!("JSON decode error: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            vec![json!("body")],
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut loc = vec![json!("body")];
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => loc.push(json!(index)),
                serde_path_to_error::Segment::Map { key } | serde_path_to_error::Segment::Enum { variant: key } => loc.push(json!(key)),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = err.inner().to_string();
        let issue = match missing_field(&message) {
            Some(field) => {
                loc.push(json!(field));
                ValidationIssue { kind: "missing".into(), loc, msg: "Field required".into() }
            }
            None => ValidationIssue { kind: "value_error".into(), loc, msg: message },
        };
        ApiError::Validation(vec![issue])
    })
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Vec<String>,
    }

    fn issue(bytes: &[u8]) -> Value {
        match parse_json_body::<Body>(bytes).unwrap_err() {
            ApiError::Validation(v) => serde_json::to_value(&v[0]).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_json_500_and_the_router_keeps_serving() {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let routes = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("handler bug");
                    }
                    "unreachable"
                }),
            )
            .route("/fine", get(|| async { "ok" }));
        let app = finish_router(routes, CorsPolicy::new(vec![], false, CorsPolicy::API_METHODS));
        let call = |path: &'static str| app.clone().oneshot(Request::get(path).body(axum::body::Body::empty()).unwrap());
        let res = call("/boom").await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(res.headers().contains_key(X_PROCESS_TIME));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"detail": "Internal Server Error"}));
        assert_eq!(call("/fine").await.unwrap().status(), StatusCode::OK);
    }

    #[test]
    fn validation_errors_name_the_field() {
        assert_eq!(issue(br#"{"tags": []}"#), json!({"type": "missing", "loc": ["body", "name"], "msg": "Field required"}));
        let wrong = issue(br#"{"name": "a", "tags": [1]}"#);
        assert_eq!(wrong["loc"], json!(["body", "tags", 0]));
        assert_eq!(issue(b"{nope")["type"], "json_invalid");
        assert_eq!(issue(b"[1]")["type"], "model_attributes_type");
        assert_eq!(issue(b"")["type"], "missing");
        assert!(parse_json_body::<Body>(br#"{"name": "a", "tags": [], "extra": 1}"#).is_ok());
    }
}
