//! The task contract (spec/processing.md §1.2, §2): a JSON envelope
//! `{"task", "version", "args", "sent_at", "trace_id"}` on the `audio` or `network` queue, and
//! the publisher interface. `sqs` sends it in Lambda and `in_process` in echo-local; `worker`
//! runs the handlers a queue delivers to.

pub mod in_process;
pub mod sqs;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MESSAGE_VERSION: u32 = 1;
/// SQS's largest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Queue {
    /// ffmpeg work (ECHO's `cpu` queue).
    Audio,
    Network,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Every task, named as ECHO's actors; fields are the message `args`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", content = "args")]
pub enum Task {
    #[serde(rename = "task_process_conversation_chunk")]
    ProcessConversationChunk {
        chunk_id: String,
        #[serde(default, skip_serializing_if = "is_false")]
        use_pii_redaction: bool,
    },
    #[serde(rename = "task_transcribe_chunk")]
    TranscribeChunk {
        conversation_chunk_id: String,
        conversation_id: String,
        #[serde(default, skip_serializing_if = "is_false")]
        use_pii_redaction: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_job_id: Option<String>,
        #[serde(default, skip_serializing_if = "is_zero")]
        continuation: u32,
    },
    #[serde(rename = "task_finish_conversation_hook")]
    FinishConversationHook { conversation_id: String },
    #[serde(rename = "task_merge_conversation_chunks")]
    MergeConversationChunks { conversation_id: String },
    #[serde(rename = "task_summarize_conversation")]
    SummarizeConversation { conversation_id: String },
    #[serde(rename = "task_run_etl_pipeline")]
    RunEtlPipeline {
        conversation_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        segment_id: Option<i64>,
        #[serde(default, skip_serializing_if = "is_zero")]
        continuation: u32,
    },
    #[serde(rename = "task_collect_and_finish_unfinished_conversations")]
    CollectAndFinishUnfinishedConversations {},
    #[serde(rename = "task_create_project_library")]
    CreateProjectLibrary { project_id: String, language: String, project_analysis_run_id: String },
    #[serde(rename = "task_create_view")]
    CreateView { project_analysis_run_id: String, user_query: String, user_query_context: String, language: String },
    #[serde(rename = "task_update_runpod_transcription_response")]
    UpdateRunpodTranscriptionResponse {},
    #[serde(rename = "task_process_runpod_chunk_response")]
    ProcessRunpodChunkResponse { chunk_id: String, status_link: String },
    #[serde(rename = "task_get_runpod_diarization")]
    GetRunpodDiarization { chunk_id: String },
    #[serde(rename = "task_delete_conversation_artifacts")]
    DeleteConversationArtifacts { conversation_id: String, segment_ids: Vec<i64> },
    #[serde(rename = "task_delete_storage_objects")]
    DeleteStorageObjects {
        keys: Vec<String>,
        prefixes: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chunk_id: Option<String>,
    },
}

impl Task {
    /// Each task belongs to exactly one queue.
    pub fn queue(&self) -> Queue {
        match self {
            Task::ProcessConversationChunk { .. } | Task::MergeConversationChunks { .. } => Queue::Audio,
            _ => Queue::Network,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Task::ProcessConversationChunk { .. } => "task_process_conversation_chunk",
            Task::TranscribeChunk { .. } => "task_transcribe_chunk",
            Task::FinishConversationHook { .. } => "task_finish_conversation_hook",
            Task::MergeConversationChunks { .. } => "task_merge_conversation_chunks",
            Task::SummarizeConversation { .. } => "task_summarize_conversation",
            Task::RunEtlPipeline { .. } => "task_run_etl_pipeline",
            Task::CollectAndFinishUnfinishedConversations {} => "task_collect_and_finish_unfinished_conversations",
            Task::CreateProjectLibrary { .. } => "task_create_project_library",
            Task::CreateView { .. } => "task_create_view",
            Task::UpdateRunpodTranscriptionResponse {} => "task_update_runpod_transcription_response",
            Task::ProcessRunpodChunkResponse { .. } => "task_process_runpod_chunk_response",
            Task::GetRunpodDiarization { .. } => "task_get_runpod_diarization",
            Task::DeleteConversationArtifacts { .. } => "task_delete_conversation_artifacts",
            Task::DeleteStorageObjects { .. } => "task_delete_storage_objects",
        }
    }
}

