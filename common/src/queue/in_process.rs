//! echo-local's queue: SQS's message bodies and redelivery, in process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::worker::{QueueOps, TaskRunner, handle_batch};
use super::{MAX_DELAY, PublishError, Queue, Task, TaskMessage, TaskPublisher};

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

    /// Parks a message given up on elsewhere (a function run by `cargo lambda` dead-lettering
    /// through echo-local's SQS endpoint).
    pub fn park(&self, letter: DeadLetter) {
        tracing::error!(task = %letter.task, error = %letter.error, "in-process dead letter");
        self.lock().dead.push(letter);
    }

    /// Messages waiting (due or delayed).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Makes every delayed message due now (tests skip a task's own waits, such as the RAG
    /// ETL's 60 s continuations); how many were delayed.
    pub fn expedite(&self) -> usize {
        let now = Utc::now();
        let mut state = self.lock();
        let delayed = state.pending.iter_mut().filter(|p| p.not_before > now);
        delayed.map(|p| p.not_before = now).count()
    }

    /// Delivers every due message of `runner`'s queue once, as one SQS event; how many.
    pub async fn deliver_due(&self, runner: &dyn TaskRunner, max_attempts: u32) -> usize {
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
        let response = handle_batch(runner, &ops, event, max_attempts, None).await;
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
    pub async fn run_until_idle(&self, runners: &[&dyn TaskRunner], max_attempts: u32, rounds: usize) -> usize {
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
impl QueueOps for InProcessOps {
    async fn dead_letter(&self, body: &str, task: &str, error: &str) -> Result<(), String> {
        self.queue.park(DeadLetter { queue: self.kind, body: body.into(), task: task.into(), error: error.into() });
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
