#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    // S3 for the content redirect; the queue URLs only because Services::connect builds every client.
    let required =
        ["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "STORAGE_S3_BUCKET", "STORAGE_S3_ENDPOINT", "AUDIO_QUEUE_URL", "NETWORK_QUEUE_URL"];
    let services = common::Services::from_env(&required).await?;
    let state = resources::AppState::try_new(services)?;
    common::web::http::run_lambda(resources::router(state)).await
}
