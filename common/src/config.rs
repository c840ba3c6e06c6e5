//! Typed settings read once from the environment, with ECHO's variable names where they exist
//! (spec/data-model.md §4). Each binary checks only what it uses with `require`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("invalid value for {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Which `Store` backend serves the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Embedded SQLite file (the default; `ECHO_STORE=sqlite`).
    Sqlite { path: PathBuf },
    /// Directus REST API (`ECHO_STORE=directus`).
    Directus { base_url: String, token: Option<String>, timeout_seconds: u64, page_size: u32 },
}

/// Inside Lambda (`AWS_LAMBDA_FUNCTION_NAME` or `AWS_LAMBDA_RUNTIME_API` set) the store is never
/// the silent SQLite default: a file there lives and dies with one execution environment and no
/// other sees it. `ECHO_STORE=directus` is required; the one exception is `ECHO_STORE=sqlite`
/// with `ECHO_SQLITE_PATH` naming the file (`cargo lambda watch` beside a running echo-local).
/// Outside Lambda (echo-local) SQLite stays the default.
pub fn check_lambda_store(get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let var = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("AWS_LAMBDA_FUNCTION_NAME").is_none() && var("AWS_LAMBDA_RUNTIME_API").is_none() {
        return Ok(());
    }
    match var("ECHO_STORE").as_deref() {
        Some("directus") => Ok(()),
        Some("sqlite") if var("ECHO_SQLITE_PATH").is_some() => Ok(()),
        found => Err(ConfigError::Invalid {
            name: "ECHO_STORE",
            reason: format!(
                "{} inside Lambda: set ECHO_STORE=directus (SQLite is echo-local's store)",
                found.map_or("unset".to_string(), |f| format!("{f:?}"))
            ),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: Option<String>,
    /// Endpoint and URL prefix of stored paths: `{endpoint}/{bucket}/{key}`.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Endpoint that presigned URLs handed to browsers are signed for (D44).
    pub public_endpoint: Option<String>,
    /// Upper bound of a presigned POST's `content-length-range` (2 GiB).
    pub upload_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    pub audio_queue_url: Option<String>,
    pub network_queue_url: Option<String>,
    /// SQS endpoint override (a local SQS-protocol server); AWS's own when unset.
    pub sqs_endpoint: Option<String>,
    pub audio_dlq_url: Option<String>,
    pub network_dlq_url: Option<String>,
    /// Attempts before the final-failure action; equals the redrive `maxReceiveCount`.
    pub task_max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub api_base_url: String,
    pub admin_base_url: String,
    pub participant_base_url: String,
    pub disable_cors: bool,
    pub upload_url_rate_limit_per_minute: u32,
    /// `RUNPOD_WEBHOOK_SECRET`: the RunPod webhook's shared secret; unset rejects every call (D21).
    pub runpod_webhook_secret: Option<String>,
}

/// The Postgres database of the legacy `document` table (resources only, data-model.md §3.20).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` with any SQLAlchemy driver suffix dropped (`postgresql+psycopg://` ->
    /// `postgresql://`); unset: the resources endpoints answer 503.
    pub url: Option<String>,
    /// `DATABASE_TIMEOUT_SECONDS`: bounds waiting for and opening a connection, and each statement.
    pub timeout_seconds: u64,
}

// The URL carries a password: never in logs.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url.as_ref().map(|_| "<set>"))
            .field("timeout_seconds", &self.timeout_seconds)
            .finish()
    }
}

/// `postgresql+psycopg://...` -> `postgresql://...`: the driver is SQLAlchemy's business.
pub fn without_driver_suffix(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.contains('+') => {
            format!("{}://{rest}", scheme.split('+').next().unwrap_or_default())
        }
        _ => url.to_string(),
    }
}

/// RunPod diarization (data-model.md §4.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiarizationSettings {
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    /// HTTP timeout and the whole polling budget, in seconds.
    pub timeout_seconds: u64,
    /// Skip projects whose language is not English.
    pub english_only: bool,
}

/// The RunPod topic modeler behind the project library and its views (data-model.md §4.8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicModelerSettings {
    pub url: Option<String>,
    pub api_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub directus_secret: Option<String>,
    pub session_cookie_name: String,
}

/// One LLM slot: `<SLOT>_MODEL`, `_API_KEY`, `_API_BASE`, `_API_VERSION` (data-model.md §4.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmSlot {
    /// The variables' prefix (`MEDIUM_LITELLM`), so a missing setting can be named.
    pub name: &'static str,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub api_base: Option<String>,
    pub api_version: Option<String>,
}

/// Where a model string goes, by its prefix (processing.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProvider {
    /// `openai/<model>`, a bare name or any other prefix: the OpenAI wire protocol (also a LiteLLM proxy).
    OpenAi,
    /// `azure/<deployment>`: Azure OpenAI.
    Azure,
    /// `anthropic/<model>`: Anthropic's Messages API.
    Anthropic,
    /// `vertex_ai/<model>`: Gemini on Vertex AI, with the `GCP_SA_JSON` service account.
    Vertex,
}

