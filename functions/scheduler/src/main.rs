use common::config::Settings;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let settings = Settings::from_env()?;
    settings.require(scheduler::REQUIRED_SETTINGS)?;
    let publisher = common::queue::sqs::connect_network_sqs(&settings).await?;
    common::telemetry::flush_logs_on_shutdown().await;
    let provider = settings.transcription.provider_name.clone();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (publisher, provider) = (publisher.clone(), provider.clone());
        async move { scheduler::handle(&event.payload, publisher.as_ref(), provider.as_deref()).await.map_err(lambda_runtime::Error::from) }
    }))
    .await
}
