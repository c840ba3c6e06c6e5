//! RunPod Whisper's completion (processing.md §5.4): network-worker submits a job and keeps its
//! status link on the chunk; the webhook (`stateless`) or the poller (`network-worker`) finishes
//! it through [`complete`], the one routine both use.
//!
//! The chunk's `runpod_job_status_link` is the one job that counts: a result for any other job
//! is ignored before anything is written (D54), so duplicates and stale jobs cannot overwrite a
//! newer one.

use serde_json::Value;

use crate::Services;
use crate::flows::pipeline::{PipelineError, StatusIds, StatusStep, completion_trigger};
use crate::providers::transcription::runpod_job_id;
use crate::queue::worker::Done;
use crate::store::{Chunk, ChunkPatch, is_uuid};

const TRANSLATION_ERROR_REASON: &str = "There seems to be an internal model error with translation.";

/// What a RunPod result did to its chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Nothing written: malformed, not final, an unknown chunk, or not the chunk's current job.
    Ignored(String),
    /// The job failed: the chunk's `error` says why.
    Failed(String),
    /// The transcript was written.
    Completed,
}

impl From<Completion> for Done {
    fn from(completion: Completion) -> Self {
        match completion {
            Completion::Ignored(why) => Done::Skipped(why),
            Completion::Failed(_) | Completion::Completed => Done::Completed,
        }
    }
}

/// A non-empty string, or another non-null, non-false value as JSON text (RunPod's `error`).
pub fn set_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn string(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The completion handling of §5.4 for one status payload `{id, status, output}`, from the
/// webhook or a status request.
pub async fn complete(services: &Services, payload: &Value) -> Result<Completion, PipelineError> {
    let ignore = |why: &str| {
        tracing::info!(why, "RunPod result ignored");
        Ok(Completion::Ignored(why.to_string()))
    };
    let Some(output) = payload.get("output").and_then(Value::as_object) else {
        return ignore("no output object");
    };
    let Some(chunk_id) = output.get("conversation_chunk_id").and_then(Value::as_str) else {
        return ignore("no conversation_chunk_id");
    };
    if !is_uuid(chunk_id) {
        return ignore("conversation_chunk_id is not a chunk id");
    }
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else {
        return ignore("unknown chunk");
    };
    let job = payload.get("id").and_then(Value::as_str);
    let current = chunk.runpod_job_status_link.as_deref().and_then(runpod_job_id);
    if job.is_none() || job != current {
        return ignore("not the chunk's current job (a duplicate or a stale job)");
    }

    let ids = StatusIds::for_chunk(&chunk);
    let error = set_text(output.get("error"));
    let status = payload.get("status").and_then(Value::as_str).unwrap_or_default();
    let failure = match (&error, status) {
        (Some(error), _) => Some(format!("RunPod error: {error}")),
        (None, "FAILED") => Some("RunPod job failed: Unknown error".to_string()),
        (None, "COMPLETED") => None,
        (None, _) => return ignore("the job is not finished"),
    };
    if let Some(message) = failure {
        fail_chunk(services, &chunk, message.clone()).await?;
        return Ok(Completion::Failed(message));
    }

    let step = StatusStep::start(services, "load_runpod_transcription_response", format!("for chunk {}", chunk.id), ids).await;
    let result = write_result(services, &chunk, output).await;
    step.finish_with(&result).await;
    result?;
    completion_trigger(services, &chunk.conversation_id).await?;
    Ok(Completion::Completed)
}

/// The chunk's `error`, its link cleared (so the poller stops), then the completion trigger.
pub async fn fail_chunk(services: &Services, chunk: &Chunk, message: String) -> Result<(), PipelineError> {
    let patch = ChunkPatch { error: Some(message), runpod_job_status_link: Some(None), ..Default::default() };
    services.store.update_chunk(&chunk.id, patch).await?;
    completion_trigger(services, &chunk.conversation_id).await
}

/// Step 6 of the completion handling: the transcript and what RunPod says about it.
async fn write_result(services: &Services, chunk: &Chunk, output: &serde_json::Map<String, Value>) -> Result<(), PipelineError> {
    let joined = string(output.get("joined_text"));
    let translation = string(output.get("translation_text"));
    let transcript = translation.clone().or_else(|| joined.clone()).unwrap_or_default();
    let raw_transcript = match (&translation, &joined) {
        (Some(t), Some(j)) if t != j => Some(j.clone()),
        _ => None,
    };
    let mut hallucination_score = output.get("hallucination_score").and_then(Value::as_f64);
    let mut hallucination_reason = string(output.get("hallucination_reason"));
    if output.get("translation_error") == Some(&Value::Bool(true)) && hallucination_score.is_none() {
        hallucination_score = Some(0.5);
        hallucination_reason = Some(TRANSLATION_ERROR_REASON.into());
    }
    let patch = ChunkPatch {
        error: transcript.is_empty().then(|| "No transcript".to_string()),
        transcript: Some(transcript),
        raw_transcript,
        hallucination_score,
        hallucination_reason,
        desired_language: string(output.get("language")),
        detected_language: string(output.get("detected_language")),
        detected_language_confidence: output.get("detected_language_confidence").and_then(Value::as_f64),
        runpod_job_status_link: Some(None),
        ..Default::default()
    };
    services.store.update_chunk(&chunk.id, patch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_values_count_when_set() {
        assert_eq!(set_text(Some(&json!("boom"))), Some("boom".into()));
        assert_eq!(set_text(Some(&json!({"code": 1}))), Some(r#"{"code":1}"#.into()));
        for unset in [json!(null), json!(""), json!(false)] {
            assert_eq!(set_text(Some(&unset)), None, "{unset}");
        }
        assert_eq!(set_text(None), None);
    }
}
