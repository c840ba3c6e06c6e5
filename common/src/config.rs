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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub api_base_url: String,
    pub admin_base_url: String,
    pub participant_base_url: String,
    pub disable_cors: bool,
    pub upload_url_rate_limit_per_minute: u32,
}

/// Where secrets live when they are not in the environment: SSM parameter names
/// (`DIRECTUS_TOKEN_SSM_PARAMETER`, `DIRECTUS_SECRET_SSM_PARAMETER`), read once at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretParameters {
    pub directus_token: Option<String>,
    pub directus_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub directus_secret: Option<String>,
    pub session_cookie_name: String,
}

/// One LLM slot: `<SLOT>_MODEL`, `_API_KEY`, `_API_BASE`, `_API_VERSION` (data-model.md §4.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LlmSlot {
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub api_base: Option<String>,
    pub api_version: Option<String>,
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub store: StoreSettings,
    pub s3: S3Settings,
    pub queues: QueueSettings,
    pub api: ApiSettings,
    pub auth: AuthSettings,
    pub llm: LlmSettings,
    pub secret_parameters: SecretParameters,
    pub runpod_diarization: bool,
    pub health_stream_max_seconds: u64,
    pub build_version: String,
    pub debug_mode: bool,
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
        };

        let api = ApiSettings {
            api_base_url: var("API_BASE_URL").unwrap_or_else(|| "http://localhost:8000/api".into()),
            admin_base_url: var("ADMIN_BASE_URL").unwrap_or_else(|| "http://localhost:3000".into()),
            participant_base_url: var("PARTICIPANT_BASE_URL").unwrap_or_else(|| "http://localhost:3001".into()),
            disable_cors: parse_bool(var("DISABLE_CORS").as_deref()),
            upload_url_rate_limit_per_minute: number("UPLOAD_URL_RATE_LIMIT_PER_MINUTE", 10)? as u32,
        };

        let auth = AuthSettings {
            directus_secret: var("DIRECTUS_SECRET"),
            session_cookie_name: var("DIRECTUS_SESSION_COOKIE_NAME").unwrap_or_else(|| "directus_session_token".into()),
        };

        let slot = |prefix: &str| LlmSlot {
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
        };

        Ok(Settings {
            store,
            s3,
            queues,
            api,
            auth,
            llm,
            secret_parameters: SecretParameters {
                directus_token: var("DIRECTUS_TOKEN_SSM_PARAMETER"),
                directus_secret: var("DIRECTUS_SECRET_SSM_PARAMETER"),
            },
            runpod_diarization: parse_bool(var("ENABLE_RUNPOD_DIARIZATION").as_deref()),
            health_stream_max_seconds: number("HEALTH_STREAM_MAX_SECONDS", 840)?,
            build_version: var("BUILD_VERSION").unwrap_or_else(|| "dev".into()),
            debug_mode: parse_bool(var("DEBUG_MODE").as_deref()),
        })
    }

    /// Refuses to start when a variable this binary needs is missing (D63).
    pub fn require(&self, names: &[&'static str]) -> Result<(), ConfigError> {
        for &name in names {
            let present = match name {
                "STORAGE_S3_BUCKET" => self.s3.bucket.is_some(),
                "STORAGE_S3_ENDPOINT" => self.s3.endpoint.is_some(),
                "AUDIO_QUEUE_URL" => self.queues.audio_queue_url.is_some(),
                "NETWORK_QUEUE_URL" => self.queues.network_queue_url.is_some(),
                "DIRECTUS_SECRET" => self.auth.directus_secret.is_some(),
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
}
