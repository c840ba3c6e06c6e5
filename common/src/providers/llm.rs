//! One small client for chat completions over the OpenAI wire protocol (OpenAI, Azure OpenAI,
//! a LiteLLM proxy, any compatible server), streaming and not.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::LlmSlot;

pub const DEFAULT_API_BASE: &str = "https://api.openai.com/v1";
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
    #[error("LLM slot not configured: {0}")]
    NotConfigured(&'static str),
    #[error("LLM provider error: {0}")]
    Other(String),
}

pub type TextStream = Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>>;

#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl Default for LlmClient {
    fn default() -> Self {
        Self::new(DEFAULT_TIMEOUT)
    }
}

struct Target {
    url: String,
    model: Option<String>,
    headers: Vec<(&'static str, String)>,
}

/// Where a slot's requests go: `azure/<deployment>` to Azure OpenAI, anything else to the
/// OpenAI-compatible base (`openai/` is dropped; other prefixes are left for a LiteLLM proxy).
fn target(slot: &LlmSlot) -> Result<Target, LlmError> {
    let model = slot.model.clone().ok_or(LlmError::NotConfigured("model"))?;
    let base = slot.api_base.clone().unwrap_or_else(|| DEFAULT_API_BASE.into());
    let base = base.trim_end_matches('/');
    if let Some(deployment) = model.strip_prefix("azure/") {
        let version = slot.api_version.clone().unwrap_or_else(|| "2024-06-01".into());
        let key = slot.api_key.clone().ok_or(LlmError::NotConfigured("api key"))?;
        return Ok(Target {
            url: format!("{base}/openai/deployments/{deployment}/chat/completions?api-version={version}"),
            model: None,
            headers: vec![("api-key", key)],
        });
    }
    let model = model.strip_prefix("openai/").unwrap_or(&model).to_string();
    let headers = slot.api_key.iter().map(|k| ("authorization", format!("Bearer {k}"))).collect();
    Ok(Target { url: format!("{base}/chat/completions"), model: Some(model), headers })
}

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

impl LlmClient {
    /// `timeout` bounds a whole non-streamed call.
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().expect("a TLS client can be built");
        LlmClient { http, timeout }
    }

    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self::new(Duration::from_secs(settings.llm.timeout_seconds))
    }

    fn request(&self, slot: &LlmSlot, messages: &[Message], stream: bool, timeout: Duration) -> Result<reqwest::RequestBuilder, LlmError> {
        let target = target(slot)?;
        let mut body = json!({"messages": messages, "stream": stream});
        if let Some(model) = target.model {
            body["model"] = json!(model);
        }
        let mut req = self.http.post(target.url).timeout(timeout).json(&body);
        for (name, value) in target.headers {
            req = req.header(name, value);
        }
        Ok(req)
    }

    /// One completion; the reply text.
    pub async fn complete(&self, slot: &LlmSlot, messages: &[Message]) -> Result<String, LlmError> {
        self.complete_within(slot, messages, self.timeout).await
    }

    pub async fn complete_within(&self, slot: &LlmSlot, messages: &[Message], timeout: Duration) -> Result<String, LlmError> {
        let res = self.request(slot, messages, false, timeout)?.send().await.map_err(transport)?;
        let status = res.status();
        let text = res.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(classify_status(status, &text));
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| LlmError::Other(format!("unreadable answer: {e}")))?;
        let choice = &value["choices"][0];
        if choice["finish_reason"] == "content_filter" {
            return Err(LlmError::ContentPolicy("finish_reason content_filter".into()));
        }
        choice["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LlmError::Other(format!("no message content in {}", truncate(&text))))
    }

    /// A streamed completion: text deltas as they arrive. Errors before the first byte come
    /// back here; errors later come as the stream's last item.
    pub async fn stream(&self, slot: &LlmSlot, messages: &[Message], timeout: Duration) -> Result<TextStream, LlmError> {
        let res = self.request(slot, messages, true, timeout)?.send().await.map_err(transport)?;
        let status = res.status();
        if !status.is_success() {
            let text = res.text().await.unwrap_or_default();
            return Err(classify_status(status, &text));
        }
        let bytes = res.bytes_stream();
        let stream = futures::stream::unfold((bytes, String::new(), false), |(mut bytes, mut buffer, done)| async move {
            if done {
                return None;
            }
            loop {
                if let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    match parse_sse_line(line.trim()) {
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
        Ok(Box::pin(stream))
    }
}

enum SseLine {
    Skip,
    Done,
    Text(String),
    Error(LlmError),
}

fn parse_sse_line(line: &str) -> SseLine {
    let Some(data) = line.strip_prefix("data:") else {
        return SseLine::Skip;
    };
    let data = data.trim();
    if data == "[DONE]" {
        return SseLine::Done;
    }
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return SseLine::Skip;
    };
    if let Some(error) = value.get("error") {
        let text = error.to_string();
        let lowered = text.to_ascii_lowercase();
        return SseLine::Error(if lowered.contains("content_policy") || lowered.contains("content_filter") {
            LlmError::ContentPolicy(text)
        } else {
            LlmError::Other(text)
        });
    }
    let choice = &value["choices"][0];
    if choice["finish_reason"] == "content_filter" {
        return SseLine::Error(LlmError::ContentPolicy("finish_reason content_filter".into()));
    }
    match choice["delta"]["content"].as_str() {
        Some(text) if !text.is_empty() => SseLine::Text(text.to_string()),
        _ => SseLine::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(model: &str) -> LlmSlot {
        LlmSlot { model: Some(model.into()), api_key: Some("k".into()), api_base: Some("http://127.0.0.1:9/v1/".into()), api_version: None }
    }

    #[test]
    fn models_route_by_prefix() {
        let t = target(&slot("openai/gpt-4o")).unwrap();
        assert_eq!((t.url.as_str(), t.model.as_deref()), ("http://127.0.0.1:9/v1/chat/completions", Some("gpt-4o")));
        assert_eq!(t.headers, vec![("authorization", "Bearer k".to_string())]);
        let t = target(&slot("anthropic/claude-3-5-sonnet")).unwrap();
        assert_eq!(t.model.as_deref(), Some("anthropic/claude-3-5-sonnet"), "left for a LiteLLM proxy");
        let t = target(&slot("azure/my-deployment")).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9/v1/openai/deployments/my-deployment/chat/completions?api-version=2024-06-01");
        assert_eq!(t.model, None);
        assert!(matches!(target(&LlmSlot::default()), Err(LlmError::NotConfigured("model"))));
    }

    #[test]
    fn stream_lines_parse() {
        assert!(matches!(parse_sse_line(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#), SseLine::Text(t) if t == "Hi"));
        assert!(matches!(parse_sse_line("data: [DONE]"), SseLine::Done));
        assert!(matches!(parse_sse_line(": keep-alive"), SseLine::Skip));
        assert!(matches!(
            parse_sse_line(r#"data: {"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#),
            SseLine::Error(LlmError::ContentPolicy(_))
        ));
    }

    #[test]
    fn statuses_classify() {
        assert!(matches!(classify_status(reqwest::StatusCode::TOO_MANY_REQUESTS, ""), LlmError::Unavailable(_)));
        assert!(matches!(classify_status(reqwest::StatusCode::BAD_GATEWAY, ""), LlmError::Unavailable(_)));
        assert!(matches!(
            classify_status(reqwest::StatusCode::BAD_REQUEST, r#"{"error":{"code":"content_policy_violation"}}"#),
            LlmError::ContentPolicy(_)
        ));
        assert!(matches!(classify_status(reqwest::StatusCode::UNAUTHORIZED, ""), LlmError::Other(_)));
    }
}
