//! The OpenAI chat-completions wire protocol: OpenAI itself, Azure OpenAI (`azure/<deployment>`),
//! and any compatible server such as a LiteLLM proxy.

use serde_json::{Value, json};

use super::{LlmError, Message, SseLine};
use crate::config::{LlmProvider, LlmSlot};

pub const DEFAULT_API_BASE: &str = "https://api.openai.com/v1";
const AZURE_API_VERSION: &str = "2024-06-01";

/// The URL, the model named in the body (Azure names it in the URL) and the credential header.
fn target(slot: &LlmSlot, provider: LlmProvider, model: &str) -> (String, Option<String>, Option<(&'static str, String)>) {
    let base = slot.api_base.as_deref().unwrap_or(DEFAULT_API_BASE).trim_end_matches('/');
    if provider == LlmProvider::Azure {
        let version = slot.api_version.as_deref().unwrap_or(AZURE_API_VERSION);
        let url = format!("{base}/openai/deployments/{model}/chat/completions?api-version={version}");
        return (url, None, slot.api_key.clone().map(|k| ("api-key", k)));
    }
    let auth = slot.api_key.as_ref().map(|k| ("authorization", format!("Bearer {k}")));
    (format!("{base}/chat/completions"), Some(model.to_string()), auth)
}

pub(super) fn request(
    http: &reqwest::Client,
    slot: &LlmSlot,
    provider: LlmProvider,
    model: &str,
    messages: &[Message],
    stream: bool,
) -> reqwest::RequestBuilder {
    let (url, model, auth) = target(slot, provider, model);
    let mut body = json!({"messages": messages, "stream": stream});
    if let Some(model) = model {
        body["model"] = json!(model);
    }
    let request = http.post(url).json(&body);
    match auth {
        Some((name, value)) => request.header(name, value),
        None => request,
    }
}

/// The first choice's text; `content_filter` is a refusal.
pub(super) fn reply(value: &Value) -> Result<Option<String>, LlmError> {
    let choice = &value["choices"][0];
    if choice["finish_reason"] == "content_filter" {
        return Err(LlmError::ContentPolicy("finish_reason content_filter".into()));
    }
    Ok(choice["message"]["content"].as_str().map(str::to_string))
}

/// One `data:` payload of a streamed answer.
pub(super) fn event(data: &str) -> SseLine {
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
        LlmSlot {
            model: Some(model.into()),
            api_key: Some("k".into()),
            api_base: Some("http://127.0.0.1:9/v1/".into()),
            ..Default::default()
        }
    }

    fn routed(model: &str) -> (String, Option<String>, Option<(&'static str, String)>) {
        let (provider, name) = LlmProvider::route(model);
        target(&slot(model), provider, name)
    }

    #[test]
    fn models_route_by_prefix() {
        let (url, model, auth) = routed("openai/gpt-4o");
        assert_eq!((url.as_str(), model.as_deref()), ("http://127.0.0.1:9/v1/chat/completions", Some("gpt-4o")));
        assert_eq!(auth, Some(("authorization", "Bearer k".to_string())));
        let (url, model, auth) = routed("azure/my-deployment");
        assert_eq!(url, "http://127.0.0.1:9/v1/openai/deployments/my-deployment/chat/completions?api-version=2024-06-01");
        assert_eq!((model, auth), (None, Some(("api-key", "k".to_string()))));
        assert_eq!(routed("groq/llama-3").1.as_deref(), Some("groq/llama-3"), "left for a LiteLLM proxy");
    }

    #[test]
    fn stream_lines_parse() {
        assert!(matches!(event(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#), SseLine::Text(t) if t == "Hi"));
        assert!(matches!(event("[DONE]"), SseLine::Done));
        assert!(matches!(
            event(r#"{"choices":[{"delta":{},"finish_reason":"content_filter"}]}"#),
            SseLine::Error(LlmError::ContentPolicy(_))
        ));
    }
}
