//! `POST /api/chats/{chat_id}` (api.md §2.5.1): the user message stored, a title on the first
//! question, the context chosen (locked conversations, or auto-select), and the answer streamed
//! in the AI-SDK data-stream framing (`h:` references, `0:` text, `3:` error) or as raw text.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use common::ApiError;
use common::providers::llm::Message;
use common::store::{Chat, ChatMessagePatch, ChatPatch, NewChatMessage};
use common::web::auth::Session;
use common::web::http::{JsonBody, QueryParams, data_stream_frame};
use futures::StreamExt;
use minijinja::context;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;

use crate::AppState;
use crate::context::{self, owned_chat};
use crate::responses::{ChatIdParam, ChatNotFound, ContextTooLong, NotYourChat};
use crate::selection;
use crate::system::{self, Blocks};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
const ANSWER_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
const TITLE_TIMEOUT: Duration = Duration::from_secs(120);
const STREAM_FAILED: &str = "An error occurred while processing the chat response.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    Dembrane,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BodyMessage {
    /// Checked (422 otherwise); the history itself is read from the stored messages.
    #[allow(dead_code)]
    role: Role,
    content: String,
}

/// The conversation so far as the dashboard holds it; the last message is the question.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ChatBody {
    messages: Vec<BodyMessage>,
    template_key: Option<String>,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ChatQuery {
    /// `data` (AI-SDK data stream, the default) or `text` (raw text)
    protocol: Option<String>,
    /// Language the answer is written in (default `en`)
    language: Option<String>,
}

/// What the stream sends: the messages for the model, and the references frame on the
/// auto-select path.
pub struct Prepared {
    user_message_id: String,
    messages: Vec<Message>,
    references: Option<Vec<(String, String)>>,
}

#[utoipa::path(
    post,
    path = "/api/chats/{chat_id}",
    tag = "chats",
    params(ChatIdParam, ChatQuery),
    request_body = ChatBody,
    responses(
        (
            status = 200,
            description = "AI-SDK data stream: h:[{references}] on auto-select, 0:\"text\" frames, errors as 3:\"...\"",
            content_type = "text/event-stream",
            body = String,
        ),
        ContextTooLong,
        NotYourChat,
        ChatNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn post_chat(
    State(state): State<AppState>,
    session: Session,
    Path(chat_id): Path<String>,
    query: QueryParams,
    JsonBody(body): JsonBody<ChatBody>,
) -> Result<Response, ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::invalid(vec![json!("body"), json!("messages")], "too_short", "List should have at least 1 item"));
    }
    let text_protocol = query.str("protocol") == Some("text");
    let language = query.str("language").unwrap_or("en").to_string();
    let chat = owned_chat(state.store.as_ref(), &session, &chat_id).await?;
    let prepared = prepare(&state, &session, chat, &body, &language).await?;
    Ok(stream(state, prepared, text_protocol))
}

/// Steps 1-7: the user message, then the rest; a refusal after the user message removes it, so
/// a 4xx leaves the chat as it was.
async fn prepare(state: &AppState, session: &Session, chat: Chat, body: &ChatBody, language: &str) -> Result<Prepared, ApiError> {
    let question = body.messages.last().map(|m| m.content.clone()).unwrap_or_default();
    let user_message = NewChatMessage {
        id: uuid::Uuid::new_v4().to_string(),
        chat_id: chat.id.clone(),
        message_from: "user".into(),
        text: question.clone(),
        ..Default::default()
    };
    let user_message_id = state.store.create_chat_message(user_message).await?.id;
    match plan(state, session, chat, body, language, &question, &user_message_id).await {
        Ok((messages, references)) => Ok(Prepared { user_message_id, messages, references }),
        Err(err) => {
            if let Err(e) = state.store.delete_chat_message(&user_message_id).await {
                tracing::error!(%e, user_message_id, "removing the user message of a refused chat request failed");
            }
            Err(err)
        }
    }
}

type Plan = (Vec<Message>, Option<Vec<(String, String)>>);

async fn plan(
    state: &AppState,
    session: &Session,
    chat: Chat,
    body: &ChatBody,
    language: &str,
    question: &str,
    user_message_id: &str,
) -> Result<Plan, ApiError> {
    name_chat(state, &chat, question, language).await;
    if let Some(key) = &body.template_key {
        let patch = ChatMessagePatch { template_key: Some(key.clone()), ..Default::default() };
        if let Err(err) = state.store.update_chat_message(user_message_id, patch).await {
            tracing::warn!(%err, "storing the template key failed");
        }
    }
    let project = state.store.get_project(&chat.project_id).await?.ok_or_else(|| ApiError::not_found(context::CHAT_NOT_FOUND))?;
    let context = context::compute(state, session, chat).await?;
    let history = history(&context.messages);
    if state.settings.llm.chat_auto_select && context.auto_select {
        return selection::auto_path(state, session, &project, context, history, language).await;
    }
    let blocks = Blocks::default().for_ids(state.store.as_ref(), &context.locked).await?;
    let mut messages = system::messages(&project, &blocks, language)?;
    messages.extend(history);
    Ok((messages, None))
}

