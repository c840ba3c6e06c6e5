//! Checks template.yaml against the workspace and the rules of the deployment (spec
//! processing.md §1.1, api.md §1.1): every function builds a binary that exists, every API route
//! reaches a route of the router that function runs, every queue has a DLQ and a long enough
//! visibility timeout, every queue trigger reports per-record failures, no IAM statement grants
//! a write on "*", the streaming groups stream, and the schedules send messages the scheduler
//! accepts. Each failure names the resource and the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::*;
use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ------------------------------------------------------------------ reading the template

/// YAML -> JSON, with CloudFormation's short-form tags turned into their long form
/// (`!Ref X` -> `{"Ref": "X"}`, `!GetAtt A.B` -> `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` ->
/// `{"Fn::Sub": s}`, ...), so the checks read both spellings the same way.
fn to_json(value: &serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else if let Some(u) = n.as_u64() {
                json!(u)
            } else {
                json!(n.as_f64())
            }
        }
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => panic!("template.yaml: non-string mapping key {other:?}"),
                };
                out.insert(key, to_json(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(&tagged.value);
            match name {
                "Ref" | "Condition" => json!({ name: inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) =
                            s.split_once('.').unwrap_or_else(|| panic!("template.yaml: !GetAtt {s} has no attribute"));
                        json!({"Fn::GetAtt": [resource, attribute]})
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                _ => json!({ format!("Fn::{name}"): inner }),
            }
        }
    }
}

fn load_template() -> Value {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("template.yaml does not parse: {e}"));
    to_json(&yaml)
}

struct Template {
    doc: Value,
}

impl Template {
    fn load() -> Self {
        Template { doc: load_template() }
    }

    fn resources(&self) -> &Map<String, Value> {
        self.doc["Resources"].as_object().expect("template.yaml has Resources")
    }

    fn of_type<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> + 'a {
        self.resources().iter().filter(move |(_, r)| r["Type"] == ty)
    }

    fn functions(&self) -> Vec<(&String, &Value)> {
        self.of_type("AWS::Serverless::Function").collect()
    }

    /// A function property, falling back to `Globals.Function`.
    fn function_property<'a>(&'a self, function: &'a Value, name: &str) -> Option<&'a Value> {
        function["Properties"].get(name).or_else(|| self.doc["Globals"]["Function"].get(name))
    }

    /// The function's timeout in seconds: a literal is required (the checks compare with it);
    /// Lambda's default is 3.
    fn timeout(&self, name: &str) -> u64 {
        let function = &self.resources()[name];
        match self.function_property(function, "Timeout") {
            None => 3,
            Some(v) => v.as_u64().unwrap_or_else(|| panic!("{name}: Timeout must be a number literal, found {v}")),
        }
    }

    fn env<'a>(&'a self, function: &'a Value, var: &str) -> Option<&'a Value> {
        function["Properties"]["Environment"]["Variables"].get(var)
    }
}

/// The logical id a `Ref` or `Fn::GetAtt` points at.
fn target(value: &Value) -> Option<&str> {
    if let Some(r) = value.get("Ref") {
        return r.as_str();
    }
    value.get("Fn::GetAtt").and_then(|g| g.get(0)).and_then(Value::as_str)
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

// ------------------------------------------------------------------ reading the workspace

/// `name = "..."` values per TOML section header, e.g. `[package]` or `[[bin]]`, plus `path`.
struct Manifest {
    package: Option<String>,
    bins: Vec<(Option<String>, Option<String>)>,
}

fn string_value(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    if k.trim() != key {
        return None;
    }
    Some(v.trim().trim_matches('"').to_string())
}

fn read_manifest(dir: &Path) -> Manifest {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut manifest = Manifest { package: None, bins: Vec::new() };
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_string();
            if section == "[[bin]]" {
                manifest.bins.push((None, None));
            }
            continue;
        }
        match section.as_str() {
            "[package]" => {
                if let Some(name) = string_value(line, "name") {
                    manifest.package = Some(name);
                }
            }
            "[[bin]]" => {
                let bin = manifest.bins.last_mut().unwrap();
                if let Some(name) = string_value(line, "name") {
                    bin.0 = Some(name);
                }
                if let Some(p) = string_value(line, "path") {
                    bin.1 = Some(p);
                }
            }
            _ => {}
        }
    }
    manifest
}

