//! Anthropic's Messages API (`anthropic/<model>`): `x-api-key` and `anthropic-version` headers,
//! the system prompt in the top-level `system`, `max_tokens` required, its own streaming events,
//! and `stop_reason: "refusal"` when the model declines.

use serde_json::{Value, json};

use super::{LlmError, Message, SseLine, split_system};
use crate::config::LlmSlot;

pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// processing.md §10: 4096 unless a caller states otherwise.
const MAX_TOKENS: u32 = 4096;

/// `{base}/v1/messages`; a base already ending in `/v1` is not doubled.
fn url(slot: &LlmSlot) -> String {
    let base = slot.api_base.as_deref().unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    if base.ends_with("/v1") { format!("{base}/messages") } else { format!("{base}/v1/messages") }
}

fn body(model: &str, messages: &[Message], stream: bool) -> Value {
    let (system, turns) = split_system(messages);
    let mut turns: Vec<Value> = turns.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    let mut system = system;
    if turns.is_empty() {
        // The API needs one turn: a system-only prompt becomes the user's.
        turns.push(json!({"role": "user", "content": system.take().unwrap_or_default()}));
    }
    let mut body = json!({"model": model, "max_tokens": MAX_TOKENS, "messages": turns, "stream": stream});
    if let Some(system) = system {
        body["system"] = json!(system);
    }
    body
}

pub(super) fn request(http: &reqwest::Client, slot: &LlmSlot, model: &str, messages: &[Message], stream: bool) -> reqwest::RequestBuilder {
    http.post(url(slot))
        .header("x-api-key", slot.api_key.clone().unwrap_or_default())
        .header("anthropic-version", API_VERSION)
        .json(&body(model, messages, stream))
}

/// The text blocks of a message; a refusal is a content-policy error.
pub(super) fn reply(value: &Value) -> Result<Option<String>, LlmError> {
    if value["stop_reason"] == "refusal" {
        return Err(LlmError::ContentPolicy("stop_reason refusal".into()));
    }
    let Some(blocks) = value["content"].as_array() else {
        return Ok(None);
    };
    Ok(Some(blocks.iter().filter(|b| b["type"] == "text").filter_map(|b| b["text"].as_str()).collect()))
}

/// An `error` event: overloads and rate limits are worth a retry.
fn error(value: &Value) -> LlmError {
    let text = value["error"].to_string();
    match value["error"]["type"].as_str() {
        Some("overloaded_error" | "rate_limit_error" | "api_error") => LlmError::Unavailable(text),
        _ => LlmError::Other(text),
    }
}

/// One `data:` payload of the stream (`message_start`, `content_block_delta`, `message_delta`,
/// `message_stop`, `ping`, `error`; the JSON carries its own `type`).
pub(super) fn event(data: &str) -> SseLine {
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return SseLine::Skip;
    };
    match value["type"].as_str() {
        Some("content_block_delta") => match value["delta"]["text"].as_str() {
            Some(text) if !text.is_empty() => SseLine::Text(text.to_string()),
            _ => SseLine::Skip,
        },
        Some("message_delta") if value["delta"]["stop_reason"] == "refusal" => {
            SseLine::Error(LlmError::ContentPolicy("stop_reason refusal".into()))
        }
        Some("message_stop") => SseLine::Done,
        Some("error") => SseLine::Error(error(&value)),
        _ => SseLine::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_prompt_moves_to_the_top() {
        let body = body("claude-x", &[Message::system("be brief"), Message::user("hi")], false);
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(body["max_tokens"], 4096);
        let only_system = super::body("claude-x", &[Message::system("do it")], true);
        assert_eq!(only_system["messages"], json!([{"role": "user", "content": "do it"}]));
        assert!(only_system.get("system").is_none());
    }

    #[test]
    fn urls_do_not_double_the_version() {
        let slot = |base: Option<&str>| LlmSlot { api_base: base.map(str::to_string), ..Default::default() };
        assert_eq!(url(&slot(None)), "https://api.anthropic.com/v1/messages");
        assert_eq!(url(&slot(Some("http://127.0.0.1:9/v1/"))), "http://127.0.0.1:9/v1/messages");
    }

    #[test]
    fn events_parse() {
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert!(matches!(event(delta), SseLine::Text(t) if t == "Hi"));
        assert!(matches!(event(r#"{"type":"ping"}"#), SseLine::Skip));
        assert!(matches!(event(r#"{"type":"message_stop"}"#), SseLine::Done));
        assert!(matches!(
            event(r#"{"type":"message_delta","delta":{"stop_reason":"refusal"}}"#),
            SseLine::Error(LlmError::ContentPolicy(_))
        ));
        assert!(matches!(
            event(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            SseLine::Error(LlmError::Unavailable(_))
        ));
    }
}