impl LlmProvider {
    /// The provider of `model` and the name it is sent under (prefix dropped; unknown prefixes kept
    /// for a proxy).
    pub fn route(model: &str) -> (LlmProvider, &str) {
        for (prefix, provider) in
            [("azure/", LlmProvider::Azure), ("anthropic/", LlmProvider::Anthropic), ("vertex_ai/", LlmProvider::Vertex)]
        {
            if let Some(name) = model.strip_prefix(prefix) {
                return (provider, name);
            }
        }
        (LlmProvider::OpenAi, model.strip_prefix("openai/").unwrap_or(model))
    }
}

/// A slot's variables as named in messages: `_MODEL`, `_API_KEY`, `_API_BASE`.
fn slot_variables(name: &str) -> [&'static str; 3] {
    match name {
        "MEDIUM_LITELLM" => ["MEDIUM_LITELLM_MODEL", "MEDIUM_LITELLM_API_KEY", "MEDIUM_LITELLM_API_BASE"],
        "SUMMARY_LITELLM" => ["SUMMARY_LITELLM_MODEL", "SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY)", "SUMMARY_LITELLM_API_BASE"],
        "SMALL_LITELLM" => ["SMALL_LITELLM_MODEL", "SMALL_LITELLM_API_KEY", "SMALL_LITELLM_API_BASE"],
        "LIGHTRAG_LITELLM_INFERENCE" => {
            ["LIGHTRAG_LITELLM_INFERENCE_MODEL", "LIGHTRAG_LITELLM_INFERENCE_API_KEY", "LIGHTRAG_LITELLM_INFERENCE_API_BASE"]
        }
        "LIGHTRAG_LITELLM" => ["LIGHTRAG_LITELLM_MODEL", "LIGHTRAG_LITELLM_API_KEY", "LIGHTRAG_LITELLM_API_BASE"],
        _ => ["the slot's _MODEL", "the slot's _API_KEY", "the slot's _API_BASE"],
    }
}

impl LlmSlot {
    /// The provider its model routes to; `None` without a model.
    pub fn provider(&self) -> Option<LlmProvider> {
        self.model.as_deref().map(|m| LlmProvider::route(m).0)
    }

    /// The setting still missing before this slot may be called, `None` when it is configured.
    /// A slot is configured when its model is set and its provider has a credential:
    /// `_API_KEY` (Azure and Anthropic; OpenAI unless `_API_BASE` names a keyless proxy),
    /// Azure's `_API_BASE`, or `GCP_SA_JSON` (`service_account`) for Vertex AI. An unconfigured
    /// slot is never called: no request leaves without a credential meant for its provider.
    pub fn missing(&self, service_account: bool) -> Option<&'static str> {
        let [model, key, base] = slot_variables(self.name);
        let (has_key, has_base) = (self.api_key.is_some(), self.api_base.is_some());
        let Some(provider) = self.provider() else {
            return Some(model);
        };
        match provider {
            LlmProvider::Azure if !has_key => Some(key),
            LlmProvider::Azure if !has_base => Some(base),
            LlmProvider::Anthropic if !has_key => Some(key),
            LlmProvider::Vertex if !service_account => Some("GCP_SA_JSON"),
            LlmProvider::OpenAi if !has_key && !has_base => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmSettings {
    /// get-reply and reports.
    pub medium: LlmSlot,
    /// Conversation summaries.
    pub summary: LlmSlot,
    /// Chat titles, follow-up detection, auto-select.
    pub small: LlmSlot,
    /// Chat answers.
    pub inference: LlmSlot,
    /// Whole-request limit of a non-streamed call (`LLM_TIMEOUT_SECONDS`, 120).
    pub timeout_seconds: u64,
    /// `ENABLE_CHAT_AUTO_SELECT`: the chat's auto-select path (off by default).
    pub chat_auto_select: bool,
    /// `DISABLE_CHAT_TITLE_GENERATION`: no chat titles from the SMALL model.
    pub chat_titles_disabled: bool,
}

/// The transcription provider (processing.md §5.1), named by `TRANSCRIPTION_PROVIDER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptionProvider {
    /// `Runpod`: asynchronous RunPod Whisper jobs (§5.4).
    Runpod,
    /// `LiteLLM`: an OpenAI-compatible Whisper endpoint, Azure included (§5.2).
    LiteLlm,
    /// `AssemblyAI` (§5.3).
    AssemblyAi,
    /// `Dembrane-25-09`: AssemblyAI plus a Gemini correction pass through Vertex AI (§5.3).
    Dembrane2509,
}

impl TranscriptionProvider {
    pub const ALL: [TranscriptionProvider; 4] = [
        TranscriptionProvider::Runpod,
        TranscriptionProvider::LiteLlm,
        TranscriptionProvider::AssemblyAi,
        TranscriptionProvider::Dembrane2509,
    ];

    /// The exact `TRANSCRIPTION_PROVIDER` value.
    pub fn as_str(self) -> &'static str {
        match self {
            TranscriptionProvider::Runpod => "Runpod",
            TranscriptionProvider::LiteLlm => "LiteLLM",
            TranscriptionProvider::AssemblyAi => "AssemblyAI",
            TranscriptionProvider::Dembrane2509 => "Dembrane-25-09",
        }
    }

