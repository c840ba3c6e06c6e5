//! Directus's own session tokens verify with `common::auth::verify` and the same SECRET
//! (spec/api.md §1.2): `/auth/login` in JSON mode (access token) and in session mode (the
//! `directus_session_token` cookie), for the admin and for a user without admin access.
//! Needs the Directus `scripts/test.sh` starts (`DIRECTUS_TEST_*`).

use axum::http::{HeaderMap, HeaderValue, header};
use common::auth::{AuthError, Session, token_from_headers, verify};
use serde_json::{Value, json};

struct Directus {
    url: String,
    token: String,
    secret: String,
    admin_email: String,
    admin_password: String,
    http: reqwest::Client,
}

fn directus() -> Directus {
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

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Directus {
    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
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
    async fn login_json(&self, email: &str, password: &str) -> String {
        let res =
            self.http.post(format!("{}/auth/login", self.url)).json(&json!({"email": email, "password": password})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["data"]["access_token"].as_str().expect("an access token").to_string()
    }

    /// Session mode: the token is only in the `directus_session_token` cookie.
    async fn login_session(&self, email: &str, password: &str) -> String {
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
    fn verify_cookie(&self, cookie: &str) -> Result<Session, AuthError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("theme=dark; directus_session_token={cookie}")).unwrap());
        let token = token_from_headers(&headers, "directus_session_token").expect("the cookie is found");
        verify(token, &self.secret, now())
    }
}

#[tokio::test]
async fn directus_session_tokens_verify_with_the_shared_secret() {
    let d = directus();
    let admin_id = d.admin(reqwest::Method::GET, "/users/me?fields=id", Value::Null).await["id"].as_str().unwrap().to_string();
    let admin = Session { user_id: admin_id.clone(), is_admin: true };

    let access = d.login_json(&d.admin_email, &d.admin_password).await;
    assert_eq!(verify(&access, &d.secret, now()), Ok(admin.clone()), "JSON-mode access token of the admin");
    let cookie = d.login_session(&d.admin_email, &d.admin_password).await;
    assert_eq!(d.verify_cookie(&cookie), Ok(admin.clone()), "session cookie of the admin");
    assert_eq!(verify(&cookie, &d.secret, now()), Ok(admin), "the cookie's token also works as a Bearer token");

    // A user without admin access: a role whose policy grants app access only.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let policy = d
        .admin(
            reqwest::Method::POST,
            "/policies",
            json!({"name": format!("Project User {suffix}"), "icon": "person", "app_access": true, "admin_access": false}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let role = d.admin(reqwest::Method::POST, "/roles", json!({"name": format!("Project User {suffix}"), "icon": "person"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    d.admin(reqwest::Method::POST, "/access", json!({"role": role, "policy": policy})).await;
    let email = format!("user-{suffix}@example.org");
    let password = "a-user-password";
    let user_id = d
        .admin(reqwest::Method::POST, "/users", json!({"email": email, "password": password, "role": role, "status": "active"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(user_id, admin_id);
    let user = Session { user_id, is_admin: false };

    let access = d.login_json(&email, password).await;
    assert_eq!(verify(&access, &d.secret, now()), Ok(user.clone()), "JSON-mode access token of a user");
    let cookie = d.login_session(&email, password).await;
    assert_eq!(d.verify_cookie(&cookie), Ok(user.clone()), "session cookie of a user");

    // The same tokens fail with another secret, after expiry, and the static token is no JWT.
    assert_eq!(verify(&access, "another-secret", now()), Err(AuthError::Signature));
    assert_eq!(verify(&access, &d.secret, now() + 24 * 3600 + 60), Err(AuthError::Expired));
    assert!(verify(&d.token, &d.secret, now()).is_err(), "a static token is not a session");
}
