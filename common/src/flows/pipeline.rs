//! Steps the workers share: the completion trigger (processing.md §3.5), the finish hook
//! (§3.4), `processing_status` rows (§1.5, best-effort), and where a chunk's audio is.

use std::time::{Duration, Instant};

use crate::Services;
use crate::queue::{PublishError, Task};
use crate::store::{ConversationPatch, NewProcessingStatus, StoreError};

/// The object key of a chunk's audio; a chunk without one can never be transcribed.
pub fn audio_key(services: &Services, chunk: &crate::store::Chunk) -> Result<String, crate::queue::worker::TaskError> {
    use crate::queue::worker::TaskError;
    let path = chunk.path.as_deref().ok_or_else(|| TaskError::terminal("no audio path"))?;
    services.blob.key_from_url(path).ok_or_else(|| TaskError::terminal("the path names no object"))
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl From<PipelineError> for crate::queue::worker::TaskError {
    fn from(err: PipelineError) -> Self {
        match err {
            PipelineError::Store(e) => e.into(),
            PipelineError::Publish(e) => e.into(),
        }
    }
}

/// After a chunk got its transcript or error: if the conversation is finished and nothing is
/// pending any more, queue the finish hook.
pub async fn completion_trigger(services: &Services, conversation_id: &str) -> Result<(), PipelineError> {
    let Some(conversation) = services.store.get_conversation(conversation_id).await? else { return Ok(()) };
    if conversation.is_finished != Some(true) {
        return Ok(());
    }
    let c = services.store.chunk_counts(conversation_id).await?;
    if c.total == c.error + c.ok {
        services.tasks.publish(Task::FinishConversationHook { conversation_id: conversation_id.into() }, Duration::ZERO).await?;
    }
    Ok(())
}

/// A final failure on a chunk: its `error` is set to `message`, then the completion trigger runs.
/// Best-effort (a task's final-failure action): failures are logged.
pub async fn record_chunk_failure(services: &Services, chunk_id: &str, message: String) {
    let chunk = match services.store.get_chunk(chunk_id).await {
        Ok(Some(chunk)) => chunk,
        Ok(None) => return,
        Err(err) => return tracing::error!(%err, chunk_id, "could not record the chunk's error"),
    };
    // A RunPod job still linked would keep the poller asking about a chunk that is done.
    let link = chunk.runpod_job_status_link.is_some().then_some(None);
    let patch = crate::store::ChunkPatch { error: Some(message), runpod_job_status_link: link, ..Default::default() };
    if let Err(err) = services.store.update_chunk(chunk_id, patch).await {
        return tracing::error!(%err, chunk_id, "could not record the chunk's error");
    }
    if let Err(err) = completion_trigger(services, &chunk.conversation_id).await {
        tracing::error!(%err, chunk_id, "completion trigger failed");
    }
}

/// What the finish hook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Gone,
    /// Finalised before and nothing new since: merge and summary were queued then, not again.
    AlreadyFinal,
    /// Chunks are still being processed; a later completion re-runs the hook.
    Pending(u64),
    Finalized,
}

/// `task_finish_conversation_hook`: mark finished; when nothing is pending, queue merge and
/// summary (and ETL when RAG is on), then mark all chunks transcribed. Re-runnable.
pub async fn finish_conversation(services: &Services, conversation_id: &str, rag_enabled: bool) -> Result<Finish, PipelineError> {
    let store = &services.store;
    let Some(conversation) = store.get_conversation(conversation_id).await? else { return Ok(Finish::Gone) };
    // The flag is set last, after the follow-ups are queued, and a new chunk clears it (D50).
    if conversation.is_finished == Some(true) && conversation.is_all_chunks_transcribed == Some(true) {
        return Ok(Finish::AlreadyFinal);
    }
    if conversation.is_finished != Some(true) {
        store.update_conversation(conversation_id, ConversationPatch { is_finished: Some(true), ..Default::default() }).await?;
    }
    let c = store.chunk_counts(conversation_id).await?;
    let pending = c.total.saturating_sub(c.error + c.ok);
    if pending > 0 {
        return Ok(Finish::Pending(pending));
    }
    // In this order, so a crash between steps never loses a follow-up.
    services.tasks.publish(Task::MergeConversationChunks { conversation_id: conversation_id.into() }, Duration::ZERO).await?;
    services.tasks.publish(Task::SummarizeConversation { conversation_id: conversation_id.into() }, Duration::ZERO).await?;
    if rag_enabled {
        match store.get_project(&conversation.project_id).await {
            Ok(Some(p)) if p.is_enhanced_audio_processing_enabled == Some(true) => {
                let task = Task::RunEtlPipeline { conversation_id: conversation_id.into(), segment_id: None, continuation: 0 };
                services.tasks.publish(task, Duration::ZERO).await?;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "reading the project's RAG flag failed; no ETL"),
        }
    }
    if conversation.is_all_chunks_transcribed != Some(true) {
        store
            .update_conversation(conversation_id, ConversationPatch { is_all_chunks_transcribed: Some(true), ..Default::default() })
            .await?;
    }
    Ok(Finish::Finalized)
}

