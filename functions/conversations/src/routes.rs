//! The dashboard's conversation endpoints: JWT + ownership on every one.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::ApiError;
use common::blob::PRESIGN_BROWSER;
use common::flows::{merge, summary};
use common::queue::Task;
use common::store::is_uuid;
use common::web::access::{CONVERSATION_NOT_FOUND, owned_conversation};
use common::web::auth::Session;
use common::web::http::{JsonBody, QueryParams};
use serde_json::{Value, json};

use crate::AppState;
use crate::responses::{ConversationOrContentNotFound, MergeFailed, NotYourConversation};
use crate::retranscribe::{self, RetranscribeBody};
use common::web::openapi::{ChunkIdParam, ConversationIdParam, ConversationNotFound, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

const TOKEN_COUNT_TTL: Duration = Duration::from_secs(500);
/// Artifacts of a deleted conversation are removed after this, once its row is surely gone (D40).
const DELETE_ARTIFACTS_DELAY: Duration = Duration::from_secs(60);

#[utoipa::path(
    get,
    path = "/api/conversations/{conversation_id}/counts",
    tag = "conversations",
    params(ConversationIdParam),
    responses(
        (
            status = 200,
            description = "Chunk counts",
            body = Object,
            example = json!({"total": 3, "processed": 2, "error": 1, "pending": 1, "ok": 1}),
        ),
        NotYourConversation,
        ConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn counts(State(state): State<AppState>, session: Session, Path(cid): Path<String>) -> ApiResult<Json<Value>> {
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let c = state.store.chunk_counts(&conversation.id).await?;
    let processed = c.error + c.ok;
    Ok(Json(json!({
        "total": c.total,
        "processed": processed,
        "error": c.error,
        "pending": c.total.saturating_sub(processed),
        "ok": c.ok,
    })))
}

/// The presign-or-redirect rule: a 307 to a presigned GET, or the URL as a JSON string.
async fn presign_or_redirect(state: &AppState, url: &str, return_url: bool, signed: bool) -> ApiResult<Response> {
    if return_url && !signed {
        return Ok(Json(url).into_response());
    }
    let key = state.blob.key_from_url(url).ok_or_else(|| ApiError::bad_request("File is not valid (URL type not implemented)"))?;
    let presigned = state.blob.presigned_get(&key, PRESIGN_BROWSER).await?;
    if return_url {
        return Ok(Json(presigned).into_response());
    }
    Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, presigned)]).into_response())
}

