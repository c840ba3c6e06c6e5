//! Handlers: parse, check, call the store / storage / queue, map the result.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use common::ApiError;
use common::queue::Task;
use common::store::{ChunkOrder, Conversation, NewChunk, NewConversation, NewNotificationParticipant, Project, StoreError, is_uuid};
use common::web::http::JsonBody;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::responses::{ConversationNotInProject, NotOpenForParticipation};
use crate::schemas::*;
use crate::upload::ChunkUpload;
use common::web::openapi::{ChunkIdParam, ConversationIdParam, ConversationNotFound, ErrorBody, ProjectIdParam, ProjectNotFound};

type ApiResult<T> = Result<T, ApiError>;

const CONVERSATION_NOT_FOUND: &str = "Conversation not found";
const NOT_OPEN: &str = "Conversation not open for participation";
/// Objects of a deleted chunk are removed this long after, once its row is surely gone (D40).
const DELETE_OBJECTS_DELAY: Duration = Duration::from_secs(60);

/// An id in its one spelling (lower case, hyphenated), or None when it cannot be a key (D17):
/// `ABC...`, `{abc...}` and `abc...` are the same conversation, to the store and the limiter.
fn canonical(id: &str) -> Option<String> {
    Uuid::parse_str(id).ok().map(|u| u.to_string())
}

/// A project by id; ids that cannot be keys are not looked up (D17).
async fn find_project(state: &AppState, id: &str) -> ApiResult<Option<Project>> {
    let Some(id) = canonical(id) else { return Ok(None) };
    Ok(state.store.get_project(&id).await?)
}

async fn find_conversation(state: &AppState, id: &str) -> ApiResult<Conversation> {
    let id = canonical(id).ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    state.store.get_conversation(&id).await?.ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))
}

fn require_open(project: &Project) -> ApiResult<()> {
    if project.is_conversation_allowed { Ok(()) } else { Err(ApiError::forbidden(NOT_OPEN)) }
}

/// The conversation in `conversation_id`, which must belong to `project_id` (D24), in a project
/// that is open for participation.
async fn open_conversation_of_project(state: &AppState, project_id: &str, conversation_id: &str) -> ApiResult<Conversation> {
    let project = find_project(state, project_id).await?.ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    let conversation = find_conversation(state, conversation_id).await?;
    if conversation.project_id != project.id {
        return Err(ApiError::not_found(CONVERSATION_NOT_FOUND));
    }
    require_open(&project)?;
    Ok(conversation)
}

/// The conversation and a check that its project takes recordings (404 / 403).
async fn open_conversation(state: &AppState, conversation_id: &str) -> ApiResult<Conversation> {
    let conversation = find_conversation(state, conversation_id).await?;
    let project = state.store.get_project(&conversation.project_id).await?.ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    require_open(&project)?;
    Ok(conversation)
}

#[utoipa::path(
    get,
    path = "/api/participant/projects/{project_id}",
    tag = "participant",
    params(ProjectIdParam),
    responses(
        (status = 200, description = "The project as the portal sees it", body = PublicProject),
        ProjectNotFound,
        NotOpenForParticipation,
    ),
)]
pub async fn get_project(State(state): State<AppState>, Path(project_id): Path<String>) -> ApiResult<Json<PublicProject>> {
    let project = find_project(&state, &project_id).await?.ok_or_else(|| ApiError::not_found("Project not found"))?;
    require_open(&project)?;
    Ok(Json(project.into()))
}

