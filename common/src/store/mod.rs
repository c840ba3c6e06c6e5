//! The data layer: domain operations over ECHO's collections (spec/data-model.md §3), never
//! query JSON, so the embedded SQLite backend and Directus implement the same trait.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Dependency;

mod chat;
pub mod directus;
pub mod sqlite;

pub use chat::{Chat, ChatMessage, ChatMessagePatch, ChatPatch, NewChat, NewChatMessage};
pub use directus::{DirectusConfig, DirectusStore};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create with an explicit id that is already taken.
    #[error("{collection} {id} already exists")]
    AlreadyExists { collection: &'static str, id: String },
    /// The backend cannot be reached; the API answers 503 naming it.
    #[error("{backend:?} unavailable: {reason}")]
    Unavailable { backend: Dependency, reason: String },
    /// The backend refused the data (a bug or bad data): names the collection and field.
    #[error("{collection}.{field}: {reason}")]
    Invalid { collection: &'static str, field: String, reason: String },
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether `id` can be a key of a collection with UUID keys; other ids are never looked up (D17).
pub fn is_uuid(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok()
}

/// `project`, with its tags when the operation says so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub directus_user_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub context: Option<String>,
    pub is_conversation_allowed: bool,
    pub is_get_reply_enabled: Option<bool>,
    pub is_project_notification_subscription_allowed: Option<bool>,
    pub is_enhanced_audio_processing_enabled: Option<bool>,
    pub default_conversation_ask_for_participant_name: Option<bool>,
    pub default_conversation_tutorial_slug: Option<String>,
    pub conversation_ask_for_participant_name_label: Option<String>,
    pub default_conversation_title: Option<String>,
    pub default_conversation_description: Option<String>,
    pub default_conversation_finish_text: Option<String>,
    pub default_conversation_transcript_prompt: Option<String>,
    pub get_reply_prompt: Option<String>,
    pub get_reply_mode: Option<String>,
    pub image_generation_model: Option<String>,
    /// Ordered by `sort`, then `created_at`.
    pub tags: Vec<ProjectTag>,
}

/// What a new project carries; everything else takes the collection's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewProject {
    pub id: String,
    pub directus_user_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub context: Option<String>,
    pub is_conversation_allowed: bool,
    pub is_get_reply_enabled: Option<bool>,
    pub is_project_notification_subscription_allowed: Option<bool>,
    pub default_conversation_title: Option<String>,
    pub default_conversation_description: Option<String>,
    pub default_conversation_finish_text: Option<String>,
    pub image_generation_model: Option<String>,
    pub default_conversation_ask_for_participant_name: Option<bool>,
    pub default_conversation_tutorial_slug: Option<String>,
    pub default_conversation_transcript_prompt: Option<String>,
    pub conversation_ask_for_participant_name_label: Option<String>,
    pub is_enhanced_audio_processing_enabled: Option<bool>,
}