/// Every binary the workspace builds, with the member that builds it.
fn workspace_binaries() -> BTreeMap<String, String> {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let start = text.find("members").expect("workspace members");
    let list = &text[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    let members: Vec<&str> = list.split(',').map(|m| m.trim().trim_matches('"')).filter(|m| !m.is_empty()).collect();
    assert!(!members.is_empty(), "no workspace members found in Cargo.toml");

    let mut binaries = BTreeMap::new();
    for member in members {
        let dir = root.join(member);
        let manifest = read_manifest(&dir);
        let package = manifest.package.unwrap_or_else(|| panic!("{member}/Cargo.toml has no package name"));
        let mut main_claimed = false;
        for (name, path) in &manifest.bins {
            let name = name.clone().unwrap_or_else(|| package.clone());
            main_claimed |= path.as_deref() == Some("src/main.rs");
            binaries.insert(name, member.to_string());
        }
        // Cargo's auto-discovered binaries: src/main.rs is named after the package (unless a
        // [[bin]] already builds it), src/bin/<name>.rs after the file.
        if dir.join("src/main.rs").exists() && !main_claimed {
            binaries.insert(package.clone(), member.to_string());
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "rs") {
                    binaries.insert(p.file_stem().unwrap().to_string_lossy().into_owned(), member.to_string());
                }
            }
        }
    }
    binaries
}

fn binary_of(function: &Value) -> &str {
    function["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or("")
}

// ------------------------------------------------------------------ (a) binaries

#[test]
fn every_function_builds_a_workspace_binary() {
    let t = Template::load();
    let binaries = workspace_binaries();
    let functions = t.functions();
    let mut built = BTreeSet::new();
    for (name, function) in &functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}: Metadata.BuildMethod must be rust-cargolambda (sam build runs cargo lambda)"
        );
        let binary = binary_of(function);
        assert!(!binary.is_empty(), "{name}: Metadata.BuildProperties.Binary is missing");
        assert!(
            binaries.contains_key(binary),
            "{name}: BuildProperties.Binary {binary:?} is not a binary of the workspace (binaries: {:?})",
            binaries.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            t.function_property(function, "Runtime").and_then(Value::as_str),
            Some("provided.al2023"),
            "{name}: Runtime must be provided.al2023"
        );
        assert_eq!(
            t.function_property(function, "Architectures").map(|a| a[0].clone()),
            Some(json!({"Ref": "Architecture"})),
            "{name}: Architectures must come from the Architecture parameter"
        );
        built.insert(binary.to_string());
    }
    for expected in ["participant", "conversations", "projects", "stateless", "resources", "audio-worker", "network-worker", "scheduler"] {
        assert!(built.contains(expected), "no function in template.yaml builds the {expected} binary");
    }
    let architectures = &t.doc["Parameters"]["Architecture"];
    assert_eq!(architectures["Default"], "x86_64", "Architecture defaults to x86_64");
    assert!(as_list(&architectures["AllowedValues"]).contains(&&json!("arm64")), "Architecture allows arm64");
}

// ------------------------------------------------------------------ (b) routes

/// A concrete request for each API route of the template: (route, method, path). The route is
/// the template's Path; the request must reach a route of the function's own router.
const SAMPLES: &[(&str, &str, &str)] = &[
    ("/api/health", "GET", "/api/health"),
    ("/api/participant/{proxy+}", "GET", "/api/participant/projects/11111111-1111-4111-8111-111111111111"),
    (
        "/api/participant/conversations/{conversation_id}/get-upload-url",
        "POST",
        "/api/participant/conversations/33333333-3333-4333-8333-333333333333/get-upload-url",
    ),
    ("/api/conversations/{proxy+}", "GET", "/api/conversations/33333333-3333-4333-8333-333333333333/counts"),
    ("/api/projects", "POST", "/api/projects"),
    ("/api/projects/{proxy+}", "GET", "/api/projects/11111111-1111-4111-8111-111111111111/transcripts"),
    ("/api/stateless/{proxy+}", "POST", "/api/stateless/webhook/transcribe"),
    ("/api/resources/{proxy+}", "GET", "/api/resources/66666666-6666-4666-8666-666666666666"),
    ("/api/chats/{proxy+}", "GET", "/api/chats/66666666-6666-4666-8666-666666666666/context"),
];

