//! Start-ups a deployment must never get past (D63), each binary run as Lambda starts it (a local
//! Runtime API, `AWS_LAMBDA_*` set) with the settings of `cargo lambda watch` (Cargo.toml), which
//! start every function (local_invoke.rs), less one: the process exits with an error naming the
//! setting before it asks for an invocation. The binaries are `cargo build --workspace --bins`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::local_invoke::{invoke, watch_env};
use crate::support::runtime_api::RuntimeApi;

/// Starts `bin` inside a Lambda environment; its exit status and output once it has exited.
async fn start_refused(bin: &str, env: &BTreeMap<String, String>, cwd: &Path) -> (std::process::ExitStatus, String) {
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let binary = target.join(bin);
    assert!(binary.exists(), "{} is missing: run `cargo build --workspace --bins` first", binary.display());
    let api = RuntimeApi::with_events([std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/health.json")).unwrap()]);
    let (addr, server) = api.serve().await;
    let child = tokio::process::Command::new(&binary)
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", bin)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // A guard against a function that starts after all, not a measurement.
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{bin} did not exit: it started"))
        .unwrap();
    server.abort();
    assert!(api.answers().is_empty(), "{bin} took an invocation: {:?}", api.answers());
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".echo-local")).unwrap();
    dir
}

#[tokio::test]
async fn network_worker_refuses_to_start_without_a_transcription_provider() {
    let dir = workdir();
    let with_provider = watch_env();
    assert_eq!(with_provider["TRANSCRIPTION_PROVIDER"], "LiteLLM");
    // The same settings start it: it answers an invocation (the chunk is not there: skipped).
    let event = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../events/tasks/transcribe-chunk.json")).unwrap();
    let answers = invoke("network-worker", &[event], &with_provider, dir.path()).await;
    assert!(answers[0].body.contains("batchItemFailures"), "{}", answers[0].body);

    let mut without = with_provider.clone();
    without.remove("TRANSCRIPTION_PROVIDER");
    let (status, output) = start_refused("network-worker", &without, dir.path()).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("no transcription provider: set TRANSCRIPTION_PROVIDER"), "{output}");

    // Named but unusable (its key missing) is refused the same way.
    let mut keyless = with_provider.clone();
    keyless.remove("LITELLM_WHISPER_API_KEY");
    let (status, output) = start_refused("network-worker", &keyless, dir.path()).await;
    assert!(!status.success() && output.contains("LITELLM_WHISPER_API_KEY"), "{output}");
}

/// Every function with a store: in Lambda, SQLite only when asked for by name and file.
const STORE_FUNCTIONS: &[&str] =
    &["participant", "conversations", "projects", "chats", "stateless", "resources", "audio-worker", "network-worker"];

#[tokio::test]
async fn in_lambda_every_function_refuses_a_store_that_is_not_directus() {
    let dir = workdir();
    let mut unset = watch_env();
    unset.remove("ECHO_STORE");
    let mut no_file = watch_env();
    no_file.remove("ECHO_SQLITE_PATH");
    for bin in STORE_FUNCTIONS {
        for (case, env) in [("ECHO_STORE unset", &unset), ("sqlite without ECHO_SQLITE_PATH", &no_file)] {
            let (status, output) = start_refused(bin, env, dir.path()).await;
            assert!(!status.success(), "{bin}, {case}: {output}");
            assert!(output.contains("ECHO_STORE") && output.contains("set ECHO_STORE=directus"), "{bin}, {case}: {output}");
        }
    }
}
