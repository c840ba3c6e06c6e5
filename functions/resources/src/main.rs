#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(resources::REQUIRED_SETTINGS).await?;
    let state = resources::AppState::try_new(services)?;
    common::web::http::run_lambda(resources::router(state)).await
}
