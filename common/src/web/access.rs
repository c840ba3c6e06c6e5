//! Ownership checks (spec/api.md §1.2): existence first (404), then owner or admin (403). Ids
//! that cannot be keys answer the 404 without a store call (D17).

use crate::ApiError;
use crate::store::{Conversation, Project, Store, is_uuid};
use crate::web::auth::Session;

pub const PROJECT_NOT_FOUND: &str = "Project not found";
pub const PROJECT_FORBIDDEN: &str = "User does not have access to this project";
pub const CONVERSATION_NOT_FOUND: &str = "Conversation not found";
pub const CONVERSATION_FORBIDDEN: &str = "You are not authorized to access this conversation";

pub async fn owned_project(store: &dyn Store, session: &Session, project_id: &str) -> Result<Project, ApiError> {
    let project = if is_uuid(project_id) { store.get_project(project_id).await? } else { None };
    let project = project.ok_or_else(|| ApiError::not_found(PROJECT_NOT_FOUND))?;
    if !session.owns(project.directus_user_id.as_deref()) {
        return Err(ApiError::forbidden(PROJECT_FORBIDDEN));
    }
    Ok(project)
}

/// The conversation and its project, when the caller owns the project.
pub async fn owned_conversation(store: &dyn Store, session: &Session, conversation_id: &str) -> Result<(Conversation, Project), ApiError> {
    let conversation = if is_uuid(conversation_id) { store.get_conversation(conversation_id).await? } else { None };
    let conversation = conversation.ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    // A conversation whose project is gone has no owner to match.
    let project = store.get_project(&conversation.project_id).await?.ok_or_else(|| ApiError::not_found(CONVERSATION_NOT_FOUND))?;
    if !session.owns(project.directus_user_id.as_deref()) {
        return Err(ApiError::forbidden(CONVERSATION_FORBIDDEN));
    }
    Ok((conversation, project))
}
