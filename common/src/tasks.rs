//! The task contract (spec/processing.md §1.2, §2): a JSON envelope
//! `{"task", "version", "args", "sent_at", "trace_id"}` on the `audio` or `network` queue, and
//! the publishers that send it: SQS in Lambda, an in-process queue in echo-local.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, Dependency};

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

impl From<PublishError> for ApiError {
    fn from(err: PublishError) -> Self {
        match err {
            PublishError::Unavailable(reason) => ApiError::unavailable(Dependency::Queue, reason),
            PublishError::Config(reason) => ApiError::internal(reason),
        }
    }
}

#[async_trait]
pub trait TaskPublisher: Send + Sync + 'static {
    /// Sends one task, visible after `delay` (at most 900 s).
    async fn publish(&self, task: Task, delay: Duration) -> Result<(), PublishError>;
}

pub type SharedPublisher = Arc<dyn TaskPublisher>;

/// Sends to the two SQS queues.
pub struct SqsPublisher {
    client: aws_sdk_sqs::Client,
    audio_queue_url: String,
    network_queue_url: String,
}

impl SqsPublisher {
    pub fn new(client: aws_sdk_sqs::Client, audio_queue_url: String, network_queue_url: String) -> Self {
        SqsPublisher { client, audio_queue_url, network_queue_url }
    }

    /// A client for AWS, or for `endpoint` (a local SQS-protocol server) when given; static
    /// credentials when given, else the default chain (the Lambda role).
    pub async fn client(
        region: &str,
        endpoint: Option<&str>,
        credentials: Option<aws_credential_types::Credentials>,
    ) -> aws_sdk_sqs::Client {
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_sdk_sqs::config::Region::new(region.to_string()));
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(endpoint) = endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        aws_sdk_sqs::Client::from_conf(conf.build())
    }
}

#[async_trait]
impl TaskPublisher for SqsPublisher {
    async fn publish(&self, task: Task, delay: Duration) -> Result<(), PublishError> {
        let url = match task.queue() {
            Queue::Audio => &self.audio_queue_url,
            Queue::Network => &self.network_queue_url,
        };
        let name = task.name();
        let body = TaskMessage::new(task).to_json();
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_DELAY).as_secs() as i32)
            .message_attributes(
                "task",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(name)
                    .build()
                    .map_err(|e| PublishError::Config(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| PublishError::Unavailable(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
        tracing::info!(task = name, delay_s = delay.as_secs(), "task published");
        Ok(())
    }
}

/// The SQS publisher for the queues the settings name.
pub async fn connect_sqs(settings: &crate::config::Settings) -> Result<SharedPublisher, PublishError> {
    let q = &settings.queues;
    let (Some(audio), Some(network)) = (&q.audio_queue_url, &q.network_queue_url) else {
        return Err(PublishError::Config("AUDIO_QUEUE_URL and NETWORK_QUEUE_URL must be set".into()));
    };
    let client = SqsPublisher::client(&settings.s3.region, q.sqs_endpoint.as_deref(), None).await;
    Ok(Arc::new(SqsPublisher::new(client, audio.clone(), network.clone())))
}

/// A published message as the in-process queue keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedTask {
    pub queue: Queue,
    pub body: String,
    pub not_before: DateTime<Utc>,
}

/// A message the in-process queue gave up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub queue: Queue,
    pub body: String,
    pub task: String,
    pub error: String,
}

#[derive(Debug, Clone)]
struct Pending {
    id: String,
    queue: Queue,
    body: String,
    not_before: DateTime<Utc>,
    receive_count: u32,
}

#[derive(Default)]
struct QueueState {
    /// Every message ever published, oldest first.
    history: Vec<QueuedTask>,
    pending: Vec<Pending>,
    dead: Vec<DeadLetter>,
    next_id: u64,
}

/// echo-local's queue: the same message bodies SQS would carry, delivered to the same worker
/// handlers as one-record SQS events, with retries (the SQS backoff, scaled by `retry_scale`)
/// and a dead-letter list.
#[derive(Clone)]
pub struct InProcessQueue {
    state: Arc<Mutex<QueueState>>,
    retry_scale: f64,
}

impl Default for InProcessQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessQueue {
    pub fn new() -> Self {
        Self::with_retry_scale(1.0)
    }

