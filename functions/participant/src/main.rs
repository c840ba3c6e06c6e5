#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(participant::REQUIRED_SETTINGS).await?;
    let state = participant::AppState::new(services);
    common::web::http::run_lambda(participant::router(state)).await
}
