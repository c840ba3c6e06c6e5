//! Chat completions for every LLM slot, streaming and not, routed by the model's prefix
//! (processing.md §10): the OpenAI wire protocol (OpenAI, Azure OpenAI, a LiteLLM proxy) in
//! openai.rs, Anthropic's Messages API in anthropic.rs, Gemini on Vertex AI in gemini.rs. A slot
//! without its provider's credential is not configured and is never called.

mod anthropic;
mod gemini;
mod openai;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{LlmProvider, LlmSlot};
use crate::providers::vertex::{ServiceAccount, VertexClient};

pub use openai::DEFAULT_API_BASE;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Message { role: "user".into(), content: content.into() }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Message { role: "system".into(), content: content.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Unreachable, timed out, 429 or 5xx: worth retrying later.
    #[error("LLM provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the content.
    #[error("content policy violation: {0}")]
    ContentPolicy(String),
    /// The slot lacks a setting (named): nothing was sent.
    #[error("LLM not configured: set {0}")]
    NotConfigured(&'static str),
    #[error("LLM provider error: {0}")]
    Other(String),
}

pub type TextStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    timeout: Duration,
    /// Gemini's client, when `GCP_SA_JSON` holds a usable service account.
    vertex: Option<Arc<VertexClient>>,
}

impl Default for LlmClient {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

/// Status and body of a refused call: 408, 429 and 5xx (Anthropic's 529 included) are worth a retry.
fn classify_status(status: reqwest::StatusCode, body: &str) -> LlmError {
    let lowered = body.to_ascii_lowercase();
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        LlmError::Unavailable(format!("{status}: {}", truncate(body)))
    } else if lowered.contains("content_policy") || lowered.contains("content_filter") {
        LlmError::ContentPolicy(truncate(body))
    } else {
        LlmError::Other(format!("{status}: {}", truncate(body)))
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(500).collect()
}

fn transport(err: reqwest::Error) -> LlmError {
    LlmError::Unavailable(err.to_string())
}

fn unreadable(err: impl std::fmt::Display) -> LlmError {
    LlmError::Other(format!("unreadable answer: {err}"))
}

/// System messages apart (joined), the rest in order: Anthropic and Gemini take the system
/// prompt outside the turns.
fn split_system(messages: &[Message]) -> (Option<String>, Vec<&Message>) {
    let system: Vec<&str> = messages.iter().filter(|m| m.role == "system").map(|m| m.content.as_str()).collect();
    let turns = messages.iter().filter(|m| m.role != "system").collect();
    ((!system.is_empty()).then(|| system.join("\n\n")), turns)
}

/// What one server-sent `data:` payload means for the text stream.
enum SseLine {
    Skip,
    Done,
    Text(String),
    Error(LlmError),
}

impl LlmClient {
    /// `timeout` bounds a whole non-streamed call.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("a TLS client can be built");
        LlmClient { http, timeout, vertex: None }
    }

    /// The client of a process: its timeout, and Gemini's client when `GCP_SA_JSON` is usable
    /// (an unusable one is logged; `vertex_ai/` slots are then not configured).
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let mut client = Self::new(Duration::from_secs(settings.llm.timeout_seconds));
        let transcription = &settings.transcription;
        if let Some(raw) = &transcription.gcp_sa_json {
            match ServiceAccount::parse(raw) {
                Ok(account) => {
                    let vertex = VertexClient::new(account, &transcription.vertex_location, transcription.vertex_api_base.as_deref());
                    client.vertex = Some(Arc::new(vertex));
                }
                Err(err) => tracing::error!(%err, "GCP_SA_JSON is unusable: vertex_ai/ models cannot be called"),
            }
        }
        client
    }

    /// The same client calling Gemini through `vertex`.
    pub fn with_vertex(mut self, vertex: Arc<VertexClient>) -> Self {
        self.vertex = Some(vertex);
        self
    }

    /// The setting `slot` lacks before it may be called; `None` when configured.
    pub fn missing(&self, slot: &LlmSlot) -> Option<&'static str> {
        slot.missing(self.vertex.is_some())
    }

    async fn send(
        &self,
        slot: &LlmSlot,
        messages: &[Message],
        stream: bool,
        timeout: Duration,
    ) -> Result<(reqwest::Response, LlmProvider), LlmError> {
        if let Some(missing) = self.missing(slot) {
            return Err(LlmError::NotConfigured(missing));
        }
        let (provider, model) = LlmProvider::route(slot.model.as_deref().unwrap_or_default());
        let request = match provider {
            LlmProvider::OpenAi | LlmProvider::Azure => openai::request(&self.http, slot, provider, model, messages, stream),
            LlmProvider::Anthropic => anthropic::request(&self.http, slot, model, messages, stream),
            LlmProvider::Vertex => {
                let vertex = self.vertex.as_ref().ok_or(LlmError::NotConfigured("GCP_SA_JSON"))?;
                gemini::request(vertex, model, messages, stream).await?
            }
        };
        let res = request.timeout(timeout).send().await.map_err(transport)?;
        let status = res.status();
        if status.is_success() {
            return Ok((res, provider));
        }
        if provider == LlmProvider::Vertex && status == reqwest::StatusCode::UNAUTHORIZED {
            // An expired or revoked token: the next try fetches a new one.
            self.vertex.as_ref().expect("checked above").forget_token();
            return Err(LlmError::Unavailable("Vertex AI rejected the access token".into()));
        }
        let text = res.text().await.unwrap_or_default();
        Err(classify_status(status, &text))
    }

    /// One completion; the reply text.
    pub async fn complete(&self, slot: &LlmSlot, messages: &[Message]) -> Result<String, LlmError> {
        self.complete_within(slot, messages, self.timeout).await
    }

    pub async fn complete_within(&self, slot: &LlmSlot, messages: &[Message], timeout: Duration) -> Result<String, LlmError> {
        let (res, provider) = self.send(slot, messages, false, timeout).await?;
        let text = res.text().await.map_err(transport)?;
        let value: Value = serde_json::from_str(&text).map_err(unreadable)?;
        let reply = match provider {
            LlmProvider::OpenAi | LlmProvider::Azure => openai::reply(&value),
            LlmProvider::Anthropic => anthropic::reply(&value),
            LlmProvider::Vertex => gemini::reply(&value),
        };
        reply?.ok_or_else(|| LlmError::Other(format!("no message content in {}", truncate(&text))))
    }

    /// A streamed completion: text deltas as they arrive. Errors before the first byte come
    /// back here; errors later come as the stream's last item.
    pub async fn stream(&self, slot: &LlmSlot, messages: &[Message], timeout: Duration) -> Result<TextStream, LlmError> {
        let (res, provider) = self.send(slot, messages, true, timeout).await?;
        let parse: fn(&str) -> SseLine = match provider {
            LlmProvider::OpenAi | LlmProvider::Azure => openai::event,
            LlmProvider::Anthropic => anthropic::event,
            LlmProvider::Vertex => gemini::event,
        };
        Ok(sse_text(res, parse))
    }
}

