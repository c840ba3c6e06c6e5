use std::sync::Arc;

use common::config::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::http::init_tracing();
    let mut settings = Settings::from_env()?;
    common::secrets::resolve(&mut settings).await?;
    settings.require(&[
        "DIRECTUS_TOKEN",
        "DIRECTUS_SECRET",
        "STORAGE_S3_BUCKET",
        "STORAGE_S3_ENDPOINT",
        "AUDIO_QUEUE_URL",
        "NETWORK_QUEUE_URL",
    ])?;
    let state = conversations::AppState::new(common::Services::connect(Arc::new(settings)).await?);
    common::http::run_lambda_streaming(conversations::router(state)).await
}
