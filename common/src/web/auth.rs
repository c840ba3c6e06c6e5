//! Directus session tokens (spec/api.md §1.2): HS256 JWTs signed with `DIRECTUS_SECRET`, read
//! from the session cookie first, else `Authorization: Bearer`. Checked locally, no Directus call.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::web::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub is_admin: bool,
}

impl Session {
    /// The identity internal code (tasks, reports) uses: passes every ownership check.
    pub fn internal() -> Self {
        Session { user_id: "internal".into(), is_admin: true }
    }

    /// Admins own everything; others must be the project's `directus_user_id`.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        self.is_admin || owner.is_some_and(|o| o == self.user_id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no session token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("unsupported algorithm")]
    Algorithm,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("invalid claim {0}")]
    Claim(&'static str),
    #[error("DIRECTUS_SECRET is not configured")]
    NoSecret,
}

/// The token a request carries: a non-blank session cookie wins over a Bearer header.
pub fn token_from_headers<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Option<&'a str> {
    let from_cookie = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim() == cookie_name)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty());
    from_cookie.or_else(|| {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    })
}

/// Verifies an HS256 token at time `now` (unix seconds) and returns its session.
pub fn verify(token: &str, secret: &str, now: i64) -> Result<Session, AuthError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let header: Value = decode_json(header_b64)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(AuthError::Algorithm);
    }
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| AuthError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| AuthError::Signature)?;
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(payload_b64.as_bytes());
    mac.verify_slice(&signature).map_err(|_| AuthError::Signature)?;

    let claims: Value = decode_json(payload_b64)?;
    let claims = claims.as_object().ok_or(AuthError::Malformed)?;
    if let Some(exp) = claims.get("exp") {
        let exp = exp.as_f64().ok_or(AuthError::Claim("exp"))?;
        if (now as f64) >= exp {
            return Err(AuthError::Expired);
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_f64().ok_or(AuthError::Claim("nbf"))?;
        if (now as f64) < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    if claims.get("iat").is_some_and(|iat| !iat.is_number()) {
        return Err(AuthError::Claim("iat"));
    }
    // No audience is configured, so a token that names one is not for us.
    if claims.contains_key("aud") {
        return Err(AuthError::Claim("aud"));
    }
    let user_id = match claims.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(AuthError::Claim("id")),
    };
    let is_admin = claims.get("admin_access").is_some_and(truthy);
    Ok(Session { user_id, is_admin })
}

fn decode_json(part: &str) -> Result<Value, AuthError> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

/// Python truthiness, as ECHO reads `admin_access`.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What the `Session` extractor needs from the router's state.
pub trait AuthConfig {
    fn directus_secret(&self) -> Option<&str>;
    fn session_cookie_name(&self) -> &str;
}

/// Every function's state derefs to `Services`, which knows how sessions are checked.
impl<T: std::ops::Deref<Target = crate::Services>> AuthConfig for T {
    fn directus_secret(&self) -> Option<&str> {
        self.settings.auth.directus_secret.as_deref()
    }

    fn session_cookie_name(&self) -> &str {
        &self.settings.auth.session_cookie_name
    }
}

impl<S> FromRequestParts<S> for Session
where
    S: AuthConfig + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = token_from_headers(&parts.headers, state.session_cookie_name()).ok_or(ApiError::Unauthorized)?;
        let Some(secret) = state.directus_secret() else {
            tracing::error!("DIRECTUS_SECRET is not configured; rejecting a session token");
            return Err(ApiError::Unauthorized);
        };
        let now = chrono::Utc::now().timestamp();
        verify(token, secret, now).map_err(|err| {
            tracing::info!(%err, "session rejected");
            ApiError::Unauthorized
        })
    }
}

