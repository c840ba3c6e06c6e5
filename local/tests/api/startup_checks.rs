//! D63 start-up checks, each function's binary run as a process: it refuses to start without a
//! setting of its `REQUIRED_SETTINGS` (plus network-worker's `conditional_settings`), naming
//! it, and starts without anything else (the scheduler without `AUDIO_QUEUE_URL`); network-worker
//! refuses to start without a usable transcription provider, and in Lambda every function
//! refuses a store that is not Directus. The binaries are `cargo build --workspace --bins`'s.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::local_invoke::{invoke, watch_env};

/// `cargo lambda watch`'s settings on Directus (so `DIRECTUS_TOKEN` counts) with every LLM slot
/// on an Anthropic model and its key: everything any function requires.
fn full_env() -> BTreeMap<String, String> {
    let mut env = watch_env();
    env.insert("ECHO_STORE".into(), "directus".into());
    // A closed port: starting never reaches it.
    env.insert("DIRECTUS_BASE_URL".into(), "http://127.0.0.1:9".into());
    env.insert("DIRECTUS_TOKEN".into(), "token".into());
    // A usable transcription provider, so network-worker's own check of it passes.
    env.insert("TRANSCRIPTION_PROVIDER".into(), "AssemblyAI".into());
    env.insert("ASSEMBLYAI_API_KEY".into(), "aai".into());
    for slot in ["MEDIUM_LITELLM", "SUMMARY_LITELLM", "SMALL_LITELLM", "LIGHTRAG_LITELLM_INFERENCE", "LIGHTRAG_LITELLM"] {
        env.insert(format!("{slot}_MODEL"), "anthropic/claude-test".into());
        env.remove(&format!("{slot}_API_BASE"));
        env.insert(format!("{slot}_API_KEY"), "sk-ant-test".into());
    }
    env
}

/// The variable whose absence must be named for a required setting, and the name expected.
fn removal(setting: &str) -> (String, String) {
    match setting {
        "SUMMARY_LITELLM" => ("SUMMARY_LITELLM_API_KEY".into(), "SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY)".into()),
        slot if slot.ends_with("_LITELLM") || slot.ends_with("_INFERENCE") => (format!("{slot}_API_KEY"), format!("{slot}_API_KEY")),
        other => (other.into(), other.into()),
    }
}

/// Runs `bin` with `env` from an empty directory: `Some(output)` when it exited within 20 s
/// (a refusal), `None` when it was still running (it started; a guard, not a measurement).
async fn run(bin: &str, env: &BTreeMap<String, String>) -> Option<String> {
    run_in(bin, env, workdir().path()).await
}

/// A directory with `.echo-local/`, where `cargo lambda watch`'s SQLite file can be made.
fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".echo-local")).unwrap();
    dir
}

