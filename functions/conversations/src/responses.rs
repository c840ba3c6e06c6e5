//! Error answers that several conversation routes document (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "You are not authorized to access this conversation")]
pub struct NotYourConversation(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Conversation not found; No content found")]
pub struct ConversationOrContentNotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Failed to merge audio files: {reason}")]
pub struct MergeFailed(ErrorBody);