#[utoipa::path(
    post,
    path = "/api/participant/projects/{project_id}/conversations/initiate",
    tag = "participant",
    params(ProjectIdParam),
    request_body = InitiateBody,
    responses(
        (status = 200, description = "The new conversation", body = PublicConversation),
        ProjectNotFound,
        NotOpenForParticipation,
    ),
)]
pub async fn initiate_conversation(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    JsonBody(body): JsonBody<InitiateBody>,
) -> ApiResult<Json<PublicConversation>> {
    let project = find_project(&state, &project_id).await?.ok_or_else(|| ApiError::not_found("Project not found"))?;
    require_open(&project)?;
    // Tags deleted while the portal was open must not block the participant (D6).
    let requested = body.tag_id_list.unwrap_or_default();
    let (tag_ids, dropped): (Vec<String>, Vec<String>) = requested.into_iter().partition(|id| project.tags.iter().any(|t| &t.id == id));
    if !dropped.is_empty() {
        tracing::info!(project_id = %project.id, ?dropped, "ignoring tag ids that are not this project's");
    }
    let conversation = state
        .store
        .create_conversation(NewConversation {
            id: Uuid::new_v4().to_string(),
            project_id: project.id,
            participant_name: Some(body.name),
            participant_email: body.email,
            participant_user_agent: body.user_agent,
            source: body.source,
            tag_ids,
            ..Default::default()
        })
        .await?;
    tracing::info!(conversation_id = %conversation.id, project_id = %conversation.project_id, "conversation started");
    Ok(Json(conversation.into()))
}

#[utoipa::path(
    get,
    path = "/api/participant/projects/{project_id}/conversations/{conversation_id}",
    tag = "participant",
    params(ProjectIdParam, ConversationIdParam),
    responses(
        (status = 200, description = "The conversation", body = PublicConversation),
        ConversationNotInProject,
        NotOpenForParticipation,
    ),
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    Path((project_id, conversation_id)): Path<(String, String)>,
) -> ApiResult<Json<PublicConversation>> {
    let conversation = open_conversation_of_project(&state, &project_id, &conversation_id).await?;
    Ok(Json(conversation.into()))
}

