use std::sync::Arc;

use common::config::Settings;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    common::http::init_tracing();
    let mut settings = Settings::from_env()?;
    common::secrets::resolve(&mut settings).await?;
    settings.require(&["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "NETWORK_QUEUE_URL"])?;
    let state = projects::AppState::new(common::Services::connect(Arc::new(settings)).await?);
    common::http::run_lambda_streaming(projects::router(state)).await
}
