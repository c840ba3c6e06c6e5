#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(chats::REQUIRED_SETTINGS).await?;
    let state = chats::AppState::new(services);
    common::web::http::run_lambda_streaming(chats::router(state)).await
}