impl NewProject {
    /// A project `id` for `owner` with `source`'s settings (its tags are rows of their own).
    pub fn copy_of(source: &Project, id: String, owner: String) -> Self {
        NewProject {
            id,
            directus_user_id: Some(owner),
            name: source.name.clone(),
            language: source.language.clone(),
            context: source.context.clone(),
            is_conversation_allowed: source.is_conversation_allowed,
            is_get_reply_enabled: source.is_get_reply_enabled,
            is_project_notification_subscription_allowed: source.is_project_notification_subscription_allowed,
            default_conversation_title: source.default_conversation_title.clone(),
            default_conversation_description: source.default_conversation_description.clone(),
            default_conversation_finish_text: source.default_conversation_finish_text.clone(),
            image_generation_model: source.image_generation_model.clone(),
            default_conversation_ask_for_participant_name: source.default_conversation_ask_for_participant_name,
            default_conversation_tutorial_slug: source.default_conversation_tutorial_slug.clone(),
            default_conversation_transcript_prompt: source.default_conversation_transcript_prompt.clone(),
            conversation_ask_for_participant_name_label: source.conversation_ask_for_participant_name_label.clone(),
            is_enhanced_audio_processing_enabled: source.is_enhanced_audio_processing_enabled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectTag {
    pub id: String,
    pub project_id: String,
    pub text: Option<String>,
    pub sort: Option<i64>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub project_id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub participant_name: Option<String>,
    pub participant_email: Option<String>,
    pub participant_user_agent: Option<String>,
    pub source: Option<String>,
    pub summary: Option<String>,
    pub duration: Option<f64>,
    pub merged_audio_path: Option<String>,
    pub is_finished: Option<bool>,
    pub is_all_chunks_transcribed: Option<bool>,
    pub is_audio_processing_finished: Option<bool>,
    /// Ids of the `project_tag`s linked through `conversation_project_tag`.
    pub tag_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewConversation {
    pub id: String,
    pub project_id: String,
    pub participant_name: Option<String>,
    pub participant_email: Option<String>,
    pub participant_user_agent: Option<String>,
    pub source: Option<String>,
    pub tag_ids: Vec<String>,
    pub duration: Option<f64>,
    pub merged_audio_path: Option<String>,
}

/// Fields to change on a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationPatch {
    pub merged_audio_path: Option<String>,
    pub duration: Option<f64>,
    pub summary: Option<String>,
    pub is_finished: Option<bool>,
    pub is_all_chunks_transcribed: Option<bool>,
    pub is_audio_processing_finished: Option<bool>,
}

/// Chunk classification (D35): error = `error` set; ok = no error and a transcript.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkCounts {
    pub total: u64,
    pub error: u64,
    pub ok: u64,
}

/// `conversation_reply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: String,
    pub conversation_id: Option<String>,
    pub content_text: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub date_created: Option<DateTime<Utc>>,
}

/// `project_report`, as create-report returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: i64,
    pub content: Option<String>,
    pub project_id: Option<String>,
    pub language: Option<String>,
    pub status: String,
    pub show_portal_link: Option<bool>,
    #[serde(with = "crate::datetime")]
    pub date_created: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReport {
    pub content: String,
    pub project_id: String,
    pub language: String,
    pub status: String,
}

/// One chunk's diarization metrics (for the conversation health stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkMetrics {
    pub conversation_id: String,
    pub project_id: String,
    pub timestamp: DateTime<Utc>,
    /// Null metrics are `None`: the health computation drops such rows only after picking each
    /// conversation's newest two (processing.md §8.2).
    pub noise_ratio: Option<f64>,
    pub cross_talk_instances: Option<f64>,
    pub silence_ratio: Option<f64>,
}

/// Whose recent chunk metrics to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsScope {
    Projects(Vec<String>),
    Conversations(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub id: String,
    pub conversation_id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub timestamp: DateTime<Utc>,
    pub path: Option<String>,
    pub source: Option<String>,
    pub transcript: Option<String>,
    pub error: Option<String>,
    /// `{base}/status/{job id}` of the chunk's current RunPod job (processing.md §5.4).
    pub runpod_job_status_link: Option<String>,
    /// RunPod submissions so far (null reads as 0).
    pub runpod_request_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChunk {
    pub id: String,
    pub conversation_id: String,
    /// Set only for split pieces (the original's + the piece's offset); otherwise the store's now.
    pub created_at: Option<DateTime<Utc>>,
    pub timestamp: DateTime<Utc>,
    pub path: Option<String>,
    pub source: Option<String>,
    pub transcript: Option<String>,
}

/// Fields to change on a chunk; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkPatch {
    pub path: Option<String>,
    pub transcript: Option<String>,
    pub error: Option<String>,
    /// Diarization output and its health metrics.
    pub diarization: Option<serde_json::Value>,
    pub noise_ratio: Option<f64>,
    pub silence_ratio: Option<f64>,
    pub cross_talk_instances: Option<f64>,
    /// RunPod completion fields (processing.md §5.4).
    pub raw_transcript: Option<String>,
    pub hallucination_reason: Option<String>,
    pub hallucination_score: Option<f64>,
    pub desired_language: Option<String>,
    pub detected_language: Option<String>,
    pub detected_language_confidence: Option<f64>,
    /// `Some(None)` clears the link (the job is over), `Some(Some(link))` sets it.
    pub runpod_job_status_link: Option<Option<String>>,
    pub runpod_request_count: Option<i64>,
}

/// A `processing_status` row (processing.md §1.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewProcessingStatus {
    pub event: String,
    pub message: Option<String>,
    pub duration_ms: Option<i64>,
    pub parent: Option<i64>,
    pub conversation_id: Option<String>,
    pub conversation_chunk_id: Option<String>,
    pub project_id: Option<String>,
    pub project_analysis_run_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOrder {
    OldestFirst,
    NewestFirst,
}

