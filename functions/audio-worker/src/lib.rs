//! The `audio` queue (ECHO's `cpu` queue): chunk processing (convert, split, fan out
//! transcription) and merges (processing.md §4).

use async_trait::async_trait;
use common::Services;
use common::queue::worker::{Delivery, Done, TaskError, TaskRunner};
use common::queue::{Queue, Task};

mod chunk;

/// What the function refuses to start without (D63): the store, storage, both queues and its dead-letter queue.
pub const REQUIRED_SETTINGS: &[&str] =
    &["DIRECTUS_TOKEN", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL", "AUDIO_DLQ_URL"];

pub struct AudioWorker {
    pub services: Services,
}

impl AudioWorker {
    pub fn new(services: Services) -> Self {
        AudioWorker { services }
    }
}

#[async_trait]
impl TaskRunner for AudioWorker {
    fn queue(&self) -> Queue {
        Queue::Audio
    }

    async fn run(&self, task: &Task, delivery: &Delivery) -> Result<Done, TaskError> {
        match task {
            Task::ProcessConversationChunk { chunk_id, use_pii_redaction } => {
                chunk::process(&self.services, chunk_id, *use_pii_redaction, delivery).await
            }
            Task::MergeConversationChunks { conversation_id } => merge(&self.services, conversation_id).await,
            other => Err(TaskError::terminal(format!("{} does not belong to the audio queue", other.name()))),
        }
    }

    async fn give_up(&self, task: &Task, reason: &str) {
        if let Task::ProcessConversationChunk { chunk_id, .. } = task {
            chunk::record_failure(&self.services, chunk_id, reason).await;
        }
    }
}

/// `task_merge_conversation_chunks`: the merge routine; nothing to merge is a skip (D52).
async fn merge(services: &Services, conversation_id: &str) -> Result<Done, TaskError> {
    use common::flows::merge::{MergeError, merge_unless_current};
    use common::flows::pipeline::{StatusIds, StatusStep};
    let Some(conversation) = services.store.get_conversation(conversation_id).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let ids = StatusIds { conversation_id: Some(conversation_id.into()), ..Default::default() };
    let step = StatusStep::start(services, "task_merge_conversation_chunks", format!("for conversation {conversation_id}"), ids).await;
    let result = merge_unless_current(services, conversation_id, conversation.merged_audio_path.as_deref()).await;
    let outcome = match result {
        Ok(None) => Ok(Done::Skipped("already merged".into())),
        Ok(Some(merged)) => {
            tracing::info!(conversation_id, url = %merged.url, duration = merged.duration, "conversation merged");
            Ok(Done::Completed)
        }
        Err(MergeError::NoChunks) => Ok(Done::Skipped("no chunks".into())),
        Err(MergeError::NoContent) => Ok(Done::Skipped("no audio chunk".into())),
        Err(MergeError::Failed(reason)) => Err(TaskError::Terminal(reason)),
        Err(MergeError::Store(e)) => Err(e.into()),
        Err(MergeError::Blob(e)) => Err(e.into()),
    };
    step.finish_with(&outcome).await;
    outcome
}
