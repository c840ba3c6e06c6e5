//! `cargo build --release --bins && cargo bench --bench startup`: each release binary started
//! against a minimal Lambda Runtime API served here on 127.0.0.1, as Lambda starts a cold
//! environment. Reports the time from process start to the first response the function posts,
//! its peak RSS at that point, and the binary's size. Numbers go to docs/benchmarks.md.
//! `ECHO_STARTUP_BINARIES=lambda` times the `bootstrap` files `sam build` (cargo lambda) made in
//! target/lambda/<function>/ instead: what is deployed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "../tests/api/support/runtime_api.rs"]
mod runtime_api;

const RUNS: usize = 5;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn sqs_event(body: &str) -> String {
    serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "r-1", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:echo-network", "awsRegion": "eu-west-1"
    }]})
    .to_string()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let health = std::fs::read_to_string(workspace().join("events/health.json")).unwrap();
        let finish =
            r#"{"task":"task_finish_conversation_hook","version":1,"args":{"conversation_id":"99999999-9999-4999-8999-999999999999"}}"#;
        let merge =
            r#"{"task":"task_merge_conversation_chunks","version":1,"args":{"conversation_id":"99999999-9999-4999-8999-999999999999"}}"#;
        let cases: Vec<(&str, String)> = vec![
            ("participant", health.clone()),
            ("conversations", health.clone()),
            ("projects", health.clone()),
            ("stateless", health),
            ("audio-worker", sqs_event(merge)),
            ("network-worker", sqs_event(finish)),
            // Publishing needs SQS; a non-schedule input is refused before any network call.
            ("scheduler", r#"{"hello": "not a schedule"}"#.to_string()),
        ];
        println!("cold start against a local Lambda Runtime API (median of {RUNS} starts)");
        println!("  {:<15} {:>10} {:>12} {:>10}  first answer", "function", "first (ms)", "peak RSS MB", "binary MB");
        for (bin, event) in cases {
            let path = if std::env::var("ECHO_STARTUP_BINARIES").is_ok_and(|v| v == "lambda") {
                workspace().join("target/lambda").join(bin).join("bootstrap")
            } else {
                workspace().join("target/release").join(bin)
            };
            assert!(path.exists(), "{} is missing: run `cargo build --release --bins` (or `sam build`) first", path.display());
            let size = std::fs::metadata(&path).unwrap().len();
            let mut firsts = Vec::new();
            let mut peaks = Vec::new();
            let mut kind = "";
            for run in 0..RUNS {
                let api = runtime_api::RuntimeApi::with_events([event.clone()]);
                let (addr, server) = api.serve().await;
                let env: HashMap<&str, String> = HashMap::from([
                    ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
                    ("AWS_LAMBDA_FUNCTION_NAME", format!("echo-{bin}")),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".into()),
                    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
                    ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
                    ("AWS_LAMBDA_LOG_LEVEL", "WARN".into()),
                    ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".into()),
                    ("AWS_REGION", "eu-west-1".into()),
                    ("AWS_ACCESS_KEY_ID", "bench".into()),
                    ("AWS_SECRET_ACCESS_KEY", "bench".into()),
                    ("ECHO_STORE", "sqlite".into()),
                    ("ECHO_SQLITE_PATH", dir.path().join(format!("{bin}-{run}.sqlite3")).display().to_string()),
                    ("STORAGE_S3_BUCKET", "echo".into()),
                    ("STORAGE_S3_ENDPOINT", "http://127.0.0.1:9".into()),
                    ("STORAGE_S3_KEY", "bench".into()),
                    ("STORAGE_S3_SECRET", "bench".into()),
                    ("AUDIO_QUEUE_URL", "http://127.0.0.1:9/123456789012/audio".into()),
                    ("NETWORK_QUEUE_URL", "http://127.0.0.1:9/123456789012/network".into()),
                    ("AUDIO_DLQ_URL", "http://127.0.0.1:9/123456789012/audio-dlq".into()),
                    ("NETWORK_DLQ_URL", "http://127.0.0.1:9/123456789012/network-dlq".into()),
                    ("DIRECTUS_SECRET", "bench-secret".into()),
                    // network-worker starts only with a transcription provider (processing.md §5.1).
                    ("TRANSCRIPTION_PROVIDER", "LiteLLM".into()),
                    ("LITELLM_WHISPER_URL", "http://127.0.0.1:9/v1".into()),
                    ("LITELLM_WHISPER_MODEL", "whisper-1".into()),
                    ("LITELLM_WHISPER_API_KEY", "bench".into()),
                ]);
                let started = Instant::now();
                let mut child = std::process::Command::new(&path)
                    .env_clear()
                    .envs(&env)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                let answered = loop {
                    if let Some(a) = api.answers().first() {
                        break (a.at, a.kind);
                    }
                    assert!(child.try_wait().unwrap().is_none(), "{bin} exited before answering");
                    assert!(started.elapsed() < Duration::from_secs(20), "{bin} did not answer");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                };
                peaks.push(vm_hwm_kib(child.id()));
                firsts.push(answered.0 - started);
                kind = answered.1;
                child.kill().unwrap();
                child.wait().unwrap();
                server.abort();
            }
            firsts.sort();
            peaks.sort();
            println!(
                "  {bin:<15} {:>10.1} {:>12.1} {:>10.1}  {kind}",
                firsts[RUNS / 2].as_secs_f64() * 1e3,
                peaks[RUNS / 2] as f64 / 1024.0,
                size as f64 / 1e6
            );
        }
    });
}
