//! RunPod Whisper transcription (processing.md §5.4): `task_transcribe_chunk` submits a job and
//! keeps its status link on the chunk; the webhook (`stateless`) or the poller (`network-worker`)
//! finishes it through [`complete`]. Nothing here waits for a job: a queued or running job ends
//! the call, and a later webhook or poll picks it up.
//!
//! The chunk's `runpod_job_status_link` is the one job that counts: a result for any other job
//! is ignored before anything is written (D54), so duplicates and stale jobs cannot overwrite a
//! newer one.

use std::time::Duration;

use serde_json::Value;

use crate::Services;
use crate::pipeline::{PipelineError, StatusIds, StatusStep, completion_trigger};
use crate::store::{Chunk, ChunkPatch};
use crate::tasks::Task;
use crate::transcribe::{RunPod, RunPodInput, RunPodJobState, RunPodStatus, TranscribeError, hotwords_from_prompt, runpod_job_id};
use crate::worker::{Done, TaskError};

/// Presigned GETs handed to RunPod stay valid for 3 days (§5.1).
pub const AUDIO_URL_LIFETIME: Duration = Duration::from_secs(259_200);
/// The chunk error once `RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD` submissions were made (D51).
pub const REQUEST_LIMIT_ERROR: &str = "Transcription failed: RunPod request limit reached";
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

fn provider_error(err: TranscribeError) -> TaskError {
    if err.is_transient() { TaskError::transient(err) } else { TaskError::terminal(err) }
}

fn client(services: &Services) -> Result<RunPod, TaskError> {
    RunPod::from_settings(&services.settings.transcription).map_err(TaskError::terminal)
}