/// Server-sent events to text pieces: each `data:` line through `parse`; other lines (`event:`,
/// comments, blanks) skipped.
fn sse_text(res: reqwest::Response, parse: fn(&str) -> SseLine) -> TextStream {
    let bytes = res.bytes_stream();
    let stream = futures::stream::unfold((bytes, String::new(), false), move |(mut bytes, mut buffer, done)| async move {
        if done {
            return None;
        }
        loop {
            if let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                match parse(data.trim()) {
                    SseLine::Skip => continue,
                    SseLine::Done => return None,
                    SseLine::Text(t) => return Some((Ok(t), (bytes, buffer, false))),
                    SseLine::Error(e) => return Some((Err(e), (bytes, buffer, true))),
                }
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Some(Err(e)) => return Some((Err(transport(e)), (bytes, buffer, true))),
                None => {
                    if buffer.trim().is_empty() {
                        return None;
                    }
                    buffer.push('\n');
                }
            }
        }
    });
    Box::pin(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert!(matches!(classify_status(reqwest::StatusCode::TOO_MANY_REQUESTS, ""), LlmError::Unavailable(_)));
        assert!(matches!(classify_status(reqwest::StatusCode::BAD_GATEWAY, ""), LlmError::Unavailable(_)));
        let overloaded = reqwest::StatusCode::from_u16(529).unwrap();
        assert!(matches!(classify_status(overloaded, r#"{"type":"error"}"#), LlmError::Unavailable(_)), "Anthropic's overload");
        assert!(matches!(
            classify_status(reqwest::StatusCode::BAD_REQUEST, r#"{"error":{"code":"content_policy_violation"}}"#),
            LlmError::ContentPolicy(_)
        ));
        assert!(matches!(classify_status(reqwest::StatusCode::UNAUTHORIZED, ""), LlmError::Other(_)));
    }

    #[test]
    fn system_messages_are_taken_apart() {
        let messages = [Message::system("a"), Message::user("q"), Message::system("b")];
        let (system, turns) = split_system(&messages);
        assert_eq!(system.as_deref(), Some("a\n\nb"));
        assert_eq!(turns, vec![&Message::user("q")]);
        assert_eq!(split_system(&[Message::user("q")]).0, None);
    }

    #[tokio::test]
    async fn unconfigured_slots_send_nothing() {
        let client = LlmClient::default();
        let slot = LlmSlot { name: "SUMMARY_LITELLM", model: Some("anthropic/claude".into()), ..Default::default() };
        let err = client.complete(&slot, &[Message::user("hi")]).await.unwrap_err();
        assert!(matches!(err, LlmError::NotConfigured("SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY)")), "{err}");
        let gemini = LlmSlot { name: "MEDIUM_LITELLM", model: Some("vertex_ai/gemini".into()), ..Default::default() };
        assert!(matches!(client.stream(&gemini, &[], DEFAULT_TIMEOUT).await, Err(LlmError::NotConfigured("GCP_SA_JSON"))));
    }
}