    /// Exact, case-sensitive match of one of the four names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for TranscriptionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider-selection rule of processing.md §5.1: `TRANSCRIPTION_PROVIDER` when set (exact
/// names only), else the legacy flags in the order AssemblyAI, RunPod, LiteLLM; an unknown name
/// or nothing at all is a configuration error (`network-worker` refuses to start).
pub fn select_transcription_provider(
    name: Option<&str>,
    enable_assemblyai: bool,
    enable_runpod_whisper: bool,
    enable_litellm_whisper: bool,
) -> Result<TranscriptionProvider, ConfigError> {
    match name {
        Some(name) => TranscriptionProvider::from_name(name).ok_or_else(|| ConfigError::Invalid {
            name: "TRANSCRIPTION_PROVIDER",
            reason: format!("{name:?} is not one of Runpod, LiteLLM, AssemblyAI, Dembrane-25-09 (exact spelling)"),
        }),
        None if enable_assemblyai => Ok(TranscriptionProvider::AssemblyAi),
        None if enable_runpod_whisper => Ok(TranscriptionProvider::Runpod),
        None if enable_litellm_whisper => Ok(TranscriptionProvider::LiteLlm),
        None => Err(ConfigError::Missing("TRANSCRIPTION_PROVIDER")),
    }
}

pub const DEFAULT_ASSEMBLYAI_BASE_URL: &str = "https://api.eu.assemblyai.com";

/// Transcription variables (data-model.md §4.7). Reading them never fails on a missing or
/// unknown provider (most functions do not transcribe); `provider` and `require` apply the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionSettings {
    /// `TRANSCRIPTION_PROVIDER` as set (trimmed; empty counts as unset). The scheduler matches
    /// it loosely (contains `runpod`); transcription uses [`TranscriptionSettings::provider`].
    pub provider_name: Option<String>,
    /// `ENABLE_ASSEMBLYAI_TRANSCRIPTION` (legacy selector, first in the fallback order).
    pub enable_assemblyai: bool,
    /// `ENABLE_RUNPOD_WHISPER_TRANSCRIPTION` (legacy selector).
    pub enable_runpod_whisper: bool,
    /// `ENABLE_LITELLM_WHISPER_TRANSCRIPTION` (legacy selector).
    pub enable_litellm_whisper: bool,
    pub assemblyai_api_key: Option<String>,
    /// `ASSEMBLYAI_BASE_URL`, without a trailing `/`.
    pub assemblyai_base_url: String,
    pub runpod_whisper_api_key: Option<String>,
    /// `RUNPOD_WHISPER_BASE_URL` (job endpoint), without a trailing `/`.
    pub runpod_whisper_base_url: Option<String>,
    /// `RUNPOD_WHISPER_PRIORITY_BASE_URL` (job endpoint for `PORTAL_AUDIO`), without a trailing `/`.
    pub runpod_whisper_priority_base_url: Option<String>,
    /// `RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD`: maximum RunPod submissions per chunk.
    pub runpod_whisper_max_request_threshold: u32,
    pub litellm_whisper_api_key: Option<String>,
    pub litellm_whisper_model: Option<String>,
    /// `LITELLM_WHISPER_URL`, without a trailing `/`.
    pub litellm_whisper_url: Option<String>,
    /// `LITELLM_WHISPER_API_VERSION` (Azure only).
    pub litellm_whisper_api_version: String,
    /// `GCP_SA_JSON`: the Vertex AI service account of Dembrane-25-09 (raw or base64 JSON).
    pub gcp_sa_json: Option<String>,
    /// `VERTEXAI_LOCATION` (LiteLLM's name): the Vertex AI region.
    pub vertex_location: String,
    /// `VERTEXAI_API_BASE`: replaces `https://{location}-aiplatform.googleapis.com` (a proxy).
    pub vertex_api_base: Option<String>,
}

impl TranscriptionSettings {
    /// The configured provider (§5.1), or a configuration error naming `TRANSCRIPTION_PROVIDER`.
    pub fn provider(&self) -> Result<TranscriptionProvider, ConfigError> {
        select_transcription_provider(
            self.provider_name.as_deref(),
            self.enable_assemblyai,
            self.enable_runpod_whisper,
            self.enable_litellm_whisper,
        )
    }