#[utoipa::path(
    get,
    path = "/api/participant/projects/{project_id}/conversations/{conversation_id}/chunks",
    tag = "participant",
    params(ProjectIdParam, ConversationIdParam),
    responses(
        (status = 200, description = "Its chunks, newest first", body = Vec<PublicChunk>),
        ConversationNotInProject,
        NotOpenForParticipation,
    ),
)]
pub async fn list_chunks(
    State(state): State<AppState>,
    Path((project_id, conversation_id)): Path<(String, String)>,
) -> ApiResult<Json<Vec<PublicChunk>>> {
    let conversation = open_conversation_of_project(&state, &project_id, &conversation_id).await?;
    let chunks = state.store.list_chunks(&conversation.id, ChunkOrder::NewestFirst).await?;
    Ok(Json(chunks.into_iter().map(PublicChunk::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/participant/projects/{project_id}/conversations/{conversation_id}/chunks/{chunk_id}",
    tag = "participant",
    params(ProjectIdParam, ConversationIdParam, ChunkIdParam),
    responses(
        (status = 200, description = "JSON null", body = Option<String>, example = json!(null)),
        (status = 404, description = "Conversation not found; Chunk not found", body = ErrorBody),
    ),
)]
pub async fn delete_chunk(
    State(state): State<AppState>,
    Path((project_id, conversation_id, chunk_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let conversation = find_conversation(&state, &conversation_id).await?;
    if canonical(&project_id).as_deref() != Some(conversation.project_id.as_str()) {
        return Err(ApiError::not_found(CONVERSATION_NOT_FOUND));
    }
    let chunk = match canonical(&chunk_id) {
        Some(id) => state.store.get_chunk(&id).await?,
        None => None,
    };
    let chunk = chunk.filter(|c| c.conversation_id == conversation.id).ok_or_else(|| ApiError::not_found("Chunk not found"))?;

    // Its objects go through a delayed task, queued before the row goes: if the queue is down,
    // nothing is deleted (D40). Only keys under this conversation's own prefixes are named.
    let own_prefixes = [format!("conversation/{}/", conversation.id), format!("chunks/{}/", conversation.id)];
    let keys: Vec<String> = chunk
        .path
        .as_deref()
        .and_then(|p| state.blob.key_from_url(p))
        .filter(|k| own_prefixes.iter().any(|p| k.starts_with(p)))
        .into_iter()
        .collect();
    let task = Task::DeleteStorageObjects {
        keys,
        prefixes: vec![format!("conversation/{}/chunks/{}-", conversation.id, chunk.id)],
        chunk_id: Some(chunk.id.clone()),
    };
    state.tasks.publish(task, DELETE_OBJECTS_DELAY).await?;
    state.store.delete_chunk(&chunk.id).await?;
    tracing::info!(conversation_id = %conversation.id, chunk_id = %chunk.id, "chunk deleted");
    Ok(Json(Value::Null))
}

const EMPTY_CHUNK: &str = "Chunk must have either an audio file (file_obj or file_url) or a transcript.";

/// Shared by upload-text, upload-chunk and confirm-upload: the chunk row, the reset of
/// `is_all_chunks_transcribed` (D50), and processing for audio.
async fn create_chunk(state: &AppState, conversation: &Conversation, chunk: NewChunk) -> ApiResult<PublicChunk> {
    let has_audio = chunk.path.as_deref().is_some_and(|p| !p.trim().is_empty());
    let has_text = chunk.transcript.as_deref().is_some_and(|t| !t.trim().is_empty());
    if !has_audio && !has_text {
        return Err(ApiError::bad_request(EMPTY_CHUNK));
    }
    let created = state.store.create_chunk(chunk).await?;
    if conversation.is_all_chunks_transcribed == Some(true) {
        state.store.set_all_chunks_transcribed(&conversation.id, false).await?;
    }
    if has_audio {
        state
            .tasks
            .publish(Task::ProcessConversationChunk { chunk_id: created.id.clone(), use_pii_redaction: false }, Duration::ZERO)
            .await?;
    }
    tracing::info!(conversation_id = %conversation.id, chunk_id = %created.id, has_audio, "chunk created");
    Ok(created.into())
}

#[utoipa::path(
    post,
    path = "/api/participant/conversations/{conversation_id}/upload-text",
    tag = "participant",
    params(ConversationIdParam),
    request_body = UploadTextBody,
    responses(
        (status = 200, description = "The new text chunk", body = PublicChunk),
        (status = 400, description = "Chunk must have either an audio file (file_obj or file_url) or a transcript.", body = ErrorBody),
        ConversationNotFound,
        NotOpenForParticipation,
    ),
)]
pub async fn upload_text(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    JsonBody(body): JsonBody<UploadTextBody>,
) -> ApiResult<Json<PublicChunk>> {
    let conversation = open_conversation(&state, &conversation_id).await?;
    let chunk = NewChunk {
        created_at: None,
        id: Uuid::new_v4().to_string(),
        conversation_id: conversation.id.clone(),
        timestamp: body.timestamp,
        path: None,
        source: Some(body.source.unwrap_or_else(|| "PORTAL_TEXT".into())),
        transcript: Some(body.content),
    };
    Ok(Json(create_chunk(&state, &conversation, chunk).await?))
}

/// Stores the uploaded audio under the conversation and creates its chunk.
async fn create_audio_chunk(state: &AppState, conversation: &Conversation, upload: ChunkUpload) -> ApiResult<PublicChunk> {
    let chunk_id = Uuid::new_v4().to_string();
    let key = state.blob.upload_key(&conversation.id, &chunk_id, &upload.file_name);
    state.blob.put(&key, upload.data.into(), upload.content_type.as_deref()).await?;
    let chunk = NewChunk {
        created_at: None,
        id: chunk_id,
        conversation_id: conversation.id.clone(),
        timestamp: upload.timestamp,
        path: Some(state.blob.url_for_key(&key)),
        source: Some(upload.source.unwrap_or_else(|| "PORTAL_AUDIO".into())),
        transcript: None,
    };
    create_chunk(state, conversation, chunk).await
}

#[utoipa::path(
    post,
    path = "/api/participant/conversations/{conversation_id}/upload-chunk",
    tag = "participant",
    params(ConversationIdParam),
    request_body(content = UploadChunkForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The new audio chunk (legacy direct upload)", body = PublicChunk),
        ConversationNotFound,
        NotOpenForParticipation,
        (status = 413, description = "File too large for direct upload. Use get-upload-url instead.", body = ErrorBody),
    ),
)]
pub async fn upload_chunk(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    upload: ChunkUpload,
) -> ApiResult<Json<PublicChunk>> {
    let conversation = open_conversation(&state, &conversation_id).await?;
    Ok(Json(create_audio_chunk(&state, &conversation, upload).await?))
}

