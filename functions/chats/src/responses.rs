//! Error answers that several chat routes document (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ChatIdParam {
    /// Chat id (UUID)
    chat_id: String,
}

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Chat not found")]
pub struct ChatNotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "You are not authorized to access this chat (or one of its conversations)")]
pub struct NotYourChat(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Auto select is not boolean")]
pub struct AutoSelectNotBoolean(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "conversation_id or auto_select_bool is required; conversation_id and auto_select_bool cannot both be provided; \
                   Conversation already in the chat; Conversation is too long; \
                   Chat context is too long. Remove other conversations to proceed."
)]
pub struct AddContextRefused(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "conversation_id or auto_select_bool is required; conversation_id and auto_select_bool cannot both be provided; \
                   auto_select_bool cannot be True; Conversation is locked"
)]
pub struct DeleteContextRefused(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Chat not found; Conversation not found; Conversation not found in the chat")]
pub struct ChatOrConversationNotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "The conversation context with the new message exceeds the maximum context length.; \
                   Auto select returned too many conversations. The selected conversations exceed the maximum context length."
)]
pub struct ContextTooLong(ErrorBody);
