use common::config::Settings;
use local::{DEMO_PROJECT_ID, DEMO_TAG_ID, LocalOptions};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init_tracing();
    let options = LocalOptions::from_env(Settings::from_env()?)?;
    let data_dir = options.data_dir.clone();
    let running = local::start(options).await?;
    let api = format!("{}/api", running.api_url);
    println!("echo-local is running (Ctrl-C stops it)");
    println!("  API        {api}  (try {api}/health; OpenAPI at {api}/openapi.json)");
    if let Some(s3) = &running.s3_url {
        println!("  S3         {s3}  bucket {:?}", running.settings.s3.bucket.as_deref().unwrap_or_default());
    }
    println!("  data       {}", data_dir.display());
    println!("  demo project {DEMO_PROJECT_ID}  tag {DEMO_TAG_ID}");
    println!("  portal calls:");
    println!("    GET  {api}/participant/projects/{DEMO_PROJECT_ID}");
    println!("    POST {api}/participant/projects/{DEMO_PROJECT_ID}/conversations/initiate");
    println!("    POST {api}/participant/conversations/<conversation_id>/get-upload-url");
    println!("    POST {api}/participant/conversations/<conversation_id>/confirm-upload");
    println!("    POST {api}/participant/conversations/<conversation_id>/finish");
    tokio::signal::ctrl_c().await?;
    println!("echo-local stopped");
    Ok(())
}