/// Signs claims as Directus does (HS256); for tests, benchmarks and local tooling.
pub fn sign(claims: &Value, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length works");
    mac.update(format!("{header}.{payload}").as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{header}.{payload}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    const SECRET: &str = "directus-secret";
    const NOW: i64 = 1_760_000_000;

    #[test]
    fn a_directus_token_gives_its_user() {
        let token = sign(
            &json!({
                "id": "u-1", "role": "r", "app_access": true, "admin_access": false,
                "iat": NOW - 10, "exp": NOW + 900, "iss": "directus"
            }),
            SECRET,
        );
        assert_eq!(verify(&token, SECRET, NOW), Ok(Session { user_id: "u-1".into(), is_admin: false }));
        let admin = sign(&json!({"id": "a", "admin_access": true}), SECRET);
        assert!(verify(&admin, SECRET, NOW).unwrap().is_admin);
    }

    #[test]
    fn bad_tokens_are_rejected() {
        let good = sign(&json!({"id": "u-1", "exp": NOW + 60}), SECRET);
        assert_eq!(verify(&good, "other-secret", NOW), Err(AuthError::Signature));
        // Tampered payload, original signature.
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"id":"u-1","exp":9999999999,"admin_access":true}"#);
        parts[1] = &forged;
        assert_eq!(verify(&parts.join("."), SECRET, NOW), Err(AuthError::Signature));
        assert_eq!(verify(&good, SECRET, NOW + 60), Err(AuthError::Expired));
        assert_eq!(verify(&sign(&json!({"id": "u", "nbf": NOW + 5}), SECRET), SECRET, NOW), Err(AuthError::NotYetValid));
        assert_eq!(verify(&sign(&json!({"id": "u", "aud": "x"}), SECRET), SECRET, NOW), Err(AuthError::Claim("aud")));
        assert_eq!(verify(&sign(&json!({"id": "u", "iat": "yesterday"}), SECRET), SECRET, NOW), Err(AuthError::Claim("iat")));
        assert_eq!(verify(&sign(&json!({"admin_access": true}), SECRET), SECRET, NOW), Err(AuthError::Claim("id")));
        assert_eq!(verify("static-directus-token", SECRET, NOW), Err(AuthError::Malformed));
        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(br#"{"id":"u"}"#));
        assert_eq!(verify(&none_alg, SECRET, NOW), Err(AuthError::Algorithm));
    }

    #[test]
    fn admin_flag_follows_truthiness() {
        for (value, admin) in [
            (json!(1), true),
            (json!(0), false),
            (json!("yes"), true),
            (json!(""), false),
            (json!([]), false),
            (json!({"a": 1}), true),
            (json!(null), false),
        ] {
            let token = sign(&json!({"id": 7, "admin_access": value}), SECRET);
            assert_eq!(verify(&token, SECRET, NOW).unwrap(), Session { user_id: "7".into(), is_admin: admin });
        }
    }

    #[derive(Clone)]
    struct TestAuth;

    impl AuthConfig for TestAuth {
        fn directus_secret(&self) -> Option<&str> {
            Some(SECRET)
        }
        fn session_cookie_name(&self) -> &str {
            "directus_session_token"
        }
    }

    #[tokio::test]
    async fn routes_that_need_a_session_answer_401_json() {
        use axum::body::Body;
        use axum::http::Request;
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let app = axum::Router::new().route("/whoami", axum::routing::get(|s: Session| async move { s.user_id })).with_state(TestAuth);
        let call = |auth: Option<String>, cookie: Option<String>| {
            let app = app.clone();
            async move {
                let mut req = Request::get("/whoami");
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                if let Some(c) = cookie {
                    req = req.header("cookie", c);
                }
                let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let now = chrono::Utc::now().timestamp();
        let good = sign(&json!({"id": "u-1", "exp": now + 600}), SECRET);
        let expired = sign(&json!({"id": "u-1", "exp": now - 1}), SECRET);
        let tampered = format!("{}x", &good[..good.len() - 1]);
        let invalid = (401, r#"{"detail":"Invalid session"}"#.to_string());

        assert_eq!(call(Some(format!("Bearer {good}")), None).await, (200, "u-1".into()));
        assert_eq!(call(None, Some(format!("directus_session_token={good}"))).await, (200, "u-1".into()));
        assert_eq!(call(None, None).await, invalid);
        assert_eq!(call(Some(format!("Bearer {expired}")), None).await, invalid);
        assert_eq!(call(Some(format!("Bearer {tampered}")), None).await, invalid);
        // A bad cookie is the token even when a good Bearer is sent too.
        assert_eq!(call(Some(format!("Bearer {good}")), Some(format!("directus_session_token={expired}"))).await, invalid);
    }

    #[test]
    fn cookie_wins_over_bearer() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer from-header "));
        assert_eq!(token_from_headers(&headers, "directus_session_token"), Some("from-header"));
        headers.insert("cookie", HeaderValue::from_static("a=b; directus_session_token=from-cookie"));
        assert_eq!(token_from_headers(&headers, "directus_session_token"), Some("from-cookie"));
        headers.insert("cookie", HeaderValue::from_static("directus_session_token=  "));
        assert_eq!(token_from_headers(&headers, "directus_session_token"), Some("from-header"));
        headers.insert("authorization", HeaderValue::from_static("bearer lower-case-prefix"));
        assert_eq!(token_from_headers(&headers, "directus_session_token"), None);
    }
}
