#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let required =
        ["DIRECTUS_TOKEN", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL", "NETWORK_DLQ_URL"];
    let services = common::Services::from_env(&required).await?;
    // processing.md §9.1: with the ETL switched on, the server is required.
    if services.settings.rag.enable_audio_input {
        services.settings.require(&["LIGHTRAG_SERVER_URL"])?;
    }
    let settings = services.settings.clone();
    let worker = network_worker::NetworkWorker::new(services);
    // No provider, or one that cannot work, is a deploy mistake: refuse to start (§5.1, D63).
    worker.provider.require()?;
    common::queue::sqs::run_lambda(worker, &settings).await
}
