//! The README's `cargo lambda watch` + `cargo lambda invoke`, without cargo-lambda: every function's
//! binary runs against a local Runtime API with the settings `[workspace.metadata.lambda.env]` in
//! Cargo.toml gives it (only echo-local's two ports are this test's random ones), from a directory
//! holding echo-local's data as the README's shell does, and answers every event of events/ meant
//! for it. The binaries are `cargo build --workspace --bins`'s (scripts/test.sh builds them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::runtime_api::{Answer, RuntimeApi};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `[workspace.metadata.lambda.env]`: `NAME = "value"` lines up to the next section.
pub fn watch_env() -> BTreeMap<String, String> {
    let manifest = std::fs::read_to_string(workspace().join("Cargo.toml")).unwrap();
    let section = manifest.split("[workspace.metadata.lambda.env]\n").nth(1).expect("Cargo.toml has [workspace.metadata.lambda.env]");
    let lines = section.lines().take_while(|l| !l.starts_with('['));
    let pairs = lines.filter_map(|l| l.split_once(" = ")).map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()));
    pairs.collect()
}

/// Which function an event file goes to, as the README invokes it.
fn function_of(path: &Path, event: &Value) -> &'static str {
    let folder = path.parent().and_then(|p| p.file_name()).and_then(|f| f.to_str()).unwrap_or_default();
    match folder {
        "participant" | "events" => "participant",
        "conversations" => "conversations",
        "projects" => "projects",
        "stateless" => "stateless",
        "resources" => "resources",
        "chats" => "chats",
        "scheduler" => "scheduler",
        "tasks" if event["Records"][0]["eventSourceARN"].as_str().unwrap_or_default().ends_with("-audio") => "audio-worker",
        "tasks" => "network-worker",
        other => panic!("no function for events/{other}"),
    }
}

fn event_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    // Every folder, so a new group's events cannot be left out.
    let root = workspace().join("events");
    let mut dirs = vec![root.clone()];
    dirs.extend(std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
    for dir in dirs {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs one binary over its events; the answers in order.
pub(crate) async fn invoke(bin: &str, events: &[String], env: &BTreeMap<String, String>, cwd: &Path) -> Vec<Answer> {
    let target = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let binary = target.join(bin);
    assert!(binary.exists(), "{} is missing: run `cargo build --workspace --bins` first", binary.display());
    let api = RuntimeApi::with_events(events.iter().cloned());
    let (addr, server) = api.serve().await;
    let log = std::fs::File::create(cwd.join(format!("{bin}.log"))).unwrap();
    let mut child = tokio::process::Command::new(&binary)
        .current_dir(cwd)
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", bin)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // A guard against a hang, not a measurement.
    let give_up = Instant::now() + Duration::from_secs(120);
    while api.answers().len() < events.len() {
        let log = || std::fs::read_to_string(cwd.join(format!("{bin}.log"))).unwrap_or_default();
        assert!(child.try_wait().unwrap().is_none(), "{bin} exited:\n{}", log());
        assert!(Instant::now() < give_up, "{bin} answered {} of {} events:\n{}", api.answers().len(), events.len(), log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    server.abort();
    api.answers()
}

/// An API answer's status: buffered functions post lambda_http's JSON, streaming ones a JSON
/// prelude and eight NUL bytes before the body.
pub(crate) fn status_of(answer: &Answer) -> u64 {
    let prelude = answer.body.split('\0').next().unwrap_or_default();
    let json: Value = serde_json::from_str(prelude).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    json["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode: {}", answer.body))
}

#[tokio::test]
async fn every_function_answers_its_events_with_the_watch_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = local::LocalOptions::for_tests(dir.path().join(".echo-local"));
    options.settings.queues.task_max_attempts = 5;
    let local = local::start(options).await.expect("echo-local starts");
    let (api_port, s3_port) = (local.api_url.trim_start_matches("http://"), local.s3_url.as_deref().unwrap().trim_start_matches("http://"));
    let env: BTreeMap<String, String> =
        watch_env().into_iter().map(|(k, v)| (k, v.replace("127.0.0.1:8000", api_port).replace("127.0.0.1:8001", s3_port))).collect();
    assert_eq!(env["ECHO_SQLITE_PATH"], ".echo-local/echo.sqlite3", "the README runs echo-local and cargo lambda from one directory");

    let mut by_function: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for path in event_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.strip_prefix(workspace().join("events")).unwrap().display().to_string();
        by_function.entry(function_of(&path, &serde_json::from_str(&text).unwrap())).or_default().push((name, text));
    }
    assert_eq!(by_function.len(), 9, "every function has events: {:?}", by_function.keys());
    let mut answered = BTreeMap::new();
    for (bin, events) in &by_function {
        let bodies: Vec<String> = events.iter().map(|(_, text)| text.clone()).collect();
        for ((name, _), answer) in events.iter().zip(invoke(bin, &bodies, &env, dir.path()).await) {
            assert_eq!(answer.kind, "response", "{name}: {}", answer.body);
            answered.insert(name.clone(), answer);
        }
    }

    for (name, answer) in &answered {
        let api = ["participant/", "conversations/", "projects/", "chats/", "stateless/", "health"].iter().any(|p| name.starts_with(p));
        if name.starts_with("resources/") {
            // The watch settings name no database: the documented 503, not a crash.
            assert_eq!(status_of(answer), 503, "{name}: {}", answer.body);
            assert!(answer.body.contains("Resources are unavailable"), "{name}: {}", answer.body);
        } else if api {
            assert!(status_of(answer) < 500, "{name}: {}", answer.body);
        } else if name.starts_with("tasks/") {
            let response: Value = serde_json::from_str(&answer.body).unwrap();
            assert!(response["batchItemFailures"].is_array(), "{name}: {}", answer.body);
        }
    }
    let project = &answered["participant/get-project.json"];
    assert_eq!(status_of(project), 200);
    assert!(project.body.contains("Demo tag"), "echo-local's demo project, from its SQLite file: {}", project.body);
    let finish: Value = serde_json::from_str(&answered["tasks/finish-conversation-hook.json"].body).unwrap();
    assert_eq!(finish["batchItemFailures"], serde_json::json!([]));
    // The scheduler's messages went through echo-local's SQS endpoint into its queue.
    let queued: Vec<String> = local.queue.snapshot().into_iter().map(|t| t.body).collect();
    assert!(queued.iter().any(|b| b.contains("task_collect_and_finish_unfinished_conversations")), "{queued:?}");
}
