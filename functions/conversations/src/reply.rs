//! `POST /api/conversations/{id}/get-reply` (spec/api.md §2.3.1): a reply to a running
//! conversation, streamed in the AI-SDK data-stream framing (`0:"text"\n`, `3:"error"\n`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use common::providers::llm::{LlmError, Message};
use common::store::is_uuid;
use common::store::{ChunkOrder, Conversation, Project};
use common::web::http::{JsonBody, data_stream_frame as frame};
use futures::StreamExt;
use minijinja::context;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::AppState;
use common::web::openapi::ConversationIdParam;

const NEIGHBOUR_TOKENS: usize = 4000;
const NEIGHBOURS_BUDGET: usize = 80_000;
const REPLY_STREAM_TIMEOUT: Duration = Duration::from_secs(300);
const SOMETHING_WENT_WRONG: &str = "Something went wrong.";

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReplyBody {
    language: String,
}

#[utoipa::path(
    post,
    path = "/api/conversations/{conversation_id}/get-reply",
    tag = "conversations",
    params(ConversationIdParam),
    request_body = ReplyBody,
    responses(
        (
            status = 200,
            description = "AI-SDK data stream: 0:\"text\" frames, errors as 3:\"...\" frames",
            content_type = "text/event-stream",
            body = String,
        ),
    ),
)]
pub async fn get_reply(State(state): State<AppState>, Path(cid): Path<String>, JsonBody(body): JsonBody<ReplyBody>) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(async move {
        if let Err(err) = reply(&state, &cid, &body.language, &tx).await {
            let text = match &err {
                ReplyError::Llm(LlmError::ContentPolicy(_)) => "CONTENT_POLICY_VIOLATION",
                _ => SOMETHING_WENT_WRONG,
            };
            tracing::warn!(conversation_id = %cid, reason = %err.reason(), "get-reply failed");
            let _ = tx.send(frame('3', text)).await;
        }
    });
    common::web::http::event_stream_response(rx)
}

