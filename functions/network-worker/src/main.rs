#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(network_worker::REQUIRED_SETTINGS).await?;
    services.settings.require(&network_worker::conditional_settings(&services.settings))?;
    let settings = services.settings.clone();
    let worker = network_worker::NetworkWorker::new(services);
    // No provider, or one that cannot work, is a deploy mistake: refuse to start (§5.1, D63).
    worker.provider.require()?;
    common::queue::sqs::run_lambda(worker, &settings).await
}
