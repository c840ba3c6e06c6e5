#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(&[
        "DIRECTUS_TOKEN",
        "DIRECTUS_SECRET",
        "STORAGE_S3_BUCKET",
        "STORAGE_S3_ENDPOINT",
        "AUDIO_QUEUE_URL",
        "NETWORK_QUEUE_URL",
    ])
    .await?;
    let state = conversations::AppState::new(services);
    common::web::http::run_lambda_streaming(conversations::router(state)).await
}