#[utoipa::path(
    post,
    path = "/api/participant/conversations/{conversation_id}/get-upload-url",
    tag = "participant",
    params(ConversationIdParam),
    request_body = UploadUrlBody,
    responses(
        (status = 200, description = "A presigned S3 POST for the chunk", body = UploadUrl),
        ConversationNotFound,
        NotOpenForParticipation,
        (status = 429, description = "Too many upload requests. Please wait before uploading more files.", body = ErrorBody),
    ),
)]
pub async fn get_upload_url(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    JsonBody(body): JsonBody<UploadUrlBody>,
) -> ApiResult<Json<UploadUrl>> {
    // Checked before the limiter, which then keys the parsed id: junk ids cost it nothing.
    let id = Uuid::parse_str(&conversation_id).map_err(|_| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    if !state.upload_limiter.allow(id, Instant::now()) {
        return Err(ApiError::TooManyRequests("Too many upload requests. Please wait before uploading more files.".into()));
    }
    let conversation = open_conversation(&state, &id.to_string()).await?;
    let chunk_id = Uuid::new_v4().to_string();
    let key = state.blob.upload_key(&conversation.id, &chunk_id, &body.filename);
    let post = state.blob.presigned_post(&key, &body.content_type, Utc::now()).await.map_err(|err| match err {
        common::blob::BlobError::Unavailable(_) => ApiError::from(err),
        other => ApiError::internal_with("Failed to generate upload URL", other),
    })?;
    Ok(Json(UploadUrl { chunk_id, upload_url: post.url, fields: post.fields, file_url: state.blob.url_for_key(&key) }))
}

const HEAD_RETRY_SLEEPS: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(500)];

/// HEAD with ECHO's three tries: the object may take a moment to appear after the browser's POST.
async fn uploaded_object_exists(state: &AppState, key: &str) -> ApiResult<bool> {
    for attempt in 0..=HEAD_RETRY_SLEEPS.len() {
        if state.blob.head(key).await?.is_some() {
            return Ok(true);
        }
        if let Some(sleep) = HEAD_RETRY_SLEEPS.get(attempt) {
            tokio::time::sleep(*sleep).await;
        }
    }
    Ok(false)
}

