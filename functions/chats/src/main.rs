#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(&["DIRECTUS_TOKEN", "DIRECTUS_SECRET"]).await?;
    let state = chats::AppState::new(services);
    common::web::http::run_lambda_streaming(chats::router(state)).await
}
