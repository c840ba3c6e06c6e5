#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(stateless::REQUIRED_SETTINGS).await?;
    let state = stateless::AppState::new(services);
    common::web::http::run_lambda(stateless::router(state)).await
}
