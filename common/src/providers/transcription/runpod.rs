//! RunPod serverless Whisper jobs (processing.md §5.4): submit with a webhook, read a job's
//! status; the task code decides what each answer means for the chunk.

use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::config::TranscriptionSettings;

use super::{TranscribeError, http_client, parse_json, required, success_body, transport, truncate};

/// `POST {base}/run` (§5.4 step 3).
pub const RUNPOD_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// `GET {status link}` (§5.4 step 1).
pub const RUNPOD_STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// RunPod serverless jobs: `POST {base}/run` and `GET {base}/status/{id}`, Bearer key.
#[derive(Debug, Clone)]
pub struct RunPod {
    http: reqwest::Client,
    api_key: String,
    run_timeout: Duration,
    status_timeout: Duration,
}

/// The `input` of a Whisper job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPodInput {
    /// A presigned GET of the mp3.
    pub audio: String,
    /// Sent as one string, `"a, b"`, or `null` when empty.
    pub hotwords: Vec<String>,
    pub conversation_chunk_id: String,
    /// Left out of the body when `None`.
    pub language: Option<String>,
}

/// An accepted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPodJob {
    pub id: String,
    /// `{base}/status/{id}` on the endpoint that accepted the job (D54).
    pub status_link: String,
}

/// A job's `status`, or `Unknown` when RunPod answers 404 (unknown or expired job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPodJobState {
    InQueue,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Unknown,
    /// A status string this code does not know (kept as sent).
    Other(String),
}

impl RunPodJobState {
    pub fn from_status(status: &str) -> Self {
        match status {
            "IN_QUEUE" => RunPodJobState::InQueue,
            "IN_PROGRESS" => RunPodJobState::InProgress,
            "COMPLETED" => RunPodJobState::Completed,
            "FAILED" => RunPodJobState::Failed,
            "CANCELLED" => RunPodJobState::Cancelled,
            "TIMED_OUT" => RunPodJobState::TimedOut,
            other => RunPodJobState::Other(other.to_string()),
        }
    }
}

/// A status answer: the parsed state and the payload as sent (`{id, status, output, ...}`,
/// what the completion handling takes; `null` or the error body for a 404).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPodStatus {
    pub state: RunPodJobState,
    pub payload: Value,
}

impl RunPod {
    pub fn new(api_key: &str) -> Self {
        RunPod { http: http_client(), api_key: api_key.to_string(), run_timeout: RUNPOD_RUN_TIMEOUT, status_timeout: RUNPOD_STATUS_TIMEOUT }
    }

    /// From `RUNPOD_WHISPER_API_KEY` (the base URLs are the caller's choice per chunk).
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        Ok(Self::new(required(&settings.runpod_whisper_api_key, "RUNPOD_WHISPER_API_KEY")?))
    }

    /// Timeouts of `submit` and `status`; defaults [`RUNPOD_RUN_TIMEOUT`], [`RUNPOD_STATUS_TIMEOUT`].
    pub fn with_timeouts(mut self, run: Duration, status: Duration) -> Self {
        self.run_timeout = run;
        self.status_timeout = status;
        self
    }

    /// `POST {base_url}/run` with `{input, webhook}` (no `webhook` without a URL: the poller
    /// finishes the job); the job id and its status link.
    pub async fn submit(&self, base_url: &str, input: &RunPodInput, webhook_url: Option<&str>) -> Result<RunPodJob, TranscribeError> {
        let base = base_url.trim_end_matches('/');
        let res = self
            .http
            .post(format!("{base}/run"))
            .bearer_auth(&self.api_key)
            .timeout(self.run_timeout)
            .json(&runpod_request(input, webhook_url))
            .send()
            .await
            .map_err(transport)?;
        let value = parse_json(success_body(res).await?).await?;
        match &value["id"] {
            Value::String(id) if !id.is_empty() => Ok(RunPodJob { id: id.clone(), status_link: format!("{base}/status/{id}") }),
            _ => Err(TranscribeError::Other(format!("no job id in {}", truncate(&value.to_string())))),
        }
    }

    /// `GET {status_link}`. 200 → the state and payload; 404 → `Unknown`; other statuses are
    /// errors (408/409/429/5xx transient, other 4xx rejected).
    pub async fn status(&self, status_link: &str) -> Result<RunPodStatus, TranscribeError> {
        let res = self.http.get(status_link).bearer_auth(&self.api_key).timeout(self.status_timeout).send().await.map_err(transport)?;
        if res.status() == StatusCode::NOT_FOUND {
            let body = res.bytes().await.unwrap_or_default();
            let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Ok(RunPodStatus { state: RunPodJobState::Unknown, payload });
        }
        let payload = parse_json(success_body(res).await?).await?;
        let state = RunPodJobState::from_status(payload["status"].as_str().unwrap_or_default());
        Ok(RunPodStatus { state, payload })
    }
}

fn runpod_request(input: &RunPodInput, webhook_url: Option<&str>) -> Value {
    let hotwords: Vec<&str> = input.hotwords.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
    let mut body = json!({
        "input": {
            "audio": input.audio,
            "hotwords": if hotwords.is_empty() { Value::Null } else { json!(hotwords.join(", ")) },
            "conversation_chunk_id": input.conversation_chunk_id,
        },
    });
    if let Some(language) = &input.language {
        body["input"]["language"] = json!(language);
    }
    if let Some(webhook) = webhook_url {
        body["webhook"] = json!(webhook);
    }
    body
}

/// The webhook RunPod calls: `{API_BASE_URL}/stateless/webhook/transcribe?token={secret}`
/// (`API_BASE_URL` includes `/api`; the secret is percent-encoded).
pub fn runpod_webhook_url(api_base_url: &str, secret: &str) -> String {
    format!("{}/stateless/webhook/transcribe?token={}", api_base_url.trim_end_matches('/'), utf8_percent_encode(secret, NON_ALPHANUMERIC))
}

/// The job id at the end of a status link (`…/status/{id}`), for matching webhook payloads.
pub fn runpod_job_id(status_link: &str) -> Option<&str> {
    let (_, id) = status_link.rsplit_once("/status/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runpod_body_and_links() {
        let input = RunPodInput {
            audio: "https://s3/a.mp3".into(),
            hotwords: vec!["a".into(), "b".into()],
            conversation_chunk_id: "c1".into(),
            language: Some("en".into()),
        };
        assert_eq!(
            runpod_request(&input, Some("https://api/x")),
            json!({
                "input": {"audio": "https://s3/a.mp3", "hotwords": "a, b", "conversation_chunk_id": "c1", "language": "en"},
                "webhook": "https://api/x"
            })
        );
        let bare = RunPodInput { hotwords: vec![], language: None, ..input };
        let body = runpod_request(&bare, None);
        assert_eq!(body["input"]["hotwords"], Value::Null);
        assert!(body["input"].get("language").is_none());
        assert!(body.get("webhook").is_none(), "no secret, no webhook: the poller finishes the job");

        assert_eq!(
            runpod_webhook_url("https://echo.example/api/", "s e/c&"),
            "https://echo.example/api/stateless/webhook/transcribe?token=s%20e%2Fc%26"
        );
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/status/job-1"), Some("job-1"));
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/status/"), None);
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/run"), None);
        assert_eq!(RunPodJobState::from_status("IN_QUEUE"), RunPodJobState::InQueue);
        assert_eq!(RunPodJobState::from_status("TIMED_OUT"), RunPodJobState::TimedOut);
        assert_eq!(RunPodJobState::from_status("PAUSED"), RunPodJobState::Other("PAUSED".into()));
    }
}
