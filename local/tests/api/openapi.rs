//! The OpenAPI document echo-lambda serves at `/api/openapi.json` is complete and true to the
//! router: every documented operation is routed, and every API Gateway event in events/ (one per
//! route, each fed to its router by lambda_events.rs) names a documented operation. A route
//! added without an annotation therefore fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::support::*;
use serde_json::Value;

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];
const PLACEHOLDER_ID: &str = "00000000-0000-4000-8000-000000000000";

/// (method in upper case, path template) of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                ops.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    ops
}

fn template_params(template: &str) -> BTreeSet<String> {
    template.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).map(str::to_string).collect()
}

/// The template a concrete path matches, preferring the most literal segments (as axum does).
fn matching_template<'a>(templates: impl Iterator<Item = &'a String>, path: &str) -> Option<&'a String> {
    let segments: Vec<&str> = path.split('/').collect();
    templates
        .filter_map(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            let fits = parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(p, s)| if p.starts_with('{') { !s.is_empty() } else { p == s });
            fits.then(|| (parts.iter().filter(|p| !p.starts_with('{')).count(), t))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, t)| t)
}

async fn served_document(app: &TestApp) -> Value {
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    doc
}

#[tokio::test]
async fn the_document_is_served_and_well_formed() {
    let app = TestApp::start().await;
    let doc = served_document(&app).await;
    assert_eq!(doc, serde_json::to_value(local::openapi()).unwrap(), "echo-local serves the merged document");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "echo-lambda");
    assert!(!doc["info"]["version"].as_str().unwrap().is_empty());
    assert_eq!(doc["servers"][0]["url"], "/");

    let components = &doc["components"];
    let schemes = components["securitySchemes"].as_object().expect("security schemes");
    let mut operation_ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        // Path parameters: each one in the template declared, required, and nothing extra.
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<String> =
            params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(declared, template_params(&path), "{what}: path parameters");
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{what}: {} must be required", p["name"]);
        }
        assert!(operation_ids.insert(op["operationId"].as_str().expect("operationId").to_string()), "{what}: duplicate operationId");
        let tags = op["tags"].as_array().expect("tags");
        assert_eq!(tags.len(), 1, "{what}: one tag, its group");

        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.keys().any(|s| s.starts_with('2') || s.starts_with('3')), "{what}: no success response");
        if tags[0] != "health" {
            // Errors carry the JSON error body.
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')) {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{what}: {status} body"
                );
            }
            assert!(responses.contains_key("503"), "{what}: the dependency-outage answer");
        }
        // JWT routes list the schemes of spec/api.md §1.2, and those exist.
        let security = op["security"].as_array().cloned().unwrap_or_default();
        for requirement in &security {
            for name in requirement.as_object().unwrap().keys() {
                assert!(schemes.contains_key(name), "{what}: unknown security scheme {name}");
            }
        }
        let public = path.starts_with("/api/participant/")
            || path == "/api/health"
            || path.ends_with("/get-reply")
            || path == "/api/conversations/health/stream"
            || path == "/api/projects/";
        assert_eq!(security.is_empty(), public, "{what}: security");
        if !public {
            assert!(responses.contains_key("401"), "{what}: 401");
        }
    }
    // Every schema reference resolves.
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(components["schemas"].get(name).is_some(), "unresolved schema {name}");
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = TestApp::start().await;
    let doc = served_document(&app).await;
    // The fallbacks' own answers, which no handler gives: that is how "not routed" shows.
    let (status, body) = app.get("/api/no-such-route").await;
    assert_eq!((status, &body["detail"]), (404, &Value::from("Not Found")));
    let (status, body) = app.delete("/api/health").await;
    assert_eq!((status, &body["detail"]), (405, &Value::from("Method Not Allowed")));

    for (method, path, _) in operations(&doc) {
        let concrete: String = path.split('/').map(|s| if s.starts_with('{') { PLACEHOLDER_ID } else { s }).collect::<Vec<_>>().join("/");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = app.client.request(method.clone(), app.url(&concrete));
        if method != reqwest::Method::GET {
            request = request.header("content-type", "application/json").body("{}");
        }
        let res = request.send().await.unwrap();
        let status = res.status().as_u16();
        if status == 404 || status == 405 {
            let body: Value = res.json().await.unwrap_or(Value::Null);
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(detail != "Not Found" && detail != "Method Not Allowed", "{method} {path}: not routed ({status} {body})");
        }
    }
}

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

#[test]
fn every_route_event_names_a_documented_operation() {
    let doc = serde_json::to_value(local::openapi()).unwrap();
    let documented: BTreeMap<(String, String), String> =
        operations(&doc).into_iter().map(|(m, p, op)| ((m, p), op["tags"][0].as_str().unwrap().to_string())).collect();
    let templates: BTreeSet<String> = documented.keys().map(|(_, p)| p.clone()).collect();

    let mut files: Vec<PathBuf> = vec![events_dir().join("health.json")];
    for group in ["participant", "conversations", "projects", "chats", "stateless", "resources"] {
        for entry in std::fs::read_dir(events_dir().join(group)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    let mut covered = BTreeMap::new();
    for file in &files {
        let event: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let method = event["httpMethod"].as_str().unwrap_or_else(|| panic!("{}: httpMethod", file.display())).to_string();
        let path = event["path"].as_str().unwrap();
        let path = path.split('?').next().unwrap();
        let template = matching_template(templates.iter(), path)
            .unwrap_or_else(|| panic!("{}: {method} {path} is not in the OpenAPI document", file.display()));
        let key = (method.clone(), template.clone());
        assert!(documented.contains_key(&key), "{}: {method} {template} is not in the OpenAPI document", file.display());
        if let Some(other) = covered.insert(key, file.clone()) {
            panic!("{} and {} name the same route", other.display(), file.display());
        }
    }
    // One event per route, so the document has no operation the routers lack either.
    let missing: Vec<_> = documented.keys().filter(|k| !covered.contains_key(*k)).collect();
    assert!(missing.is_empty(), "documented operations without an event in events/: {missing:?}");

    // spec/api.md's counts: health 1, participant 13, conversations 10, projects 6 (plus the
    // trailing-slash redirect of §1.1, POST /api/projects/), chats 5, stateless 5 (the webhook
    // and the four RAG routes), resources 4.
    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    for group in documented.values() {
        *per_group.entry(group.as_str()).or_default() += 1;
    }
    let expected = BTreeMap::from([
        ("health", 1),
        ("participant", 13),
        ("conversations", 10),
        ("projects", 6 + 1),
        ("chats", 5),
        ("stateless", 5),
        ("resources", 4),
    ]);
    assert_eq!(per_group, expected);
    assert!(documented.contains_key(&("POST".to_string(), "/api/projects/".to_string())));
}
