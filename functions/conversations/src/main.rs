#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(conversations::REQUIRED_SETTINGS).await?;
    let state = conversations::AppState::new(services);
    common::web::http::run_lambda_streaming(conversations::router(state)).await
}