/// Routes no function owns: the function they go to answers the JSON 404 (api.md §1.1, D1).
const CATCH_ALL: &[(&str, &str)] = &[("/{proxy+}", "/api/no-such-group/anything"), ("/", "/")];

/// Every route the API must have (api.md §1.1), by the binary that serves it.
const REQUIRED_ROUTES: &[(&str, &str)] = &[
    ("/api/health", "participant"),
    ("/api/participant/{proxy+}", "participant"),
    ("/api/conversations/{proxy+}", "conversations"),
    ("/api/projects", "projects"),
    ("/api/projects/{proxy+}", "projects"),
    ("/api/stateless/{proxy+}", "stateless"),
    ("/api/resources/{proxy+}", "resources"),
    ("/api/chats/{proxy+}", "chats"),
    ("/{proxy+}", "participant"),
];

/// (function, binary, event name, route, method, streaming) for every `Api` event.
fn api_routes(t: &Template) -> Vec<(String, String, String, String, String, Option<String>)> {
    let mut routes = Vec::new();
    for (name, function) in t.functions() {
        let Some(events) = function["Properties"]["Events"].as_object() else { continue };
        for (event_name, event) in events {
            if event["Type"] != "Api" {
                continue;
            }
            let p = &event["Properties"];
            assert_eq!(target(&p["RestApiId"]), Some("EchoApi"), "{name}.{event_name}: every route belongs to the one REST API EchoApi");
            routes.push((
                name.clone(),
                binary_of(function).to_string(),
                event_name.clone(),
                p["Path"].as_str().unwrap_or_else(|| panic!("{name}.{event_name}: Path")).to_string(),
                p["Method"].as_str().unwrap_or_else(|| panic!("{name}.{event_name}: Method")).to_uppercase(),
                p["ResponseTransferMode"].as_str().map(str::to_string),
            ));
        }
    }
    routes
}

async fn answer(router: axum::Router, method: &str, path: &str) -> (u16, Value) {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(if method == "POST" { "{}" } else { "" }))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_api_route_reaches_its_functions_router() {
    let t = Template::load();
    let app = TestApp::start().await;
    let services = app.local.state.services.clone();
    let router_for = |binary: &str| -> axum::Router {
        match binary {
            "participant" => participant::router(app.local.state.clone()),
            "conversations" => conversations::router(conversations::AppState::new(services.clone())),
            "projects" => projects::router(projects::AppState::new(services.clone())),
            "stateless" => stateless::router(stateless::AppState::new(services.clone())),
            "resources" => resources::router(resources::AppState::new(services.clone())),
            "chats" => chats::router(chats::AppState::new(services.clone())),
            other => panic!("an API route goes to {other:?}, which has no HTTP router"),
        }
    };
    let not_found = json!({"detail": "Not Found"});
    let routes = api_routes(&t);

    for (route, binary) in REQUIRED_ROUTES {
        assert!(
            routes.iter().any(|r| r.3 == *route && r.1 == *binary),
            "template.yaml has no Api event {route} on the function building {binary}"
        );
    }

    for (function, binary, event, route, method, _) in &routes {
        if let Some((_, path)) = CATCH_ALL.iter().find(|(r, _)| r == route) {
            let (status, body) = answer(router_for(binary), "GET", path).await;
            assert_eq!((status, &body), (404, &not_found), "{function}.{event} ({route}): a path no function owns must get the JSON 404");
            continue;
        }
        let Some((_, sample_method, path)) = SAMPLES.iter().find(|(r, _, _)| r == route) else {
            panic!("{function}.{event}: no sample request for route {route}; add one to SAMPLES in this test")
        };
        let method = if method == "ANY" { *sample_method } else { method.as_str() };
        let (status, body) = answer(router_for(binary), method, path).await;
        assert!(
            !(status == 404 && body == not_found),
            "{function}.{event}: {method} {path} (route {route}) is not served by the {binary} router (answered 404 Not Found)"
        );
        assert_ne!(status, 405, "{function}.{event}: {method} {path} (route {route}) answered 405 on the {binary} router");
    }
}

