//! Request bodies and the public response shapes of spec/api.md §1.6 and §2.2.

use chrono::{DateTime, Utc};
use common::store::{Chunk, Conversation, Project};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, PartialEq, ToSchema)]
pub struct PublicTag {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Serialize, PartialEq, ToSchema)]
#[schema(as = PublicProjectSchema)]
pub struct PublicProject {
    pub id: String,
    pub language: String,
    pub tags: Vec<PublicTag>,
    pub is_conversation_allowed: bool,
    pub is_get_reply_enabled: bool,
    pub is_project_notification_subscription_allowed: bool,
    pub default_conversation_tutorial_slug: Option<String>,
    pub conversation_ask_for_participant_name_label: Option<String>,
    pub default_conversation_ask_for_participant_name: Option<bool>,
    pub default_conversation_title: Option<String>,
    pub default_conversation_description: Option<String>,
    pub default_conversation_finish_text: Option<String>,
}

impl From<Project> for PublicProject {
    /// Null-safe (D12): null booleans are false, a null language is "en", untitled tags drop.
    fn from(p: Project) -> Self {
        PublicProject {
            id: p.id,
            language: p.language.unwrap_or_else(|| "en".into()),
            tags: p.tags.into_iter().filter_map(|t| t.text.map(|text| PublicTag { id: t.id, text })).collect(),
            is_conversation_allowed: p.is_conversation_allowed,
            is_get_reply_enabled: p.is_get_reply_enabled.unwrap_or(false),
            is_project_notification_subscription_allowed: p.is_project_notification_subscription_allowed.unwrap_or(false),
            default_conversation_tutorial_slug: p.default_conversation_tutorial_slug,
            conversation_ask_for_participant_name_label: p.conversation_ask_for_participant_name_label,
            default_conversation_ask_for_participant_name: Some(p.default_conversation_ask_for_participant_name.unwrap_or(true)),
            default_conversation_title: p.default_conversation_title,
            default_conversation_description: p.default_conversation_description,
            default_conversation_finish_text: p.default_conversation_finish_text,
        }
    }
}

#[derive(Debug, Serialize, PartialEq, ToSchema)]
#[schema(as = PublicConversationSchema)]
pub struct PublicConversation {
    pub id: String,
    pub project_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub participant_email: Option<String>,
    pub participant_name: Option<String>,
}

impl From<Conversation> for PublicConversation {
    fn from(c: Conversation) -> Self {
        PublicConversation {
            id: c.id,
            project_id: c.project_id,
            title: None,
            description: None,
            participant_email: c.participant_email,
            participant_name: c.participant_name,
        }
    }
}

#[derive(Debug, Serialize, PartialEq, ToSchema)]
#[schema(as = PublicConversationChunkSchema)]
pub struct PublicChunk {
    pub id: String,
    pub conversation_id: String,
    pub path: Option<String>,
    pub transcript: Option<String>,
    #[serde(with = "common::datetime")]
    pub timestamp: DateTime<Utc>,
    pub source: Option<String>,
}

impl From<Chunk> for PublicChunk {
    fn from(c: Chunk) -> Self {
        PublicChunk {
            id: c.id,
            conversation_id: c.conversation_id,
            path: c.path,
            transcript: c.transcript,
            timestamp: c.timestamp,
            source: c.source,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InitiateBody {
    pub name: String,
    /// Accepted and unused (D28).
    #[serde(default)]
    #[allow(dead_code)]
    pub pin: Option<String>,
    pub email: Option<String>,
    pub user_agent: Option<String>,
    #[serde(default)]
    pub tag_id_list: Option<Vec<String>>,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadTextBody {
    #[serde(with = "common::datetime")]
    pub timestamp: DateTime<Utc>,
    pub content: String,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UploadUrlBody {
    pub filename: String,
    pub content_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadUrl {
    pub chunk_id: String,
    pub upload_url: String,
    pub fields: std::collections::BTreeMap<String, String>,
    pub file_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmUploadBody {
    pub chunk_id: String,
    pub file_url: String,
    #[serde(with = "common::datetime")]
    pub timestamp: DateTime<Utc>,
    pub source: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SubscribeBody {
    pub emails: Vec<String>,
    pub project_id: String,
    pub conversation_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UnsubscribeBody {
    pub token: String,
    pub email_opt_in: bool,
}

/// The legacy upload-chunk form (documentation only: the handler reads the fields itself).
// upload::ChunkUpload reads these fields; the doc line is the schema's description, kept as is.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadChunkForm {
    /// The audio file, at most 4 MiB.
    #[schema(value_type = String, format = Binary)]
    pub chunk: Vec<u8>,
    pub timestamp: DateTime<Utc>,
    /// Defaults to PORTAL_AUDIO.
    pub source: Option<String>,
}