async fn run_in(bin: &str, env: &BTreeMap<String, String>, cwd: &Path) -> Option<String> {
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let binary = target.join(bin);
    assert!(binary.exists(), "{} is missing: run `cargo build --workspace --bins` first", binary.display());
    let child = tokio::process::Command::new(&binary)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        // A closed port as the Runtime API: a function past its checks fails on reaching it.
        .env("AWS_LAMBDA_RUNTIME_API", RUNTIME_API)
        .env("AWS_LAMBDA_FUNCTION_NAME", bin)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await {
        Ok(output) => {
            let output = output.unwrap();
            assert!(!output.status.success(), "{bin} exited 0");
            Some(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
        }
        Err(_) => None,
    }
}

const MISSING: &str = "Missing(\"";
const RUNTIME_API: &str = "127.0.0.1:7";

/// Starts with `env` (no missing-setting refusal), then refuses without each of `required`.
async fn check(bin: &str, env: &BTreeMap<String, String>, required: &[&str]) {
    if let Some(out) = run(bin, env).await {
        assert!(!out.contains(MISSING) && out.contains(RUNTIME_API), "{bin} did not get as far as the Runtime API:\n{out}");
    }
    for setting in required {
        let (variable, named) = removal(setting);
        let mut without = env.clone();
        assert!(without.remove(&variable).is_some(), "{variable} is in the test's full env");
        let out = run(bin, &without).await.unwrap_or_else(|| panic!("{bin} started without {variable}"));
        assert!(out.contains(&format!("{MISSING}{named}\")")), "{bin} without {variable} names it:\n{out}");
    }
}

#[tokio::test]
async fn every_function_refuses_to_start_without_what_it_needs_and_only_that() {
    let env = full_env();
    let functions: [(&str, &[&str]); 9] = [
        ("participant", participant::REQUIRED_SETTINGS),
        ("conversations", conversations::REQUIRED_SETTINGS),
        ("projects", projects::REQUIRED_SETTINGS),
        ("stateless", stateless::REQUIRED_SETTINGS),
        ("resources", resources::REQUIRED_SETTINGS),
        ("chats", chats::REQUIRED_SETTINGS),
        ("audio-worker", audio_worker::REQUIRED_SETTINGS),
        ("network-worker", network_worker::REQUIRED_SETTINGS),
        ("scheduler", scheduler::REQUIRED_SETTINGS),
    ];
    for (bin, required) in functions {
        check(bin, &env, required).await;
    }
    // What the issue named: the LLM slots of conversations and projects, and the scheduler
    // needing no audio queue.
    assert!(conversations::REQUIRED_SETTINGS.contains(&"MEDIUM_LITELLM") && conversations::REQUIRED_SETTINGS.contains(&"SUMMARY_LITELLM"));
    assert!(projects::REQUIRED_SETTINGS.contains(&"MEDIUM_LITELLM"));
    let mut no_audio = env.clone();
    no_audio.remove("AUDIO_QUEUE_URL");
    if let Some(out) = run("scheduler", &no_audio).await {
        assert!(!out.contains(MISSING) && out.contains(RUNTIME_API), "the scheduler never publishes to the audio queue:\n{out}");
    }
}

#[tokio::test]
async fn network_worker_checks_what_its_enabled_features_need() {
    let mut env = full_env();
    env.insert("RUNPOD_TOPIC_MODELER_URL".into(), "http://127.0.0.1:9".into());
    env.insert("RUNPOD_TOPIC_MODELER_API_KEY".into(), "tm".into());
    env.insert("ENABLE_RUNPOD_DIARIZATION".into(), "true".into());
    env.insert("RUNPOD_DIARIZATION_API_KEY".into(), "rd".into());
    env.insert("RUNPOD_DIARIZATION_BASE_URL".into(), "http://127.0.0.1:9".into());
    env.insert("ENABLE_AUDIO_LIGHTRAG_INPUT".into(), "true".into());
    env.insert("LIGHTRAG_SERVER_URL".into(), "http://127.0.0.1:9".into());
    check(
        "network-worker",
        &env,
        &[
            "RUNPOD_TOPIC_MODELER_API_KEY",
            "RUNPOD_DIARIZATION_API_KEY",
            "RUNPOD_DIARIZATION_BASE_URL",
            "LIGHTRAG_SERVER_URL",
            "LIGHTRAG_LITELLM",
        ],
    )
    .await;
    // Without the features, none of it is needed.
    for name in ["RUNPOD_TOPIC_MODELER_URL", "ENABLE_RUNPOD_DIARIZATION", "ENABLE_AUDIO_LIGHTRAG_INPUT"] {
        env.remove(name);
    }
    for name in ["RUNPOD_TOPIC_MODELER_API_KEY", "RUNPOD_DIARIZATION_API_KEY", "LIGHTRAG_SERVER_URL", "LIGHTRAG_LITELLM_API_KEY"] {
        env.remove(name);
    }
    check("network-worker", &env, &[]).await;
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
    let output = run_in("network-worker", &without, dir.path()).await.expect("network-worker started without a provider");
    assert!(output.contains("no transcription provider: set TRANSCRIPTION_PROVIDER"), "{output}");

    // Named but unusable (its key missing) is refused the same way.
    let mut keyless = with_provider.clone();
    keyless.remove("LITELLM_WHISPER_API_KEY");
    let output = run_in("network-worker", &keyless, dir.path()).await.expect("network-worker started without its provider's key");
    assert!(output.contains("LITELLM_WHISPER_API_KEY"), "{output}");
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
            let output = run_in(bin, env, dir.path()).await.unwrap_or_else(|| panic!("{bin} started with {case}"));
            assert!(output.contains("ECHO_STORE") && output.contains("set ECHO_STORE=directus"), "{bin}, {case}: {output}");
        }
    }
}