#[utoipa::path(
    get,
    path = "/api/conversations/{conversation_id}/content",
    tag = "conversations",
    params(
        ConversationIdParam,
        ("force_merge" = Option<bool>, Query, description = "Merge again even if merged audio exists (default false)"),
        ("return_url" = Option<bool>, Query, description = "Answer the URL as JSON instead of redirecting (default false)"),
        ("signed" = Option<bool>, Query, description = "With return_url: presign the URL (default true)"),
    ),
    responses(
        (status = 307, description = "Redirect to a presigned URL of the merged audio"),
        (status = 200, description = "With return_url: the URL as a JSON string", body = String),
        MergeFailed,
        NotYourConversation,
        ConversationOrContentNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn content(State(state): State<AppState>, session: Session, Path(cid): Path<String>, query: QueryParams) -> ApiResult<Response> {
    let force_merge = query.bool("force_merge", false)?;
    let return_url = query.bool("return_url", false)?;
    let signed = query.bool("signed", true)?;
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    if state.store.chunk_counts(&conversation.id).await?.total == 0 {
        return Err(ApiError::not_found(CONVERSATION_NOT_FOUND));
    }
    let url = match conversation.merged_audio_path.filter(|p| p.starts_with("http")) {
        Some(existing) if !force_merge => existing,
        _ => merge::merge_conversation(&state.services, &conversation.id).await?.url,
    };
    presign_or_redirect(&state, &url, return_url, signed).await
}

#[utoipa::path(
    get,
    path = "/api/conversations/{conversation_id}/chunks/{chunk_id}/content",
    tag = "conversations",
    params(
        ConversationIdParam,
        ChunkIdParam,
        ("return_url" = Option<bool>, Query, description = "Answer the URL as JSON instead of redirecting (default false)"),
        ("signed" = Option<bool>, Query, description = "With return_url: presign the URL (default true)"),
    ),
    responses(
        (status = 307, description = "Redirect to a presigned URL of the chunk's audio"),
        (status = 200, description = "With return_url: the URL as a JSON string", body = String),
        (status = 400, description = "File is not valid (URL type not implemented)", body = ErrorBody),
        NotYourConversation,
        ConversationOrContentNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn chunk_content(
    State(state): State<AppState>,
    session: Session,
    Path((cid, chunk_id)): Path<(String, String)>,
    query: QueryParams,
) -> ApiResult<Response> {
    let return_url = query.bool("return_url", false)?;
    let signed = query.bool("signed", true)?;
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let chunk = if is_uuid(&chunk_id) { state.store.get_chunk(&chunk_id).await? } else { None };
    let chunk = chunk.filter(|c| c.conversation_id == conversation.id).ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    let path = chunk.path.ok_or_else(|| ApiError::not_found("No content found"))?;
    if !path.starts_with("http") {
        return Err(ApiError::bad_request("File is not valid (URL type not implemented)"));
    }
    presign_or_redirect(&state, &path, return_url, signed).await
}

#[utoipa::path(
    get,
    path = "/api/conversations/{conversation_id}/transcript",
    tag = "conversations",
    params(
        ConversationIdParam,
        ("include_project_data" = Option<bool>, Query, description = "Accepted, no effect"),
    ),
    responses(
        (status = 200, description = "The transcript as a JSON string", body = String),
        NotYourConversation,
        ConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn transcript(
    State(state): State<AppState>,
    session: Session,
    Path(cid): Path<String>,
    query: QueryParams,
) -> ApiResult<Json<String>> {
    query.bool("include_project_data", false)?;
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    Ok(Json(summary::transcript(state.store.as_ref(), &conversation.id).await?))
}

#[utoipa::path(
    get,
    path = "/api/conversations/{conversation_id}/token-count",
    tag = "conversations",
    params(ConversationIdParam),
    responses(
        (status = 200, description = "Tokens in the transcript (JSON integer)", body = usize),
        NotYourConversation,
        ConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn token_count(State(state): State<AppState>, session: Session, Path(cid): Path<String>) -> ApiResult<Json<usize>> {
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let cached = state.token_counts.lock().unwrap_or_else(|p| p.into_inner()).get(&conversation.id).copied();
    if let Some((count, at)) = cached
        && at.elapsed() < TOKEN_COUNT_TTL
    {
        return Ok(Json(count));
    }
    let text = summary::transcript(state.store.as_ref(), &conversation.id).await?;
    let count = if text.is_empty() { 0 } else { common::providers::tokens::count(text).await? };
    let mut cache = state.token_counts.lock().unwrap_or_else(|p| p.into_inner());
    cache.retain(|_, (_, at)| at.elapsed() < TOKEN_COUNT_TTL);
    cache.insert(conversation.id, (count, Instant::now()));
    Ok(Json(count))
}

#[utoipa::path(
    post,
    path = "/api/conversations/{conversation_id}/summarize",
    tag = "conversations",
    params(ConversationIdParam),
    responses(
        (
            status = 200,
            description = "Summary generated, or none for an empty transcript",
            body = Object,
            example = json!({"status": "success", "message": "Summary generated", "summary": "..."}),
        ),
        NotYourConversation,
        ConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn summarize(State(state): State<AppState>, session: Session, Path(cid): Path<String>) -> ApiResult<Json<Value>> {
    let (conversation, project) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let language = project.language.unwrap_or_else(|| "en".into());
    match summary::summarize(&state.services, &state.llm, &conversation.id, &language).await? {
        None => Ok(Json(json!({"status": "success", "message": "Transcript is empty, so no summary was generated"}))),
        Some(text) => Ok(Json(json!({"status": "success", "message": "Summary generated", "summary": text}))),
    }
}

#[utoipa::path(
    post,
    path = "/api/conversations/{conversation_id}/retranscribe",
    tag = "conversations",
    params(ConversationIdParam),
    request_body = RetranscribeBody,
    responses(
        (
            status = 200,
            description = "A new conversation is being transcribed",
            body = Object,
            example = json!({"status": "success", "message": "Retranscription in progress", "new_conversation_id": "..."}),
        ),
        MergeFailed,
        NotYourConversation,
        ConversationOrContentNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn retranscribe(
    State(state): State<AppState>,
    session: Session,
    Path(cid): Path<String>,
    JsonBody(body): JsonBody<RetranscribeBody>,
) -> ApiResult<Json<Value>> {
    let (original, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let new_id = retranscribe::start(&state, &original, body).await?;
    Ok(Json(json!({"status": "success", "message": "Retranscription in progress", "new_conversation_id": new_id})))
}

#[utoipa::path(
    delete,
    path = "/api/conversations/{conversation_id}",
    tag = "conversations",
    params(ConversationIdParam),
    responses(
        (
            status = 200,
            description = "Deleted",
            body = Object,
            example = json!({"status": "success", "message": "Conversation deleted successfully"}),
        ),
        NotYourConversation,
        ConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn delete_conversation(State(state): State<AppState>, session: Session, Path(cid): Path<String>) -> ApiResult<Json<Value>> {
    let (conversation, _) = owned_conversation(state.store.as_ref(), &session, &cid).await?;
    let segment_ids = state.store.segment_ids(&conversation.id).await?;
    // Queued first: if the queue is down nothing is deleted (D40).
    let task = Task::DeleteConversationArtifacts { conversation_id: conversation.id.clone(), segment_ids };
    state.tasks.publish(task, DELETE_ARTIFACTS_DELAY).await?;
    state.store.delete_conversation(&conversation.id).await.map_err(|e| match e {
        common::store::StoreError::Unavailable { .. } => ApiError::from(e),
        other => ApiError::internal_with(format!("Failed to delete conversation: {other}"), &other),
    })?;
    tracing::info!(conversation_id = %conversation.id, "conversation deleted");
    Ok(Json(json!({"status": "success", "message": "Conversation deleted successfully"})))
}