/// `project_report_notification_participants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationParticipant {
    pub id: String,
    pub email: Option<String>,
    pub project_id: Option<String>,
    pub conversation_id: Option<String>,
    pub email_opt_in: Option<bool>,
    pub email_opt_out_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewNotificationParticipant {
    pub email: String,
    pub project_id: String,
    pub conversation_id: Option<String>,
    pub email_opt_in: bool,
}

/// `conversation_segment` (data-model.md §3.6): the unit the RAG index holds, one document each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: i64,
    pub conversation_id: Option<String>,
    pub transcript: Option<String>,
    pub contextual_transcript: Option<String>,
    pub lightrag_flag: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewSegment {
    pub conversation_id: String,
    pub transcript: Option<String>,
    pub contextual_transcript: Option<String>,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentPatch {
    pub transcript: Option<String>,
    pub contextual_transcript: Option<String>,
    pub lightrag_flag: Option<bool>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend's name in an outage answer.
    fn backend(&self) -> Dependency;

    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>>;
    async fn create_project(&self, project: NewProject) -> StoreResult<Project>;
    async fn create_project_tag(&self, id: &str, project_id: &str, text: Option<&str>, sort: Option<i64>) -> StoreResult<ProjectTag>;

    async fn get_conversation(&self, id: &str) -> StoreResult<Option<Conversation>>;
    /// Creates the conversation and its tag links in one write.
    async fn create_conversation(&self, conversation: NewConversation) -> StoreResult<Conversation>;
    async fn set_all_chunks_transcribed(&self, conversation_id: &str, value: bool) -> StoreResult<()>;

    /// Every chunk of a conversation (all pages), by `timestamp` then `id`.
    async fn list_chunks(&self, conversation_id: &str, order: ChunkOrder) -> StoreResult<Vec<Chunk>>;
    async fn get_chunk(&self, id: &str) -> StoreResult<Option<Chunk>>;
    /// Create-if-absent: an existing id is `StoreError::AlreadyExists`.
    async fn create_chunk(&self, chunk: NewChunk) -> StoreResult<Chunk>;
    /// Changes a chunk; false when it no longer exists.
    async fn update_chunk(&self, id: &str, patch: ChunkPatch) -> StoreResult<bool>;
    /// Deletes a chunk; already gone is fine (returns false).
    async fn delete_chunk(&self, id: &str) -> StoreResult<bool>;
    /// `(id, runpod_job_status_link)` of every chunk with a RunPod job in flight (all pages, by id).
    async fn runpod_pending_chunks(&self) -> StoreResult<Vec<(String, String)>>;

    /// Every conversation of a project (all pages), most recently created first.
    async fn list_conversations(&self, project_id: &str) -> StoreResult<Vec<Conversation>>;
    async fn update_conversation(&self, id: &str, patch: ConversationPatch) -> StoreResult<()>;
    /// Deletes a conversation; its chunks, segments and tag links go with it.
    async fn delete_conversation(&self, id: &str) -> StoreResult<bool>;
    async fn chunk_counts(&self, conversation_id: &str) -> StoreResult<ChunkCounts>;
    async fn create_conversation_link(&self, source_id: &str, target_id: &str, link_type: &str) -> StoreResult<()>;
    /// Earlier replies of a conversation, oldest first, at most `limit`.
    async fn list_replies(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Reply>>;
    /// Stores a reply linked both ways (D31): `conversation_id` and `reply` are the conversation.
    async fn create_reply(&self, conversation_id: &str, content_text: &str, kind: &str) -> StoreResult<Reply>;
    /// Segment ids of a conversation through both pipelines (processing.md §9.2).
    async fn segment_ids(&self, conversation_id: &str) -> StoreResult<Vec<i64>> {
        self.segments_for_conversations(&[conversation_id.to_string()]).await
    }
    /// Segment ids of these conversations through both links (processing.md §9.2), ascending,
    /// de-duplicated; ids that cannot be conversations match nothing.
    async fn segments_for_conversations(&self, conversation_ids: &[String]) -> StoreResult<Vec<i64>>;
    /// Segment ids of these projects' conversations through both links, ascending.
    async fn segments_for_projects(&self, project_ids: &[String]) -> StoreResult<Vec<i64>>;
    /// The new pipeline's segments of a conversation (linked by `conversation_id`), by id.
    async fn conversation_segments(&self, conversation_id: &str) -> StoreResult<Vec<Segment>>;
    async fn get_segment(&self, id: i64) -> StoreResult<Option<Segment>>;
    async fn create_segment(&self, segment: NewSegment) -> StoreResult<Segment>;
    /// Changes a segment; false when it no longer exists.
    async fn update_segment(&self, id: i64, patch: SegmentPatch) -> StoreResult<bool>;
    /// Deletes a `conversation_segment`; already gone is fine.
    async fn delete_segment(&self, id: i64) -> StoreResult<()>;
    /// Chunks recorded since `since` with their diarization metrics (null ones too), newest first.
    async fn recent_chunk_metrics(&self, scope: MetricsScope, since: DateTime<Utc>) -> StoreResult<Vec<ChunkMetrics>>;

    /// Collector pass A: unfinished conversations created before `idle_since` with no chunk
    /// recorded since then.
    async fn idle_unfinished_conversations(&self, idle_since: DateTime<Utc>) -> StoreResult<Vec<String>>;
    /// Collector pass B: finished conversations created since `since` that are not finalized.
    async fn unfinalized_conversations(&self, since: DateTime<Utc>) -> StoreResult<Vec<String>>;
    /// Collector pass C (processing.md §3.3): finalized conversations of projects with enhanced
    /// audio processing whose RAG indexing is not finished, oldest first, at most `limit`.
    async fn rag_backlog_conversations(&self, limit: u32) -> StoreResult<Vec<String>>;
    /// Writes a `processing_status` row; its id.
    async fn create_processing_status(&self, status: NewProcessingStatus) -> StoreResult<i64>;

    /// The id of the project's newest `project_analysis_run`.
    async fn latest_analysis_run(&self, project_id: &str) -> StoreResult<Option<String>>;
    /// Creates a `project_analysis_run` with the id the API chose; a taken id is `AlreadyExists`.
    async fn create_analysis_run(&self, id: &str, project_id: &str) -> StoreResult<()>;
    /// The project of an analysis run, when the run exists.
    async fn analysis_run_project(&self, run_id: &str) -> StoreResult<Option<String>>;
    /// Whether the topic modeler already wrote a `view` for this run and query.
    async fn analysis_run_has_view(&self, run_id: &str, user_input: &str) -> StoreResult<bool>;
    /// Ids of every `conversation_segment` of the project's conversations (both links).
    async fn project_segment_ids(&self, project_id: &str) -> StoreResult<Vec<i64>> {
        self.segments_for_projects(&[project_id.to_string()]).await
    }
    async fn create_report(&self, report: NewReport) -> StoreResult<Report>;

    async fn find_notification_participant(&self, email: &str, project_id: &str) -> StoreResult<Option<NotificationParticipant>>;
    async fn create_notification_participant(&self, row: NewNotificationParticipant) -> StoreResult<NotificationParticipant>;
    async fn delete_notification_participant(&self, id: &str) -> StoreResult<()>;
    /// Every row of the project with that opt-out token (all pages).
    async fn notification_participants_by_token(&self, project_id: &str, token: &str) -> StoreResult<Vec<NotificationParticipant>>;
    async fn set_notification_opt_in(&self, id: &str, email_opt_in: bool) -> StoreResult<()>;

    /// A chat and its context conversations (chat.rs).
    async fn get_chat(&self, id: &str) -> StoreResult<Option<Chat>>;
    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat>;
    /// Changes a chat; false when it no longer exists.
    async fn update_chat(&self, id: &str, patch: ChatPatch) -> StoreResult<bool>;
    /// Creates one `project_chat_conversation` row.
    async fn add_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<()>;
    /// Deletes the chat's rows for that conversation; false when there were none.
    async fn remove_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<bool>;
    /// Every message of a chat (all pages), ascending `date_created`.
    async fn list_chat_messages(&self, chat_id: &str) -> StoreResult<Vec<ChatMessage>>;
    /// Creates the message and its junction rows in one write.
    async fn create_chat_message(&self, message: NewChatMessage) -> StoreResult<ChatMessage>;
    /// Changes a message; false when it no longer exists.
    async fn update_chat_message(&self, id: &str, patch: ChatMessagePatch) -> StoreResult<bool>;
    /// Deletes a message; already gone is fine (returns false).
    async fn delete_chat_message(&self, id: &str) -> StoreResult<bool>;
}

pub type SharedStore = Arc<dyn Store>;

/// The backend the settings select.
pub async fn connect(settings: &crate::config::Settings) -> StoreResult<SharedStore> {
    use crate::config::StoreSettings;
    match &settings.store {
        StoreSettings::Sqlite { path } => Ok(Arc::new(SqliteStore::open(path, crate::offload::global().clone()).await?)),
        directus @ StoreSettings::Directus { .. } => Ok(Arc::new(DirectusStore::from_settings(directus)?)),
    }
}
