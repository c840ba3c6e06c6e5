#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(network_worker::REQUIRED_SETTINGS).await?;
    services.settings.require(&network_worker::conditional_settings(&services.settings))?;
    let settings = services.settings.clone();
    let worker = network_worker::NetworkWorker::new(services);
    // A provider that cannot work (an unknown name, a missing key, an unreadable GCP_SA_JSON) is a
    // deploy mistake: refuse to start (D63). No provider at all keeps the worker up for its other
    // tasks; transcription then leaves chunks pending with a status row saying so.
    if let network_worker::Provider::Broken(reason) = &worker.provider {
        return Err(reason.clone().into());
    }
    common::queue::sqs::run_lambda(worker, &settings).await
}
