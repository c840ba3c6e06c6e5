//! Secrets kept in SSM Parameter Store (SecureString) instead of the function's environment:
//! read once at start-up, before the settings are checked.

use crate::config::{ConfigError, Settings, StoreSettings};

async fn read(client: &aws_sdk_ssm::Client, name: &str) -> Result<String, ConfigError> {
    let out = client.get_parameter().name(name).with_decryption(true).send().await.map_err(|e| ConfigError::Invalid {
        name: "SSM parameter",
        reason: format!("{name}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e)),
    })?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::to_string)
        .ok_or(ConfigError::Invalid { name: "SSM parameter", reason: format!("{name} has no value") })
}

/// Fills the Directus token and secret (and the RunPod webhook secret) from their SSM parameters when the environment does not
/// carry them. `client` is built from the default AWS configuration (the function's role).
pub async fn resolve_with(client: &aws_sdk_ssm::Client, settings: &mut Settings) -> Result<(), ConfigError> {
    if let (Some(name), StoreSettings::Directus { token, .. }) = (&settings.secret_parameters.directus_token, &mut settings.store)
        && token.is_none()
    {
        *token = Some(read(client, name).await?);
    }
    if let Some(name) = &settings.secret_parameters.directus_secret
        && settings.auth.directus_secret.is_none()
    {
        settings.auth.directus_secret = Some(read(client, name).await?);
    }
    if let Some(name) = &settings.secret_parameters.runpod_webhook_secret
        && settings.api.runpod_webhook_secret.is_none()
    {
        settings.api.runpod_webhook_secret = Some(read(client, name).await?);
    }
    Ok(())
}

/// `resolve_with` on AWS, when any parameter is named.
pub async fn resolve(settings: &mut Settings) -> Result<(), ConfigError> {
    let p = &settings.secret_parameters;
    if p.directus_token.is_none() && p.directus_secret.is_none() && p.runpod_webhook_secret.is_none() {
        return Ok(());
    }
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    resolve_with(&aws_sdk_ssm::Client::new(&shared), settings).await
}
