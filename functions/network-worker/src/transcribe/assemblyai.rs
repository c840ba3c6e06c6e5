//! AssemblyAI (§5.3), alone or as `Dembrane-25-09` with Gemini's correction. Waiting never
//! sleeps past the invocation's budget: the task re-publishes itself with the job id, so the
//! next delivery polls the same job (D55); a correction that fails for a passing reason does the
//! same, so AssemblyAI is paid once.

use std::time::Duration;

use common::Services;
use common::audio::TempDir;
use common::providers::transcription::{AssemblyAi, AssemblyAiStatus, correct_transcript, hotwords_from_prompt};
use common::providers::vertex::VertexClient;
use common::queue::Task;
use common::queue::worker::{Done, TaskError};
use common::store::Chunk;
use serde_json::json;

use super::{Job, download_audio, project_inputs, provider_error, write_transcript};

const PROVIDER_URL_LIFETIME: Duration = Duration::from_secs(259_200);
const POLL_EVERY: Duration = Duration::from_secs(3);
const CONTINUATION_DELAY: Duration = Duration::from_secs(30);
const MAX_CONTINUATIONS: u32 = 96;
/// The Dembrane-25-09 correction's worst case: the audio download and the Vertex client's timeout.
const CORRECTION_ESTIMATE: Duration = Duration::from_secs(330);

/// The chunk's mp3, whole, for the correction pass (a piece is at most 15 MiB).
async fn audio_bytes(services: &Services, chunk: &Chunk) -> Result<Vec<u8>, TaskError> {
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let file = download_audio(services, chunk, &dir).await?;
    let bytes = tokio::fs::read(&file).await.map_err(TaskError::transient)?;
    dir.remove().await;
    Ok(bytes)
}

/// AssemblyAI, and with `vertex` the Dembrane-25-09 correction of its transcript.
pub async fn transcribe(
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
            let key = common::flows::pipeline::audio_key(services, chunk)?;
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
                let pii = job.pii_redaction();
                let audio = audio_bytes(services, chunk).await?;
                return match correct_transcript(vertex, &text, audio, &hotwords, pii).await {
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
