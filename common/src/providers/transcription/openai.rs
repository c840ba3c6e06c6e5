//! An OpenAI-compatible Whisper endpoint (processing.md §5.2): LiteLLM, OpenAI, Azure OpenAI or
//! a local whisper server, one multipart upload per audio piece.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use crate::config::TranscriptionSettings;

use super::{TranscribeError, http_client, parse_json, required, success_body, transport, truncate};

/// Whole-request timeout of a Whisper upload and transcription (a piece is at most 15 MiB).
pub const DEFAULT_OPENAI_TIMEOUT: Duration = Duration::from_secs(300);
const READ_CHUNK: usize = 64 * 1024;

/// Multipart uploads to an OpenAI-compatible `audio/transcriptions` endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiTranscriber {
    http: reqwest::Client,
    url: String,
    /// The `model` field; `None` for Azure, where the deployment is in the URL.
    model: Option<String>,
    auth: (&'static str, String),
    timeout: Duration,
}

impl OpenAiTranscriber {
    /// `base_url` is `LITELLM_WHISPER_URL`. A `model` of `azure/<deployment>` posts to
    /// `{base}/openai/deployments/<deployment>/audio/transcriptions?api-version={api_version}`
    /// with an `api-key` header; any other model posts to `{base}/audio/transcriptions` with
    /// `Authorization: Bearer` and the model (without an `openai/` prefix) in the `model` field.
    pub fn new(base_url: &str, model: &str, api_key: &str, api_version: &str) -> Self {
        let base = base_url.trim_end_matches('/');
        let (url, model, auth) = match model.strip_prefix("azure/") {
            Some(deployment) => (
                format!("{base}/openai/deployments/{deployment}/audio/transcriptions?api-version={api_version}"),
                None,
                ("api-key", api_key.to_string()),
            ),
            None => (
                format!("{base}/audio/transcriptions"),
                Some(model.strip_prefix("openai/").unwrap_or(model).to_string()),
                ("authorization", format!("Bearer {api_key}")),
            ),
        };
        OpenAiTranscriber { http: http_client(), url, model, auth, timeout: DEFAULT_OPENAI_TIMEOUT }
    }

    /// From `LITELLM_WHISPER_URL`, `_MODEL`, `_API_KEY` and `_API_VERSION`.
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        Ok(Self::new(
            required(&settings.litellm_whisper_url, "LITELLM_WHISPER_URL")?,
            required(&settings.litellm_whisper_model, "LITELLM_WHISPER_MODEL")?,
            required(&settings.litellm_whisper_api_key, "LITELLM_WHISPER_API_KEY")?,
            &settings.litellm_whisper_api_version,
        ))
    }

    /// Whole-request timeout (upload and transcription); default [`DEFAULT_OPENAI_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Transcribes the mp3 at `audio` (streamed from disk as the `file` field, named `*.mp3`,
    /// `audio/mpeg`), with `language` and `prompt` fields when given; the answer's `text`.
    pub async fn transcribe(&self, audio: &Path, language: Option<&str>, prompt: Option<&str>) -> Result<String, TranscribeError> {
        let file =
            tokio::fs::File::open(audio).await.map_err(|e| TranscribeError::Other(format!("cannot open {}: {e}", audio.display())))?;
        let length = file.metadata().await.map_err(|e| TranscribeError::Other(format!("cannot stat {}: {e}", audio.display())))?.len();
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(file_stream(file)), length)
            .file_name(mp3_file_name(audio))
            .mime_str("audio/mpeg")
            .map_err(|e| TranscribeError::Other(e.to_string()))?;
        let mut form = reqwest::multipart::Form::new().part("file", part);
        if let Some(model) = &self.model {
            form = form.text("model", model.clone());
        }
        if let Some(language) = language.filter(|l| !l.is_empty()) {
            form = form.text("language", language.to_string());
        }
        if let Some(prompt) = prompt.filter(|p| !p.is_empty()) {
            form = form.text("prompt", prompt.to_string());
        }
        let res = self
            .http
            .post(&self.url)
            .header(self.auth.0, &self.auth.1)
            .timeout(self.timeout)
            .multipart(form)
            .send()
            .await
            .map_err(transport)?;
        let value = parse_json(success_body(res).await?).await?;
        parse_openai_text(&value)
    }
}

/// The file's own name when it ends in `.mp3`, else its stem with `.mp3`.
fn mp3_file_name(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.to_ascii_lowercase().ends_with(".mp3") {
        return name;
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty());
    format!("{}.mp3", stem.as_deref().unwrap_or("audio"))
}

/// The file in 64 KiB pieces, read with tokio (never `std::fs` on a worker thread).
fn file_stream(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let read = file.read_buf(&mut buf).await?;
        Ok(if read == 0 { None } else { Some((buf.freeze(), file)) })
    })
}

fn parse_openai_text(value: &Value) -> Result<String, TranscribeError> {
    value["text"].as_str().map(str::to_string).ok_or_else(|| TranscribeError::Other(format!("no text in {}", truncate(&value.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whisper_models_route_by_prefix() {
        let t = OpenAiTranscriber::new("http://127.0.0.1:9/v1/", "openai/whisper-1", "k", "2024-06-01");
        assert_eq!((t.url(), t.model.as_deref()), ("http://127.0.0.1:9/v1/audio/transcriptions", Some("whisper-1")));
        assert_eq!(t.auth, ("authorization", "Bearer k".to_string()));
        let t = OpenAiTranscriber::new("http://127.0.0.1:9/v1", "groq/whisper-large-v3", "k", "2024-06-01");
        assert_eq!(t.model.as_deref(), Some("groq/whisper-large-v3"), "left for a LiteLLM proxy");
        let t = OpenAiTranscriber::new("https://x.openai.azure.com", "azure/whisper", "k", "2024-06-01");
        assert_eq!(t.url(), "https://x.openai.azure.com/openai/deployments/whisper/audio/transcriptions?api-version=2024-06-01");
        assert_eq!((t.model, t.auth), (None, ("api-key", "k".to_string())));
    }

    #[test]
    fn upload_names_end_in_mp3() {
        assert_eq!(mp3_file_name(Path::new("/tmp/x/chunk_0-of-2.mp3")), "chunk_0-of-2.mp3");
        assert_eq!(mp3_file_name(Path::new("/tmp/x/piece.MP3")), "piece.MP3");
        assert_eq!(mp3_file_name(Path::new("/tmp/x/piece.bin")), "piece.mp3");
        assert_eq!(mp3_file_name(Path::new("/tmp/x/piece")), "piece.mp3");
        assert_eq!(mp3_file_name(Path::new("/")), "audio.mp3");
    }
}
