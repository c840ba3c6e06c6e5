//! Gemini on Vertex AI over REST, for the Dembrane-25-09 correction pass (processing.md §5.3) and
//! `vertex_ai/` LLM slots (providers/llm/gemini.rs).
//! A service account (`GCP_SA_JSON`, raw or base64 JSON) signs an RS256 JWT that Google's token
//! endpoint trades for an access token; `generateContent` then answers JSON under a schema.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const TOKEN_LIFETIME_SECONDS: i64 = 3600;
/// A cached token is renewed this long before Google says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VertexError {
    /// Bad or missing credentials, a refused request: retrying cannot help.
    #[error("{0}")]
    Config(String),
    /// An outage, a 429 or 5xx, a timeout, or an answer outside the schema.
    #[error("{0}")]
    Transient(String),
    #[error("Vertex AI refused the request ({status}): {body}")]
    Refused { status: u16, body: String },
}

impl VertexError {
    pub fn is_transient(&self) -> bool {
        matches!(self, VertexError::Transient(_))
    }
}

/// The fields of a Google service-account key file that signing needs.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub project_id: String,
    pub token_uri: String,
    /// `private_key`, parsed once.
    key: std::sync::Arc<ring::signature::RsaKeyPair>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("client_email", &self.client_email).field("project_id", &self.project_id).finish()
    }
}

impl ServiceAccount {
    /// Accepts the key file as JSON or as base64 of that JSON.
    pub fn parse(raw: &str) -> Result<Self, VertexError> {
        let raw = raw.trim();
        let text = if raw.starts_with('{') {
            raw.to_string()
        } else {
            let bytes = STANDARD.decode(raw).map_err(|_| VertexError::Config("GCP_SA_JSON is neither JSON nor base64 JSON".into()))?;
            String::from_utf8(bytes).map_err(|_| VertexError::Config("GCP_SA_JSON decodes to non-UTF-8 bytes".into()))?
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| VertexError::Config(format!("GCP_SA_JSON is not JSON: {e}")))?;
        let field =
            |name: &str| value[name].as_str().map(str::to_string).ok_or_else(|| VertexError::Config(format!("GCP_SA_JSON has no {name}")));
        let pem = field("private_key")?;
        let key_der = pem_body(&pem).ok_or_else(|| VertexError::Config("GCP_SA_JSON private_key is not a PEM PRIVATE KEY".into()))?;
        let key = ring::signature::RsaKeyPair::from_pkcs8(&key_der)
            .map_err(|e| VertexError::Config(format!("GCP_SA_JSON private_key is not a PKCS#8 RSA key: {e}")))?;
        Ok(ServiceAccount {
            client_email: field("client_email")?,
            project_id: field("project_id")?,
            token_uri: value["token_uri"].as_str().unwrap_or(DEFAULT_TOKEN_URI).to_string(),
            key: std::sync::Arc::new(key),
        })
    }

    /// The signed JWT bearer assertion of RFC 7523 for the cloud-platform scope.
    pub fn assertion(&self, issued_at: i64) -> Result<String, VertexError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": issued_at,
            "exp": issued_at + TOKEN_LIFETIME_SECONDS,
        });
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| VertexError::Config("signing the token request failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PRIVATE KEY-----")
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

/// One part of a user turn.
pub enum Part {
    Text(String),
    /// Inline bytes, sent base64-encoded.
    Inline {
        mime_type: String,
        data: Vec<u8>,
    },
}

pub struct VertexClient {
    account: ServiceAccount,
    base_url: String,
    location: String,
    http: reqwest::Client,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for VertexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VertexClient").field("account", &self.account).field("base_url", &self.base_url).finish()
    }
}

impl VertexClient {
    /// `base_url` replaces `https://{location}-aiplatform.googleapis.com` (a proxy, or a test server).
    pub fn new(account: ServiceAccount, location: &str, base_url: Option<&str>) -> Self {
        let base_url = base_url
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://{location}-aiplatform.googleapis.com"));
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().expect("a TLS client builds");
        VertexClient { account, base_url, location: location.to_string(), http, token: Mutex::new(None) }
    }

    /// A cached access token, or a new one from the service account's token endpoint.
    async fn access_token(&self) -> Result<String, VertexError> {
        if let Some((token, until)) = self.token.lock().expect("token cache").clone()
            && Instant::now() < until
        {
            return Ok(token);
        }
        let account = self.account.clone();
        let now = chrono::Utc::now().timestamp();
        // RSA signing is CPU work: off the async workers.
        let assertion = crate::offload::offload(move || account.assertion(now))
            .await
            .map_err(|e| VertexError::Transient(format!("offload: {e}")))??;
        let reply = self
            .http
            .post(&self.account.token_uri)
            .form(&[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|e| VertexError::Transient(format!("Google token endpoint unreachable: {e}")))?;
        let status = reply.status();
        let body = reply.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(if retryable(status) {
                VertexError::Transient(format!("Google token endpoint answered {status}"))
            } else {
                VertexError::Config(format!("Google refused the service account ({status}): {}", short(&body)))
            });
        }
        let value: Value = serde_json::from_str(&body).map_err(|_| VertexError::Transient("token answer is not JSON".into()))?;
        let token = value["access_token"].as_str().ok_or_else(|| VertexError::Transient("token answer has no access_token".into()))?;
        let lifetime = Duration::from_secs(value["expires_in"].as_u64().unwrap_or(TOKEN_LIFETIME_SECONDS as u64));
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        *self.token.lock().expect("token cache") = Some((token.to_string(), until));
        Ok(token.to_string())
    }

