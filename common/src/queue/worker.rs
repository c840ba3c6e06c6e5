//! How a worker treats an SQS batch (processing.md §1.3): every record on its own, inside a
//! panic boundary; success and skips are acknowledged; terminal failures run the task's
//! final-failure action, go to the dead-letter queue with the reason, and are acknowledged;
//! transient failures are reported as batch item failures with a growing visibility timeout,
//! until the last attempt, which is handled as terminal.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::FutureExt;

use super::{PublishError, Queue, Task, TaskMessage};
use crate::telemetry::error_reports::ErrorScope;

/// How a task ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Completed,
    /// Nothing to do: gone, already done, or switched off.
    Skipped(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// Worth another try later: an outage, a timeout, a 429 or 5xx.
    #[error("transient: {0}")]
    Transient(String),
    /// Can never succeed: bad input, a refused request, missing configuration.
    #[error("terminal: {0}")]
    Terminal(String),
}

impl TaskError {
    pub fn transient(reason: impl std::fmt::Display) -> Self {
        TaskError::Transient(reason.to_string())
    }
    pub fn terminal(reason: impl std::fmt::Display) -> Self {
        TaskError::Terminal(reason.to_string())
    }
}

impl From<crate::store::StoreError> for TaskError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Invalid { .. } => TaskError::terminal(err),
            other => TaskError::transient(other),
        }
    }
}

impl From<crate::blob::BlobError> for TaskError {
    fn from(err: crate::blob::BlobError) -> Self {
        match err {
            crate::blob::BlobError::Config(_) => TaskError::terminal(err),
            other => TaskError::transient(other),
        }
    }
}

impl From<PublishError> for TaskError {
    fn from(err: PublishError) -> Self {
        TaskError::transient(err)
    }
}

impl From<crate::providers::llm::LlmError> for TaskError {
    fn from(err: crate::providers::llm::LlmError) -> Self {
        match err {
            crate::providers::llm::LlmError::Unavailable(_) => TaskError::transient(err),
            other => TaskError::terminal(other),
        }
    }
}

impl From<crate::providers::rag::RagError> for TaskError {
    fn from(err: crate::providers::rag::RagError) -> Self {
        match err {
            crate::providers::rag::RagError::Unavailable(_) => TaskError::transient(err),
            crate::providers::rag::RagError::Other(_) => TaskError::terminal(err),
        }
    }
}

impl From<crate::offload::OffloadError> for TaskError {
    fn from(err: crate::offload::OffloadError) -> Self {
        TaskError::transient(err)
    }
}

/// One delivery of a message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    pub max_attempts: u32,
    /// When the invocation must be done (Lambda's deadline), if known.
    pub deadline: Option<Instant>,
}

impl Delivery {
    pub fn is_last_attempt(&self) -> bool {
        self.receive_count >= self.max_attempts
    }

    /// Whether a step estimated to take `estimate` still fits, with 30 s to spare.
    pub fn has_time_for(&self, estimate: Duration) -> bool {
        self.deadline.is_none_or(|d| Instant::now() + estimate + Duration::from_secs(30) <= d)
    }
}

/// The tasks of one queue.
#[async_trait]
pub trait TaskRunner: Send + Sync {
    fn queue(&self) -> Queue;
    async fn run(&self, task: &Task, delivery: &Delivery) -> Result<Done, TaskError>;
    /// The final-failure action: record the failure where the task says (a chunk's `error`, a
    /// `processing_status` row). Runs after a terminal error and after the last transient one.
    async fn give_up(&self, task: &Task, reason: &str);
}

/// The queue operations a failure needs.
#[async_trait]
pub trait QueueOps: Send + Sync {
    /// A copy of a message that can never succeed, with why.
    async fn dead_letter(&self, body: &str, task: &str, error: &str) -> Result<(), String>;
    /// When a retried message becomes visible again.
    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), String>;
}

