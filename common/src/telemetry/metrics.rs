//! Metrics as CloudWatch Embedded Metric Format: one JSON line on stdout per finished task and
//! per API request, among the JSON logs, which CloudWatch Logs turns into metrics (no API call,
//! no agent). Every line also carries the offload pool's peaks. The same figures add up in-process for
//! echo-local's `GET /_local/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric; template.yaml's dashboard and alarms read it.
pub const NAMESPACE: &str = "EchoLambda";

/// How a task's delivery ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Completed or skipped: acknowledged.
    Processed,
    /// Failed, will be retried.
    Transient,
    /// Failed for good (a terminal error, or a transient one on the last attempt).
    Terminal,
}

tokio::task_local! {
    static CAPTURE: Arc<Mutex<Vec<Value>>>;
}

/// Runs `f`, keeping the EMF lines it emits (in this task) instead of printing them: for tests.
pub async fn capture<F: std::future::Future>(f: F) -> (F::Output, Vec<Value>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = CAPTURE.scope(lines.clone(), f).await;
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    (out, lines)
}

/// One task delivery: `TaskProcessed`, `TaskFailedTransient`, `TaskFailedTerminal`,
/// `TaskDeadLettered` (0 or 1) and `TaskDuration` (ms), by `TaskType` and in total.
pub fn task_finished(task: &str, outcome: TaskOutcome, dead_lettered: bool, duration: Duration) {
    let ms = duration.as_secs_f64() * 1e3;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let figures = [
        ("TaskProcessed", "Count", flag(outcome == TaskOutcome::Processed)),
        ("TaskFailedTransient", "Count", flag(outcome == TaskOutcome::Transient)),
        ("TaskFailedTerminal", "Count", flag(outcome == TaskOutcome::Terminal)),
        ("TaskDeadLettered", "Count", flag(dead_lettered)),
        ("TaskDuration", "Milliseconds", ms),
    ];
    let outcome_label = match outcome {
        TaskOutcome::Processed => "processed",
        TaskOutcome::Transient => "failed_transient",
        TaskOutcome::Terminal => "failed_terminal",
    };
    let mut registry = registry();
    registry.add(format!("echo_tasks_total{{task=\"{task}\",outcome=\"{outcome_label}\"}}"), 1.0);
    if dead_lettered {
        registry.add(format!("echo_tasks_total{{task=\"{task}\",outcome=\"dead_lettered\"}}"), 1.0);
    }
    registry.add(format!("echo_task_duration_seconds_sum{{task=\"{task}\"}}"), ms / 1e3);
    registry.add(format!("echo_task_duration_seconds_count{{task=\"{task}\"}}"), 1.0);
    drop(registry);
    emit(("TaskType", task), &figures);
}

/// One API request: `Api4xx`, `Api5xx` (0 or 1) and `ApiLatency` (ms), by `ApiGroup` (the path
/// segment after `/api/`) and in total.
pub fn api_request(path: &str, status: u16, latency: Duration) {
    let group = api_group(path);
    let ms = latency.as_secs_f64() * 1e3;
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let figures = [
        ("ApiRequests", "Count", 1.0),
        ("Api4xx", "Count", flag((400..500).contains(&status))),
        ("Api5xx", "Count", flag(status >= 500)),
        ("ApiLatency", "Milliseconds", ms),
    ];
    let mut registry = registry();
    registry.add(format!("echo_api_requests_total{{group=\"{group}\",class=\"{}xx\"}}", status / 100), 1.0);
    registry.add(format!("echo_api_latency_seconds_sum{{group=\"{group}\"}}"), ms / 1e3);
    registry.add(format!("echo_api_latency_seconds_count{{group=\"{group}\"}}"), 1.0);
    drop(registry);
    emit(("ApiGroup", group), &figures);
}

/// `/api/participant/...` -> `participant`; anything else outside `/api/` -> `other`.
pub fn api_group(path: &str) -> &str {
    path.strip_prefix("/api/").and_then(|rest| rest.split('/').next()).filter(|g| !g.is_empty()).unwrap_or("other")
}

/// Everything counted so far, and the offload pool now, in Prometheus' text format.
pub fn prometheus() -> String {
    let mut out = String::new();
    let mut last_name = String::new();
    for (series, value) in &registry().series {
        let name = series.split('{').next().unwrap_or_default();
        let family = name.trim_end_matches("_sum").trim_end_matches("_count");
        if family != last_name {
            let kind = if name.ends_with("_total") { "counter" } else { "summary" };
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            last_name = family.to_string();
        }
        out.push_str(&format!("{series} {value}\n"));
    }
    let pool = crate::offload::global().stats();
    for (name, value) in [("echo_offload_size", pool.size), ("echo_offload_running", pool.running), ("echo_offload_waiting", pool.waiting)]
    {
        out.push_str(&format!("# TYPE {name} gauge\n{name} {value}\n"));
    }
    out
}

#[derive(Default)]
struct Registry {
    series: BTreeMap<String, f64>,
}

impl Registry {
    fn add(&mut self, series: String, by: f64) {
        *self.series.entry(series).or_default() += by;
    }
}

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner())
}

/// One EMF line: the figures by one dimension and in total (an empty dimension set, what the
/// alarms watch), with the offload pool's peaks since the previous line, by function.
fn emit(dimension: (&str, &str), figures: &[(&str, &str, f64)]) {
    let (running, waiting) = crate::offload::global().take_peaks();
    let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "echo-local".into());
    let definitions: Vec<Value> = figures.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [
                {"Namespace": NAMESPACE, "Dimensions": [[dimension.0], []], "Metrics": definitions},
                {"Namespace": NAMESPACE, "Dimensions": [["Function"]], "Metrics": [
                    {"Name": "OffloadRunning", "Unit": "Count"}, {"Name": "OffloadWaiting", "Unit": "Count"}
                ]},
            ],
        }),
    );
    line.insert(dimension.0.into(), json!(dimension.1));
    line.insert("Function".into(), json!(function));
    for (name, _, value) in figures {
        line.insert((*name).into(), json!(value));
    }
    line.insert("OffloadRunning".into(), json!(running));
    line.insert("OffloadWaiting".into(), json!(waiting));
    let line = Value::Object(line);
    if CAPTURE.try_with(|lines| lines.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone())).is_ok() {
        return;
    }
    // Only among JSON logs (Lambda): echo-local's text console keeps to log lines.
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_groups_are_the_first_segment() {
        assert_eq!(api_group("/api/participant/projects/1"), "participant");
        assert_eq!(api_group("/api/health"), "health");
        assert_eq!(api_group("/_local/queue"), "other");
    }

    #[tokio::test]
    async fn an_api_line_is_emf_with_a_total() {
        let ((), lines) = capture(async { api_request("/api/projects/x", 503, Duration::from_millis(7)) }).await;
        let line = &lines[0];
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["ApiGroup"], []]));
        assert_eq!((line["ApiGroup"].as_str(), line["Api5xx"].as_f64(), line["Api4xx"].as_f64()), (Some("projects"), Some(1.0), Some(0.0)));
        assert!(prometheus().contains("echo_api_requests_total{group=\"projects\",class=\"5xx\"}"));
    }
}
