//! The EventBridge-triggered `scheduler` (processing.md §3.2): each schedule publishes one
//! message to the `network` queue; the work runs in `network-worker`.

use std::time::Duration;

use common::queue::{PublishError, Task, TaskMessage, TaskPublisher};
use serde_json::Value;

/// What the function refuses to start without (D63): the network queue it publishes to.
pub const REQUIRED_SETTINGS: &[&str] = &["NETWORK_QUEUE_URL"];

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("not a scheduled task: {0}")]
    Unknown(String),
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// The task a schedule's input names: the schedule passes the message itself as its input
/// (`{"task": ..., "version": 1, "args": {}}`); a plain EventBridge scheduled event runs the
/// collector. Only the two scheduled tasks are accepted.
pub fn scheduled_task(input: &Value) -> Result<Task, ScheduleError> {
    if input.get("task").is_none() && input.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        return Ok(Task::CollectAndFinishUnfinishedConversations {});
    }
    let message = TaskMessage::parse(&input.to_string()).map_err(|e| ScheduleError::Unknown(e.to_string()))?;
    match message.task {
        task @ (Task::CollectAndFinishUnfinishedConversations {} | Task::UpdateRunpodTranscriptionResponse {}) => Ok(task),
        other => Err(ScheduleError::Unknown(other.name().into())),
    }
}

/// Whether the RunPod poller runs: `TRANSCRIPTION_PROVIDER` contains `runpod`, any case
/// (processing.md §3.2); the legacy flag alone never polls, as in ECHO.
pub fn runpod_polling(transcription_provider: Option<&str>) -> bool {
    transcription_provider.is_some_and(|p| p.to_ascii_lowercase().contains("runpod"))
}

/// Publishes the scheduled task; `None` when the RunPod poller fires but RunPod is not the
/// provider (a schedule left over from an earlier deployment).
pub async fn handle(
    input: &Value,
    publisher: &dyn TaskPublisher,
    transcription_provider: Option<&str>,
) -> Result<Option<&'static str>, ScheduleError> {
    let task = scheduled_task(input)?;
    let name = task.name();
    if matches!(task, Task::UpdateRunpodTranscriptionResponse {}) && !runpod_polling(transcription_provider) {
        tracing::warn!(task = name, "TRANSCRIPTION_PROVIDER is not RunPod: nothing published");
        return Ok(None);
    }
    publisher.publish(task, Duration::ZERO).await?;
    tracing::info!(task = name, "scheduled task published");
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::queue::in_process::InProcessQueue;
    use serde_json::json;

    #[tokio::test]
    async fn schedules_publish_their_task() {
        let queue = InProcessQueue::new();
        let runpod = Some("Runpod");
        let collector = json!({"task": "task_collect_and_finish_unfinished_conversations", "version": 1, "args": {}});
        assert_eq!(handle(&collector, &queue, None).await.unwrap(), Some("task_collect_and_finish_unfinished_conversations"));
        let poller = json!({"task": "task_update_runpod_transcription_response", "version": 1, "args": {}});
        assert_eq!(handle(&poller, &queue, runpod).await.unwrap(), Some("task_update_runpod_transcription_response"));
        let bare = json!({"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(handle(&bare, &queue, runpod).await.unwrap(), Some("task_collect_and_finish_unfinished_conversations"));
        assert_eq!(queue.snapshot().len(), 3);
        assert!(queue.snapshot().iter().all(|m| m.queue == common::queue::Queue::Network));

        let other = json!({"task": "task_summarize_conversation", "version": 1, "args": {"conversation_id": "c"}});
        assert!(matches!(handle(&other, &queue, runpod).await, Err(ScheduleError::Unknown(_))));
        assert!(matches!(handle(&json!({"hello": 1}), &queue, runpod).await, Err(ScheduleError::Unknown(_))));
        assert_eq!(queue.snapshot().len(), 3, "nothing published for bad input");

        // The poller publishes only for RunPod.
        for provider in [None, Some("AssemblyAI"), Some("LiteLLM")] {
            assert_eq!(handle(&poller, &queue, provider).await.unwrap(), None, "{provider:?}");
        }
        assert_eq!(queue.snapshot().len(), 3);
        assert!(runpod_polling(Some("RUNPOD")) && runpod_polling(Some("my-runpod")));
    }
}
