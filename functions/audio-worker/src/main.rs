#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    common::telemetry::init_tracing();
    let services = common::Services::from_env(audio_worker::REQUIRED_SETTINGS).await?;
    let settings = services.settings.clone();
    common::queue::sqs::run_lambda(audio_worker::AudioWorker::new(services), &settings).await
}