    /// A POST to `model`'s `action` (`generateContent`, `streamGenerateContent?alt=sse`) with a
    /// current access token; the caller adds the body.
    pub async fn model_request(&self, model: &str, action: &str) -> Result<reqwest::RequestBuilder, VertexError> {
        let token = self.access_token().await?;
        let url = format!(
            "{}/v1/projects/{}/locations/{}/publishers/google/models/{model}:{action}",
            self.base_url, self.account.project_id, self.location
        );
        Ok(self.http.post(url).bearer_auth(token))
    }

    /// Drops the cached token (Vertex AI refused it): the next call fetches a new one.
    pub fn forget_token(&self) {
        *self.token.lock().expect("token cache") = None;
    }

    /// `generateContent` with a JSON response under `schema`; the parsed object.
    pub async fn generate_json(&self, model: &str, system: &str, parts: Vec<Part>, schema: Value) -> Result<Value, VertexError> {
        let request = self.model_request(model, "generateContent").await?;
        let system = system.to_string();
        // Base64 of a whole chunk's audio is CPU work too.
        let body = crate::offload::offload(move || request_body(system, parts, schema))
            .await
            .map_err(|e| VertexError::Transient(format!("offload: {e}")))?;
        let reply = request
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| VertexError::Transient(format!("Vertex AI unreachable: {e}")))?;
        let status = reply.status();
        let text = reply.text().await.map_err(|e| VertexError::Transient(format!("Vertex AI answer cut off: {e}")))?;
        if retryable(status) {
            return Err(VertexError::Transient(format!("Vertex AI answered {status}: {}", short(&text))));
        }
        if status == StatusCode::UNAUTHORIZED {
            // A revoked or expired token: the next try fetches a new one.
            self.forget_token();
            return Err(VertexError::Transient("Vertex AI rejected the access token".into()));
        }
        if !status.is_success() {
            return Err(VertexError::Refused { status: status.as_u16(), body: short(&text) });
        }
        parse_answer(&text)
    }
}

fn request_body(system: String, parts: Vec<Part>, schema: Value) -> String {
    let parts: Vec<Value> = parts
        .into_iter()
        .map(|part| match part {
            Part::Text(text) => json!({ "text": text }),
            Part::Inline { mime_type, data } => json!({ "inlineData": { "mimeType": mime_type, "data": STANDARD.encode(data) } }),
        })
        .collect();
    json!({
        "systemInstruction": { "parts": [{ "text": system }] },
        "contents": [{ "role": "user", "parts": parts }],
        "generationConfig": { "responseMimeType": "application/json", "responseSchema": schema },
    })
    .to_string()
}

/// The JSON object in the first candidate's text; a blocked or malformed answer is transient
/// (sampling again may pass).
fn parse_answer(text: &str) -> Result<Value, VertexError> {
    let value: Value = serde_json::from_str(text).map_err(|_| VertexError::Transient("Vertex AI answer is not JSON".into()))?;
    let candidate = &value["candidates"][0];
    let content: String =
        candidate["content"]["parts"].as_array().map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect()).unwrap_or_default();
    if content.is_empty() {
        let reason = candidate["finishReason"].as_str().or(value["promptFeedback"]["blockReason"].as_str()).unwrap_or("no content");
        return Err(VertexError::Transient(format!("Vertex AI returned no text ({reason})")));
    }
    serde_json::from_str(&content)
        .map_err(|_| VertexError::Transient(format!("Vertex AI text is not the requested JSON: {}", short(&content))))
}

/// 408, 409, 429 and 5xx are worth another try (processing.md §1.3).
fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 409 | 429)
}

fn short(text: &str) -> String {
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_the_first_candidate() {
        let parts = json!([{"text": "{\"corrected_transcript\": "}, {"text": "\"Hi.\", \"note\": \"\"}"}]);
        let answer = json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}]});
        assert_eq!(parse_answer(&answer.to_string()).unwrap(), json!({"corrected_transcript": "Hi.", "note": ""}));
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}});
        assert!(matches!(parse_answer(&blocked.to_string()), Err(VertexError::Transient(r)) if r.contains("SAFETY")));
        let prose = json!({"candidates": [{"content": {"parts": [{"text": "Sure! Here it is"}]}}]});
        assert!(parse_answer(&prose.to_string()).unwrap_err().is_transient());
    }

    #[test]
    fn service_accounts_must_hold_a_key() {
        assert!(matches!(ServiceAccount::parse("not json"), Err(VertexError::Config(_))));
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let no_key = json!({"client_email": "a@b", "project_id": "p", "private_key": pem});
        assert!(matches!(ServiceAccount::parse(&no_key.to_string()), Err(VertexError::Config(r)) if r.contains("PKCS#8")));
        let base64 = STANDARD.encode(no_key.to_string());
        assert!(matches!(ServiceAccount::parse(&base64), Err(VertexError::Config(r)) if r.contains("PKCS#8")), "base64 JSON is read too");
    }

    #[test]
    fn requests_carry_the_system_text_parts_and_schema() {
        let body = request_body(
            "fix it".into(),
            vec![Part::Text("hello".into()), Part::Inline { mime_type: "audio/mp3".into(), data: b"ID3".to_vec() }],
            json!({"type": "OBJECT"}),
        );
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["systemInstruction"]["parts"][0]["text"], "fix it");
        assert_eq!(value["contents"][0]["parts"][1]["inlineData"], json!({"mimeType": "audio/mp3", "data": "SUQz"}));
        assert_eq!(value["generationConfig"]["responseMimeType"], "application/json");
    }
}