    /// Retries wait `scale` × SQS's backoff (0 retries at once; tests use that).
    pub fn with_retry_scale(scale: f64) -> Self {
        InProcessQueue { state: Arc::default(), retry_scale: scale }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every message published so far, oldest first.
    pub fn snapshot(&self) -> Vec<QueuedTask> {
        self.lock().history.clone()
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.clone()
    }

    /// Messages waiting (due or delayed).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Delivers every due message of `runner`'s queue once, as one SQS event; how many.
    pub async fn deliver_due(&self, runner: &dyn crate::worker::TaskRunner, max_attempts: u32) -> usize {
        use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
        let now = Utc::now();
        let due: Vec<Pending> = {
            let mut state = self.lock();
            let (due, rest): (Vec<Pending>, Vec<Pending>) =
                std::mem::take(&mut state.pending).into_iter().partition(|p| p.queue == runner.queue() && p.not_before <= now);
            state.pending = rest;
            due
        };
        if due.is_empty() {
            return 0;
        }
        let mut event = SqsEvent::default();
        for p in &due {
            let mut record = SqsMessage::default();
            record.message_id = Some(p.id.clone());
            record.receipt_handle = Some(p.id.clone());
            record.body = Some(p.body.clone());
            record.attributes.insert("ApproximateReceiveCount".into(), (p.receive_count + 1).to_string());
            event.records.push(record);
        }
        let ops = InProcessOps { queue: self.clone(), kind: runner.queue(), delays: Mutex::default() };
        let response = crate::worker::handle_batch(runner, &ops, event, max_attempts, None).await;
        let delays = ops.delays.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut state = self.lock();
        for failure in response.batch_item_failures {
            if let Some(p) = due.iter().find(|p| p.id == failure.item_identifier) {
                let delay = delays.get(&p.id).copied().unwrap_or_default().mul_f64(self.retry_scale);
                let not_before = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                state.pending.push(Pending { receive_count: p.receive_count + 1, not_before, ..p.clone() });
            }
        }
        due.len()
    }

    /// Delivers due messages to the runners until none is due (delayed ones stay); at most
    /// `rounds` rounds.
    pub async fn run_until_idle(&self, runners: &[&dyn crate::worker::TaskRunner], max_attempts: u32, rounds: usize) -> usize {
        let mut delivered = 0;
        for _ in 0..rounds {
            let mut this_round = 0;
            for runner in runners {
                this_round += self.deliver_due(*runner, max_attempts).await;
            }
            if this_round == 0 {
                break;
            }
            delivered += this_round;
        }
        delivered
    }
}

struct InProcessOps {
    queue: InProcessQueue,
    kind: Queue,
    delays: Mutex<std::collections::HashMap<String, Duration>>,
}

#[async_trait]
impl crate::worker::QueueOps for InProcessOps {
    async fn dead_letter(&self, body: &str, task: &str, error: &str) -> Result<(), String> {
        tracing::error!(task, error, "in-process dead letter");
        self.queue.lock().dead.push(DeadLetter { queue: self.kind, body: body.into(), task: task.into(), error: error.into() });
        Ok(())
    }

    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), String> {
        self.delays.lock().unwrap_or_else(|p| p.into_inner()).insert(receipt_handle.to_string(), delay);
        Ok(())
    }
}

#[async_trait]
impl TaskPublisher for InProcessQueue {
    async fn publish(&self, task: Task, delay: Duration) -> Result<(), PublishError> {
        let delay = delay.min(MAX_DELAY);
        let queue = task.queue();
        let name = task.name();
        let body = TaskMessage::new(task).to_json();
        tracing::info!(task = name, ?queue, delay_s = delay.as_secs(), %body, "task queued in process");
        let not_before = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("local-{}", state.next_id);
        state.history.push(QueuedTask { queue, body: body.clone(), not_before });
        state.pending.push(Pending { id, queue, body, not_before, receive_count: 0 });
        Ok(())
    }
}

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

    #[tokio::test]
    async fn in_process_queue_keeps_the_wire_body() {
        let queue = InProcessQueue::new();
        queue.publish(Task::FinishConversationHook { conversation_id: "c".into() }, Duration::from_secs(5000)).await.unwrap();
        let kept = queue.snapshot();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].queue, Queue::Network);
        let msg = TaskMessage::parse(&kept[0].body).unwrap();
        assert_eq!(msg.task, Task::FinishConversationHook { conversation_id: "c".into() });
        // Delays are capped at SQS's 900 s.
        assert!(kept[0].not_before <= Utc::now() + chrono::Duration::seconds(901));
    }
}
