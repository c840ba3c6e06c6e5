//! Error answers that several participant routes document (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "Conversation not open for participation")]
pub struct NotOpenForParticipation(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Conversation not found (or of another project)")]
pub struct ConversationNotInProject(ErrorBody);
