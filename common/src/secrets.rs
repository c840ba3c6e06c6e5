//! Secrets kept in SSM Parameter Store (SecureString) instead of the function's environment: for
//! each secret setting `X` below, `X_SSM_PARAMETER` may name the parameter holding it. Every
//! named one is read at start-up in one decrypted GetParameters call (per 10 names, SSM's
//! limit), before the settings are built and checked. A value in `X` itself wins.

use std::collections::HashMap;

use crate::config::{ConfigError, Settings};

/// The settings that are secrets: tokens, signing keys and API keys.
pub const SECRET_SETTINGS: &[&str] = &[
    "DIRECTUS_TOKEN",
    "DIRECTUS_SECRET",
    "MEDIUM_LITELLM_API_KEY",
    "SUMMARY_LITELLM_API_KEY",
    "SMALL_LITELLM_API_KEY",
    "LIGHTRAG_LITELLM_INFERENCE_API_KEY",
    "LIGHTRAG_LITELLM_API_KEY",
    "LIGHTRAG_API_KEY",
    "ANTHROPIC_API_KEY",
    "ASSEMBLYAI_API_KEY",
    "RUNPOD_WHISPER_API_KEY",
    "LITELLM_WHISPER_API_KEY",
    "RUNPOD_DIARIZATION_API_KEY",
    "RUNPOD_WEBHOOK_SECRET",
    "RUNPOD_TOPIC_MODELER_API_KEY",
    "GCP_SA_JSON",
    // Holds the database password.
    "DATABASE_URL",
];

pub const PARAMETER_SUFFIX: &str = "_SSM_PARAMETER";

/// SSM's most names per GetParameters call.
const BATCH: usize = 10;

fn present(get: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// (setting, parameter name) for each secret that is unset but has a parameter named.
pub fn wanted(get: &impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    SECRET_SETTINGS
        .iter()
        .filter(|name| present(get, name).is_none())
        .filter_map(|&name| present(get, &format!("{name}{PARAMETER_SUFFIX}")).map(|p| (name, p)))
        .collect()
}

fn ssm_error(reason: String) -> ConfigError {
    ConfigError::Invalid { name: "SSM parameter", reason }
}

/// The values of `wanted`, by setting; a parameter SSM does not have is an error naming it.
pub async fn fetch(client: &aws_sdk_ssm::Client, wanted: &[(&'static str, String)]) -> Result<HashMap<&'static str, String>, ConfigError> {
    let mut by_parameter: HashMap<String, String> = HashMap::new();
    let mut names: Vec<&String> = wanted.iter().map(|(_, p)| p).collect();
    names.sort();
    names.dedup();
    for batch in names.chunks(BATCH) {
        let out = client
            .get_parameters()
            .set_names(Some(batch.iter().map(|n| n.to_string()).collect()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                ssm_error(format!(
                    "{}: {}",
                    batch.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    aws_sdk_ssm::error::DisplayErrorContext(&e)
                ))
            })?;
        if !out.invalid_parameters().is_empty() {
            return Err(ssm_error(format!("not found: {}", out.invalid_parameters().join(", "))));
        }
        for p in out.parameters() {
            if let (Some(name), Some(value)) = (p.name(), p.value()) {
                by_parameter.insert(name.to_string(), value.to_string());
            }
        }
    }
    wanted
        .iter()
        .map(|(setting, parameter)| {
            by_parameter.get(parameter).map(|v| (*setting, v.clone())).ok_or_else(|| ssm_error(format!("{parameter} has no value")))
        })
        .collect()
}

/// Settings from `get`, with each secret that only names its parameter read from SSM.
pub async fn settings_with(client: &aws_sdk_ssm::Client, get: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let fetched = fetch(client, &wanted(&get)).await?;
    Settings::from_lookup(|name| fetched.get(name).cloned().or_else(|| get(name)))
}

/// The function's settings from its environment; SSM is asked only when a parameter is named.
pub async fn settings_from_env() -> Result<Settings, ConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    if wanted(&env).is_empty() {
        return Settings::from_env();
    }
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    settings_with(&aws_sdk_ssm::Client::new(&shared), env).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unset_secrets_with_a_parameter_are_wanted() {
        let env = |name: &str| {
            match name {
                "DIRECTUS_TOKEN" => Some("set"),
                "DIRECTUS_TOKEN_SSM_PARAMETER" => Some("/echo/token"),
                "ASSEMBLYAI_API_KEY_SSM_PARAMETER" => Some("/echo/assemblyai"),
                "MEDIUM_LITELLM_API_KEY" => Some(" "),
                "MEDIUM_LITELLM_API_KEY_SSM_PARAMETER" => Some("/echo/medium"),
                "SUMMARY_LITELLM_API_KEY_SSM_PARAMETER" => Some(""),
                _ => None,
            }
            .map(str::to_string)
        };
        let mut got = wanted(&env);
        got.sort();
        assert_eq!(
            got,
            vec![("ASSEMBLYAI_API_KEY", "/echo/assemblyai".to_string()), ("MEDIUM_LITELLM_API_KEY", "/echo/medium".to_string())]
        );
    }
}
