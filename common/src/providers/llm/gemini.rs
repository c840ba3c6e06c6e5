//! Gemini on Vertex AI (`vertex_ai/<model>`): `generateContent` and, streamed,
//! `streamGenerateContent?alt=sse`, authorised by the `GCP_SA_JSON` service account's token.
//! System messages go to `systemInstruction`; a blocked prompt or a safety stop is a refusal.

use serde_json::{Value, json};

use super::{LlmError, Message, SseLine, split_system};
use crate::providers::vertex::{VertexClient, VertexError};

fn body(messages: &[Message]) -> Value {
    let (system, turns) = split_system(messages);
    let mut contents: Vec<Value> = turns
        .iter()
        .map(|m| json!({"role": if m.role == "assistant" { "model" } else { "user" }, "parts": [{"text": m.content}]}))
        .collect();
    let mut system = system;
    if contents.is_empty() {
        contents.push(json!({"role": "user", "parts": [{"text": system.take().unwrap_or_default()}]}));
    }
    let mut body = json!({"contents": contents});
    if let Some(system) = system {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    body
}

fn vertex_error(err: VertexError) -> LlmError {
    match err {
        VertexError::Transient(reason) => LlmError::Unavailable(reason),
        other => LlmError::Other(other.to_string()),
    }
}

pub(super) async fn request(
    vertex: &VertexClient,
    model: &str,
    messages: &[Message],
    stream: bool,
) -> Result<reqwest::RequestBuilder, LlmError> {
    let action = if stream { "streamGenerateContent?alt=sse" } else { "generateContent" };
    Ok(vertex.model_request(model, action).await.map_err(vertex_error)?.json(&body(messages)))
}

/// The first candidate's text, or the refusal: a blocked prompt, or a stop for safety reasons.
fn candidate_text(value: &Value) -> Result<Option<String>, LlmError> {
    if let Some(reason) = value["promptFeedback"]["blockReason"].as_str() {
        return Err(LlmError::ContentPolicy(format!("prompt blocked: {reason}")));
    }
    let candidate = &value["candidates"][0];
    if let Some(reason @ ("SAFETY" | "PROHIBITED_CONTENT" | "BLOCKLIST" | "SPII" | "RECITATION")) = candidate["finishReason"].as_str() {
        return Err(LlmError::ContentPolicy(format!("finishReason {reason}")));
    }
    Ok(candidate["content"]["parts"].as_array().map(|parts| parts.iter().filter_map(|p| p["text"].as_str()).collect()))
}

pub(super) fn reply(value: &Value) -> Result<Option<String>, LlmError> {
    if value["candidates"].is_null() && value["promptFeedback"].is_null() {
        return Ok(None);
    }
    candidate_text(value).map(|text| Some(text.unwrap_or_default()))
}

/// One `data:` payload: a whole `GenerateContentResponse` holding the next piece; the stream
/// ends with the body.
pub(super) fn event(data: &str) -> SseLine {
    let Ok(value) = serde_json::from_str::<Value>(data) else {
        return SseLine::Skip;
    };
    if let Some(error) = value.get("error") {
        return SseLine::Error(LlmError::Other(error.to_string()));
    }
    match candidate_text(&value) {
        Err(err) => SseLine::Error(err),
        Ok(Some(text)) if !text.is_empty() => SseLine::Text(text),
        Ok(_) => SseLine::Skip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_and_system_instruction() {
        let body = body(&[Message::system("be brief"), Message::user("hi"), Message { role: "assistant".into(), content: "yo".into() }]);
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "be brief");
        assert_eq!(body["contents"][1], json!({"role": "model", "parts": [{"text": "yo"}]}));
    }

    #[test]
    fn refusals_and_pieces() {
        let piece = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}, {"text": "lo"}]}}]});
        assert!(matches!(event(&piece.to_string()), SseLine::Text(t) if t == "Hello"));
        let safety = json!({"candidates": [{"content": {"parts": []}, "finishReason": "SAFETY"}]});
        assert!(matches!(event(&safety.to_string()), SseLine::Error(LlmError::ContentPolicy(_))));
        let blocked = json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}});
        assert!(matches!(reply(&blocked), Err(LlmError::ContentPolicy(_))));
        let stop = json!({"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]});
        assert_eq!(reply(&stop).unwrap().as_deref(), Some("ok"));
    }
}