    /// The provider plus a check that the variables it needs are set (`network-worker`
    /// start-up, D63).
    pub fn require(&self) -> Result<TranscriptionProvider, ConfigError> {
        let provider = self.provider()?;
        let needed: &[(&'static str, bool)] = match provider {
            TranscriptionProvider::AssemblyAi => &[("ASSEMBLYAI_API_KEY", self.assemblyai_api_key.is_some())],
            TranscriptionProvider::Dembrane2509 => {
                &[("ASSEMBLYAI_API_KEY", self.assemblyai_api_key.is_some()), ("GCP_SA_JSON", self.gcp_sa_json.is_some())]
            }
            TranscriptionProvider::Runpod => &[
                ("RUNPOD_WHISPER_API_KEY", self.runpod_whisper_api_key.is_some()),
                ("RUNPOD_WHISPER_BASE_URL", self.runpod_whisper_base_url.is_some()),
                ("RUNPOD_WHISPER_PRIORITY_BASE_URL", self.runpod_whisper_priority_base_url.is_some()),
            ],
            TranscriptionProvider::LiteLlm => &[
                ("LITELLM_WHISPER_API_KEY", self.litellm_whisper_api_key.is_some()),
                ("LITELLM_WHISPER_MODEL", self.litellm_whisper_model.is_some()),
                ("LITELLM_WHISPER_URL", self.litellm_whisper_url.is_some()),
            ],
        };
        match needed.iter().find(|(_, present)| !present) {
            Some((name, _)) => Err(ConfigError::Missing(name)),
            None => Ok(provider),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub store: StoreSettings,
    pub s3: S3Settings,
    pub queues: QueueSettings,
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub llm: LlmSettings,
    pub transcription: TranscriptionSettings,
    pub runpod_diarization: bool,
    pub diarization: DiarizationSettings,
    pub topic_modeler: TopicModelerSettings,
    pub database: DatabaseSettings,
    pub rag: RagSettings,
    pub health_stream_max_seconds: u64,
    /// How far back collector pass B looks for finished conversations that were never
    /// finalized (`COLLECTOR_REDRIVE_HOURS`, processing.md §3.3).
    pub collector_redrive_hours: u64,
    pub build_version: String,
    pub debug_mode: bool,
}

/// LightRAG's server and the ETL that feeds it (processing.md §9, data-model.md §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RagSettings {
    /// `LIGHTRAG_SERVER_URL`: unset = no RAG (endpoints 503, ETL and RAG deletion skipped).
    pub server_url: Option<String>,
    pub api_key: Option<String>,
    /// `ENABLE_AUDIO_LIGHTRAG_INPUT`: the global ETL switch.
    pub enable_audio_input: bool,
    /// `LIGHTRAG_LITELLM_*`: the ETL's contextualisation model.
    pub contextual_llm: LlmSlot,
}

/// ECHO's boolean rule: `true` or `1`, case-insensitive; anything else is false.
pub fn parse_bool(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        v == "true" || v == "1"
    })
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds settings from any name -> value lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| ConfigError::Invalid { name, reason: format!("{v:?} is not a whole number") }),
            }
        };

        let store = match var("ECHO_STORE").as_deref().unwrap_or("sqlite") {
            "sqlite" => StoreSettings::Sqlite {
                path: var("ECHO_SQLITE_PATH").map_or_else(|| PathBuf::from(".echo-local/echo.sqlite3"), PathBuf::from),
            },
            "directus" => StoreSettings::Directus {
                base_url: var("DIRECTUS_BASE_URL").unwrap_or_else(|| "http://directus:8055".into()),
                token: var("DIRECTUS_TOKEN"),
                timeout_seconds: number("DIRECTUS_TIMEOUT_SECONDS", 10)?,
                page_size: number("DIRECTUS_PAGE_SIZE", 500)? as u32,
            },
            other => {
                return Err(ConfigError::Invalid { name: "ECHO_STORE", reason: format!("{other:?} is not one of sqlite, directus") });
            }
        };

        let s3 = S3Settings {
            bucket: var("STORAGE_S3_BUCKET"),
            endpoint: var("STORAGE_S3_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
            region: var("STORAGE_S3_REGION").or_else(|| var("AWS_REGION")).unwrap_or_else(|| "us-east-1".into()),
            access_key: var("STORAGE_S3_KEY"),
            secret_key: var("STORAGE_S3_SECRET"),
            public_endpoint: var("STORAGE_S3_PUBLIC_ENDPOINT").map(|e| e.trim_end_matches('/').to_string()),
            upload_max_bytes: number("UPLOAD_MAX_BYTES", 2 * 1024 * 1024 * 1024)?,
        };

        let queues = QueueSettings {
            audio_queue_url: var("AUDIO_QUEUE_URL"),
            network_queue_url: var("NETWORK_QUEUE_URL"),
            sqs_endpoint: var("SQS_ENDPOINT_URL"),
            audio_dlq_url: var("AUDIO_DLQ_URL"),
            network_dlq_url: var("NETWORK_DLQ_URL"),
            task_max_attempts: number("TASK_MAX_ATTEMPTS", 5)?.max(1) as u32,
        };

        let api = ApiSettings {
            api_base_url: var("API_BASE_URL").unwrap_or_else(|| "http://localhost:8000/api".into()),
            admin_base_url: var("ADMIN_BASE_URL").unwrap_or_else(|| "http://localhost:3000".into()),
            participant_base_url: var("PARTICIPANT_BASE_URL").unwrap_or_else(|| "http://localhost:3001".into()),
            disable_cors: parse_bool(var("DISABLE_CORS").as_deref()),
            upload_url_rate_limit_per_minute: number("UPLOAD_URL_RATE_LIMIT_PER_MINUTE", 10)? as u32,
            runpod_webhook_secret: var("RUNPOD_WEBHOOK_SECRET"),
        };

        let auth = AuthSettings {
            directus_secret: var("DIRECTUS_SECRET"),
            session_cookie_name: var("DIRECTUS_SESSION_COOKIE_NAME").unwrap_or_else(|| "directus_session_token".into()),
        };

        let slot = |prefix: &'static str| LlmSlot {
            name: prefix,
            model: var(&format!("{prefix}_MODEL")),
            api_key: var(&format!("{prefix}_API_KEY")),
            api_base: var(&format!("{prefix}_API_BASE")),
            api_version: var(&format!("{prefix}_API_VERSION")),
        };
        let mut summary = slot("SUMMARY_LITELLM");
        summary.model.get_or_insert_with(|| "anthropic/claude-3-5-sonnet-20240620".into());
        if summary.api_key.is_none() {
            summary.api_key = var("ANTHROPIC_API_KEY");
        }
        let mut inference = slot("LIGHTRAG_LITELLM_INFERENCE");
        inference.model.get_or_insert_with(|| "anthropic/claude-3-5-sonnet-20240620".into());
        let llm = LlmSettings {
            medium: slot("MEDIUM_LITELLM"),
            summary,
            small: slot("SMALL_LITELLM"),
            inference,
            timeout_seconds: number("LLM_TIMEOUT_SECONDS", 120)?,
            chat_auto_select: parse_bool(var("ENABLE_CHAT_AUTO_SELECT").as_deref()),
            chat_titles_disabled: parse_bool(var("DISABLE_CHAT_TITLE_GENERATION").as_deref()),
        };

        let rag = RagSettings {
            server_url: var("LIGHTRAG_SERVER_URL").map(|u| u.trim_end_matches('/').to_string()),
            api_key: var("LIGHTRAG_API_KEY"),
            enable_audio_input: parse_bool(var("ENABLE_AUDIO_LIGHTRAG_INPUT").as_deref()),
            contextual_llm: slot("LIGHTRAG_LITELLM"),
        };
        let base_url = |name: &str| var(name).map(|u| u.trim_end_matches('/').to_string());
        let threshold = number("RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD", 30)?;
        let transcription = TranscriptionSettings {
            provider_name: var("TRANSCRIPTION_PROVIDER"),
            enable_assemblyai: parse_bool(var("ENABLE_ASSEMBLYAI_TRANSCRIPTION").as_deref()),
            enable_runpod_whisper: parse_bool(var("ENABLE_RUNPOD_WHISPER_TRANSCRIPTION").as_deref()),
            enable_litellm_whisper: parse_bool(var("ENABLE_LITELLM_WHISPER_TRANSCRIPTION").as_deref()),
            assemblyai_api_key: var("ASSEMBLYAI_API_KEY"),
            assemblyai_base_url: base_url("ASSEMBLYAI_BASE_URL").unwrap_or_else(|| DEFAULT_ASSEMBLYAI_BASE_URL.into()),
            runpod_whisper_api_key: var("RUNPOD_WHISPER_API_KEY"),
            runpod_whisper_base_url: base_url("RUNPOD_WHISPER_BASE_URL"),
            runpod_whisper_priority_base_url: base_url("RUNPOD_WHISPER_PRIORITY_BASE_URL"),
            runpod_whisper_max_request_threshold: u32::try_from(threshold).map_err(|_| ConfigError::Invalid {
                name: "RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD",
                reason: format!("{threshold} is too large"),
            })?,
            litellm_whisper_api_key: var("LITELLM_WHISPER_API_KEY"),
            litellm_whisper_model: var("LITELLM_WHISPER_MODEL"),
            litellm_whisper_url: base_url("LITELLM_WHISPER_URL"),
            litellm_whisper_api_version: var("LITELLM_WHISPER_API_VERSION").unwrap_or_else(|| "2024-06-01".into()),
            gcp_sa_json: var("GCP_SA_JSON"),
            vertex_location: var("VERTEXAI_LOCATION").unwrap_or_else(|| "us-central1".into()),
            vertex_api_base: base_url("VERTEXAI_API_BASE"),
        };

        Ok(Settings {
            store,
            s3,
            queues,
            api,
            auth,
            llm,
            transcription,
            runpod_diarization: parse_bool(var("ENABLE_RUNPOD_DIARIZATION").as_deref()),
            diarization: DiarizationSettings {
                api_key: var("RUNPOD_DIARIZATION_API_KEY"),
                base_url: var("RUNPOD_DIARIZATION_BASE_URL").map(|u| u.trim_end_matches('/').to_string()),
                timeout_seconds: number("RUNPOD_DIARIZATION_TIMEOUT", 30)?,
                english_only: parse_bool(var("DISABLE_MULTILINGUAL_DIARIZATION").as_deref()),
            },
            topic_modeler: TopicModelerSettings {
                url: var("RUNPOD_TOPIC_MODELER_URL").map(|u| u.trim_end_matches('/').to_string()),
                api_key: var("RUNPOD_TOPIC_MODELER_API_KEY"),
            },
            database: DatabaseSettings {
                url: var("DATABASE_URL").map(|u| without_driver_suffix(&u)),
                timeout_seconds: number("DATABASE_TIMEOUT_SECONDS", 5)?.max(1),
            },
            rag,
            health_stream_max_seconds: number("HEALTH_STREAM_MAX_SECONDS", 840)?,
            collector_redrive_hours: number("COLLECTOR_REDRIVE_HOURS", 24)?,
            build_version: var("BUILD_VERSION").unwrap_or_else(|| "dev".into()),
            debug_mode: parse_bool(var("DEBUG_MODE").as_deref()),
        })
    }

    /// Refuses to start when a variable this binary needs is missing (D63).
    pub fn require(&self, names: &[&'static str]) -> Result<(), ConfigError> {
        for &name in names {
            let present = match name {
                "STORAGE_S3_BUCKET" => self.s3.bucket.is_some(),
                "LIGHTRAG_SERVER_URL" => self.rag.server_url.is_some(),
                "STORAGE_S3_ENDPOINT" => self.s3.endpoint.is_some(),
                "AUDIO_QUEUE_URL" => self.queues.audio_queue_url.is_some(),
                "NETWORK_QUEUE_URL" => self.queues.network_queue_url.is_some(),
                "AUDIO_DLQ_URL" => self.queues.audio_dlq_url.is_some(),
                "NETWORK_DLQ_URL" => self.queues.network_dlq_url.is_some(),
                "DIRECTUS_SECRET" => self.auth.directus_secret.is_some(),
                // A whole LLM slot: its model and its provider's credential; the error names
                // the variable that is missing.
                "MEDIUM_LITELLM" | "SUMMARY_LITELLM" | "SMALL_LITELLM" | "LIGHTRAG_LITELLM_INFERENCE" | "LIGHTRAG_LITELLM" => {
                    let slot = [&self.llm.medium, &self.llm.summary, &self.llm.small, &self.llm.inference, &self.rag.contextual_llm]
                        .into_iter()
                        .find(|s| s.name == name)
                        .expect("every slot is named");
                    if let Some(missing) = self.llm_slot_missing(slot) {
                        return Err(ConfigError::Missing(missing));
                    }
                    true
                }
                "RUNPOD_TOPIC_MODELER_API_KEY" => self.topic_modeler.api_key.is_some(),
                "RUNPOD_DIARIZATION_API_KEY" => self.diarization.api_key.is_some(),
                "RUNPOD_DIARIZATION_BASE_URL" => self.diarization.base_url.is_some(),
                // The provider (§5.1) and its keys; the error names what is wrong.
                "TRANSCRIPTION_PROVIDER" => {
                    self.transcription.require()?;
                    true
                }
                "DIRECTUS_TOKEN" => match &self.store {
                    StoreSettings::Directus { token, .. } => token.is_some(),
                    StoreSettings::Sqlite { .. } => true,
                },
                other => {
                    return Err(ConfigError::Invalid { name: other, reason: "not a known setting".into() });
                }
            };
            if !present {
                return Err(ConfigError::Missing(name));
            }
        }
        Ok(())
    }

    /// The setting `slot` still lacks ([`LlmSlot::missing`]), `None` when it may be called.
    pub fn llm_slot_missing(&self, slot: &LlmSlot) -> Option<&'static str> {
        slot.missing(self.transcription.gcp_sa_json.is_some())
    }

    /// The CORS origins allowed to call with credentials.
    pub fn allowed_origins(&self) -> Vec<String> {
        [&self.api.admin_base_url, &self.api.participant_base_url].into_iter().map(|o| o.trim_end_matches('/').to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_echo() {
        let s = settings(&[]).unwrap();
        assert!(matches!(s.store, StoreSettings::Sqlite { .. }));
        assert_eq!(s.api.admin_base_url, "http://localhost:3000");
        assert_eq!(s.api.participant_base_url, "http://localhost:3001");
        assert_eq!(s.api.upload_url_rate_limit_per_minute, 10);
        assert_eq!(s.auth.session_cookie_name, "directus_session_token");
        assert_eq!(s.s3.upload_max_bytes, 2_147_483_648);
        assert!(!s.api.disable_cors);
        assert_eq!(s.collector_redrive_hours, 24);
        assert_eq!(settings(&[("COLLECTOR_REDRIVE_HOURS", "72")]).unwrap().collector_redrive_hours, 72);
        assert!(settings(&[("COLLECTOR_REDRIVE_HOURS", "a day")]).is_err());
    }

    #[test]
    fn inside_lambda_the_store_must_be_directus() {
        let check = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            check_lambda_store(|k| map.get(k).cloned())
        };
        assert!(check(&[]).is_ok(), "echo-local: SQLite by default");
        assert!(check(&[("ECHO_STORE", "sqlite")]).is_ok());
        for lambda in [("AWS_LAMBDA_FUNCTION_NAME", "echo-participant"), ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")] {
            for refused in [&[lambda][..], &[lambda, ("ECHO_STORE", "sqlite")], &[lambda, ("ECHO_STORE", " ")]] {
                let err = check(refused).unwrap_err().to_string();
                assert!(err.contains("ECHO_STORE") && err.contains("directus"), "{refused:?}: {err}");
            }
            assert!(check(&[lambda, ("ECHO_STORE", "directus")]).is_ok());
            assert!(check(&[lambda, ("ECHO_STORE", "sqlite"), ("ECHO_SQLITE_PATH", ".echo-local/echo.sqlite3")]).is_ok());
        }
    }

    #[test]
    fn booleans_follow_echo() {
        assert!(parse_bool(Some("TRUE")));
        assert!(parse_bool(Some("1")));
        assert!(!parse_bool(Some("yes")));
        assert!(!parse_bool(None));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(settings(&[("ECHO_STORE", "mongo")]), Err(ConfigError::Invalid { name: "ECHO_STORE", .. })));
        assert!(matches!(
            settings(&[("UPLOAD_URL_RATE_LIMIT_PER_MINUTE", "ten")]),
            Err(ConfigError::Invalid { name: "UPLOAD_URL_RATE_LIMIT_PER_MINUTE", .. })
        ));
    }

    #[test]
    fn require_names_the_missing_variable() {
        let s = settings(&[("STORAGE_S3_BUCKET", "b")]).unwrap();
        assert!(s.require(&["STORAGE_S3_BUCKET"]).is_ok());
        assert!(matches!(s.require(&["STORAGE_S3_ENDPOINT"]), Err(ConfigError::Missing("STORAGE_S3_ENDPOINT"))));
        let d = settings(&[("ECHO_STORE", "directus")]).unwrap();
        assert!(matches!(d.require(&["DIRECTUS_TOKEN"]), Err(ConfigError::Missing("DIRECTUS_TOKEN"))));
    }

    #[test]
    fn llm_slots_are_configured_only_with_their_providers_credential() {
        // ECHO's defaults without a key: the summary and chat-answer slots are not configured.
        let s = settings(&[]).unwrap();
        assert!(matches!(s.require(&["SUMMARY_LITELLM"]), Err(ConfigError::Missing("SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY)"))));
        assert!(matches!(s.require(&["LIGHTRAG_LITELLM_INFERENCE"]), Err(ConfigError::Missing("LIGHTRAG_LITELLM_INFERENCE_API_KEY"))));
        assert!(matches!(s.require(&["MEDIUM_LITELLM"]), Err(ConfigError::Missing("MEDIUM_LITELLM_MODEL"))));
        let s = settings(&[("ANTHROPIC_API_KEY", "sk-ant")]).unwrap();
        assert!(s.require(&["SUMMARY_LITELLM"]).is_ok(), "ANTHROPIC_API_KEY is the summary slot's default key");
        let missing = |pairs: &[(&str, &str)]| settings(pairs).unwrap().require(&["MEDIUM_LITELLM"]).err().map(|e| e.to_string());
        let named = |name: &str| Some(format!("missing required environment variable {name}"));
        assert_eq!(missing(&[("MEDIUM_LITELLM_MODEL", "gpt-4o")]), named("MEDIUM_LITELLM_API_KEY"), "api.openai.com needs a key");
        assert_eq!(missing(&[("MEDIUM_LITELLM_MODEL", "openai/gpt-4o"), ("MEDIUM_LITELLM_API_KEY", "sk")]), None);
        assert_eq!(
            missing(&[("MEDIUM_LITELLM_MODEL", "gpt-4o"), ("MEDIUM_LITELLM_API_BASE", "http://proxy:4000")]),
            None,
            "a keyless proxy"
        );
        assert_eq!(missing(&[("MEDIUM_LITELLM_MODEL", "azure/gpt-4o"), ("MEDIUM_LITELLM_API_KEY", "k")]), named("MEDIUM_LITELLM_API_BASE"));
        assert_eq!(
            missing(&[("MEDIUM_LITELLM_MODEL", "azure/gpt-4o"), ("MEDIUM_LITELLM_API_BASE", "https://x")]),
            named("MEDIUM_LITELLM_API_KEY")
        );
        assert_eq!(
            missing(&[("MEDIUM_LITELLM_MODEL", "anthropic/claude"), ("MEDIUM_LITELLM_API_BASE", "https://x")]),
            named("MEDIUM_LITELLM_API_KEY"),
            "Anthropic always needs its key"
        );
        assert_eq!(missing(&[("MEDIUM_LITELLM_MODEL", "vertex_ai/gemini-2.5-pro"), ("MEDIUM_LITELLM_API_KEY", "k")]), named("GCP_SA_JSON"));
        assert_eq!(missing(&[("MEDIUM_LITELLM_MODEL", "vertex_ai/gemini-2.5-pro"), ("GCP_SA_JSON", "{}")]), None);
        assert_eq!(LlmProvider::route("anthropic/claude-3-5-sonnet"), (LlmProvider::Anthropic, "claude-3-5-sonnet"));
        assert_eq!(LlmProvider::route("openai/gpt-4o"), (LlmProvider::OpenAi, "gpt-4o"));
        assert_eq!(LlmProvider::route("groq/llama"), (LlmProvider::OpenAi, "groq/llama"), "other prefixes are a proxy's");
    }

    #[test]
    fn database_url_drops_the_driver_suffix() {
        let s = settings(&[("DATABASE_URL", "postgresql+psycopg://u:p@db:5432/echo?sslmode=require")]).unwrap();
        assert_eq!(s.database.url.as_deref(), Some("postgresql://u:p@db:5432/echo?sslmode=require"));
        assert_eq!(s.database.timeout_seconds, 5);
        assert_eq!(without_driver_suffix("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(settings(&[]).unwrap().database.url, None);
        assert!(!format!("{:?}", s.database).contains("u:p"), "the password stays out of Debug output");
    }

    fn provider(pairs: &[(&str, &str)]) -> Result<TranscriptionProvider, ConfigError> {
        settings(pairs).unwrap().transcription.provider()
    }

    #[test]
    fn transcription_provider_names_are_exact() {
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "Runpod")]).unwrap(), TranscriptionProvider::Runpod);
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "LiteLLM")]).unwrap(), TranscriptionProvider::LiteLlm);
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "AssemblyAI")]).unwrap(), TranscriptionProvider::AssemblyAi);
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "Dembrane-25-09")]).unwrap(), TranscriptionProvider::Dembrane2509);
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", " Runpod ")]).unwrap(), TranscriptionProvider::Runpod, "whitespace is trimmed");
        for bad in ["runpod", "RUNPOD", "litellm", "Assemblyai", "Dembrane", "Whisper"] {
            let err = provider(&[("TRANSCRIPTION_PROVIDER", bad)]).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { name: "TRANSCRIPTION_PROVIDER", .. }), "{bad}: {err}");
            assert!(err.to_string().contains("Runpod, LiteLLM, AssemblyAI, Dembrane-25-09"), "{err}");
        }
        for p in TranscriptionProvider::ALL {
            assert_eq!(TranscriptionProvider::from_name(p.as_str()), Some(p));
        }
    }

    #[test]
    fn legacy_flags_select_in_order() {
        let all = [
            ("ENABLE_ASSEMBLYAI_TRANSCRIPTION", "true"),
            ("ENABLE_RUNPOD_WHISPER_TRANSCRIPTION", "1"),
            ("ENABLE_LITELLM_WHISPER_TRANSCRIPTION", "TRUE"),
        ];
        assert_eq!(provider(&all).unwrap(), TranscriptionProvider::AssemblyAi);
        assert_eq!(provider(&all[1..]).unwrap(), TranscriptionProvider::Runpod);
        assert_eq!(provider(&all[2..]).unwrap(), TranscriptionProvider::LiteLlm);
        assert_eq!(provider(&[("ENABLE_ASSEMBLYAI_TRANSCRIPTION", "false"), all[2]]).unwrap(), TranscriptionProvider::LiteLlm);
        // The explicit name wins over the flags; a bad name is not rescued by them.
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "LiteLLM"), all[0]]).unwrap(), TranscriptionProvider::LiteLlm);
        assert!(provider(&[("TRANSCRIPTION_PROVIDER", "openai"), all[0]]).is_err());
        // An empty name counts as unset.
        assert_eq!(provider(&[("TRANSCRIPTION_PROVIDER", "  "), all[1]]).unwrap(), TranscriptionProvider::Runpod);
    }

    #[test]
    fn no_transcription_provider_is_a_config_error_only_when_asked() {
        let s = settings(&[("ENABLE_RUNPOD_WHISPER_TRANSCRIPTION", "yes")]).expect("other functions still start");
        assert!(matches!(s.transcription.provider(), Err(ConfigError::Missing("TRANSCRIPTION_PROVIDER"))));
        assert!(matches!(s.require(&["TRANSCRIPTION_PROVIDER"]), Err(ConfigError::Missing("TRANSCRIPTION_PROVIDER"))));
    }

    #[test]
    fn transcription_defaults_and_keys() {
        let t = settings(&[]).unwrap().transcription;
        assert_eq!(t.assemblyai_base_url, "https://api.eu.assemblyai.com");
        assert_eq!(t.runpod_whisper_max_request_threshold, 30);
        assert_eq!(t.litellm_whisper_api_version, "2024-06-01");
        assert!(matches!(
            settings(&[("RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD", "many")]),
            Err(ConfigError::Invalid { name: "RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD", .. })
        ));

        let s = settings(&[
            ("TRANSCRIPTION_PROVIDER", "Runpod"),
            ("RUNPOD_WHISPER_API_KEY", "rp"),
            ("RUNPOD_WHISPER_BASE_URL", "https://api.runpod.ai/v2/normal/"),
            ("RUNPOD_WHISPER_MAX_REQUEST_THRESHOLD", "5"),
        ])
        .unwrap();
        assert_eq!(s.transcription.runpod_whisper_base_url.as_deref(), Some("https://api.runpod.ai/v2/normal"));
        assert_eq!(s.transcription.runpod_whisper_max_request_threshold, 5);
        assert!(matches!(s.transcription.require(), Err(ConfigError::Missing("RUNPOD_WHISPER_PRIORITY_BASE_URL"))));

        let s =
            settings(&[("TRANSCRIPTION_PROVIDER", "LiteLLM"), ("LITELLM_WHISPER_API_KEY", "k"), ("LITELLM_WHISPER_MODEL", "whisper-1")])
                .unwrap();
        assert!(matches!(s.require(&["TRANSCRIPTION_PROVIDER"]), Err(ConfigError::Missing("LITELLM_WHISPER_URL"))));

        let s = settings(&[("ENABLE_ASSEMBLYAI_TRANSCRIPTION", "1"), ("ASSEMBLYAI_API_KEY", "aai")]).unwrap();
        assert_eq!(s.transcription.require().unwrap(), TranscriptionProvider::AssemblyAi);
        assert!(s.require(&["TRANSCRIPTION_PROVIDER"]).is_ok());
        let s = settings(&[("TRANSCRIPTION_PROVIDER", "Dembrane-25-09")]).unwrap();
        assert!(matches!(s.transcription.require(), Err(ConfigError::Missing("ASSEMBLYAI_API_KEY"))));
        let s = settings(&[("TRANSCRIPTION_PROVIDER", "Dembrane-25-09"), ("ASSEMBLYAI_API_KEY", "aai")]).unwrap();
        assert!(matches!(s.transcription.require(), Err(ConfigError::Missing("GCP_SA_JSON"))));
    }
}
