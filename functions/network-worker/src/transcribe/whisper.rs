//! An OpenAI-compatible `/audio/transcriptions` endpoint (§5.2): the chunk's mp3 uploaded with
//! the project's language and the Whisper prompt.

use common::Services;
use common::audio::TempDir;
use common::providers::transcription::OpenAiTranscriber;
use common::queue::worker::{Done, TaskError};
use common::store::Chunk;
use minijinja::context;

use super::{download_audio, project_inputs, provider_error, write_transcript};

/// An OpenAI-compatible `/audio/transcriptions` endpoint (LiteLLM, OpenAI, a local whisper).
pub async fn transcribe(services: &Services, transcriber: &OpenAiTranscriber, chunk: &Chunk) -> Result<Done, TaskError> {
    let Some((language, project_prompt)) = project_inputs(services, chunk).await? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let mut prompt = common::providers::prompts::render("default_whisper_prompt", &language, context! {})
        .map_err(TaskError::terminal)?
        .trim()
        .to_string();
    if let Some(extra) = project_prompt {
        prompt.push_str(&format!(" {extra}."));
    }
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let file = download_audio(services, chunk, &dir).await?;
    let language = super::forced_language(language);
    let text = transcriber.transcribe(&file, language.as_deref(), Some(&prompt)).await.map_err(provider_error)?;
    dir.remove().await;
    write_transcript(services, chunk, text, None).await
}
