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