// ------------------------------------------------------------------ (c), (d) queues

/// (mapping, queue, function, properties) for every SQS trigger: plain
/// AWS::Lambda::EventSourceMapping resources and SAM `SQS` events.
fn sqs_mappings(t: &Template) -> Vec<(String, String, String, Value)> {
    let queues: BTreeSet<&String> = t.of_type("AWS::SQS::Queue").map(|(n, _)| n).collect();
    let mut mappings = Vec::new();
    for (name, mapping) in t.of_type("AWS::Lambda::EventSourceMapping") {
        let p = &mapping["Properties"];
        let Some(queue) = target(&p["EventSourceArn"]) else { continue };
        if !queues.contains(&queue.to_string()) {
            continue;
        }
        let function =
            target(&p["FunctionName"]).unwrap_or_else(|| panic!("{name}: FunctionName must reference a function of the template"));
        mappings.push((name.clone(), queue.to_string(), function.to_string(), p.clone()));
    }
    for (name, function) in t.functions() {
        let Some(events) = function["Properties"]["Events"].as_object() else { continue };
        for (event_name, event) in events {
            if event["Type"] == "SQS" {
                let p = &event["Properties"];
                let queue = target(&p["Queue"]).unwrap_or_else(|| panic!("{name}.{event_name}: Queue must reference a queue"));
                mappings.push((format!("{name}.{event_name}"), queue.to_string(), name.clone(), p.clone()));
            }
        }
    }
    mappings
}

#[test]
fn every_queue_has_a_dlq_and_outlasts_its_worker() {
    let t = Template::load();
    let queues: BTreeMap<&String, &Value> = t.of_type("AWS::SQS::Queue").collect();
    let dlqs: BTreeSet<String> =
        queues.values().filter_map(|q| target(&q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]).map(str::to_string)).collect();
    let mappings = sqs_mappings(&t);
    let mut work_queues = 0;
    for (name, queue) in &queues {
        if dlqs.contains(name.as_str()) {
            continue;
        }
        work_queues += 1;
        let p = &queue["Properties"];
        let redrive = &p["RedrivePolicy"];
        let dlq = target(&redrive["deadLetterTargetArn"]).unwrap_or_else(|| panic!("{name}: no RedrivePolicy with a dead-letter queue"));
        assert!(queues.contains_key(&dlq.to_string()), "{name}: dead-letter target {dlq} is not a queue of the template");
        let max_receive = redrive["maxReceiveCount"].as_u64();
        assert_eq!(max_receive, Some(5), "{name}: RedrivePolicy.maxReceiveCount must be 5 (TASK_MAX_ATTEMPTS)");

        let consumers: Vec<_> = mappings.iter().filter(|m| m.1 == **name).collect();
        assert!(!consumers.is_empty(), "{name}: no event source mapping consumes this queue");
        let visibility = p["VisibilityTimeout"].as_u64().unwrap_or(30);
        for (mapping, _, function, _) in consumers {
            let timeout = t.timeout(function);
            assert!(
                visibility >= 6 * timeout,
                "{name}: VisibilityTimeout {visibility} s is less than 6 x the {timeout} s timeout of {function} (mapping {mapping})"
            );
            let attempts = t.env(&t.resources()[function.as_str()], "TASK_MAX_ATTEMPTS").cloned();
            assert_eq!(
                attempts,
                Some(json!("5")),
                "{function}: TASK_MAX_ATTEMPTS must equal {name}'s maxReceiveCount (5), found {attempts:?}"
            );
        }
    }
    assert_eq!(work_queues, 2, "expected the audio and network queues (besides their DLQs)");
}

