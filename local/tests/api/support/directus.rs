//! A running Directus (the one `scripts/test.sh` starts, named by `DIRECTUS_TEST_*`) and its
//! admin API, logins and users, for the tests that need Directus's own tokens.

use axum::http::{HeaderMap, HeaderValue, header};
use common::web::auth::{AuthError, Session, token_from_headers, verify};
use serde_json::{Value, json};

pub struct Directus {
    pub url: String,
    pub token: String,
    pub secret: String,
    pub admin_email: String,
    pub admin_password: String,
    pub http: reqwest::Client,
}

pub fn directus() -> Directus {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let names =
        ["DIRECTUS_TEST_URL", "DIRECTUS_TEST_TOKEN", "DIRECTUS_TEST_SECRET", "DIRECTUS_TEST_ADMIN_EMAIL", "DIRECTUS_TEST_ADMIN_PASSWORD"];
    let values: Vec<Option<String>> = names.iter().map(|n| var(n)).collect();
    if values.iter().any(Option::is_none) {
        panic!(
            "this test needs a running Directus: run `bash scripts/test.sh` (it starts one), or start one with \
             `scripts/directus.sh start ../shared/data/directus-snapshot` and export {} from the DIRECTUS_BASE_URL, DIRECTUS_TOKEN, \
             DIRECTUS_SECRET, DIRECTUS_ADMIN_EMAIL and DIRECTUS_ADMIN_PASSWORD it prints",
            names.join(", ")
        );
    }
    let mut values = values.into_iter().map(Option::unwrap);
    let mut next = || values.next().unwrap();
    Directus { url: next(), token: next(), secret: next(), admin_email: next(), admin_password: next(), http: reqwest::Client::new() }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Directus {
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {value}");
        value["data"].clone()
    }

    /// JSON mode: the access token from the body.
    pub async fn login_json(&self, email: &str, password: &str) -> String {
        let res =
            self.http.post(format!("{}/auth/login", self.url)).json(&json!({"email": email, "password": password})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["data"]["access_token"].as_str().expect("an access token").to_string()
    }

    /// Session mode: the token is only in the `directus_session_token` cookie.
    pub async fn login_session(&self, email: &str, password: &str) -> String {
        let res = self
            .http
            .post(format!("{}/auth/login", self.url))
            .json(&json!({"email": email, "password": password, "mode": "session"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let cookie = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("directus_session_token="))
            .expect("a directus_session_token cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let body: Value = res.json().await.unwrap();
        assert!(body["data"].get("access_token").is_none(), "session mode keeps the token out of the body: {body}");
        cookie
    }

    /// The cookie as a browser sends it, through the extractor's token rule.
    pub fn verify_cookie(&self, cookie: &str) -> Result<Session, AuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("theme=dark; directus_session_token={cookie}")).unwrap());
        let token = token_from_headers(&headers, "directus_session_token").expect("the cookie is found");
        verify(token, &self.secret, now())
    }
}

impl Directus {
    /// A user whose role grants app access but not admin access; returns (id, email, password).
    pub async fn create_user(&self) -> (String, String, String) {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let policy = self
            .admin(
                reqwest::Method::POST,
                "/policies",
                json!({"name": format!("Project User {suffix}"), "icon": "person", "app_access": true, "admin_access": false}),
            )
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        let role =
            self.admin(reqwest::Method::POST, "/roles", json!({"name": format!("Project User {suffix}"), "icon": "person"})).await["id"]
                .as_str()
                .unwrap()
                .to_string();
        self.admin(reqwest::Method::POST, "/access", json!({"role": role, "policy": policy})).await;
        let email = format!("user-{suffix}@example.org");
        let password = "a-user-password".to_string();
        let id = self
            .admin(reqwest::Method::POST, "/users", json!({"email": email, "password": password, "role": role, "status": "active"}))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
        (id, email, password)
    }
}

/// A proxy in front of a real Directus that fails a window of requests in the middle of an
/// operation, the two ways an outage hits a request: refused before Directus saw it, or passed
/// on and its answer lost (the write happened, the caller cannot know). Both answer 503 as
/// Directus's load balancer does.
pub struct FlakyProxy {
    pub url: String,
    state: std::sync::Arc<std::sync::Mutex<Flaky>>,
}

#[derive(Default)]
struct Flaky {
    /// Requests seen so far.
    count: usize,
    /// Requests numbered `from..to` fail: odd ones refused, even ones passed on and then lost.
    window: std::ops::Range<usize>,
    refused: usize,
    lost: usize,
}

impl FlakyProxy {
    pub async fn start(upstream: &str) -> Self {
        let state: std::sync::Arc<std::sync::Mutex<Flaky>> = Default::default();
        let (upstream, shared) = (upstream.trim_end_matches('/').to_string(), state.clone());
        let http = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (upstream, state, http) = (upstream.clone(), shared.clone(), http.clone());
            async move {
                use axum::response::IntoResponse;
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 64 << 20).await.unwrap();
                let (n, failing) = {
                    let mut s = state.lock().unwrap();
                    s.count += 1;
                    (s.count, s.window.contains(&s.count))
                };
                let unavailable = || {
                    let error = json!({"errors": [{"message": "Service Unavailable", "extensions": {"code": "SERVICE_UNAVAILABLE"}}]});
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(error)).into_response()
                };
                if failing && n % 2 == 1 {
                    state.lock().unwrap().refused += 1;
                    return unavailable();
                }
                let path = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
                let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
                let mut forward = http.request(method, format!("{upstream}{path}")).body(body);
                for name in ["authorization", "content-type"] {
                    if let Some(v) = parts.headers.get(name) {
                        forward = forward.header(name, v.to_str().unwrap());
                    }
                }
                let res = forward.send().await.unwrap();
                let status = axum::http::StatusCode::from_u16(res.status().as_u16()).unwrap();
                let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
                let bytes = res.bytes().await.unwrap();
                if failing {
                    state.lock().unwrap().lost += 1;
                    return unavailable();
                }
                let mut answer = (status, bytes).into_response();
                if let Some(ct) = content_type {
                    answer.headers_mut().insert("content-type", ct.parse().unwrap());
                }
                answer
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FlakyProxy { url, state }
    }

    /// Requests passed so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().count
    }

    /// The `len` requests after the next `after` fail.
    pub fn fail_after(&self, after: usize, len: usize) {
        let mut s = self.state.lock().unwrap();
        let from = s.count + after + 1;
        s.window = from..from + len;
    }

    /// (refused, passed on and lost) so far.
    pub fn failures(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.refused, s.lost)
    }
}
