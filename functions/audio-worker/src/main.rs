#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let required = ["DIRECTUS_TOKEN", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL", "AUDIO_DLQ_URL"];
    let services = common::Services::from_env(&required).await?;
    let settings = services.settings.clone();
    common::queue::sqs::run_lambda(audio_worker::AudioWorker::new(services), &settings).await
}