/// `min(900, 15 × 2^(n−1))` seconds after the n-th failed delivery.
pub fn backoff(receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(10);
    Duration::from_secs((15u64 << exponent).min(900))
}

/// Handles every record; the response names only those to retry.
pub async fn handle_batch(
    runner: &dyn TaskRunner,
    ops: &dyn QueueOps,
    event: SqsEvent,
    max_attempts: u32,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
        let delivery = Delivery { message_id: id.clone(), receive_count, max_attempts, deadline };
        // The sender's X-Ray trace, so the logs (and what this task publishes) join its request.
        let trace = record.attributes.get("AWSTraceHeader").cloned();
        let span = tracing::info_span!("task", message_id = %id, receive_count, trace_header = tracing::field::Empty);
        if let Some(trace) = &trace {
            span.record("trace_header", trace.as_str());
        }
        let handled = tracing::Instrument::instrument(handle_record(runner, ops, &record, &delivery), span);
        let failed = crate::telemetry::with_trace_header(trace, handled).await;
        if failed && !id.is_empty() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// True when the record must be retried. A final failure (and a panic) is reported to Sentry,
/// tagged with the task, and sent before the record's handling ends.
async fn handle_record(runner: &dyn TaskRunner, ops: &dyn QueueOps, record: &SqsMessage, delivery: &Delivery) -> bool {
    let reports = ErrorScope::new(&[("message_id", &delivery.message_id)]);
    let retry = reports.bind(handle_record_in(&reports, runner, ops, record, delivery)).await;
    reports.flush_if_reported().await;
    retry
}

/// Every end is counted (`telemetry::metrics`).
async fn handle_record_in(
    reports: &ErrorScope,
    runner: &dyn TaskRunner,
    ops: &dyn QueueOps,
    record: &SqsMessage,
    delivery: &Delivery,
) -> bool {
    use crate::telemetry::metrics::{TaskOutcome, task_finished};
    let body = record.body.as_deref().unwrap_or_default();
    let started = Instant::now();
    let message = match TaskMessage::parse(body) {
        Ok(m) if m.task.queue() == runner.queue() => m,
        Ok(m) => {
            reports.set_tag("task", m.task.name());
            let retry = terminal(reports, ops, body, m.task.name(), &format!("task belongs to the {:?} queue", m.task.queue())).await;
            task_finished(m.task.name(), TaskOutcome::Terminal, !retry, started.elapsed());
            return retry;
        }
        Err(err) => {
            reports.set_tag("task", "unparseable");
            let retry = terminal(reports, ops, body, "unparseable", &err.to_string()).await;
            task_finished("unparseable", TaskOutcome::Terminal, !retry, started.elapsed());
            return retry;
        }
    };
    let name = message.task.name();
    reports.set_tag("task", name);
    let outcome = std::panic::AssertUnwindSafe(runner.run(&message.task, delivery)).catch_unwind().await;
    let outcome = outcome.unwrap_or_else(|panic| {
        let reason = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(TaskError::transient(format!("panicked: {}", reason.unwrap_or_default())))
    });
    let ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(Done::Completed) => {
            tracing::info!(task = name, ms, "task completed");
            task_finished(name, TaskOutcome::Processed, false, started.elapsed());
            false
        }
        Ok(Done::Skipped(why)) => {
            tracing::info!(task = name, ms, %why, "task skipped");
            task_finished(name, TaskOutcome::Processed, false, started.elapsed());
            false
        }
        Err(TaskError::Transient(reason)) if !delivery.is_last_attempt() => {
            let delay = backoff(delivery.receive_count);
            tracing::warn!(task = name, ms, %reason, retry_in_s = delay.as_secs(), "task failed; will retry");
            if let Err(err) = ops.retry_after(record.receipt_handle.as_deref().unwrap_or_default(), delay).await {
                tracing::warn!(%err, "could not set the retry delay; the queue's visibility timeout applies");
            }
            task_finished(name, TaskOutcome::Transient, false, started.elapsed());
            true
        }
        Err(TaskError::Transient(reason) | TaskError::Terminal(reason)) => {
            runner.give_up(&message.task, &reason).await;
            let retry = terminal(reports, ops, body, name, &reason).await;
            task_finished(name, TaskOutcome::Terminal, !retry, started.elapsed());
            retry
        }
    }
}

