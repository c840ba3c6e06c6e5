//! `task_transcribe_chunk` (processing.md §5): once per chunk, through the configured provider.
//! Waiting on AssemblyAI never sleeps past the invocation's budget: the task re-publishes itself
//! with the job id instead, so the next delivery polls the same job (D55). RunPod jobs are
//! submitted and left: the webhook or the poller finishes them (`common::runpod`).

use std::time::Duration;

use common::Services;
use common::blob::BlobError;
use common::config::{ConfigError, TranscriptionProvider};
use common::merge::TempDir;
use common::pipeline::{StatusIds, StatusStep, completion_trigger, record_chunk_failure, record_status};
use common::store::{Chunk, ChunkPatch};
use common::tasks::Task;
use common::transcribe::{AssemblyAi, AssemblyAiStatus, OpenAiTranscriber, TranscribeError, hotwords_from_prompt};
use common::worker::{Delivery, Done, TaskError};
use minijinja::context;

const PROVIDER_URL_LIFETIME: Duration = Duration::from_secs(259_200);
const POLL_EVERY: Duration = Duration::from_secs(3);
const CONTINUATION_DELAY: Duration = Duration::from_secs(30);
const MAX_CONTINUATIONS: u32 = 96;

fn provider_error(err: TranscribeError) -> TaskError {
    if err.is_transient() { TaskError::transient(err) } else { TaskError::terminal(err) }
}

/// The chunk's `error` after a final failure, then the completion trigger.
pub async fn record_failure(services: &Services, chunk_id: &str, reason: &str) {
    record_chunk_failure(services, chunk_id, format!("Transcription failed: {reason}")).await;
}

pub async fn run(
    services: &Services,
    chunk_id: &str,
    provider_job_id: Option<&str>,
    continuation: u32,
    task: &Task,
    delivery: &Delivery,
) -> Result<Done, TaskError> {
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else { return Ok(Done::Skipped("chunk is gone".into())) };
    if chunk.transcript.is_some() || chunk.error.is_some() {
        return Ok(Done::Skipped("already transcribed or failed".into()));
    }
    let ids = StatusIds {
        conversation_id: Some(chunk.conversation_id.clone()),
        conversation_chunk_id: Some(chunk.id.clone()),
        ..Default::default()
    };
    let provider = match services.settings.transcription.provider() {
        Ok(p) => p,
        Err(ConfigError::Missing(_)) => {
            // echo-local without a provider: the chunk stays pending, and says why.
            let message = format!("no transcription provider is configured; chunk {chunk_id} stays pending (set TRANSCRIPTION_PROVIDER)");
            record_status(services, "task_transcribe_chunk.skipped".into(), message.clone(), ids).await;
            return Ok(Done::Skipped(message));
        }
        Err(err) => return Err(TaskError::terminal(err)),
    };
    let step = StatusStep::start(services, "task_transcribe_chunk", format!("for chunk {chunk_id}"), ids.clone()).await;
    let outcome = match provider {
        TranscriptionProvider::LiteLlm => whisper(services, &chunk).await,
        TranscriptionProvider::AssemblyAi => assemblyai(services, &chunk, provider_job_id, continuation, task, delivery).await,
        TranscriptionProvider::Runpod => common::runpod::transcribe(services, &chunk).await,
        TranscriptionProvider::Dembrane2509 => {
            let message = format!("{provider} transcription is not available in this build; chunk {chunk_id} stays pending");
            record_status(services, "task_transcribe_chunk.skipped".into(), message.clone(), ids).await;
            Ok(Done::Skipped(message))
        }
    };
    let reason = outcome.as_ref().err().map(ToString::to_string);
    step.finish(reason.as_deref().map_or(Ok(()), Err)).await;
    outcome
}

/// Language and hotwords from the conversation's project.
async fn project_inputs(services: &Services, chunk: &Chunk) -> Result<Option<(String, Option<String>)>, TaskError> {
    let Some(conversation) = services.store.get_conversation(&chunk.conversation_id).await? else { return Ok(None) };
    let project = services.store.get_project(&conversation.project_id).await?;
    let language = project.as_ref().and_then(|p| p.language.clone()).unwrap_or_else(|| "en".into());
    let prompt = project.and_then(|p| p.default_conversation_transcript_prompt).filter(|p| !p.trim().is_empty());
    Ok(Some((language, prompt)))
}