#[utoipa::path(
    post,
    path = "/api/participant/conversations/{conversation_id}/confirm-upload",
    tag = "participant",
    params(ConversationIdParam),
    request_body = ConfirmUploadBody,
    responses(
        (status = 200, description = "The chunk of the upload (the same one on a repeat)", body = PublicChunk),
        (
            status = 400,
            description = "Invalid chunk_id; file_url does not belong to this conversation; File not found in S3",
            body = ErrorBody,
        ),
        ConversationNotFound,
        NotOpenForParticipation,
        (status = 409, description = "chunk_id already used for a different upload", body = ErrorBody),
    ),
)]
pub async fn confirm_upload(
    State(state): State<AppState>,
    Path(conversation_id): Path<String>,
    JsonBody(body): JsonBody<ConfirmUploadBody>,
) -> ApiResult<Json<PublicChunk>> {
    let conversation_id = canonical(&conversation_id).ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    let chunk_id = Uuid::parse_str(&body.chunk_id).map_err(|_| ApiError::bad_request("Invalid chunk_id"))?.to_string();
    // The key must be this chunk's upload in this conversation (D26).
    let expected_prefix = format!("conversation/{conversation_id}/chunks/{chunk_id}-");
    let key = state.blob.key_from_url(&body.file_url).filter(|k| k.starts_with(&expected_prefix));
    let Some(key) = key else {
        return Err(ApiError::bad_request("file_url does not belong to this conversation"));
    };
    if !uploaded_object_exists(&state, &key).await? {
        return Err(ApiError::bad_request("File not found in S3. Upload may have failed. Please try again."));
    }

    let conversation = open_conversation(&state, &conversation_id).await?;
    let chunk = NewChunk {
        created_at: None,
        id: chunk_id.clone(),
        conversation_id: conversation.id.clone(),
        timestamp: body.timestamp,
        path: Some(body.file_url.clone()),
        source: Some(body.source.unwrap_or_else(|| "PORTAL_AUDIO".into())),
        transcript: None,
    };
    if state.store.get_chunk(&chunk_id).await?.is_some() {
        return repeat_confirm(&state, &conversation_id, &chunk_id, &body.file_url).await;
    }
    match create_chunk(&state, &conversation, chunk).await {
        Ok(created) => Ok(Json(created)),
        // A concurrent confirm created it first: answer as a repeat.
        Err(ApiError::Conflict(_)) => repeat_confirm(&state, &conversation_id, &chunk_id, &body.file_url).await,
        Err(err @ (ApiError::Unavailable { .. } | ApiError::BadRequest(_) | ApiError::Forbidden(_) | ApiError::NotFound(_))) => Err(err),
        Err(err) => Err(ApiError::internal_with("Failed to confirm upload", err)),
    }
}

/// A confirm for a chunk that exists: the same upload answers the same chunk (D27), and
/// processing is queued again only if it never finished.
async fn repeat_confirm(state: &AppState, conversation_id: &str, chunk_id: &str, file_url: &str) -> ApiResult<Json<PublicChunk>> {
    let existing =
        state.store.get_chunk(chunk_id).await?.ok_or_else(|| ApiError::internal_with("Failed to confirm upload", "chunk vanished"))?;
    if existing.conversation_id != conversation_id || existing.path.as_deref() != Some(file_url) {
        return Err(ApiError::Conflict("chunk_id already used for a different upload".into()));
    }
    if existing.transcript.is_none() && existing.error.is_none() {
        state
            .tasks
            .publish(Task::ProcessConversationChunk { chunk_id: existing.id.clone(), use_pii_redaction: false }, Duration::ZERO)
            .await?;
    }
    Ok(Json(existing.into()))
}

#[utoipa::path(
    post,
    path = "/api/participant/conversations/{conversation_id}/finish",
    tag = "participant",
    params(ConversationIdParam),
    responses(
        (status = 200, description = "JSON string \"OK\"", body = String, example = json!("OK")),
        ConversationNotFound,
    ),
)]
pub async fn finish_conversation(State(state): State<AppState>, Path(conversation_id): Path<String>) -> ApiResult<Json<&'static str>> {
    let conversation = find_conversation(&state, &conversation_id).await?;
    // Finalised with nothing new since: its merge and summary are queued or done already, and
    // an anonymous caller must not queue them again (new chunks reset the flag, D50).
    if conversation.is_finished == Some(true) && conversation.is_all_chunks_transcribed == Some(true) {
        tracing::info!(conversation_id = %conversation.id, "finish of a finalised conversation: nothing queued");
        return Ok(Json("OK"));
    }
    state.tasks.publish(Task::FinishConversationHook { conversation_id: conversation.id.clone() }, Duration::ZERO).await?;
    tracing::info!(conversation_id = %conversation.id, "conversation finished by participant");
    Ok(Json("OK"))
}