/// The chat's messages as model messages: `user` and `assistant` only, a repeated last user
/// message dropped.
fn history(messages: &[common::store::ChatMessage]) -> Vec<Message> {
    let mut out: Vec<Message> = messages
        .iter()
        .filter(|m| matches!(m.message_from.as_deref(), Some("user" | "assistant")))
        .map(|m| Message { role: m.message_from.clone().unwrap_or_default(), content: m.text.clone().unwrap_or_default() })
        .collect();
    let n = out.len();
    if n >= 2 && out[n - 1].role == "user" && out[n - 2] == out[n - 1] {
        out.pop();
    }
    out
}

/// Step 2: a title from the SMALL model for a chat without one; failures are only logged.
async fn name_chat(state: &AppState, chat: &Chat, question: &str, language: &str) {
    let named = chat.name.as_deref().is_some_and(|n| !n.trim().is_empty());
    if named || state.settings.llm.chat_titles_disabled || question.trim().chars().count() < 2 {
        return;
    }
    let title = async {
        let prompt = common::providers::prompts::render("generate_chat_title", language, context! { user_query => question, language })
            .map_err(|e| e.to_string())?;
        let answer = state
            .llm
            .complete_within(&state.settings.llm.small, &[Message::user(prompt)], TITLE_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let title: String =
            answer.lines().next().unwrap_or_default().trim().trim_matches(['"', '\'', '*', '#', ' ']).chars().take(255).collect();
        if title.is_empty() {
            return Err("empty title".to_string());
        }
        let patch = ChatPatch { name: Some(title), ..Default::default() };
        state.store.update_chat(&chat.id, patch).await.map_err(|e| e.to_string())
    };
    if let Err(err) = title.await {
        tracing::warn!(chat_id = %chat.id, %err, "chat title generation failed");
    }
}

/// The `h:` frame: the conversations this request added.
fn references_frame(references: &[(String, String)]) -> Bytes {
    let refs: Vec<_> = references.iter().map(|(id, name)| json!({"conversation": id, "conversation_title": name})).collect();
    Bytes::from(format!("h:{}\n", json!([{ "references": refs }])))
}

/// Steps 8-9: the answer streamed; a provider failure removes the user message and ends the
/// stream with the error frame.
fn stream(state: AppState, prepared: Prepared, text_protocol: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        if let (Some(references), false) = (&prepared.references, text_protocol) {
            let _ = tx.send(references_frame(references)).await;
        }
        if let Err(err) = relay(&state, &prepared.messages, &tx, text_protocol).await {
            tracing::warn!(%err, user_message_id = %prepared.user_message_id, "the chat answer failed");
            if let Err(e) = state.store.delete_chat_message(&prepared.user_message_id).await {
                tracing::error!(%e, "removing the user message after a failed answer failed");
            }
            let frame = if text_protocol { Bytes::from(format!("Error: {STREAM_FAILED}")) } else { data_stream_frame('3', STREAM_FAILED) };
            let _ = tx.send(frame).await;
        }
    });
    let mut response = common::web::http::event_stream_response(rx);
    if text_protocol {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    response
}

async fn relay(state: &AppState, messages: &[Message], tx: &mpsc::Sender<Bytes>, text_protocol: bool) -> Result<(), String> {
    let mut deltas = state.llm.stream(&state.settings.llm.inference, messages, ANSWER_TIMEOUT).await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::time::timeout(ANSWER_IDLE_TIMEOUT, deltas.next()).await.map_err(|_| "the model stream went idle".to_string())?;
        let Some(delta) = next else { return Ok(()) };
        let delta = delta.map_err(|e| e.to_string())?;
        let frame = if text_protocol { Bytes::from(delta) } else { data_stream_frame('0', &delta) };
        if tx.send(frame).await.is_err() {
            return Ok(()); // the dashboard went away
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_references_frame_names_the_conversations() {
        let frame = references_frame(&[("c1".into(), "Ada".into())]);
        assert_eq!(frame, Bytes::from("h:[{\"references\":[{\"conversation\":\"c1\",\"conversation_title\":\"Ada\"}]}]\n"));
        assert_eq!(references_frame(&[]), Bytes::from("h:[{\"references\":[]}]\n"));
    }
}
