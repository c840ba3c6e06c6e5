//! The Vertex AI client against a fake Google: a token endpoint that verifies the service
//! account's RS256 assertion with the public half of a key made here by openssl, and a
//! `generateContent` endpoint that answers in Gemini's REST shape.

use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use common::vertex::{Part, ServiceAccount, VertexClient, VertexError};

/// A fresh RSA key: (PKCS#8 PEM, PKCS#1 public DER).
fn rsa_key(dir: &std::path::Path, name: &str) -> (String, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.der"));
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("these tests make an RSA key with openssl, which could not run ({e}): apt-get install openssl"));
        assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
    };
    run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", pem.to_str().unwrap()]);
    run(&["rsa", "-in", pem.to_str().unwrap(), "-RSAPublicKey_out", "-outform", "DER", "-out", public.to_str().unwrap()]);
    (std::fs::read_to_string(pem).unwrap(), std::fs::read(public).unwrap())
}

#[derive(Default)]
struct Google {
    public_key: Vec<u8>,
    token_uri: String,
    tokens_issued: AtomicUsize,
    /// The status `generateContent` answers with; 200 sends `answer`.
    status: AtomicU16,
    answer: Mutex<Value>,
    requests: Mutex<Vec<(String, Option<String>, Value)>>,
}

async fn token(State(google): State<Arc<Google>>, Form(form): Form<Vec<(String, String)>>) -> (StatusCode, axum::Json<Value>) {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"})));
    }
    let assertion = field("assertion");
    let (signing_input, signature) = assertion.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &google.public_key);
    if key.verify(signing_input.as_bytes(), &signature).is_err() {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."})));
    }
    let (header, claims) = signing_input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(claims["iss"], "echo@test-project.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], google.token_uri.as_str());
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/cloud-platform");
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    let n = google.tokens_issued.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, axum::Json(json!({"access_token": format!("ya29.token-{n}"), "expires_in": 3599, "token_type": "Bearer"})))
}

async fn generate(
    State(google): State<Arc<Google>>,
    Path((project, location, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    google.requests.lock().unwrap().push((format!("{project}/{location}/{action}"), auth, body));
    let status = StatusCode::from_u16(google.status.load(Ordering::SeqCst)).unwrap();
    if status != StatusCode::OK {
        return (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": "refused", "status": "INVALID_ARGUMENT"}})));
    }
    (status, axum::Json(google.answer.lock().unwrap().clone()))
}

/// A fake Google and a client whose service account points at it.
async fn setup(key_pem: &str, public_key: Vec<u8>) -> (Arc<Google>, VertexClient) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let google = Arc::new(Google { public_key, token_uri: format!("{base}/token"), status: AtomicU16::new(200), ..Default::default() });
    let app = axum::Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/locations/{location}/publishers/google/models/{action}", post(generate))
        .with_state(google.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let key_file = json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "k1",
        "private_key": key_pem,
        "client_email": "echo@test-project.iam.gserviceaccount.com",
        "token_uri": google.token_uri,
    });
    // Base64 JSON, as GCP_SA_JSON is often given.
    let account = ServiceAccount::parse(&STANDARD.encode(key_file.to_string())).unwrap();
    (google.clone(), VertexClient::new(account, "europe-west4", Some(&base)))
}

fn gemini_answer(object: Value) -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": object.to_string()}]}, "finishReason": "STOP"}],
           "usageMetadata": {"promptTokenCount": 10}})
}

fn schema() -> Value {
    json!({"type": "OBJECT", "properties": {"corrected_transcript": {"type": "STRING"}, "note": {"type": "STRING"}},
           "required": ["corrected_transcript", "note"]})
}

#[tokio::test]
async fn a_signed_service_account_gets_json_back_under_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, public) = rsa_key(dir.path(), "sa");
    let (google, client) = setup(&pem, public).await;
    *google.answer.lock().unwrap() = gemini_answer(json!({"corrected_transcript": "We met at the park.", "note": "fixed a name"}));
    let audio = vec![0x49, 0x44, 0x33, 0, 1, 2, 255];
    let parts = || vec![Part::Text("we met at the bark".into()), Part::Inline { mime_type: "audio/mp3".into(), data: audio.clone() }];
    let answer = client.generate_json("gemini-2.5-flash", "Correct the transcript.", parts(), schema()).await.unwrap();
    assert_eq!(answer, json!({"corrected_transcript": "We met at the park.", "note": "fixed a name"}));

    let (path, auth, body) = google.requests.lock().unwrap()[0].clone();
    assert_eq!(path, "test-project/europe-west4/gemini-2.5-flash:generateContent");
    assert_eq!(auth.as_deref(), Some("Bearer ya29.token-0"));
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Correct the transcript.");
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(body["contents"][0]["parts"][0]["text"], "we met at the bark");
    let inline = &body["contents"][0]["parts"][1]["inlineData"];
    assert_eq!(inline["mimeType"], "audio/mp3");
    assert_eq!(STANDARD.decode(inline["data"].as_str().unwrap()).unwrap(), audio);
    assert_eq!(body["generationConfig"], json!({"responseMimeType": "application/json", "responseSchema": schema()}));

    // The token is reused until it nears its expiry.
    client.generate_json("gemini-2.5-flash", "Correct the transcript.", parts(), schema()).await.unwrap();
    assert_eq!(google.tokens_issued.load(Ordering::SeqCst), 1);

    // Refusals and outages are told apart.
    google.status.store(429, Ordering::SeqCst);
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
    google.status.store(503, Ordering::SeqCst);
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
    google.status.store(400, Ordering::SeqCst);
    let refused = client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err();
    assert!(matches!(&refused, VertexError::Refused { status: 400, body } if body.contains("INVALID_ARGUMENT")), "{refused:?}");
    // A rejected token is dropped, so the retry signs in again.
    google.status.store(401, Ordering::SeqCst);
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
    google.status.store(200, Ordering::SeqCst);
    client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap();
    assert_eq!(google.tokens_issued.load(Ordering::SeqCst), 2);
    // Text that is not the requested JSON is worth sampling again.
    *google.answer.lock().unwrap() = json!({"candidates": [{"content": {"parts": [{"text": "Here you go:"}]}}]});
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_key_google_does_not_know_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = rsa_key(dir.path(), "ours");
    let (_, theirs) = rsa_key(dir.path(), "theirs");
    let (google, client) = setup(&pem, theirs).await;
    let err = client.generate_json("gemini-2.5-flash", "s", vec![Part::Text("x".into())], schema()).await.unwrap_err();
    assert!(matches!(&err, VertexError::Config(r) if r.contains("401") && r.contains("Invalid JWT Signature")), "{err:?}");
    assert!(google.requests.lock().unwrap().is_empty(), "nothing reached the model");
}