#[utoipa::path(
    post,
    path = "/api/participant/report/subscribe",
    tag = "participant",
    request_body = SubscribeBody,
    responses(
        (status = 200, description = "Subscribed", body = Object, example = json!({"status": "success"})),
        (status = 400, description = "Some emails failed (object detail: message, failed)", body = ErrorBody),
    ),
)]
pub async fn subscribe(State(state): State<AppState>, JsonBody(body): JsonBody<SubscribeBody>) -> ApiResult<Json<Value>> {
    let mut failed = Vec::new();
    for email in body.emails {
        let email = email.to_lowercase();
        match subscribe_one(&state, &email, &body.project_id, &body.conversation_id).await {
            Ok(()) => {}
            Err(err @ StoreError::Unavailable { .. }) => return Err(err.into()),
            Err(err) => {
                tracing::warn!(%err, "subscribing one email failed");
                failed.push(email);
            }
        }
    }
    if !failed.is_empty() {
        return Err(ApiError::BadRequestObject(json!({"message": "Some emails failed to process", "failed": failed})));
    }
    Ok(Json(json!({"status": "success"})))
}

async fn subscribe_one(state: &AppState, email: &str, project_id: &str, conversation_id: &str) -> Result<(), StoreError> {
    let existing = state.store.find_notification_participant(email, project_id).await?;
    if let Some(row) = &existing {
        if row.email_opt_in == Some(true) {
            return Ok(());
        }
        state.store.delete_notification_participant(&row.id).await?;
    }
    let conversation_id = is_uuid(conversation_id).then(|| conversation_id.to_string());
    state
        .store
        .create_notification_participant(NewNotificationParticipant {
            email: email.to_string(),
            project_id: project_id.to_string(),
            conversation_id,
            email_opt_in: true,
        })
        .await
        .map(drop)
}

#[utoipa::path(
    post,
    path = "/api/participant/{project_id}/report/unsubscribe",
    tag = "participant",
    params(ProjectIdParam),
    request_body = UnsubscribeBody,
    responses(
        (status = 200, description = "Opt-in updated", body = Object, example = json!({"success": true})),
        (status = 404, description = "No data found", body = ErrorBody),
    ),
)]
pub async fn unsubscribe(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    JsonBody(body): JsonBody<UnsubscribeBody>,
) -> ApiResult<Json<Value>> {
    let rows =
        if is_uuid(&body.token) { state.store.notification_participants_by_token(&project_id, &body.token).await? } else { Vec::new() };
    if rows.is_empty() {
        return Err(ApiError::not_found("No data found"));
    }
    for row in rows {
        state.store.set_notification_opt_in(&row.id, body.email_opt_in).await?;
    }
    Ok(Json(json!({"success": true})))
}

#[utoipa::path(
    get,
    path = "/api/participant/report/unsubscribe/eligibility",
    tag = "participant",
    params(
        ("token" = String, Query, description = "Opt-out token from the email"),
        ("project_id" = String, Query, description = "Project id"),
    ),
    responses(
        (status = 200, description = "Whether the link can unsubscribe", body = Object, example = json!({"data": {"eligible": true}})),
        (status = 400, description = "Invalid or missing unsubscribe link.", body = ErrorBody),
    ),
)]
pub async fn unsubscribe_eligibility(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let param = |name: &str| {
        query.get(name).cloned().ok_or_else(|| ApiError::invalid(vec![json!("query"), json!(name)], "missing", "Field required"))
    };
    let (token, project_id) = (param("token")?, param("project_id")?);
    if token.is_empty() || project_id.is_empty() {
        return Err(ApiError::bad_request("Invalid or missing unsubscribe link."));
    }
    let rows = if is_uuid(&token) { state.store.notification_participants_by_token(&project_id, &token).await? } else { Vec::new() };
    let eligible = rows.first().is_some_and(|r| r.email_opt_in == Some(true));
    Ok(Json(json!({"data": {"eligible": eligible}})))
}
