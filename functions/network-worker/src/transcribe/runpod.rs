//! RunPod Whisper (§5.4): submit a job and keep its status link on the chunk, check a job the
//! poller names, and queue the poller's checks. Nothing here waits for a job: a queued or
//! running job ends the call. Finishing a job is `common::flows::runpod_completion`, shared with
//! the webhook.

use std::time::Duration;

use common::Services;
use common::flows::pipeline::{StatusIds, StatusStep, completion_trigger, record_chunk_failure};
use common::flows::runpod_completion::{Completion, complete, fail_chunk, set_text};
use common::providers::transcription::{RunPod, RunPodInput, RunPodJobState, RunPodStatus, hotwords_from_prompt, runpod_webhook_url};
use common::queue::Task;
use common::queue::worker::{Done, TaskError};
use common::store::{Chunk, ChunkPatch};

use super::{Provider, provider_error};

/// Presigned GETs handed to RunPod stay valid for 3 days (§5.1).
const AUDIO_URL_LIFETIME: Duration = Duration::from_secs(259_200);
/// The chunk error once `RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD` submissions were made (D51).
pub const REQUEST_LIMIT_ERROR: &str = "Transcription failed: RunPod request limit reached";

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
pub async fn transcribe(services: &Services, client: &RunPod, chunk: &Chunk) -> Result<Done, TaskError> {
    if let Some(link) = &chunk.runpod_job_status_link {
        let status = client.status(link).await.map_err(provider_error)?;
        if let Next::Done(done) = follow(services, chunk, status).await? {
            return Ok(done);
        }
    }
    submit(services, client, chunk).await
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

    let key = common::flows::pipeline::audio_key(services, chunk)?;
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
        .map(|secret| runpod_webhook_url(&services.settings.api.api_base_url, secret));
    if webhook.is_none() {
        tracing::warn!("RUNPOD_WEBHOOK_SECRET is not set: RunPod jobs complete through the poller only");
    }
    let input = RunPodInput { audio, hotwords, conversation_chunk_id: chunk.id.clone(), language: super::forced_language(language) };
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
pub async fn check(services: &Services, provider: &Provider, chunk_id: &str, status_link: &str) -> Result<Done, TaskError> {
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
    let outcome = poll(services, provider, &chunk, status_link).await;
    step.finish_with(&outcome).await;
    outcome
}

async fn poll(services: &Services, provider: &Provider, chunk: &Chunk, status_link: &str) -> Result<Done, TaskError> {
    let client = &provider.runpod(&services.settings.transcription)?;
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
        Next::Resubmit => match submit(services, client, chunk).await {
            Err(TaskError::Terminal(reason)) => {
                record_chunk_failure(services, &chunk.id, format!("Transcription failed: {reason}")).await;
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
