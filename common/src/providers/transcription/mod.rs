//! Clients for the transcription providers of processing.md §5: an OpenAI-compatible Whisper
//! endpoint (`LiteLLM`, Azure OpenAI included, §5.2), AssemblyAI, alone or with the Gemini
//! correction pass of `Dembrane-25-09` (§5.3), and RunPod (§5.4).
//!
//! One file per provider; this module holds their error, the shared HTTP handling and the
//! [`Transcriber`] a worker builds once from the settings.
//!
//! These are pure HTTP clients: no store, no S3. The task code reads the chunk, presigns the
//! audio, builds the prompt and hotwords, decides what to do with each answer and writes the
//! results. Every call is awaited on reqwest; the audio file is streamed from disk with tokio.

mod assemblyai;
mod dembrane;
mod openai;
mod runpod;

pub use assemblyai::{ASSEMBLYAI_EXPECTED_LANGUAGES, AssemblyAi, AssemblyAiStatus, DEFAULT_ASSEMBLYAI_TIMEOUT};
pub use dembrane::{CORRECTION_MODEL, NOTHING_TO_TRANSCRIBE, correct_transcript};
pub use openai::{DEFAULT_OPENAI_TIMEOUT, OpenAiTranscriber};
pub use runpod::{
    RUNPOD_RUN_TIMEOUT, RUNPOD_STATUS_TIMEOUT, RunPod, RunPodInput, RunPodJob, RunPodJobState, RunPodStatus, runpod_job_id,
    runpod_webhook_url,
};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use serde_json::Value;

use crate::config::{ConfigError, TranscriptionProvider, TranscriptionSettings};
use crate::providers::vertex::{ServiceAccount, VertexClient};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// Unreachable, timed out, 408, 409, 429 or 5xx: worth retrying later (transient).
    #[error("transcription provider unavailable: {0}")]
    Unavailable(String),
    /// Any other 4xx: the provider refused this request; retrying will not help (terminal).
    #[error("transcription provider rejected the request ({status}): {body}")]
    Rejected { status: u16, body: String },
    /// The provider is not configured.
    #[error("transcription not configured: {0}")]
    Config(String),
    /// Anything else: an unreadable answer, an unreadable local file.
    #[error("transcription error: {0}")]
    Other(String),
}

impl TranscribeError {
    /// Whether the task should retry (processing.md §1.3 "transient").
    pub fn is_transient(&self) -> bool {
        matches!(self, TranscribeError::Unavailable(_))
    }
}

impl From<ConfigError> for TranscribeError {
    fn from(err: ConfigError) -> Self {
        TranscribeError::Config(err.to_string())
    }
}

/// 408, 409 (processing.md §1.3 keeps it out of the terminal 4xx), 429 and 5xx are transient;
/// other 4xx are rejections.
fn classify_status(status: StatusCode, body: &str) -> TranscribeError {
    let code = status.as_u16();
    if status.is_server_error() || matches!(code, 408 | 409 | 429) {
        TranscribeError::Unavailable(format!("{status}: {}", truncate(body)))
    } else if status.is_client_error() {
        TranscribeError::Rejected { status: code, body: truncate(body) }
    } else {
        TranscribeError::Other(format!("unexpected {status}: {}", truncate(body)))
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(500).collect()
}

/// A reqwest error with its causes ("error sending request" alone says little).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn transport(err: reqwest::Error) -> TranscribeError {
    if err.is_builder() { TranscribeError::Other(describe(&err)) } else { TranscribeError::Unavailable(describe(&err)) }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().connect_timeout(CONNECT_TIMEOUT).build().expect("a TLS client can be built")
}

/// The body of a successful answer; a non-2xx status is classified.
async fn success_body(res: reqwest::Response) -> Result<Bytes, TranscribeError> {
    let status = res.status();
    let body = res.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(classify_status(status, &String::from_utf8_lossy(&body)));
    }
    Ok(body)
}

/// Parses a provider's JSON answer; large ones (AssemblyAI words) off the tokio workers.
async fn parse_json(body: Bytes) -> Result<Value, TranscribeError> {
    let parse = |body: &[u8]| serde_json::from_slice::<Value>(body).map_err(|e| TranscribeError::Other(format!("unreadable answer: {e}")));
    if body.len() <= 64 * 1024 {
        return parse(&body);
    }
    crate::offload(move || parse(&body)).await.map_err(|e| TranscribeError::Other(e.to_string()))?
}

/// The client for the configured provider.
#[derive(Debug, Clone)]
pub enum Transcriber {
    LiteLlm(OpenAiTranscriber),
    AssemblyAi(AssemblyAi),
    /// AssemblyAI, then Gemini corrects its transcript against the audio.
    Dembrane2509 {
        assemblyai: AssemblyAi,
        vertex: Arc<VertexClient>,
    },
    Runpod(RunPod),
}

