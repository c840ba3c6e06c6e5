//! `task_transcribe_chunk` (processing.md §5): once per chunk, through the configured provider.
//! Waiting on AssemblyAI never sleeps past the invocation's budget: the task re-publishes itself
//! with the job id instead, so the next delivery polls the same job (D55); a Dembrane-25-09
//! correction that fails for a passing reason does the same, so AssemblyAI is paid once. RunPod
//! jobs are submitted and left: the webhook or the poller finishes them (`common::runpod`).

use std::time::Duration;

use common::Services;
use common::blob::BlobError;
use common::config::{ConfigError, TranscriptionProvider};
use common::merge::TempDir;
use common::pipeline::{StatusIds, StatusStep, completion_trigger, record_chunk_failure, record_status};
use common::store::{Chunk, ChunkPatch};
use common::tasks::Task;
use common::transcribe::{AssemblyAi, AssemblyAiStatus, OpenAiTranscriber, TranscribeError, Transcriber, hotwords_from_prompt};
use common::vertex::VertexClient;
use common::worker::{Delivery, Done, TaskError};
use minijinja::context;
use serde_json::{Value, json};

const PROVIDER_URL_LIFETIME: Duration = Duration::from_secs(259_200);
const POLL_EVERY: Duration = Duration::from_secs(3);
const CONTINUATION_DELAY: Duration = Duration::from_secs(30);
const MAX_CONTINUATIONS: u32 = 96;
/// The Dembrane-25-09 correction's worst case: the audio download and the Vertex client's timeout.
const CORRECTION_ESTIMATE: Duration = Duration::from_secs(330);

fn provider_error(err: TranscribeError) -> TaskError {
    if err.is_transient() { TaskError::transient(err) } else { TaskError::terminal(err) }
}

/// The chunk's `error` after a final failure, then the completion trigger.
pub async fn record_failure(services: &Services, chunk_id: &str, reason: &str) {
    record_chunk_failure(services, chunk_id, format!("Transcription failed: {reason}")).await;
}

/// The delivery being handled, for the providers that continue in a new message.
pub struct Job<'a> {
    pub provider_job_id: Option<&'a str>,
    pub continuation: u32,
    pub task: &'a Task,
    pub delivery: &'a Delivery,
}

