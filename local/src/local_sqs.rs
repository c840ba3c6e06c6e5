//! echo-local's SQS endpoint: the little of SQS's JSON protocol that a function run by
//! `cargo lambda watch` uses (SendMessage, ChangeMessageVisibility), so its tasks land in
//! echo-local's in-process queue and echo-local's workers run them. Queue URLs are
//! `{SQS_ENDPOINT_URL}/{audio,network,audio-dlq,network-dlq}`; signatures are not checked.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::queue::in_process::{DeadLetter, InProcessQueue};
use common::queue::{Queue, TaskMessage, TaskPublisher};
use serde_json::{Value, json};

/// Where the endpoint is mounted on echo-local's API port.
pub const PATH: &str = "/_local/sqs";

pub fn router(queue: InProcessQueue) -> Router {
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let queue = queue.clone();
        async move { answer(&queue, &headers, &body).await }
    };
    Router::new().route(PATH, axum::routing::post(handler.clone())).route(&format!("{PATH}/"), axum::routing::post(handler))
}

async fn answer(queue: &InProcessQueue, headers: &HeaderMap, body: &[u8]) -> Response {
    let action = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    match action {
        "AmazonSQS.SendMessage" => match send(queue, &request).await {
            Ok(()) => json_response(StatusCode::OK, json!({"MessageId": uuid::Uuid::new_v4().to_string()})),
            Err(reason) => fault("InvalidParameterValue", &reason),
        },
        // A retry delay: the in-process queue has its own backoff, nothing to keep.
        "AmazonSQS.ChangeMessageVisibility" => json_response(StatusCode::OK, json!({})),
        other => fault("UnsupportedOperation", &format!("echo-local's SQS endpoint does not do {other:?}")),
    }
}

async fn send(queue: &InProcessQueue, request: &Value) -> Result<(), String> {
    let url = request["QueueUrl"].as_str().unwrap_or_default();
    let body = request["MessageBody"].as_str().unwrap_or_default();
    let name = url.rsplit('/').next().unwrap_or_default();
    let attribute = |key: &str| request["MessageAttributes"][key]["StringValue"].as_str().unwrap_or_default().to_string();
    let dead = |queue_kind| DeadLetter { queue: queue_kind, body: body.into(), task: attribute("task"), error: attribute("error") };
    match name {
        "audio-dlq" => queue.park(dead(Queue::Audio)),
        "network-dlq" => queue.park(dead(Queue::Network)),
        "audio" | "network" => {
            let message = TaskMessage::parse(body).map_err(|e| e.to_string())?;
            let delay = Duration::from_secs(request["DelaySeconds"].as_u64().unwrap_or(0));
            queue.publish(message.task, delay).await.map_err(|e| e.to_string())?;
        }
        _ => return Err(format!("no queue {url:?}: use {PATH}/audio, /network, /audio-dlq or /network-dlq")),
    }
    Ok(())
}

fn fault(kind: &str, message: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"__type": format!("com.amazonaws.sqs#{kind}"), "message": message}))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/x-amz-json-1.0")], body.to_string()).into_response()
}
