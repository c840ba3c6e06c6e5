//! The four RAG routes of api.md §2.6: JWT + owner of every named id, admin for the whole corpus
//! (D22); 503 without a LightRAG server. The work is in `rag`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::ApiError;
use common::providers::rag::Turn;
use common::web::auth::Session;
use common::web::error::detail_response;
use common::web::http::JsonBody;
use common::web::openapi::ErrorBody;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::rag::{self, PROMPT_UNAVAILABLE, Scope, Selection};
use crate::responses::{InvalidSegment, NotFound, NotYours, RagUnavailable};

type ApiResult<T> = Result<T, ApiError>;

/// `content`: one text, or several joined with blank lines; echoed as sent.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Content {
    One(String),
    Many(Vec<String>),
}

impl Content {
    fn text(&self) -> String {
        match self {
            Content::One(text) => text.clone(),
            Content::Many(parts) => parts.join("\n\n"),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InsertBody {
    content: Content,
    /// Accepted and not indexed (D67).
    #[allow(dead_code)]
    transcripts: Vec<String>,
    /// The segment's id as integer text.
    echo_segment_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InsertResult {
    status: &'static str,
    content: Content,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InsertAnswer {
    status: &'static str,
    result: InsertResult,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SimpleQueryBody {
    query: String,
    #[serde(default)]
    echo_segment_ids: Option<Vec<String>>,
    #[serde(default)]
    get_transcripts: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SimpleQueryAnswer {
    status: &'static str,
    result: String,
    transcripts: Vec<String>,
}

fn default_top_k() -> u32 {
    60
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PromptBody {
    query: String,
    /// `{"role": ..., "content": ...}` messages; the last 10 go into the prompt.
    #[serde(default)]
    conversation_history: Option<Vec<HashMap<String, String>>>,
    #[serde(default)]
    echo_segment_ids: Option<Vec<String>>,
    #[serde(default)]
    echo_conversation_ids: Option<Vec<String>>,
    #[serde(default)]
    echo_project_ids: Option<Vec<String>>,
    #[serde(default)]
    auto_select_bool: bool,
    /// Accepted, unused (as ECHO).
    #[serde(default)]
    #[allow(dead_code)]
    get_transcripts: bool,
    #[serde(default = "default_top_k")]
    #[schema(minimum = 1, maximum = 1000)]
    top_k: u32,
}

impl PromptBody {
    fn selection(&self) -> Selection<'_> {
        Selection {
            segments: list(&self.echo_segment_ids),
            conversations: list(&self.echo_conversation_ids),
            projects: list(&self.echo_project_ids),
        }
    }

    /// What the body itself must satisfy: a query, a size the server takes, and a selection
    /// unless auto-select is on.
    fn check(&self) -> ApiResult<()> {
        check_query(&self.query)?;
        if !(1..=1000).contains(&self.top_k) {
            return Err(ApiError::invalid(vec![json!("body"), json!("top_k")], "less_than_equal", "top_k must be within 1..1000"));
        }
        let s = self.selection();
        if !self.auto_select_bool && s.segments.is_empty() && s.conversations.is_empty() && s.projects.is_empty() {
            return Err(ApiError::bad_request(rag::NOTHING_SELECTED));
        }
        Ok(())
    }

    fn history(&self) -> Vec<Turn> {
        let field = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        let turns = self.conversation_history.iter().flatten();
        turns.map(|m| Turn { role: field(m, "role"), content: field(m, "content") }).collect()
    }
}

fn list(ids: &Option<Vec<String>>) -> &[String] {
    ids.as_deref().unwrap_or_default()
}

fn check_query(query: &str) -> ApiResult<()> {
    if query.trim().is_empty() {
        return Err(ApiError::invalid(vec![json!("body"), json!("query")], "string_too_short", "query must not be empty"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteConversationBody {
    conversation_ids: Vec<String>,
}

/// get_lightrag_prompt's outages answer D9's detail (still a 503 with Retry-After).
fn prompt_error(err: ApiError) -> Response {
    if !matches!(err, ApiError::Unavailable { dependency: common::Dependency::Rag, .. }) {
        return err.into_response();
    }
    tracing::warn!(%err, "RAG prompt unavailable");
    let mut response = detail_response(StatusCode::SERVICE_UNAVAILABLE, json!(PROMPT_UNAVAILABLE));
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// `POST /api/stateless/rag/insert`
#[utoipa::path(
    post,
    path = "/api/stateless/rag/insert",
    tag = "stateless",
    request_body = InsertBody,
    responses(
        (status = 200, description = "Inserted, or the segment's document was there already", body = InsertAnswer),
        InvalidSegment,
        NotYours,
        NotFound,
        RagUnavailable,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn rag_insert(
    State(state): State<AppState>,
    session: Session,
    JsonBody(body): JsonBody<InsertBody>,
) -> ApiResult<Json<InsertAnswer>> {
    let text = body.content.text();
    if text.trim().is_empty() {
        return Err(ApiError::invalid(vec![json!("body"), json!("content")], "string_too_short", "content must not be empty"));
    }
    let id = rag::parse_segment_ids(std::slice::from_ref(&body.echo_segment_id))?[0];
    rag::owned_segment(&state, &session, id).await?;
    rag::insert(&state, id, &text).await?;
    Ok(Json(InsertAnswer { status: "success", result: InsertResult { status: "inserted", content: body.content } }))
}

/// `POST /api/stateless/rag/simple_query`
#[utoipa::path(
    post,
    path = "/api/stateless/rag/simple_query",
    tag = "stateless",
    request_body = SimpleQueryBody,
    responses(
        (
            status = 200,
            description = "The model's answer over the restricted context, and the cited segments' transcripts",
            body = SimpleQueryAnswer,
        ),
        InvalidSegment,
        NotYours,
        NotFound,
        (status = 503, description = "RAG service is unavailable, or LLM provider is unavailable", body = ErrorBody),
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn rag_simple_query(
    State(state): State<AppState>,
    session: Session,
    JsonBody(body): JsonBody<SimpleQueryBody>,
) -> ApiResult<Json<SimpleQueryAnswer>> {
    check_query(&body.query)?;
    let selection = Selection { segments: body.echo_segment_ids.as_deref().unwrap_or_default(), ..Default::default() };
    let scope = rag::resolve(&state, &session, &selection).await?;
    let (result, transcripts) = rag::answer(&state, &scope, &body.query, body.get_transcripts).await?;
    tracing::info!(user_id = %session.user_id, corpus = scope == Scope::Corpus, "RAG simple query answered");
    Ok(Json(SimpleQueryAnswer { status: "success", result, transcripts }))
}

/// `POST /api/stateless/rag/get_lightrag_prompt`
#[utoipa::path(
    post,
    path = "/api/stateless/rag/get_lightrag_prompt",
    tag = "stateless",
    request_body = PromptBody,
    responses(
        (status = 200, description = "The assembled prompt (a JSON string)", body = String),
        (status = 400, description = "Nothing selected without auto_select_bool; or Invalid segment ID", body = ErrorBody),
        NotYours,
        NotFound,
        (
            status = 503,
            description = "RAG query temporarily unavailable. Please try manual conversation selection or contact support.",
            body = ErrorBody,
        ),
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn rag_get_lightrag_prompt(State(state): State<AppState>, session: Session, JsonBody(body): JsonBody<PromptBody>) -> Response {
    let run = async {
        body.check()?;
        let scope = rag::resolve(&state, &session, &body.selection()).await?;
        rag::prompt(&state, &scope, &body.query, body.top_k, &body.history()).await
    };
    match run.await {
        Ok(prompt) => Json(Value::String(prompt.text)).into_response(),
        Err(err) => prompt_error(err),
    }
}

/// `POST /api/stateless/rag/delete_conversation`
#[utoipa::path(
    post,
    path = "/api/stateless/rag/delete_conversation",
    tag = "stateless",
    request_body = DeleteConversationBody,
    responses(
        (
            status = 200,
            description = "JSON null: the conversations' segment documents and rows are gone",
            body = Option<String>,
            example = json!(null),
        ),
        (status = 400, description = "Invalid conversation ID", body = ErrorBody),
        (status = 403, description = "You are not authorized to access this conversation", body = ErrorBody),
        (status = 404, description = "Conversation not found", body = ErrorBody),
        RagUnavailable,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn rag_delete_conversation(
    State(state): State<AppState>,
    session: Session,
    JsonBody(body): JsonBody<DeleteConversationBody>,
) -> ApiResult<Json<Value>> {
    rag::delete_conversations(&state, &session, &body.conversation_ids).await?;
    Ok(Json(Value::Null))
}
