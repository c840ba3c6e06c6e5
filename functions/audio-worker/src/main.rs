use std::sync::Arc;

use common::config::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::http::init_tracing();
    let mut settings = Settings::from_env()?;
    common::secrets::resolve(&mut settings).await?;
    settings.require(&[
        "DIRECTUS_TOKEN",
        "STORAGE_S3_BUCKET",
        "STORAGE_S3_ENDPOINT",
        "AUDIO_QUEUE_URL",
        "NETWORK_QUEUE_URL",
        "AUDIO_DLQ_URL",
    ])?;
    let settings = Arc::new(settings);
    let worker = audio_worker::AudioWorker::new(common::Services::connect(settings.clone()).await?);
    common::worker::run_lambda(worker, &settings).await
}
