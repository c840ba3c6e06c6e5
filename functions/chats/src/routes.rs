//! The context routes: read the context, add or delete a conversation (or the auto-select
//! flag), lock the context conversations (api.md §2.5).

use axum::Json;
use axum::extract::{Path, State};
use common::ApiError;
use common::store::Conversation;
use common::web::auth::Session;
use common::web::http::JsonBody;
use serde::{Deserialize, Serialize};

use crate::context::{self, ChatContext, ContextChange, owned_chat};
use crate::responses::{AddContextRefused, AutoSelectNotBoolean, ChatIdParam, ChatNotFound, ChatOrConversationNotFound};
use crate::responses::{DeleteContextRefused, NotYourChat};
use crate::{AppState, MAX_CHAT_CONTEXT_LENGTH};

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContextConversationSchema {
    conversation_id: String,
    conversation_participant_name: String,
    locked: bool,
    /// Share of the 100000-token maximum (0 to 1).
    token_usage: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContextMessageSchema {
    /// `user` or `assistant`
    role: &'static str,
    token_usage: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChatContextSchema {
    conversations: Vec<ContextConversationSchema>,
    messages: Vec<ContextMessageSchema>,
    conversation_id_list: Vec<String>,
    locked_conversation_id_list: Vec<String>,
    auto_select_bool: bool,
}

fn usage(tokens: usize) -> f64 {
    tokens as f64 / MAX_CHAT_CONTEXT_LENGTH as f64
}

impl From<ChatContext> for ChatContextSchema {
    fn from(c: ChatContext) -> Self {
        let conversations: Vec<ContextConversationSchema> = c
            .conversations
            .iter()
            .map(|cc| ContextConversationSchema {
                conversation_id: cc.conversation.id.clone(),
                conversation_participant_name: cc.conversation.participant_name.clone().unwrap_or_default(),
                locked: cc.locked,
                token_usage: usage(cc.tokens),
            })
            .collect();
        ChatContextSchema {
            conversation_id_list: conversations.iter().map(|cc| cc.conversation_id.clone()).collect(),
            locked_conversation_id_list: conversations.iter().filter(|cc| cc.locked).map(|cc| cc.conversation_id.clone()).collect(),
            conversations,
            messages: vec![
                ContextMessageSchema { role: "user", token_usage: usage(c.user_tokens) },
                ContextMessageSchema { role: "assistant", token_usage: usage(c.assistant_tokens) },
            ],
            auto_select_bool: c.auto_select,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/chats/{chat_id}/context",
    tag = "chats",
    params(ChatIdParam),
    responses(
        (status = 200, description = "The chat's context and token usage", body = ChatContextSchema),
        AutoSelectNotBoolean,
        NotYourChat,
        ChatNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn get_context(
    State(state): State<AppState>,
    session: Session,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<ChatContextSchema>> {
    let chat = owned_chat(state.store.as_ref(), &session, &chat_id).await?;
    Ok(Json(context::compute(&state, &session, chat).await?.into()))
}

/// `conversation_id` or `auto_select_bool`, exactly one.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ContextBody {
    conversation_id: Option<String>,
    auto_select_bool: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/api/chats/{chat_id}/add-context",
    tag = "chats",
    params(ChatIdParam),
    request_body = ContextBody,
    responses(
        (status = 200, description = "Added (JSON null)", body = ()),
        AddContextRefused,
        NotYourChat,
        ChatOrConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn add_context(
    State(state): State<AppState>,
    session: Session,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<ContextBody>,
) -> ApiResult<Json<()>> {
    let chat = owned_chat(state.store.as_ref(), &session, &chat_id).await?;
    let change = ContextChange::from_body(body.conversation_id, body.auto_select_bool)?;
    context::add(&state, &session, chat, change).await.map(Json)
}

#[utoipa::path(
    post,
    path = "/api/chats/{chat_id}/delete-context",
    tag = "chats",
    params(ChatIdParam),
    request_body = ContextBody,
    responses(
        (status = 200, description = "Removed (JSON null)", body = ()),
        DeleteContextRefused,
        NotYourChat,
        ChatOrConversationNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn delete_context(
    State(state): State<AppState>,
    session: Session,
    Path(chat_id): Path<String>,
    JsonBody(body): JsonBody<ContextBody>,
) -> ApiResult<Json<()>> {
    let chat = owned_chat(state.store.as_ref(), &session, &chat_id).await?;
    let change = ContextChange::from_body(body.conversation_id, body.auto_select_bool)?;
    context::delete(&state, &session, chat, change).await.map(Json)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LockedConversationSchema {
    id: String,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    project_id: String,
    participant_name: Option<String>,
    participant_email: Option<String>,
    participant_user_agent: Option<String>,
    summary: Option<String>,
    source: Option<String>,
    duration: Option<f64>,
}

impl From<Conversation> for LockedConversationSchema {
    fn from(c: Conversation) -> Self {
        LockedConversationSchema {
            id: c.id,
            created_at: c.created_at,
            updated_at: c.updated_at,
            project_id: c.project_id,
            participant_name: c.participant_name,
            participant_email: c.participant_email,
            participant_user_agent: c.participant_user_agent,
            summary: c.summary,
            source: c.source,
            duration: c.duration,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/chats/{chat_id}/lock-conversations",
    tag = "chats",
    params(ChatIdParam),
    responses(
        (status = 200, description = "Every context conversation", body = Vec<LockedConversationSchema>),
        AutoSelectNotBoolean,
        NotYourChat,
        ChatNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn lock_conversations(
    State(state): State<AppState>,
    session: Session,
    Path(chat_id): Path<String>,
) -> ApiResult<Json<Vec<LockedConversationSchema>>> {
    let chat = owned_chat(state.store.as_ref(), &session, &chat_id).await?;
    let conversations = context::lock(&state, &session, chat).await?;
    Ok(Json(conversations.into_iter().map(Into::into).collect()))
}
