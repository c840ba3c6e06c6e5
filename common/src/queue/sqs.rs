//! Amazon SQS: the publisher the functions send tasks with, and the worker side of a queue
//! (dead-letter and retry delay, the Lambda entry, a receive loop for running outside Lambda).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

use super::worker::{QueueOps, TaskRunner, handle_batch};
use super::{MAX_DELAY, PublishError, Queue, SharedPublisher, Task, TaskMessage, TaskPublisher};

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
        if url.is_empty() {
            return Err(PublishError::Config(format!("{} has no queue URL in this function", task.name())));
        }
        let name = task.name();
        let body = TaskMessage::new(task).to_json();
        // X-Ray follows the message: SQS carries the header in this system attribute.
        let trace = crate::telemetry::current_trace_header()
            .map(|h| aws_sdk_sqs::types::MessageSystemAttributeValue::builder().data_type("String").string_value(h).build())
            .transpose()
            .map_err(|e| PublishError::Config(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .set_message_system_attributes(
                trace.map(|t| [(aws_sdk_sqs::types::MessageSystemAttributeNameForSends::AwsTraceHeader, t)].into()),
            )
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
/// A publisher to the network queue only (the scheduler's): audio tasks are refused.
pub async fn connect_network_sqs(settings: &crate::config::Settings) -> Result<SharedPublisher, PublishError> {
    let q = &settings.queues;
    let network = q.network_queue_url.clone().ok_or_else(|| PublishError::Config("NETWORK_QUEUE_URL must be set".into()))?;
    let client = SqsPublisher::client(&settings.s3.region, q.sqs_endpoint.as_deref(), None).await;
    Ok(Arc::new(SqsPublisher::new(client, String::new(), network)))
}

pub async fn connect_sqs(settings: &crate::config::Settings) -> Result<SharedPublisher, PublishError> {
    let q = &settings.queues;
    let (Some(audio), Some(network)) = (&q.audio_queue_url, &q.network_queue_url) else {
        return Err(PublishError::Config("AUDIO_QUEUE_URL and NETWORK_QUEUE_URL must be set".into()));
    };
    let client = SqsPublisher::client(&settings.s3.region, q.sqs_endpoint.as_deref(), None).await;
    Ok(Arc::new(SqsPublisher::new(client, audio.clone(), network.clone())))
}

/// The SQS side of a Lambda worker: the dead-letter queue and the retry delay.
pub struct SqsQueueOps {
    pub client: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
}

#[async_trait]
impl QueueOps for SqsQueueOps {
    async fn dead_letter(&self, body: &str, task: &str, error: &str) -> Result<(), String> {
        let attribute = |v: &str| {
            aws_sdk_sqs::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v.chars().take(1000).collect::<String>())
                .build()
        };
        self.client
            .send_message()
            .queue_url(&self.dlq_url)
            .message_body(if body.is_empty() { "(empty)" } else { body })
            .message_attributes("task", attribute(task).map_err(|e| e.to_string())?)
            .message_attributes("error", attribute(error).map_err(|e| e.to_string())?)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }

    async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs() as i32)
            .send()
            .await
            .map(drop)
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}

/// One receive from an SQS queue, handled as Lambda's event source mapping would: a batch in,
/// the successful and acknowledged records deleted; how many were received. For running
/// workers against SQS (or an SQS-protocol server) outside Lambda.
pub async fn poll_sqs_once(
    runner: &dyn TaskRunner,
    ops: &dyn QueueOps,
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    max_attempts: u32,
    wait: Duration,
) -> Result<usize, String> {
    let received = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait.as_secs() as i32)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader)
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
    let messages = received.messages.unwrap_or_default();
    let mut event = SqsEvent::default();
    let mut handles = Vec::new();
    for m in &messages {
        let mut record = SqsMessage::default();
        record.message_id = m.message_id.clone();
        record.receipt_handle = m.receipt_handle.clone();
        record.body = m.body.clone();
        for (k, v) in m.attributes.clone().unwrap_or_default() {
            record.attributes.insert(k.as_str().to_string(), v);
        }
        handles.push((m.message_id.clone().unwrap_or_default(), m.receipt_handle.clone().unwrap_or_default()));
        event.records.push(record);
    }
    let response = handle_batch(runner, ops, event, max_attempts, None).await;
    let failed: std::collections::HashSet<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    for (id, handle) in handles {
        if !failed.contains(&id) {
            client.delete_message().queue_url(queue_url).receipt_handle(handle).send().await.map_err(|e| e.to_string())?;
        }
    }
    Ok(messages.len())
}

/// Runs a worker as an SQS-triggered Lambda: each invocation's batch through `handle_batch`,
/// failures reported per record (`ReportBatchItemFailures`).
pub async fn run_lambda<R: TaskRunner + 'static>(runner: R, settings: &crate::config::Settings) -> Result<(), lambda_runtime::Error> {
    let (queue_url, dlq_url) = match runner.queue() {
        Queue::Audio => (settings.queues.audio_queue_url.clone(), settings.queues.audio_dlq_url.clone()),
        Queue::Network => (settings.queues.network_queue_url.clone(), settings.queues.network_dlq_url.clone()),
    };
    let (Some(queue_url), Some(dlq_url)) = (queue_url, dlq_url) else {
        return Err("the worker's queue and dead-letter queue URLs must be set".into());
    };
    let client = SqsPublisher::client(&settings.s3.region, settings.queues.sqs_endpoint.as_deref(), None).await;
    let ops = std::sync::Arc::new(SqsQueueOps { client, queue_url, dlq_url });
    let runner = std::sync::Arc::new(runner);
    let max_attempts = settings.queues.task_max_attempts;
    crate::telemetry::flush_logs_on_shutdown().await;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<SqsEvent>| {
        let (runner, ops) = (runner.clone(), ops.clone());
        async move {
            let now_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            let deadline = Instant::now() + Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            // Error reports of this invocation's records carry its request id.
            let reports = crate::telemetry::error_reports::ErrorScope::new(&[("request_id", &event.context.request_id)]);
            let batch = handle_batch(runner.as_ref(), ops.as_ref(), event.payload, max_attempts, Some(deadline));
            Ok::<_, lambda_runtime::Error>(reports.bind(batch).await)
        }
    }))
    .await
}