/// The message on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub task: Task,
    pub version: u32,
    pub sent_at: DateTime<Utc>,
    pub trace_id: Option<String>,
}

/// Why a message body is not a task we can run: always terminal.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("message is not a JSON object: {0}")]
    NotJson(String),
    #[error("unsupported message version {0:?}")]
    Version(Value),
    #[error("unknown task or bad args: {0}")]
    Task(String),
}

impl TaskMessage {
    pub fn new(task: Task) -> Self {
        TaskMessage { task, version: MESSAGE_VERSION, sent_at: Utc::now(), trace_id: None }
    }

    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(&self.task).expect("tasks serialize");
        let obj = value.as_object_mut().expect("adjacently tagged enums are objects");
        obj.entry("args").or_insert_with(|| Value::Object(Default::default()));
        obj.insert("version".into(), self.version.into());
        obj.insert("sent_at".into(), self.sent_at.to_rfc3339_opts(SecondsFormat::Secs, true).into());
        if let Some(trace) = &self.trace_id {
            obj.insert("trace_id".into(), trace.clone().into());
        }
        value.to_string()
    }

    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let value: Value = serde_json::from_str(body).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(MessageError::NotJson("not an object".into()));
        };
        let version = obj.remove("version").unwrap_or(Value::Null);
        if version.as_u64() != Some(MESSAGE_VERSION as u64) {
            return Err(MessageError::Version(version));
        }
        let sent_at = obj
            .remove("sent_at")
            .and_then(|v| v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()))
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let trace_id = obj.remove("trace_id").and_then(|v| v.as_str().map(str::to_string));
        obj.entry("args").or_insert_with(|| Value::Object(Default::default()));
        let task = serde_json::from_value(Value::Object(obj)).map_err(|e| MessageError::Task(e.to_string()))?;
        Ok(TaskMessage { task, version: MESSAGE_VERSION, sent_at, trace_id })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("task queue unavailable: {0}")]
    Unavailable(String),
    #[error("task queue misconfigured: {0}")]
    Config(String),
}

#[async_trait]
pub trait TaskPublisher: Send + Sync + 'static {
    /// Sends one task, visible after `delay` (at most 900 s).
    async fn publish(&self, task: Task, delay: Duration) -> Result<(), PublishError>;
}

pub type SharedPublisher = Arc<dyn TaskPublisher>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_round_trips() {
        let task = Task::ProcessConversationChunk { chunk_id: "c1".into(), use_pii_redaction: false };
        let msg = TaskMessage::new(task.clone());
        let value: Value = serde_json::from_str(&msg.to_json()).unwrap();
        assert_eq!(value["task"], "task_process_conversation_chunk");
        assert_eq!(value["version"], 1);
        assert_eq!(value["args"], json!({"chunk_id": "c1"}));
        assert!(value["sent_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(TaskMessage::parse(&msg.to_json()).unwrap().task, task);
        assert_eq!(task.queue(), Queue::Audio);
    }

    #[test]
    fn argless_tasks_have_empty_args() {
        let body = TaskMessage::new(Task::CollectAndFinishUnfinishedConversations {}).to_json();
        let value: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["args"], json!({}));
        let parsed = TaskMessage::parse(r#"{"task":"task_collect_and_finish_unfinished_conversations","version":1}"#).unwrap();
        assert_eq!(parsed.task, Task::CollectAndFinishUnfinishedConversations {});
    }

    #[test]
    fn bad_messages_are_named() {
        assert!(matches!(TaskMessage::parse("not json"), Err(MessageError::NotJson(_))));
        assert!(matches!(
            TaskMessage::parse(r#"{"task":"task_finish_conversation_hook","version":2,"args":{"conversation_id":"c"}}"#),
            Err(MessageError::Version(_))
        ));
        assert!(matches!(TaskMessage::parse(r#"{"task":"task_unknown","version":1,"args":{}}"#), Err(MessageError::Task(_))));
        assert!(matches!(
            TaskMessage::parse(r#"{"task":"task_finish_conversation_hook","version":1,"args":{}}"#),
            Err(MessageError::Task(_))
        ));
    }
}