async fn write_transcript(services: &Services, chunk: &Chunk, text: String) -> Result<Done, TaskError> {
    if !services.store.update_chunk(&chunk.id, ChunkPatch { transcript: Some(text), ..Default::default() }).await? {
        return Ok(Done::Skipped("chunk vanished while transcribing".into()));
    }
    completion_trigger(services, &chunk.conversation_id).await?;
    Ok(Done::Completed)
}

/// An OpenAI-compatible `/audio/transcriptions` endpoint (LiteLLM, OpenAI, a local whisper).
async fn whisper(services: &Services, chunk: &Chunk) -> Result<Done, TaskError> {
    let Some((language, project_prompt)) = project_inputs(services, chunk).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let path = chunk.path.as_deref().ok_or_else(|| TaskError::terminal("no audio path"))?;
    let key = services.blob.key_from_url(path).ok_or_else(|| TaskError::terminal("the path names no object"))?;
    let mut prompt =
        common::prompts::render("default_whisper_prompt", &language, context! {}).map_err(TaskError::terminal)?.trim().to_string();
    if let Some(extra) = project_prompt {
        prompt.push_str(&format!(" {extra}."));
    }
    let transcriber = OpenAiTranscriber::from_settings(&services.settings.transcription).map_err(TaskError::terminal)?;
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let file = dir.path().join("chunk.mp3");
    match services.blob.download_to(&key, &file).await {
        Ok(_) => {}
        Err(BlobError::Other(reason)) if reason.contains("NoSuchKey") => {
            return Err(TaskError::terminal("the audio object does not exist"));
        }
        Err(err) => return Err(err.into()),
    }
    // "multi" asks for detection, which Whisper does when no language is given.
    let language = (language != "multi").then_some(language);
    let text = transcriber.transcribe(&file, language.as_deref(), Some(&prompt)).await.map_err(provider_error)?;
    dir.remove().await;
    write_transcript(services, chunk, text).await
}

async fn assemblyai(
    services: &Services,
    chunk: &Chunk,
    provider_job_id: Option<&str>,
    continuation: u32,
    task: &Task,
    delivery: &Delivery,
) -> Result<Done, TaskError> {
    let Some((language, prompt)) = project_inputs(services, chunk).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let client = AssemblyAi::from_settings(&services.settings.transcription).map_err(TaskError::terminal)?;
    let job = match provider_job_id {
        Some(job) => job.to_string(),
        None => {
            let path = chunk.path.as_deref().ok_or_else(|| TaskError::terminal("no audio path"))?;
            let key = services.blob.key_from_url(path).ok_or_else(|| TaskError::terminal("the path names no object"))?;
            let url = services.blob.presigned_get(&key, PROVIDER_URL_LIFETIME).await?;
            client.submit(&url, &language, &hotwords_from_prompt(prompt.as_deref())).await.map_err(provider_error)?
        }
    };
    loop {
        match client.poll(&job).await.map_err(provider_error)? {
            AssemblyAiStatus::Completed { text, .. } => return write_transcript(services, chunk, text).await,
            AssemblyAiStatus::Error(reason) => return Err(TaskError::Terminal(reason)),
            AssemblyAiStatus::Queued | AssemblyAiStatus::Processing if delivery.has_time_for(POLL_EVERY) => {
                tokio::time::sleep(POLL_EVERY).await
            }
            AssemblyAiStatus::Queued | AssemblyAiStatus::Processing => break,
        }
    }
    if continuation >= MAX_CONTINUATIONS {
        return Err(TaskError::terminal("AssemblyAI did not finish in time"));
    }
    let Task::TranscribeChunk { conversation_chunk_id, conversation_id, use_pii_redaction, .. } = task else {
        return Err(TaskError::terminal("not a transcription task"));
    };
    let next = Task::TranscribeChunk {
        conversation_chunk_id: conversation_chunk_id.clone(),
        conversation_id: conversation_id.clone(),
        use_pii_redaction: *use_pii_redaction,
        provider_job_id: Some(job),
        continuation: continuation + 1,
    };
    services.tasks.publish(next, CONTINUATION_DELAY).await?;
    Ok(Done::Skipped("AssemblyAI job still running; continues in 30 s".into()))
}
