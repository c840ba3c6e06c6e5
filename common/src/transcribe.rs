//! Clients for the transcription providers of processing.md §5: an OpenAI-compatible Whisper
//! endpoint (`LiteLLM`, Azure OpenAI included, §5.2), AssemblyAI, alone or with the Gemini
//! correction pass of `Dembrane-25-09` (§5.3), and RunPod (§5.4).
//!
//! These are pure HTTP clients: no store, no S3. The task code reads the chunk, presigns the
//! audio, builds the prompt and hotwords, decides what to do with each answer and writes the
//! results. Every call is awaited on reqwest; the audio file is streamed from disk with tokio.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::config::{ConfigError, TranscriptionProvider, TranscriptionSettings};
use crate::vertex::{Part, ServiceAccount, VertexClient, VertexError};

/// Whole-request timeout of a Whisper upload and transcription (a piece is at most 15 MiB).
pub const DEFAULT_OPENAI_TIMEOUT: Duration = Duration::from_secs(300);
/// Per-request timeout of AssemblyAI submissions and polls (ECHO set none).
pub const DEFAULT_ASSEMBLYAI_TIMEOUT: Duration = Duration::from_secs(30);
/// `POST {base}/run` (§5.4 step 3).
pub const RUNPOD_RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// `GET {status link}` (§5.4 step 1).
pub const RUNPOD_STATUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Languages AssemblyAI's language detection may pick from (§5.3).
pub const ASSEMBLYAI_EXPECTED_LANGUAGES: [&str; 7] = ["nl", "fr", "es", "de", "it", "pt", "en"];
/// The Gemini model of the `Dembrane-25-09` correction pass.
pub const CORRECTION_MODEL: &str = "gemini-2.5-flash";
/// What an empty corrected transcript is stored as.
pub const NOTHING_TO_TRANSCRIBE: &str = "[Nothing to transcribe]";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// What must be escaped in one URL path segment.
const PATH_SEGMENT: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'/').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');
const READ_CHUNK: usize = 64 * 1024;

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

/// The `Dembrane-25-09` correction pass: Gemini hears the audio and corrects AssemblyAI's
/// candidate; `(transcript, note)`, an empty transcript stored as [`NOTHING_TO_TRANSCRIBE`].
pub async fn correct_transcript(
    vertex: &VertexClient,
    candidate: &str,
    mp3: Vec<u8>,
    hotwords: &[String],
    pii_redaction: bool,
) -> Result<(String, String), VertexError> {
    let system = crate::prompts::render(
        "transcript_correction_workflow",
        "en",
        json!({ "hotwords_str": hotwords.join(", "), "pii_redaction": pii_redaction }),
    )
    .map_err(|e| VertexError::Config(e.to_string()))?;
    let schema = json!({
        "type": "OBJECT",
        "properties": { "corrected_transcript": { "type": "STRING" }, "note": { "type": "STRING" } },
        "required": ["corrected_transcript", "note"],
    });
    let parts = vec![Part::Text(candidate.to_string()), Part::Inline { mime_type: "audio/mp3".into(), data: mp3 }];
    let answer = vertex.generate_json(CORRECTION_MODEL, &system, parts, schema).await?;
    let (Some(transcript), Some(note)) = (answer["corrected_transcript"].as_str(), answer["note"].as_str()) else {
        return Err(VertexError::Transient("the correction lacks corrected_transcript or note".into()));
    };
    let transcript = if transcript.trim().is_empty() { NOTHING_TO_TRANSCRIBE.to_string() } else { transcript.to_string() };
    Ok((transcript, note.to_string()))
}

fn required<'a>(value: &'a Option<String>, name: &'static str) -> Result<&'a str, TranscribeError> {
    value.as_deref().ok_or_else(|| ConfigError::Missing(name).into())
}

/// Hotwords from a project's `default_conversation_transcript_prompt`: split on commas, each
/// trimmed, empty ones dropped (§5.1).
pub fn hotwords_from_prompt(prompt: Option<&str>) -> Vec<String> {
    prompt.unwrap_or_default().split(',').map(str::trim).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible Whisper (§5.2)

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

// ---------------------------------------------------------------------------------------------
// AssemblyAI (§5.3)

/// AssemblyAI's v2 transcript API: submit, then poll.
#[derive(Debug, Clone)]
pub struct AssemblyAi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    timeout: Duration,
}