impl Transcriber {
    /// The provider of §5.1 with its keys; a missing/unknown provider, a missing key or an
    /// unusable `GCP_SA_JSON` is [`TranscribeError::Config`]. Built once per process, so the
    /// Vertex access token is reused across tasks.
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        match settings.require()? {
            TranscriptionProvider::LiteLlm => OpenAiTranscriber::from_settings(settings).map(Transcriber::LiteLlm),
            TranscriptionProvider::AssemblyAi => AssemblyAi::from_settings(settings).map(Transcriber::AssemblyAi),
            TranscriptionProvider::Runpod => RunPod::from_settings(settings).map(Transcriber::Runpod),
            TranscriptionProvider::Dembrane2509 => {
                let assemblyai = AssemblyAi::from_settings(settings)?;
                let account = ServiceAccount::parse(required(&settings.gcp_sa_json, "GCP_SA_JSON")?)
                    .map_err(|e| TranscribeError::Config(e.to_string()))?;
                let vertex = VertexClient::new(account, &settings.vertex_location, settings.vertex_api_base.as_deref());
                Ok(Transcriber::Dembrane2509 { assemblyai, vertex: Arc::new(vertex) })
            }
        }
    }
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, TranscribeError> {
    value.as_deref().ok_or_else(|| ConfigError::Missing(name).into())
}

/// Hotwords from a project's `default_conversation_transcript_prompt`: split on commas, each
/// trimmed, empty ones dropped (§5.1).
pub fn hotwords_from_prompt(prompt: Option<&str>) -> Vec<String> {
    prompt.unwrap_or_default().split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn hotwords_split_on_commas() {
        assert_eq!(hotwords_from_prompt(Some(" Dembrane, ECHO ,, Sameer ")), ["Dembrane", "ECHO", "Sameer"]);
        assert!(hotwords_from_prompt(Some("")).is_empty());
        assert!(hotwords_from_prompt(None).is_empty());
    }

    #[test]
    fn statuses_classify() {
        for code in [408, 409, 429, 500, 502, 503] {
            let err = classify_status(StatusCode::from_u16(code).unwrap(), "busy");
            assert!(err.is_transient(), "{code}: {err}");
        }
        for code in [400, 401, 403, 404, 413, 422] {
            let err = classify_status(StatusCode::from_u16(code).unwrap(), "no");
            assert!(matches!(err, TranscribeError::Rejected { status, ref body } if status == code && body == "no"), "{code}: {err}");
        }
    }

    fn transcription(pairs: &[(&str, &str)]) -> TranscriptionSettings {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        crate::config::Settings::from_lookup(|k| map.get(k).cloned()).unwrap().transcription
    }

    #[test]
    fn transcriber_follows_the_configured_provider() {
        let s = transcription(&[("TRANSCRIPTION_PROVIDER", "Dembrane-25-09"), ("ASSEMBLYAI_API_KEY", "k")]);
        assert!(matches!(Transcriber::from_settings(&s), Err(TranscribeError::Config(m)) if m.contains("GCP_SA_JSON")));
        let s = transcription(&[("TRANSCRIPTION_PROVIDER", "Dembrane-25-09"), ("ASSEMBLYAI_API_KEY", "k"), ("GCP_SA_JSON", "{}")]);
        assert!(matches!(Transcriber::from_settings(&s), Err(TranscribeError::Config(m)) if m.contains("GCP_SA_JSON has no")));
        let unnamed = Transcriber::from_settings(&transcription(&[]));
        assert!(matches!(unnamed, Err(TranscribeError::Config(m)) if m.contains("TRANSCRIPTION_PROVIDER")));
        let s = transcription(&[("TRANSCRIPTION_PROVIDER", "AssemblyAI")]);
        assert!(matches!(Transcriber::from_settings(&s), Err(TranscribeError::Config(m)) if m.contains("ASSEMBLYAI_API_KEY")));
        let s = transcription(&[("ENABLE_ASSEMBLYAI_TRANSCRIPTION", "true"), ("ASSEMBLYAI_API_KEY", "k")]);
        assert!(matches!(Transcriber::from_settings(&s), Ok(Transcriber::AssemblyAi(_))));
        let s = transcription(&[
            ("TRANSCRIPTION_PROVIDER", "LiteLLM"),
            ("LITELLM_WHISPER_URL", "https://x.openai.azure.com/"),
            ("LITELLM_WHISPER_MODEL", "azure/whisper"),
            ("LITELLM_WHISPER_API_KEY", "k"),
        ]);
        let Ok(Transcriber::LiteLlm(t)) = Transcriber::from_settings(&s) else { panic!() };
        assert_eq!(t.url(), "https://x.openai.azure.com/openai/deployments/whisper/audio/transcriptions?api-version=2024-06-01");
        let s = transcription(&[
            ("TRANSCRIPTION_PROVIDER", "Runpod"),
            ("RUNPOD_WHISPER_API_KEY", "k"),
            ("RUNPOD_WHISPER_BASE_URL", "https://api.runpod.ai/v2/a"),
            ("RUNPOD_WHISPER_PRIORITY_BASE_URL", "https://api.runpod.ai/v2/b"),
        ]);
        assert!(matches!(Transcriber::from_settings(&s), Ok(Transcriber::Runpod(_))));
    }
}
