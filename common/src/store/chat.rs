//! The dashboard chat's collections (data-model.md §3.15-§3.18): `project_chat`, its context
//! conversations (`project_chat_conversation`) and its messages (`project_chat_message` with the
//! used and added conversation junctions).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `project_chat` with its context conversations in junction order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub id: String,
    pub project_id: String,
    pub name: Option<String>,
    /// Null reads as "not a boolean" (the context answers 400).
    pub auto_select: Option<bool>,
    /// `project_chat_conversation.conversation_id`, by the junction's id.
    pub conversation_ids: Vec<String>,
}

/// A chat as the frontend creates it (echo-lambda itself never does; tests and the demo do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewChat {
    pub id: String,
    pub project_id: String,
    pub name: Option<String>,
    pub auto_select: Option<bool>,
}

/// Fields to change on a chat; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatPatch {
    pub name: Option<String>,
    pub auto_select: Option<bool>,
}

/// `project_chat_message` with the ids of its used (locked) and added conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: String,
    pub chat_id: String,
    /// `user`, `assistant` or `dembrane`.
    pub message_from: Option<String>,
    pub text: Option<String>,
    pub tokens_count: Option<i64>,
    pub template_key: Option<String>,
    pub date_created: Option<DateTime<Utc>>,
    pub used_conversation_ids: Vec<String>,
    pub added_conversation_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewChatMessage {
    pub id: String,
    pub chat_id: String,
    pub message_from: String,
    pub text: String,
    pub used_conversation_ids: Vec<String>,
    pub added_conversation_ids: Vec<String>,
}

/// Fields to change on a message; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessagePatch {
    pub tokens_count: Option<i64>,
    pub template_key: Option<String>,
}
