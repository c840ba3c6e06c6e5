//! `task_transcribe_chunk` (processing.md §5): once per chunk, through the provider decided when
//! the worker starts, one file per provider. Waiting on a provider never sleeps past the
//! invocation's budget: AssemblyAI continues in a new message with its job id (D55), RunPod jobs
//! are submitted and left for the webhook or the poller.

mod assemblyai;
pub mod runpod;
mod whisper;

use common::Services;
use common::audio::TempDir;
use common::blob::BlobError;
use common::config::{ConfigError, TranscriptionSettings};
use common::flows::pipeline::{StatusIds, StatusStep, completion_trigger, record_chunk_failure};
use common::providers::transcription::{RunPod, TranscribeError, Transcriber};
use common::queue::Task;
use common::queue::worker::{Delivery, Done, TaskError};
use common::store::{Chunk, ChunkPatch};
use serde_json::Value;

/// The transcription provider, decided once when the worker starts (§5.1).
pub enum Provider {
    Ready(Transcriber),
    /// None named: the Lambda refuses to start; echo-local runs on, its chunks staying pending
    /// with a status row saying so.
    NotConfigured,
    /// Named but unusable (an unknown name, a missing key, an unreadable `GCP_SA_JSON`): the
    /// Lambda refuses to start; echo-local reports it per task.
    Broken(String),
}

/// Why network-worker will not start without a provider.
pub const NO_PROVIDER: &str =
    "no transcription provider: set TRANSCRIPTION_PROVIDER to Runpod, LiteLLM, AssemblyAI or Dembrane-25-09 (processing.md §5.1)";

impl Provider {
    pub fn from_settings(settings: &TranscriptionSettings) -> Self {
        match settings.provider() {
            Err(ConfigError::Missing(_)) => Provider::NotConfigured,
            Err(err) => Provider::Broken(err.to_string()),
            Ok(_) => match Transcriber::from_settings(settings) {
                Ok(transcriber) => Provider::Ready(transcriber),
                Err(err) => Provider::Broken(err.to_string()),
            },
        }
    }
}

impl Provider {
    /// What network-worker needs to start (D63): a provider that can work. Every chunk would
    /// otherwise stay pending, or fail, without anyone being told.
    pub fn require(&self) -> Result<(), String> {
        match self {
            Provider::Ready(_) => Ok(()),
            Provider::NotConfigured => Err(NO_PROVIDER.into()),
            Provider::Broken(reason) => Err(reason.clone()),
        }
    }

    /// RunPod's client for the jobs in flight: the configured one, or one from RunPod's
    /// settings when another provider took over since they were submitted.
    fn runpod(&self, settings: &TranscriptionSettings) -> Result<RunPod, TaskError> {
        match self {
            Provider::Ready(Transcriber::Runpod(client)) => Ok(client.clone()),
            _ => RunPod::from_settings(settings).map_err(TaskError::terminal),
        }
    }
}

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

impl Job<'_> {
    fn pii_redaction(&self) -> bool {
        matches!(self.task, Task::TranscribeChunk { use_pii_redaction: true, .. })
    }
}

pub async fn run(services: &Services, provider: &Provider, chunk_id: &str, job: Job<'_>) -> Result<Done, TaskError> {
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else { return Ok(Done::Skipped("chunk is gone".into())) };
    if chunk.transcript.is_some() || chunk.error.is_some() {
        // The retry of a run whose completion trigger failed after the transcript was written
        // (a store outage): the trigger is idempotent, so run it again rather than lose it.
        completion_trigger(services, &chunk.conversation_id).await?;
        return Ok(Done::Skipped("already transcribed or failed".into()));
    }
    let ids = StatusIds::for_chunk(&chunk);
    let transcriber = match provider {
        Provider::Ready(transcriber) => transcriber,
        Provider::NotConfigured => {
            let message = format!("no transcription provider is configured; chunk {chunk_id} stays pending (set TRANSCRIPTION_PROVIDER)");
            // A skip inside the step: one `.completed` row saying why (§1.5).
            let step = StatusStep::start(services, "task_transcribe_chunk", format!("for chunk {chunk_id}"), ids).await;
            step.finish_early(&message).await;
            return Ok(Done::Skipped(message));
        }
        Provider::Broken(reason) => return Err(TaskError::terminal(reason)),
    };
    if job.pii_redaction() && !matches!(transcriber, Transcriber::Dembrane2509 { .. }) {
        tracing::warn!(chunk_id, "PII redaction is only done by Dembrane-25-09; transcribing without it");
    }
    let step = StatusStep::start(services, "task_transcribe_chunk", format!("for chunk {chunk_id}"), ids.clone()).await;
    let outcome = match transcriber {
        Transcriber::LiteLlm(client) => whisper::transcribe(services, client, &chunk).await,
        Transcriber::AssemblyAi(client) => assemblyai::transcribe(services, client, None, &chunk, &job).await,
        Transcriber::Dembrane2509 { assemblyai: client, vertex } => {
            assemblyai::transcribe(services, client, Some(vertex), &chunk, &job).await
        }
        Transcriber::Runpod(client) => runpod::transcribe(services, client, &chunk).await,
    };
    step.finish_with(&outcome).await;
    outcome
}

/// The language a Whisper-style provider is told; `multi` means "detect it", which those
/// providers do when no language is given (processing.md §10).
pub(crate) fn forced_language(language: String) -> Option<String> {
    (language != "multi" && !language.is_empty()).then_some(language)
}

/// Language and hotwords from the conversation's project.
pub(crate) async fn project_inputs(services: &Services, chunk: &Chunk) -> Result<Option<(String, Option<String>)>, TaskError> {
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

/// The chunk's mp3, downloaded into `dir`.
async fn download_audio(services: &Services, chunk: &Chunk, dir: &TempDir) -> Result<std::path::PathBuf, TaskError> {
    let key = common::flows::pipeline::audio_key(services, chunk)?;
    let file = dir.path().join("chunk.mp3");
    match services.blob.download_to(&key, &file).await {
        Ok(_) => Ok(file),
        Err(BlobError::Other(reason)) if reason.contains("NoSuchKey") => Err(TaskError::terminal("the audio object does not exist")),
        Err(err) => Err(err.into()),
    }
}