#[derive(Debug)]
enum ReplyError {
    NotAvailable(&'static str),
    Llm(LlmError),
    Other(String),
}

impl ReplyError {
    fn reason(&self) -> String {
        match self {
            ReplyError::NotAvailable(why) => why.to_string(),
            ReplyError::Llm(e) => e.to_string(),
            ReplyError::Other(e) => e.clone(),
        }
    }
}

impl<E: std::fmt::Display> From<E> for ReplyError {
    fn from(err: E) -> Self {
        ReplyError::Other(err.to_string())
    }
}

async fn reply(state: &AppState, cid: &str, language: &str, tx: &mpsc::Sender<Bytes>) -> Result<(), ReplyError> {
    if !is_uuid(cid) {
        return Err(ReplyError::NotAvailable("unknown conversation"));
    }
    let conversation = state.store.get_conversation(cid).await?.ok_or(ReplyError::NotAvailable("unknown conversation"))?;
    let project = state.store.get_project(&conversation.project_id).await?.ok_or(ReplyError::NotAvailable("project gone"))?;
    if project.is_get_reply_enabled != Some(true) {
        return Err(ReplyError::NotAvailable("replies are disabled for this project"));
    }

    let current = conversation_text(state, &conversation).await?;
    let neighbours = neighbour_blocks(state, &project, &conversation).await?;
    let prompt = common::providers::prompts::render(
        "get_reply_system",
        language,
        context! {
            PROJECT_DESCRIPTION => project_description(&project),
            GLOBAL_PROMPT => global_prompt(&project, language)?,
            OTHER_TRANSCRIPTS => neighbours,
            MAIN_USER_TRANSCRIPT => block(&conversation, &project, &current),
            language => language,
        },
    )?;

    let mut deltas =
        state.llm.stream(&state.settings.llm.medium, &[Message::user(prompt)], REPLY_STREAM_TIMEOUT).await.map_err(ReplyError::Llm)?;
    let mut filter = ResponseFilter::default();
    let mut full = String::new();
    while let Some(delta) = deltas.next().await {
        let delta = delta.map_err(ReplyError::Llm)?;
        full.push_str(&delta);
        for piece in filter.push(&delta) {
            if tx.send(frame('0', &piece)).await.is_err() {
                return Ok(()); // the participant went away
            }
        }
        if filter.done {
            break;
        }
    }
    // The stream has been sent; storing the reply can only be logged if it fails.
    let stored = clean_reply(&full);
    if let Err(err) = state.store.create_reply(cid, &stored, "assistant_reply").await {
        tracing::error!(conversation_id = %cid, %err, "storing the reply failed");
    }
    Ok(())
}

/// Chunk transcripts and earlier replies merged by time.
async fn conversation_text(state: &AppState, conversation: &Conversation) -> Result<String, ReplyError> {
    let chunks = state.store.list_chunks(&conversation.id, ChunkOrder::OldestFirst).await?;
    let replies = state.store.list_replies(&conversation.id, 1000).await?;
    let mut items: Vec<(chrono::DateTime<chrono::Utc>, String)> =
        chunks.into_iter().filter_map(|c| c.transcript.map(|t| (c.timestamp, format!("{t}\n")))).collect();
    items.extend(replies.into_iter().filter_map(|r| {
        let text = r.content_text?;
        Some((r.date_created.unwrap_or_default(), format!("[Assistant Reply at this point in time: {text}]\n")))
    }));
    items.sort_by_key(|(at, _)| *at);
    Ok(items.into_iter().map(|(_, t)| t).collect())
}

fn tag_texts(conversation: &Conversation, project: &Project) -> String {
    let texts: Vec<&str> =
        conversation.tag_ids.iter().filter_map(|id| project.tags.iter().find(|t| &t.id == id).and_then(|t| t.text.as_deref())).collect();
    texts.join(", ")
}

fn block(conversation: &Conversation, project: &Project, text: &str) -> String {
    format!(
        "<conversation>\n<name>{}</name>\n<tags>{}</tags>\n<transcript>\n{}\n</transcript>\n</conversation>",
        conversation.participant_name.as_deref().unwrap_or_default(),
        tag_texts(conversation, project),
        text.trim_end()
    )
}

/// Other conversations of the project, newest first, while they fit the token budget (D36).
async fn neighbour_blocks(state: &AppState, project: &Project, current: &Conversation) -> Result<String, ReplyError> {
    let summaries_only = matches!(project.get_reply_mode.as_deref(), Some("summarize" | "brainstorm" | "custom"));
    let mut blocks = Vec::new();
    let mut total = 0usize;
    for other in state.store.list_conversations(&project.id).await? {
        if other.id == current.id {
            continue;
        }
        let text = if summaries_only {
            match &other.summary {
                Some(s) => s.clone(),
                None => continue,
            }
        } else {
            let full = conversation_text(state, &other).await?;
            common::offload(move || common::providers::tokens::truncate_blocking(&full, NEIGHBOUR_TOKENS)).await?
        };
        let candidate = block(&other, project, &text);
        let tokens = common::providers::tokens::count(candidate.clone()).await?;
        if total + tokens > NEIGHBOURS_BUDGET {
            break;
        }
        total += tokens;
        blocks.push(candidate);
    }
    Ok(blocks.join("\n\n"))
}

fn project_description(project: &Project) -> String {
    let mut parts: Vec<String> = project.context.iter().cloned().collect();
    for (label, value) in [
        ("Default Conversation Title", &project.default_conversation_title),
        ("Default Conversation Description", &project.default_conversation_description),
        ("Default Conversation Transcript Prompt", &project.default_conversation_transcript_prompt),
    ] {
        if let Some(v) = value {
            parts.push(format!("{label}: {v}"));
        }
    }
    parts.join("\n\n")
}

/// The organisers' instructions; the built-in modes in the request's language (processing.md §10).
fn global_prompt(project: &Project, language: &str) -> Result<String, common::providers::prompts::PromptError> {
    let own = project.get_reply_prompt.clone().filter(|p| !p.trim().is_empty());
    let builtin = |name: &str| common::providers::prompts::render(name, language, context! { language });
    match project.get_reply_mode.as_deref() {
        Some("summarize") => builtin("get_reply_summarize"),
        Some("brainstorm") => builtin("get_reply_brainstorm"),
        Some("custom") => own.map_or_else(|| builtin("get_reply_summarize"), Ok),
        _ => Ok(own.unwrap_or_default()),
    }
}

/// The stored reply: the analysis and the tags removed.
fn clean_reply(full: &str) -> String {
    let mut text = full.to_string();
    while let (Some(start), Some(end)) = (text.find("<detailed_analysis>"), text.find("</detailed_analysis>")) {
        if end < start {
            break;
        }
        text.replace_range(start..end + "</detailed_analysis>".len(), "");
    }
    text.replace("<response>", "").replace("</response>", "").trim().to_string()
}

const OPEN: &str = "<response>";
const CLOSE: &str = "</response>";

/// Passes on only the text between `<response>` and `</response>`, whose tags may be split
/// across deltas (step 8 of §2.3.1).
#[derive(Default)]
struct ResponseFilter {
    buffer: String,
    inside: bool,
    done: bool,
}

impl ResponseFilter {
    fn push(&mut self, delta: &str) -> Vec<String> {
        if self.done {
            return Vec::new();
        }
        self.buffer.push_str(delta);
        let mut out = Vec::new();
        if !self.inside {
            match self.buffer.find(OPEN) {
                Some(i) => {
                    self.buffer.drain(..i + OPEN.len());
                    self.inside = true;
                }
                None => {
                    if self.buffer.len() > 100 {
                        let keep_from = floor_char_boundary(&self.buffer, self.buffer.len() - 20);
                        self.buffer.drain(..keep_from);
                    }
                    return out;
                }
            }
        }
        if let Some(i) = self.buffer.find(CLOSE) {
            out.push(self.buffer[..i].to_string());
            self.buffer.clear();
            self.done = true;
        } else {
            // Hold back what could be the start of the closing tag.
            let hold = (1..CLOSE.len()).rev().find(|n| self.buffer.ends_with(&CLOSE[..*n])).unwrap_or(0);
            let emit_to = self.buffer.len() - hold;
            out.push(self.buffer[..emit_to].to_string());
            self.buffer.drain(..emit_to);
        }
        out.retain(|p| !p.trim().is_empty());
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(deltas: &[&str]) -> (String, bool) {
        let mut f = ResponseFilter::default();
        let out: String = deltas.iter().flat_map(|d| f.push(d)).collect();
        (out, f.done)
    }

    #[test]
    fn passes_only_the_response_even_when_tags_are_split() {
        assert_eq!(
            run(&["<detailed_analysis>think</detailed_analysis><resp", "onse>Hello ", "there</res", "ponse> tail"]),
            ("Hello there".into(), true)
        );
        assert_eq!(run(&["<response>a</response>"]), ("a".into(), true));
        assert_eq!(run(&["no tags at all"]), (String::new(), false));
        let long_preamble = "x".repeat(500);
        assert_eq!(run(&[&long_preamble, "<response>", "ok", "</response>"]), ("ok".into(), true));
        assert_eq!(run(&["<response>ends with <", "/b> tag</response>"]), ("ends with </b> tag".into(), true));
    }

    #[test]
    fn stored_reply_is_clean() {
        assert_eq!(clean_reply("<detailed_analysis>x</detailed_analysis>\n<response> Hi </response>"), "Hi");
    }

    #[test]
    fn frames_are_json_strings() {
        assert_eq!(frame('0', "say \"hi\"\n"), Bytes::from("0:\"say \\\"hi\\\"\\n\"\n"));
    }
}