/// A transcript's state, from `GET /v2/transcript/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblyAiStatus {
    Queued,
    Processing,
    /// `text` (`""` when AssemblyAI sent none), `words` as sent (`null` when absent), and the
    /// whole answer.
    Completed {
        text: String,
        words: Value,
        raw: Value,
    },
    /// The transcript failed; AssemblyAI's `error` text.
    Error(String),
}

impl AssemblyAi {
    /// `base_url` is `ASSEMBLYAI_BASE_URL` (for example `https://api.eu.assemblyai.com`).
    pub fn new(base_url: &str, api_key: &str) -> Self {
        AssemblyAi {
            http: http_client(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            timeout: DEFAULT_ASSEMBLYAI_TIMEOUT,
        }
    }

    /// From `ASSEMBLYAI_BASE_URL` and `ASSEMBLYAI_API_KEY`.
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        Ok(Self::new(&settings.assemblyai_base_url, required(&settings.assemblyai_api_key, "ASSEMBLYAI_API_KEY")?))
    }

    /// Per-request timeout; default [`DEFAULT_ASSEMBLYAI_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST /v2/transcript` with the body of §5.3; the transcript (job) id.
    pub async fn submit(&self, audio_url: &str, language: &str, hotwords: &[String]) -> Result<String, TranscribeError> {
        let res = self
            .http
            .post(format!("{}/v2/transcript", self.base_url))
            .bearer_auth(&self.api_key)
            .timeout(self.timeout)
            .json(&assemblyai_request(audio_url, language, hotwords))
            .send()
            .await
            .map_err(transport)?;
        let value = parse_json(success_body(res).await?).await?;
        match &value["id"] {
            Value::String(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(TranscribeError::Other(format!("no transcript id in {}", truncate(&value.to_string())))),
        }
    }

    /// `GET /v2/transcript/{job_id}`: where the transcript is.
    pub async fn poll(&self, job_id: &str) -> Result<AssemblyAiStatus, TranscribeError> {
        let id = utf8_percent_encode(job_id, PATH_SEGMENT);
        let res = self
            .http
            .get(format!("{}/v2/transcript/{id}", self.base_url))
            .bearer_auth(&self.api_key)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        parse_assemblyai_status(parse_json(success_body(res).await?).await?)
    }
}

/// The submission body: universal model, language detection among the expected languages with
/// `language` as the fallback (`"en"` for `"auto"` or empty), and the hotwords as key terms
/// when there are any.
fn assemblyai_request(audio_url: &str, language: &str, hotwords: &[String]) -> Value {
    let fallback = if language.is_empty() || language == "auto" { "en" } else { language };
    let mut body = json!({
        "audio_url": audio_url,
        "speech_model": "universal",
        "language_detection": true,
        "language_detection_options": {
            "expected_languages": ASSEMBLYAI_EXPECTED_LANGUAGES,
            "fallback_language": fallback,
        },
    });
    let keyterms: Vec<&str> = hotwords.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
    if !keyterms.is_empty() {
        body["keyterms_prompt"] = json!(keyterms);
    }
    body
}

fn parse_assemblyai_status(value: Value) -> Result<AssemblyAiStatus, TranscribeError> {
    match value["status"].as_str().unwrap_or_default() {
        "queued" => Ok(AssemblyAiStatus::Queued),
        "processing" => Ok(AssemblyAiStatus::Processing),
        "completed" => {
            let text = value["text"].as_str().unwrap_or_default().to_string();
            let words = value.get("words").cloned().unwrap_or(Value::Null);
            Ok(AssemblyAiStatus::Completed { text, words, raw: value })
        }
        "error" => Ok(AssemblyAiStatus::Error(value["error"].as_str().unwrap_or("unknown error").to_string())),
        other => Err(TranscribeError::Other(format!("unknown AssemblyAI status {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// RunPod (§5.4)

/// RunPod serverless jobs: `POST {base}/run` and `GET {base}/status/{id}`, Bearer key.
#[derive(Debug, Clone)]
pub struct RunPod {
    http: reqwest::Client,
    api_key: String,
    run_timeout: Duration,
    status_timeout: Duration,
}

/// The `input` of a Whisper job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPodInput {
    /// A presigned GET of the mp3.
    pub audio: String,
    /// Sent as one string, `"a, b"`, or `null` when empty.
    pub hotwords: Vec<String>,
    pub conversation_chunk_id: String,
    /// Left out of the body when `None`.
    pub language: Option<String>,
}

/// An accepted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPodJob {
    pub id: String,
    /// `{base}/status/{id}` on the endpoint that accepted the job (D54).
    pub status_link: String,
}

/// A job's `status`, or `Unknown` when RunPod answers 404 (unknown or expired job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPodJobState {
    InQueue,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Unknown,
    /// A status string this code does not know (kept as sent).
    Other(String),
}

impl RunPodJobState {
    pub fn from_status(status: &str) -> Self {
        match status {
            "IN_QUEUE" => RunPodJobState::InQueue,
            "IN_PROGRESS" => RunPodJobState::InProgress,
            "COMPLETED" => RunPodJobState::Completed,
            "FAILED" => RunPodJobState::Failed,
            "CANCELLED" => RunPodJobState::Cancelled,
            "TIMED_OUT" => RunPodJobState::TimedOut,
            other => RunPodJobState::Other(other.to_string()),
        }
    }
}

/// A status answer: the parsed state and the payload as sent (`{id, status, output, ...}`,
/// what the completion handling takes; `null` or the error body for a 404).
#[derive(Debug, Clone, PartialEq)]
pub struct RunPodStatus {
    pub state: RunPodJobState,
    pub payload: Value,
}

impl RunPod {
    pub fn new(api_key: &str) -> Self {
        RunPod { http: http_client(), api_key: api_key.to_string(), run_timeout: RUNPOD_RUN_TIMEOUT, status_timeout: RUNPOD_STATUS_TIMEOUT }
    }

    /// From `RUNPOD_WHISPER_API_KEY` (the base URLs are the caller's choice per chunk).
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        Ok(Self::new(required(&settings.runpod_whisper_api_key, "RUNPOD_WHISPER_API_KEY")?))
    }

    /// Timeouts of `submit` and `status`; defaults [`RUNPOD_RUN_TIMEOUT`], [`RUNPOD_STATUS_TIMEOUT`].
    pub fn with_timeouts(mut self, run: Duration, status: Duration) -> Self {
        self.run_timeout = run;
        self.status_timeout = status;
        self
    }

    /// `POST {base_url}/run` with `{input, webhook}` (no `webhook` without a URL: the poller
    /// finishes the job); the job id and its status link.
    pub async fn submit(&self, base_url: &str, input: &RunPodInput, webhook_url: Option<&str>) -> Result<RunPodJob, TranscribeError> {
        let base = base_url.trim_end_matches('/');
        let res = self
            .http
            .post(format!("{base}/run"))
            .bearer_auth(&self.api_key)
            .timeout(self.run_timeout)
            .json(&runpod_request(input, webhook_url))
            .send()
            .await
            .map_err(transport)?;
        let value = parse_json(success_body(res).await?).await?;
        match &value["id"] {
            Value::String(id) if !id.is_empty() => Ok(RunPodJob { id: id.clone(), status_link: format!("{base}/status/{id}") }),
            _ => Err(TranscribeError::Other(format!("no job id in {}", truncate(&value.to_string())))),
        }
    }

    /// `GET {status_link}`. 200 → the state and payload; 404 → `Unknown`; other statuses are
    /// errors (408/409/429/5xx transient, other 4xx rejected).
    pub async fn status(&self, status_link: &str) -> Result<RunPodStatus, TranscribeError> {
        let res = self.http.get(status_link).bearer_auth(&self.api_key).timeout(self.status_timeout).send().await.map_err(transport)?;
        if res.status() == StatusCode::NOT_FOUND {
            let body = res.bytes().await.unwrap_or_default();
            let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Ok(RunPodStatus { state: RunPodJobState::Unknown, payload });
        }
        let payload = parse_json(success_body(res).await?).await?;
        let state = RunPodJobState::from_status(payload["status"].as_str().unwrap_or_default());
        Ok(RunPodStatus { state, payload })
    }
}

fn runpod_request(input: &RunPodInput, webhook_url: Option<&str>) -> Value {
    let hotwords: Vec<&str> = input.hotwords.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
    let mut body = json!({
        "input": {
            "audio": input.audio,
            "hotwords": if hotwords.is_empty() { Value::Null } else { json!(hotwords.join(", ")) },
            "conversation_chunk_id": input.conversation_chunk_id,
        },
    });
    if let Some(language) = &input.language {
        body["input"]["language"] = json!(language);
    }
    if let Some(webhook) = webhook_url {
        body["webhook"] = json!(webhook);
    }
    body
}

/// The webhook RunPod calls: `{API_BASE_URL}/stateless/webhook/transcribe?token={secret}`
/// (`API_BASE_URL` includes `/api`; the secret is percent-encoded).
pub fn runpod_webhook_url(api_base_url: &str, secret: &str) -> String {
    format!("{}/stateless/webhook/transcribe?token={}", api_base_url.trim_end_matches('/'), utf8_percent_encode(secret, NON_ALPHANUMERIC))
}

/// The job id at the end of a status link (`…/status/{id}`), for matching webhook payloads.
pub fn runpod_job_id(status_link: &str) -> Option<&str> {
    let (_, id) = status_link.rsplit_once("/status/")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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

    #[test]
    fn hotwords_split_on_commas() {
        assert_eq!(hotwords_from_prompt(Some(" Dembrane, ECHO ,, Sameer ")), ["Dembrane", "ECHO", "Sameer"]);
        assert!(hotwords_from_prompt(Some("")).is_empty());
        assert!(hotwords_from_prompt(None).is_empty());
    }

    #[test]
    fn assemblyai_body_follows_the_spec() {
        let body = assemblyai_request("https://s3/a.mp3?sig", "nl", &["Dembrane".into(), " ".into()]);
        assert_eq!(
            body,
            json!({
                "audio_url": "https://s3/a.mp3?sig",
                "speech_model": "universal",
                "language_detection": true,
                "language_detection_options": {
                    "expected_languages": ["nl", "fr", "es", "de", "it", "pt", "en"],
                    "fallback_language": "nl",
                },
                "keyterms_prompt": ["Dembrane"],
            })
        );
        let body = assemblyai_request("u", "auto", &[]);
        assert_eq!(body["language_detection_options"]["fallback_language"], "en");
        assert!(body.get("keyterms_prompt").is_none(), "no key terms without hotwords");
    }

    #[test]
    fn assemblyai_statuses_parse() {
        assert_eq!(parse_assemblyai_status(json!({"id": "t", "status": "queued"})).unwrap(), AssemblyAiStatus::Queued);
        assert_eq!(parse_assemblyai_status(json!({"status": "processing"})).unwrap(), AssemblyAiStatus::Processing);
        let raw = json!({"id": "t", "status": "completed", "text": "Hi there.", "words": [{"text": "Hi", "start": 0, "end": 200}]});
        let AssemblyAiStatus::Completed { text, words, raw: got } = parse_assemblyai_status(raw.clone()).unwrap() else { panic!() };
        assert_eq!((text.as_str(), &words, &got), ("Hi there.", &raw["words"], &raw));
        let AssemblyAiStatus::Completed { text, words, .. } =
            parse_assemblyai_status(json!({"status": "completed", "text": null})).unwrap()
        else {
            panic!()
        };
        assert_eq!((text.as_str(), words), ("", Value::Null));
        assert_eq!(
            parse_assemblyai_status(json!({"status": "error", "error": "Download error"})).unwrap(),
            AssemblyAiStatus::Error("Download error".into())
        );
        assert!(matches!(parse_assemblyai_status(json!({"status": "weird"})), Err(TranscribeError::Other(_))));
    }

    #[test]
    fn runpod_body_and_links() {
        let input = RunPodInput {
            audio: "https://s3/a.mp3".into(),
            hotwords: vec!["a".into(), "b".into()],
            conversation_chunk_id: "c1".into(),
            language: Some("en".into()),
        };
        assert_eq!(
            runpod_request(&input, Some("https://api/x")),
            json!({"input": {"audio": "https://s3/a.mp3", "hotwords": "a, b", "conversation_chunk_id": "c1", "language": "en"}, "webhook": "https://api/x"})
        );
        let bare = RunPodInput { hotwords: vec![], language: None, ..input };
        let body = runpod_request(&bare, None);
        assert_eq!(body["input"]["hotwords"], Value::Null);
        assert!(body["input"].get("language").is_none());
        assert!(body.get("webhook").is_none(), "no secret, no webhook: the poller finishes the job");

        assert_eq!(
            runpod_webhook_url("https://echo.example/api/", "s e/c&"),
            "https://echo.example/api/stateless/webhook/transcribe?token=s%20e%2Fc%26"
        );
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/status/job-1"), Some("job-1"));
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/status/"), None);
        assert_eq!(runpod_job_id("https://api.runpod.ai/v2/ep/run"), None);
        assert_eq!(RunPodJobState::from_status("IN_QUEUE"), RunPodJobState::InQueue);
        assert_eq!(RunPodJobState::from_status("TIMED_OUT"), RunPodJobState::TimedOut);
        assert_eq!(RunPodJobState::from_status("PAUSED"), RunPodJobState::Other("PAUSED".into()));
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
        assert!(
            matches!(Transcriber::from_settings(&transcription(&[])), Err(TranscribeError::Config(m)) if m.contains("TRANSCRIPTION_PROVIDER"))
        );
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