/// The ids a `processing_status` row carries.
#[derive(Debug, Clone, Default)]
pub struct StatusIds {
    pub conversation_id: Option<String>,
    pub conversation_chunk_id: Option<String>,
    pub project_id: Option<String>,
    pub project_analysis_run_id: Option<String>,
}

impl StatusIds {
    /// A chunk's row: its conversation and itself.
    pub fn for_chunk(chunk: &crate::store::Chunk) -> Self {
        StatusIds {
            conversation_id: Some(chunk.conversation_id.clone()),
            conversation_chunk_id: Some(chunk.id.clone()),
            ..Default::default()
        }
    }
}

/// A step's message with why it ended (ECHO's exit message or the error), as its end row says it.
pub fn with_reason(message: &str, reason: &str) -> String {
    format!("{message} -\n {reason}")
}

/// How a step that succeeded ended: an exit message when it stopped early (a skip).
pub trait StepExit {
    fn exit_message(&self) -> Option<&str> {
        None
    }
}

impl StepExit for () {}

impl StepExit for crate::queue::worker::Done {
    fn exit_message(&self) -> Option<&str> {
        match self {
            crate::queue::worker::Done::Skipped(reason) => Some(reason),
            crate::queue::worker::Done::Completed => None,
        }
    }
}

/// A step's `.started` row; `finish` writes `.completed` or `.failed`. Never fails the task.
pub struct StatusStep<'a> {
    services: &'a Services,
    prefix: &'static str,
    message: String,
    ids: StatusIds,
    parent: Option<i64>,
    started: Instant,
}

impl<'a> StatusStep<'a> {
    pub async fn start(services: &'a Services, prefix: &'static str, message: String, ids: StatusIds) -> StatusStep<'a> {
        let parent = write(services, format!("{prefix}.started"), Some(message.clone()), None, None, &ids).await;
        StatusStep { services, prefix, message, ids, parent, started: Instant::now() }
    }

    /// `.completed` whose message is the reason the step ended early (its exit message, §1.5):
    /// a skip inside a step is one completion, never a row of its own.
    pub async fn finish_early(self, exit_message: &str) {
        let ms = self.started.elapsed().as_millis() as i64;
        let message = Some(exit_message.to_string());
        write(self.services, format!("{}.completed", self.prefix), message, Some(ms), self.parent, &self.ids).await;
    }

    /// `.completed` for `Ok` (with the exit message of a skip), `.failed` with the error's text
    /// for `Err`.
    pub async fn finish_with<T: StepExit, E: std::fmt::Display>(self, outcome: &Result<T, E>) {
        match outcome {
            Ok(done) => match done.exit_message() {
                Some(exit) => self.finish_early(exit).await,
                None => self.finish(Ok(())).await,
            },
            Err(err) => self.finish(Err(&err.to_string())).await,
        }
    }

    pub async fn finish(self, result: Result<(), &str>) {
        let ms = self.started.elapsed().as_millis() as i64;
        let (event, message) = match result {
            Ok(()) => (format!("{}.completed", self.prefix), self.message.clone()),
            Err(error) => (format!("{}.failed", self.prefix), with_reason(&self.message, error)),
        };
        write(self.services, event, Some(message), Some(ms), self.parent, &self.ids).await;
    }
}

async fn write(
    services: &Services,
    event: String,
    message: Option<String>,
    duration_ms: Option<i64>,
    parent: Option<i64>,
    ids: &StatusIds,
) -> Option<i64> {
    let row = NewProcessingStatus {
        event,
        message,
        duration_ms,
        parent,
        conversation_id: ids.conversation_id.clone(),
        conversation_chunk_id: ids.conversation_chunk_id.clone(),
        project_id: ids.project_id.clone(),
        project_analysis_run_id: ids.project_analysis_run_id.clone(),
    };
    match services.store.create_processing_status(row).await {
        Ok(id) => Some(id),
        Err(err) => {
            tracing::warn!(%err, "processing_status write failed");
            None
        }
    }
}

/// A single status row (for a record that is not a step, like "no provider configured").
pub async fn record_status(services: &Services, event: String, message: String, ids: StatusIds) {
    write(services, event, Some(message), None, None, &ids).await;
}