/// Reports a final failure and parks the message in the dead-letter queue; if even that fails,
/// SQS's redrive will.
async fn terminal(reports: &ErrorScope, ops: &dyn QueueOps, body: &str, task: &str, reason: &str) -> bool {
    tracing::error!(task, %reason, "task failed for good");
    reports.report(&format!("{task} failed for good: {reason}"));
    match ops.dead_letter(body, task, reason).await {
        Ok(()) => false,
        Err(err) => {
            tracing::error!(%err, "could not dead-letter the message; leaving it to the queue's redrive");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Completes, fails transiently or terminally by the conversation id it is given.
    struct ByConversation;

    #[async_trait]
    impl TaskRunner for ByConversation {
        fn queue(&self) -> Queue {
            Queue::Network
        }
        async fn run(&self, task: &Task, _: &Delivery) -> Result<Done, TaskError> {
            match task {
                Task::FinishConversationHook { conversation_id } if conversation_id == "ok" => Ok(Done::Completed),
                Task::FinishConversationHook { conversation_id } if conversation_id == "later" => Err(TaskError::transient("outage")),
                _ => Err(TaskError::terminal("bad input")),
            }
        }
        async fn give_up(&self, _: &Task, _: &str) {}
    }

    struct Accepting;

    #[async_trait]
    impl QueueOps for Accepting {
        async fn dead_letter(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        async fn retry_after(&self, _: &str, _: Duration) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_delivery_is_an_emf_line() {
        let mut event = SqsEvent::default();
        for id in ["ok", "later", "broken"] {
            let mut record = SqsMessage::default();
            record.message_id = Some(id.into());
            record.body = Some(TaskMessage::new(Task::FinishConversationHook { conversation_id: id.into() }).to_json());
            event.records.push(record);
        }
        let (response, lines) = crate::telemetry::metrics::capture(handle_batch(&ByConversation, &Accepting, event, 5, None)).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        let figures = |line: &serde_json::Value| {
            let names = ["TaskProcessed", "TaskFailedTransient", "TaskFailedTerminal", "TaskDeadLettered"];
            names.map(|n| line[n].as_f64().unwrap_or(-1.0))
        };
        assert_eq!(lines.len(), 3);
        assert_eq!(figures(&lines[0]), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(figures(&lines[1]), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(figures(&lines[2]), [0.0, 0.0, 1.0, 1.0]);
        for line in &lines {
            assert_eq!(line["TaskType"], "task_finish_conversation_hook");
            assert!(line["TaskDuration"].as_f64().is_some_and(|ms| ms >= 0.0));
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], crate::telemetry::metrics::NAMESPACE);
            assert_eq!(directive["Dimensions"], serde_json::json!([["TaskType"], []]));
            let declared: Vec<&str> = directive["Metrics"].as_array().unwrap().iter().filter_map(|m| m["Name"].as_str()).collect();
            assert_eq!(declared, ["TaskProcessed", "TaskFailedTransient", "TaskFailedTerminal", "TaskDeadLettered", "TaskDuration"]);
            assert!(line["OffloadWaiting"].is_u64() && line["OffloadRunning"].is_u64());
        }
    }

    #[test]
    fn backoff_grows_to_fifteen_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(15));
        assert_eq!(backoff(2), Duration::from_secs(30));
        assert_eq!(backoff(4), Duration::from_secs(120));
        assert_eq!(backoff(9), Duration::from_secs(900));
        assert_eq!(backoff(40), Duration::from_secs(900));
    }
}