/// A non-empty string, or another non-null, non-false value as JSON text (RunPod's `error`).
fn set_text(value: Option<&Value>) -> Option<String> {
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
    if !crate::access::is_uuid(chunk_id) {
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
async fn fail_chunk(services: &Services, chunk: &Chunk, message: String) -> Result<(), PipelineError> {
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

/// What a status answer asks for.
enum Next {
    Done(Done),
    Resubmit,
}

/// Submit step 1 for a status answer about the chunk's current job: wait, complete, or resubmit
/// (D54).
async fn follow(services: &Services, chunk: &Chunk, status: RunPodStatus) -> Result<Next, TaskError> {
    match status.state {
        RunPodJobState::InQueue | RunPodJobState::InProgress => {
            Ok(Next::Done(Done::Skipped("the RunPod job is queued or running; the webhook or the poller finishes it".into())))
        }
        RunPodJobState::Completed => Ok(Next::Done(complete(services, &status.payload).await?.into())),
        RunPodJobState::Failed => match complete(services, &status.payload).await? {
            // RunPod's own failures carry `error` beside, not inside, an `output`: we asked about
            // this chunk's job, so the failure is the chunk's (D51, D54).
            Completion::Ignored(_) => {
                let reason = set_text(status.payload.get("error")).unwrap_or_else(|| "Unknown error".into());
                fail_chunk(services, chunk, format!("RunPod job failed: {reason}")).await?;
                Ok(Next::Done(Done::Completed))
            }
            other => Ok(Next::Done(other.into())),
        },
        RunPodJobState::Cancelled | RunPodJobState::TimedOut | RunPodJobState::Unknown => Ok(Next::Resubmit),
        // A status RunPod may add later: wait for the next poll rather than submit twice.
        RunPodJobState::Other(state) => Ok(Next::Done(Done::Skipped(format!("RunPod job state {state:?}; checked again by the poller")))),
    }
}

/// `task_transcribe_chunk`'s RunPod path (§5.4 Submit). The caller has checked that the chunk
/// has neither a transcript nor an error.
pub async fn transcribe(services: &Services, chunk: &Chunk) -> Result<Done, TaskError> {
    let client = client(services)?;
    if let Some(link) = &chunk.runpod_job_status_link {
        let status = client.status(link).await.map_err(provider_error)?;
        if let Next::Done(done) = follow(services, chunk, status).await? {
            return Ok(done);
        }
    }
    submit(services, &client, chunk).await
}

/// Submit steps 2-4: the request limit, then a new job whose link replaces the old one.
async fn submit(services: &Services, client: &RunPod, chunk: &Chunk) -> Result<Done, TaskError> {
    let settings = &services.settings.transcription;
    if chunk.runpod_request_count >= i64::from(settings.runpod_whisper_max_request_threshold) {
        let patch = ChunkPatch { error: Some(REQUEST_LIMIT_ERROR.into()), runpod_job_status_link: Some(None), ..Default::default() };
        services.store.update_chunk(&chunk.id, patch).await?;
        completion_trigger(services, &chunk.conversation_id).await?;
        return Ok(Done::Skipped(format!("RunPod request limit ({}) reached", settings.runpod_whisper_max_request_threshold)));
    }
    let Some(conversation) = services.store.get_conversation(&chunk.conversation_id).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let project = services.store.get_project(&conversation.project_id).await?;
    let language = project.as_ref().and_then(|p| p.language.clone()).unwrap_or_else(|| "en".into());
    let hotwords = hotwords_from_prompt(project.as_ref().and_then(|p| p.default_conversation_transcript_prompt.as_deref()));

    let key = crate::pipeline::audio_key(services, chunk)?;
    let audio = services.blob.presigned_get(&key, AUDIO_URL_LIFETIME).await?;
    let (base, name) = if chunk.source.as_deref() == Some("PORTAL_AUDIO") {
        (&settings.runpod_whisper_priority_base_url, "RUNPOD_WHISPER_PRIORITY_BASE_URL")
    } else {
        (&settings.runpod_whisper_base_url, "RUNPOD_WHISPER_BASE_URL")
    };
    let base = base.as_deref().ok_or_else(|| TaskError::terminal(format!("{name} is not set")))?;
    // Without the secret the webhook would be refused (D21): leave it out, the poller finishes.
    let webhook = services
        .settings
        .api
        .runpod_webhook_secret
        .as_deref()
        .map(|secret| crate::transcribe::runpod_webhook_url(&services.settings.api.api_base_url, secret));
    if webhook.is_none() {
        tracing::warn!("RUNPOD_WEBHOOK_SECRET is not set: RunPod jobs complete through the poller only");
    }
    let input = RunPodInput { audio, hotwords, conversation_chunk_id: chunk.id.clone(), language: Some(language) };
    let job = client.submit(base, &input, webhook.as_deref()).await.map_err(provider_error)?;
    let patch = ChunkPatch {
        runpod_job_status_link: Some(Some(job.status_link.clone())),
        runpod_request_count: Some(chunk.runpod_request_count + 1),
        ..Default::default()
    };
    if !services.store.update_chunk(&chunk.id, patch).await? {
        return Ok(Done::Skipped("chunk vanished while submitting".into()));
    }
    tracing::info!(chunk_id = %chunk.id, job = %job.id, "RunPod job submitted");
    Ok(Done::Completed)
}

/// `task_process_runpod_chunk_response` (§5.4 poll branch): the status of the chunk's job, if it
/// still is the chunk's job.
pub async fn check(services: &Services, chunk_id: &str, status_link: &str) -> Result<Done, TaskError> {
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else { return Ok(Done::Skipped("chunk is gone".into())) };
    if chunk.runpod_job_status_link.as_deref() != Some(status_link) {
        return Ok(Done::Skipped("stale: the chunk's RunPod job changed".into()));
    }
    if chunk.transcript.is_some() || chunk.error.is_some() {
        // Finished another way (a final failure): the job no longer matters.
        services.store.update_chunk(&chunk.id, ChunkPatch { runpod_job_status_link: Some(None), ..Default::default() }).await?;
        return Ok(Done::Skipped("the chunk is already transcribed or failed".into()));
    }
    let ids = StatusIds::for_chunk(&chunk);
    let step = StatusStep::start(services, "task_process_runpod_chunk_response", format!("for chunk {chunk_id}"), ids).await;
    let outcome = poll(services, &chunk, status_link).await;
    step.finish_with(&outcome).await;
    outcome
}

async fn poll(services: &Services, chunk: &Chunk, status_link: &str) -> Result<Done, TaskError> {
    let client = client(services)?;
    let next = match client.status(status_link).await {
        Ok(status) => follow(services, chunk, status).await?,
        Err(err) if err.is_transient() => return Err(TaskError::transient(err)),
        // Any other answer than 200 resubmits (threshold applies).
        Err(err) => {
            tracing::info!(%err, chunk_id = %chunk.id, "RunPod status refused; resubmitting");
            Next::Resubmit
        }
    };
    match next {
        Next::Done(done) => Ok(done),
        // Submitted here, not through task_transcribe_chunk: that would ask the same link again.
        // The link changes only once the new job exists, so a retry of this check is safe.
        Next::Resubmit => match submit(services, &client, chunk).await {
            Err(TaskError::Terminal(reason)) => {
                crate::pipeline::record_chunk_failure(services, &chunk.id, format!("Transcription failed: {reason}")).await;
                Err(TaskError::Terminal(reason))
            }
            other => other,
        },
    }
}

/// `task_update_runpod_transcription_response`: one check per chunk with a job in flight. Errors
/// are logged and the run succeeds; the next schedule tries again.
pub async fn queue_checks(services: &Services) -> Done {
    let pending = match services.store.runpod_pending_chunks().await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::error!(%err, "listing chunks with a RunPod job failed");
            return Done::Skipped(format!("listing failed: {err}"));
        }
    };
    let (mut queued, mut failed) = (0, 0);
    for (chunk_id, status_link) in pending {
        match services.tasks.publish(Task::ProcessRunpodChunkResponse { chunk_id, status_link }, Duration::ZERO).await {
            Ok(()) => queued += 1,
            Err(err) => {
                failed += 1;
                tracing::error!(%err, "queueing a RunPod check failed");
            }
        }
    }
    tracing::info!(queued, failed, "RunPod poller done");
    Done::Completed
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
