//! A fake Google for the Vertex AI client: a token endpoint that verifies the service account's
//! RS256 assertion with the public half of a key made by openssl, and a `generateContent`
//! endpoint that answers in Gemini's REST shape.

use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const CLIENT_EMAIL: &str = "echo@test-project.iam.gserviceaccount.com";

/// A fresh RSA key: (PKCS#8 PEM, PKCS#1 public DER).
pub fn rsa_key() -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = (dir.path().join("key.pem"), dir.path().join("key.der"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
            panic!("the Vertex tests make an RSA key with openssl, which could not run ({e}): apt-get install openssl")
        });
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem.to_str().unwrap()]);
    run(&["rsa", "-in", pem.to_str().unwrap(), "-RSAPublicKey_out", "-outform", "DER", "-out", public.to_str().unwrap()]);
    (std::fs::read_to_string(pem).unwrap(), std::fs::read(public).unwrap())
}

/// One `generateContent` call: `project/location/model:action`, its Authorization, its body.
pub type GeminiCall = (String, Option<String>, Value);

#[derive(Default)]
struct Shared {
    trusted_key: Mutex<Vec<u8>>,
    token_uri: String,
    tokens_issued: AtomicUsize,
    status: AtomicU16,
    answer: Mutex<Value>,
    calls: Mutex<Vec<GeminiCall>>,
}

pub struct FakeGoogle {
    pub base: String,
    private_key: String,
    shared: Arc<Shared>,
}

impl FakeGoogle {
    /// Google, trusting the key of the service account it hands out.
    pub async fn start() -> Self {
        let (private_key, public) = rsa_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            trusted_key: Mutex::new(public),
            token_uri: format!("{base}/token"),
            status: AtomicU16::new(200),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/locations/{location}/publishers/google/models/{action}", post(generate))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGoogle { base, private_key, shared }
    }

    /// A service-account key file whose token endpoint is this fake.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "k1",
            "private_key": self.private_key,
            "client_email": CLIENT_EMAIL,
            "token_uri": self.shared.token_uri,
        })
        .to_string()
    }

    /// From now on only assertions signed by this other key are accepted.
    pub fn trust_only(&self, public_der: Vec<u8>) {
        *self.shared.trusted_key.lock().unwrap() = public_der;
    }

    /// Gemini's answer: the object as the candidate's JSON text.
    pub fn answer_with(&self, object: Value) {
        *self.shared.answer.lock().unwrap() =
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": object.to_string()}]}, "finishReason": "STOP"}]});
    }

    /// A whole response body, as sent.
    pub fn answer_raw(&self, body: Value) {
        *self.shared.answer.lock().unwrap() = body;
    }

    /// The status `generateContent` answers with (200 sends the answer).
    pub fn respond_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> Vec<GeminiCall> {
        self.shared.calls.lock().unwrap().clone()
    }
}

async fn token(State(google): State<Arc<Shared>>, Form(form): Form<Vec<(String, String)>>) -> (StatusCode, axum::Json<Value>) {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"})));
    }
    let assertion = field("assertion");
    let (signing_input, signature) = assertion.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let trusted = google.trusted_key.lock().unwrap().clone();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, trusted);
    if key.verify(signing_input.as_bytes(), &signature).is_err() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})));
    }
    let (header, claims) = signing_input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    let valid = header["alg"] == "RS256"
        && claims["iss"] == CLIENT_EMAIL
        && claims["aud"] == google.token_uri.as_str()
        && claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        && claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0) == 3600;
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": format!("bad claims {claims}")})),
        );
    }
    let n = google.tokens_issued.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, axum::Json(json!({"access_token": format!("ya29.token-{n}"), "expires_in": 3599, "token_type": "Bearer"})))
}

async fn generate(
    State(google): State<Arc<Shared>>,
    Path((project, location, action)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    // Like Google: only a token its token endpoint issued.
    let issued = google.tokens_issued.load(Ordering::SeqCst);
    let known = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ya29.token-")).and_then(|n| n.parse::<usize>().ok());
    if known.is_none_or(|n| n >= issued) {
        let error =
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    google.calls.lock().unwrap().push((format!("{project}/{location}/{action}"), auth, body));
    let status = StatusCode::from_u16(google.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        let error = json!({"error": {"code": status.as_u16(), "message": "refused", "status": "INVALID_ARGUMENT"}});
        return (status, axum::Json(error)).into_response();
    }
    let answer = google.answer.lock().unwrap().clone();
    if action.ends_with(":streamGenerateContent") && query.iter().any(|(k, v)| k == "alt" && v == "sse") {
        return ([("content-type", "text/event-stream")], sse_pieces(&answer)).into_response();
    }
    (status, axum::Json(answer)).into_response()
}

/// A streamed answer as Gemini sends it: the first candidate's text in responses of three
/// characters each, the last one carrying its finishReason (and any promptFeedback).
fn sse_pieces(answer: &Value) -> String {
    let candidate = &answer["candidates"][0];
    let text: String =
        candidate["content"]["parts"].as_array().map(|p| p.iter().filter_map(|p| p["text"].as_str()).collect()).unwrap_or_default();
    let chars: Vec<char> = text.chars().collect();
    let mut events: Vec<Value> = chars
        .chunks(3)
        .map(|piece| json!({"candidates": [{"content": {"role": "model", "parts": [{"text": piece.iter().collect::<String>()}]}}]}))
        .collect();
    let mut last = json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": candidate["finishReason"]}]});
    if !answer["promptFeedback"].is_null() {
        last = json!({"promptFeedback": answer["promptFeedback"]});
    }
    events.push(last);
    events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect()
}