#[test]
fn every_queue_trigger_reports_batch_item_failures() {
    let t = Template::load();
    let mappings = sqs_mappings(&t);
    assert_eq!(mappings.len(), 2, "expected one SQS trigger per worker, found {mappings:?}");
    for (mapping, queue, function, p) in &mappings {
        assert!(
            as_list(&p["FunctionResponseTypes"]).contains(&&json!("ReportBatchItemFailures")),
            "{mapping} ({queue} -> {function}): FunctionResponseTypes must contain ReportBatchItemFailures"
        );
        assert_eq!(p["BatchSize"], 1, "{mapping}: BatchSize must be 1 (processing.md §1.1)");
        assert!(
            p["ScalingConfig"]["MaximumConcurrency"].is_u64(),
            "{mapping}: ScalingConfig.MaximumConcurrency bounds the load on Directus"
        );
    }
}

// ------------------------------------------------------------------ (e) IAM

/// Every IAM statement of the template, with where it is.
fn iam_statements(t: &Template) -> Vec<(String, Value)> {
    let mut statements = Vec::new();
    let mut push_document = |origin: String, document: &Value| {
        for (i, s) in as_list(&document["Statement"]).into_iter().enumerate() {
            statements.push((format!("{origin} statement {}", s["Sid"].as_str().map_or(i.to_string(), str::to_string)), s.clone()));
        }
    };
    for (name, resource) in t.resources() {
        let p = &resource["Properties"];
        match resource["Type"].as_str().unwrap_or("") {
            "AWS::Serverless::Function" => {
                // Policies: inline documents (with Statement), SAM policy templates or managed
                // policy names; only documents carry statements.
                for (i, policy) in as_list(&p["Policies"]).into_iter().enumerate() {
                    if policy.get("Statement").is_some() {
                        push_document(format!("{name}.Policies[{i}]"), policy);
                    }
                }
            }
            "AWS::IAM::Role" => {
                for (i, policy) in as_list(&p["Policies"]).into_iter().enumerate() {
                    push_document(format!("{name}.Policies[{i}]"), &policy["PolicyDocument"]);
                }
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" | "AWS::SQS::QueuePolicy" | "AWS::S3::BucketPolicy" => {
                push_document(name.clone(), &p["PolicyDocument"]);
            }
            _ => {}
        }
    }
    statements
}

/// Read-only by name: Get*, List*, Describe*, Head* (any service).
fn is_read_only(action: &str) -> bool {
    let verb = action.split_once(':').map_or(action, |(_, v)| v);
    ["Get", "List", "Describe", "Head"].iter().any(|p| verb.starts_with(p))
}

fn write_on_star(statement: &Value) -> Vec<String> {
    if statement["Effect"] != "Allow" {
        return Vec::new();
    }
    let resources = as_list(&statement["Resource"]);
    if !resources.iter().any(|r| r.as_str().is_some_and(|r| r == "*")) {
        return Vec::new();
    }
    as_list(&statement["Action"]).into_iter().filter_map(Value::as_str).filter(|a| !is_read_only(a)).map(str::to_string).collect()
}