pub async fn run(services: &Services, transcriber: &Result<Transcriber, String>, chunk_id: &str, job: Job<'_>) -> Result<Done, TaskError> {
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else { return Ok(Done::Skipped("chunk is gone".into())) };
    if chunk.transcript.is_some() || chunk.error.is_some() {
        return Ok(Done::Skipped("already transcribed or failed".into()));
    }
    let ids = StatusIds::for_chunk(&chunk);
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
    let transcriber = transcriber.as_ref().map_err(TaskError::terminal)?;
    if matches!(job.task, Task::TranscribeChunk { use_pii_redaction: true, .. }) && provider != TranscriptionProvider::Dembrane2509 {
        tracing::warn!(chunk_id, %provider, "PII redaction is only done by Dembrane-25-09; transcribing without it");
    }
    let step = StatusStep::start(services, "task_transcribe_chunk", format!("for chunk {chunk_id}"), ids.clone()).await;
    let outcome = match transcriber {
        Transcriber::LiteLlm(client) => whisper(services, client, &chunk).await,
        Transcriber::AssemblyAi(client) => assemblyai(services, client, None, &chunk, &job).await,
        Transcriber::Dembrane2509 { assemblyai: client, vertex } => assemblyai(services, client, Some(vertex), &chunk, &job).await,
        Transcriber::Runpod(_) => common::runpod::transcribe(services, &chunk).await,
    };
    step.finish_with(&outcome).await;
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

async fn write_transcript(services: &Services, chunk: &Chunk, text: String, diarization: Option<Value>) -> Result<Done, TaskError> {
    if !services.store.update_chunk(&chunk.id, ChunkPatch { transcript: Some(text), diarization, ..Default::default() }).await? {
        return Ok(Done::Skipped("chunk vanished while transcribing".into()));
    }
    completion_trigger(services, &chunk.conversation_id).await?;
    Ok(Done::Completed)
}

/// An OpenAI-compatible `/audio/transcriptions` endpoint (LiteLLM, OpenAI, a local whisper).
async fn whisper(services: &Services, transcriber: &OpenAiTranscriber, chunk: &Chunk) -> Result<Done, TaskError> {
    let Some((language, project_prompt)) = project_inputs(services, chunk).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let mut prompt =
        common::prompts::render("default_whisper_prompt", &language, context! {}).map_err(TaskError::terminal)?.trim().to_string();
    if let Some(extra) = project_prompt {
        prompt.push_str(&format!(" {extra}."));
    }
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let file = download_audio(services, chunk, &dir).await?;
    // "multi" asks for detection, which Whisper does when no language is given.
    let language = (language != "multi").then_some(language);
    let text = transcriber.transcribe(&file, language.as_deref(), Some(&prompt)).await.map_err(provider_error)?;
    dir.remove().await;
    write_transcript(services, chunk, text, None).await
}

/// The chunk's mp3, downloaded into `dir`.
async fn download_audio(services: &Services, chunk: &Chunk, dir: &TempDir) -> Result<std::path::PathBuf, TaskError> {
    let key = common::pipeline::audio_key(services, chunk)?;
    let file = dir.path().join("chunk.mp3");
    match services.blob.download_to(&key, &file).await {
        Ok(_) => Ok(file),
        Err(BlobError::Other(reason)) if reason.contains("NoSuchKey") => Err(TaskError::terminal("the audio object does not exist")),
        Err(err) => Err(err.into()),
    }
}

/// The chunk's mp3, whole, for the correction pass (a piece is at most 15 MiB).
async fn audio_bytes(services: &Services, chunk: &Chunk) -> Result<Vec<u8>, TaskError> {
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let file = download_audio(services, chunk, &dir).await?;
    let bytes = tokio::fs::read(&file).await.map_err(TaskError::transient)?;
    dir.remove().await;
    Ok(bytes)
}

/// AssemblyAI, and with `vertex` the Dembrane-25-09 correction of its transcript.
async fn assemblyai(
    services: &Services,
    client: &AssemblyAi,
    vertex: Option<&VertexClient>,
    chunk: &Chunk,
    job: &Job<'_>,
) -> Result<Done, TaskError> {
    let Some((language, prompt)) = project_inputs(services, chunk).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let hotwords = hotwords_from_prompt(prompt.as_deref());
    let provider_job = match job.provider_job_id {
        Some(job) => job.to_string(),
        None => {
            let key = common::pipeline::audio_key(services, chunk)?;
            let url = services.blob.presigned_get(&key, PROVIDER_URL_LIFETIME).await?;
            client.submit(&url, &language, &hotwords).await.map_err(provider_error)?
        }
    };
    loop {
        match client.poll(&provider_job).await.map_err(provider_error)? {
            AssemblyAiStatus::Completed { text, words, raw } => {
                let Some(vertex) = vertex else {
                    let diarization = json!({ "schema": "ASSEMBLYAI", "data": words });
                    return write_transcript(services, chunk, text, Some(diarization)).await;
                };
                if !job.delivery.has_time_for(CORRECTION_ESTIMATE) {
                    return continue_later(services, job, provider_job, "no time left for the correction; continues in 30 s").await;
                }
                let pii = matches!(job.task, Task::TranscribeChunk { use_pii_redaction: true, .. });
                let audio = audio_bytes(services, chunk).await?;
                return match common::transcribe::correct_transcript(vertex, &text, audio, &hotwords, pii).await {
                    Ok((corrected, note)) => {
                        let diarization = json!({ "schema": "Dembrane-25-09", "data": { "note": note, "raw": raw } });
                        write_transcript(services, chunk, corrected, Some(diarization)).await
                    }
                    // A first delivery hands the finished AssemblyAI job to a continuation
                    // instead of failing, so its retry does not submit the audio again.
                    Err(err) if err.is_transient() && job.provider_job_id.is_none() => {
                        continue_later(services, job, provider_job, &format!("correction failed ({err}); retries in 30 s")).await
                    }
                    Err(err) if err.is_transient() => Err(TaskError::transient(err)),
                    Err(err) => Err(TaskError::terminal(err)),
                };
            }
            AssemblyAiStatus::Error(reason) => return Err(TaskError::Terminal(reason)),
            AssemblyAiStatus::Queued | AssemblyAiStatus::Processing if job.delivery.has_time_for(POLL_EVERY) => {
                tokio::time::sleep(POLL_EVERY).await
            }
            AssemblyAiStatus::Queued | AssemblyAiStatus::Processing => break,
        }
    }
    continue_later(services, job, provider_job, "AssemblyAI job still running; continues in 30 s").await
}

/// Re-publishes the task with AssemblyAI's job id, so the next delivery polls that job.
async fn continue_later(services: &Services, job: &Job<'_>, provider_job: String, why: &str) -> Result<Done, TaskError> {
    if job.continuation >= MAX_CONTINUATIONS {
        return Err(TaskError::terminal("AssemblyAI did not finish in time"));
    }
    let Task::TranscribeChunk { conversation_chunk_id, conversation_id, use_pii_redaction, .. } = job.task else {
        return Err(TaskError::terminal("not a transcription task"));
    };
    let next = Task::TranscribeChunk {
        conversation_chunk_id: conversation_chunk_id.clone(),
        conversation_id: conversation_id.clone(),
        use_pii_redaction: *use_pii_redaction,
        provider_job_id: Some(provider_job),
        continuation: job.continuation + 1,
    };
    services.tasks.publish(next, CONTINUATION_DELAY).await?;
    Ok(Done::Skipped(why.to_string()))
}
