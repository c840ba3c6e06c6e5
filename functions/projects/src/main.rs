#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(projects::REQUIRED_SETTINGS).await?;
    let state = projects::AppState::new(services);
    common::web::http::run_lambda_streaming(projects::router(state)).await
}