#[test]
fn no_iam_statement_writes_on_every_resource() {
    let t = Template::load();
    let statements = iam_statements(&t);
    assert!(statements.len() > 10, "expected the functions' policy statements, found {}", statements.len());
    for (origin, statement) in &statements {
        let writes = write_on_star(statement);
        assert!(writes.is_empty(), "{origin}: Resource \"*\" with write actions {writes:?}; name the resources instead");
        assert!(
            statement.get("NotResource").is_none() && statement.get("NotAction").is_none(),
            "{origin}: NotResource/NotAction grant too much"
        );
    }
    // The rule itself.
    assert_eq!(
        write_on_star(&json!({"Effect": "Allow", "Action": ["s3:GetObject", "s3:DeleteObject"], "Resource": "*"})),
        ["s3:DeleteObject"]
    );
    assert!(write_on_star(&json!({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"})).is_empty());
    assert_eq!(write_on_star(&json!({"Effect": "Allow", "Action": "sqs:*", "Resource": ["*"]})), ["sqs:*"]);
}

// ------------------------------------------------------------------ streaming and schedules

#[test]
fn streaming_groups_stream_every_route() {
    let t = Template::load();
    for (function, binary, event, route, _, mode) in api_routes(&t) {
        let streams = matches!(binary.as_str(), "conversations" | "projects" | "chats");
        if streams {
            assert_eq!(
                mode.as_deref(),
                Some("RESPONSE_STREAM"),
                "{function}.{event} ({route}): {binary} runs the streaming runtime, \
                 so every route must use ResponseTransferMode RESPONSE_STREAM"
            );
            assert_eq!(t.timeout(&function), 900, "{function}: streaming functions run up to 15 minutes");
        } else {
            assert_ne!(mode.as_deref(), Some("RESPONSE_STREAM"), "{function}.{event} ({route}): {binary} answers buffered responses");
            assert!(t.timeout(&function) <= 29, "{function}: buffered routes end at the REST API's 29 s");
        }
    }
}

#[test]
fn schedules_send_the_scheduled_task_messages() {
    use common::queue::{Task, TaskMessage};
    let t = Template::load();
    let mut inputs = Vec::new();
    for (name, function) in t.functions() {
        let Some(events) = function["Properties"]["Events"].as_object() else { continue };
        for (event_name, event) in events {
            if event["Type"] == "Schedule" {
                assert_eq!(binary_of(function), "scheduler", "{name}.{event_name}: schedules invoke the scheduler");
                let p = &event["Properties"];
                inputs.push((format!("{name}.{event_name}"), p["Schedule"].clone(), p["Input"].as_str().unwrap_or("").to_string()));
            }
        }
    }
    for (name, rule) in t.of_type("AWS::Events::Rule") {
        for target_def in as_list(&rule["Properties"]["Targets"]) {
            inputs.push((
                name.clone(),
                rule["Properties"]["ScheduleExpression"].clone(),
                target_def["Input"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    let mut seen = BTreeMap::new();
    for (origin, schedule, input) in &inputs {
        let message = TaskMessage::parse(input).unwrap_or_else(|e| panic!("{origin}: Input {input:?} is not a task message: {e}"));
        let task = match message.task {
            Task::CollectAndFinishUnfinishedConversations {} | Task::UpdateRunpodTranscriptionResponse {} => message.task.name(),
            other => panic!("{origin}: {} is not a scheduled task", other.name()),
        };
        seen.insert(task, (origin.clone(), schedule.clone()));
    }
    assert_eq!(
        seen.get("task_collect_and_finish_unfinished_conversations").map(|s| &s.1),
        Some(&json!("rate(1 minute)")),
        "the collector runs every minute"
    );
    let poller = seen.get("task_update_runpod_transcription_response").expect("a RunPod poller schedule");
    assert!(poller.1.to_string().contains("rate(10 minutes)"), "{}: the RunPod poller runs every 10 minutes", poller.0);
    assert!(t.resources()[&poller.0].get("Condition").is_some(), "{}: the RunPod poller is deployed only for RunPod", poller.0);
}

// ------------------------------------------------------------------ secrets

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn secrets_come_from_the_ssm_parameters_each_role_may_read_and_no_others() {
    let t = Template::load();
    let statements = iam_statements(&t);
    let mut checked = 0;
    for (name, function) in t.functions() {
        let vars = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        for secret in common::secrets::SECRET_SETTINGS {
            assert!(!vars.contains_key(*secret), "{name}: {secret} must come from SSM ({secret}{})", common::secrets::PARAMETER_SUFFIX);
        }
        let given: BTreeSet<String> = vars
            .iter()
            .filter(|(k, _)| k.ends_with(common::secrets::PARAMETER_SUFFIX))
            .map(|(k, v)| {
                let setting = k.trim_end_matches(common::secrets::PARAMETER_SUFFIX);
                assert!(common::secrets::SECRET_SETTINGS.contains(&setting), "{name}: {k} names no secret setting the code reads");
                target(v).unwrap_or_else(|| panic!("{name}: {k} must be a Ref to a template parameter")).to_string()
            })
            .collect();
        // Every ssm resource of the function's statements, as the parameter it names.
        let mut readable = BTreeSet::new();
        for (origin, statement) in statements.iter().filter(|(o, _)| o.starts_with(&format!("{name}."))) {
            let actions: Vec<&str> = as_list(&statement["Action"]).into_iter().filter_map(Value::as_str).collect();
            if !actions.iter().any(|a| a.starts_with("ssm:")) {
                continue;
            }
            assert_eq!(actions, ["ssm:GetParameters"], "{origin}: the one batched read secrets.rs makes");
            let mut resources = Vec::new();
            strings(&statement["Resource"], &mut resources);
            for r in resources.iter().filter(|r| r.contains(":parameter")) {
                let parameter = r.split(":parameter${").nth(1).and_then(|p| p.strip_suffix('}'));
                readable.insert(parameter.unwrap_or_else(|| panic!("{origin}: {r} must name a template parameter")).to_string());
            }
        }
        assert_eq!(readable, given, "{name}: the role reads exactly the parameters the function is given");
        checked += given.len();
    }
    // Directus token x8, secret x5, LLM keys x7 (medium x2, summary x2, small, inference x2),
    // transcription keys x3, the RunPod webhook secret x2, the topic modeler key, the Vertex
    // service account x5 (network-worker and every function with an LLM slot), the database URL
    // and LightRAG's three (the server's key x2, the ETL's LLM key) (template.yaml "Secrets").
    assert_eq!(checked, 35);
}

// ------------------------------------------------------------------ what a deploy must choose

#[test]
fn a_deploy_must_choose_a_transcription_provider() {
    let t = Template::load();
    let provider = &t.doc["Parameters"]["TranscriptionProvider"];
    // Without one every chunk stays pending (processing.md §5.1): no default, no empty choice.
    assert!(provider.get("Default").is_none(), "TranscriptionProvider must have no default: {provider}");
    assert_eq!(provider["AllowedValues"], json!(["Runpod", "LiteLLM", "AssemblyAI", "Dembrane-25-09"]));
    let worker = t.functions().into_iter().find(|(_, f)| binary_of(f) == "network-worker").expect("network-worker").1;
    let vars = &worker["Properties"]["Environment"]["Variables"];
    assert_eq!(vars["TRANSCRIPTION_PROVIDER"], json!({"Ref": "TranscriptionProvider"}));
}

#[test]
fn every_function_reports_errors_to_the_sentry_dsn_given() {
    let t = Template::load();
    let globals = &t.doc["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["SENTRY_DSN"], json!({"Ref": "SentryDsn"}));
    assert_eq!(globals["BUILD_VERSION"], json!({"Ref": "BuildVersion"}));
    assert_eq!(t.doc["Parameters"]["SentryDsn"]["Default"], "", "no reports unless a DSN is given");
    for (name, function) in t.functions() {
        let vars = function["Properties"]["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        assert!(!vars.contains_key("SENTRY_DSN") && !vars.contains_key("DISABLE_SENTRY"), "{name}: the global DSN applies to all");
    }
}

// ------------------------------------------------------------------ tracing and metrics

#[test]
fn every_function_and_the_api_stage_trace_with_x_ray() {
    let t = Template::load();
    for (name, function) in t.functions() {
        assert_eq!(t.function_property(function, "Tracing"), Some(&json!("Active")), "{name}: Tracing must be Active");
    }
    let apis: Vec<_> = t.of_type("AWS::Serverless::Api").collect();
    assert!(!apis.is_empty());
    for (name, api) in apis {
        assert_eq!(api["Properties"]["TracingEnabled"], json!(true), "{name}: the stage must trace (TracingEnabled)");
    }
}

#[test]
fn alarms_and_dashboard_read_the_emf_namespace() {
    let t = Template::load();
    let namespace = common::telemetry::metrics::NAMESPACE;
    let watched: BTreeSet<&str> = t
        .of_type("AWS::CloudWatch::Alarm")
        .filter(|(_, a)| a["Properties"]["Namespace"] == namespace)
        .filter_map(|(_, a)| a["Properties"]["MetricName"].as_str())
        .collect();
    assert_eq!(watched, BTreeSet::from(["Api5xx", "TaskDeadLettered"]), "alarms on the EMF metrics");
    let dashboards: Vec<_> = t.of_type("AWS::CloudWatch::Dashboard").collect();
    assert_eq!(dashboards.len(), 1);
    let body = dashboards[0].1["Properties"]["DashboardBody"]["Fn::Sub"].as_str().expect("DashboardBody is a !Sub string");
    let body: Value = serde_json::from_str(&body.replace("${AWS::Region}", "eu-west-1")).expect("the dashboard is JSON");
    let text = body.to_string();
    for metric in ["TaskProcessed", "TaskDeadLettered", "TaskDuration", "Api5xx", "ApiLatency", "OffloadWaiting", "OffloadRunning"] {
        assert!(text.contains(metric), "the dashboard shows {metric}");
    }
    assert!(text.contains(&format!("{{{namespace},")) || text.contains(&format!("\"{namespace}\"")), "dashboard reads {namespace}");
}

// ------------------------------------------------------------------ start-up checks (D63)

/// The template variables that satisfy one of a function's `REQUIRED_SETTINGS`: a plain setting
/// or its SSM parameter; for an LLM slot its model (unless defaulted) and its key.
fn satisfied_by(setting: &str) -> Vec<Vec<String>> {
    let either = |name: &str| vec![name.to_string(), format!("{name}_SSM_PARAMETER")];
    match setting {
        "SUMMARY_LITELLM" => {
            let mut key = either("SUMMARY_LITELLM_API_KEY");
            key.extend(either("ANTHROPIC_API_KEY"));
            vec![vec!["SUMMARY_LITELLM_MODEL".into()], key]
        }
        slot @ ("MEDIUM_LITELLM" | "SMALL_LITELLM" | "LIGHTRAG_LITELLM_INFERENCE" | "LIGHTRAG_LITELLM") => {
            vec![vec![format!("{slot}_MODEL")], either(&format!("{slot}_API_KEY"))]
        }
        other => vec![either(other)],
    }
}

#[test]
fn every_function_is_given_what_it_refuses_to_start_without() {
    let t = Template::load();
    let required: BTreeMap<&str, Vec<&str>> = [
        ("participant", participant::REQUIRED_SETTINGS.to_vec()),
        ("conversations", conversations::REQUIRED_SETTINGS.to_vec()),
        ("projects", projects::REQUIRED_SETTINGS.to_vec()),
        ("stateless", stateless::REQUIRED_SETTINGS.to_vec()),
        ("resources", resources::REQUIRED_SETTINGS.to_vec()),
        ("chats", chats::REQUIRED_SETTINGS.to_vec()),
        ("audio-worker", audio_worker::REQUIRED_SETTINGS.to_vec()),
        // With every optional feature on: the template passes what each would need.
        (
            "network-worker",
            [network_worker::REQUIRED_SETTINGS, &["LIGHTRAG_SERVER_URL", "LIGHTRAG_LITELLM", "RUNPOD_TOPIC_MODELER_API_KEY"]].concat(),
        ),
        ("scheduler", scheduler::REQUIRED_SETTINGS.to_vec()),
    ]
    .into_iter()
    .collect();
    let mut seen = Vec::new();
    for (name, function) in t.functions() {
        let binary = binary_of(function);
        let Some(settings) = required.get(binary) else { continue };
        seen.push(binary);
        for setting in settings {
            if *setting == "DIRECTUS_TOKEN" && t.env(function, "ECHO_STORE").and_then(Value::as_str) != Some("directus") {
                continue;
            }
            for alternatives in satisfied_by(setting) {
                assert!(
                    alternatives.iter().any(|var| t.env(function, var).is_some()),
                    "{name} ({binary}) requires {setting}: its environment has none of {alternatives:?}"
                );
            }
        }
        // The scheduler is not given what it does not use.
        if binary == "scheduler" {
            assert!(t.env(function, "AUDIO_QUEUE_URL").is_none(), "{name} never publishes to the audio queue");
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), required.len(), "every function is in the template: {seen:?}");
}
