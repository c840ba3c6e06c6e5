//! `/api/resources` (spec/api.md §2.7) through echo-local against a real PostgreSQL: each
//! route's success shape, who may call it, the content checks in the spec's order, body
//! validation, the 503 when the database is missing or down and the recovery without a restart,
//! the statement timeout, and SQL injection through every field and the id.
//! Needs RESOURCES_TEST_DATABASE_URL (scripts/test.sh starts the server).

use std::time::{Duration, Instant};

use crate::support::postgres::{OwnServer, Pg, Row};
use crate::support::*;
use common::store::NewProject;
use reqwest::Method;
use serde_json::{Value, json};

const OTHER_USER: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
const ADMIN: &str = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
const OTHER_PROJECT: &str = "77777777-7777-4777-8777-777777777777";
/// In Postgres only: a row whose project the store does not know.
const GONE_PROJECT: &str = "88888888-8888-4888-8888-888888888888";
const DOC: &str = "66666666-6666-4666-8666-666666666601";
const SIBLING: &str = "66666666-6666-4666-8666-666666666602";
const FOREIGN: &str = "66666666-6666-4666-8666-666666666603";
const ORPHAN: &str = "66666666-6666-4666-8666-666666666604";
const UNKNOWN: &str = "66666666-6666-4666-8666-666666666699";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
const UNAVAILABLE: &str = "Resources are unavailable";

/// echo-local on SQLite (where the projects and their owners live) with `DATABASE_URL`.
async fn app(database_url: Option<&str>, timeout_seconds: u64) -> TestApp {
    let url = database_url.map(str::to_string);
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.database.url = url;
        o.settings.database.timeout_seconds = timeout_seconds;
    })
    .await;
    app.db().execute("UPDATE project SET directus_user_id = ?1 WHERE id = ?2", [OWNER, PROJECT]).unwrap();
    let other = NewProject { id: OTHER_PROJECT.into(), directus_user_id: Some(OTHER_USER.into()), ..Default::default() };
    app.local.store.create_project(other).await.unwrap();
    app
}

fn owner() -> Option<String> {
    Some(token(OWNER, false))
}

/// One request; the status, the JSON body (null when empty) and the headers.
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<String>,
    body: Option<Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    let text = res.text().await.unwrap();
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}")) };
    (status, value, headers)
}

/// Each route of the group for one id, with a valid PUT body: (method, path, body).
fn every_route(id: &str) -> Vec<(Method, String, Option<Value>)> {
    let body = json!({"title": "T", "description": "D", "context": "C"});
    vec![
        (Method::GET, format!("/api/resources/{id}"), None),
        (Method::GET, format!("/api/resources/{id}/content"), None),
        (Method::PUT, format!("/api/resources/{id}"), Some(body)),
        (Method::DELETE, format!("/api/resources/{id}"), None),
    ]
}

/// A PDF object in the bucket; its stored URL.
async fn put_pdf(app: &TestApp, key: &str) -> String {
    app.local.state.blob.put(key, PDF.to_vec().into(), Some("binary/octet-stream")).await.unwrap();
    app.local.state.blob.url_for_key(key)
}

#[tokio::test]
async fn each_route_answers_its_success_shape() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 10).await;
    let path = put_pdf(&app, "resources/budget.pdf").await;
    let row = Row {
        id: DOC,
        project: PROJECT,
        path: Some(path),
        title: Some("Budget"),
        description: Some("The 2025 budget"),
        original_filename: Some("budget.pdf"),
        ..Default::default()
    };
    pg.insert(row).await;

    let (status, got, _) = call(&app, Method::GET, &format!("/api/resources/{DOC}"), owner(), None).await;
    assert_eq!(status, 200, "{got}");
    let mut keys: Vec<&str> = got.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    let mut expected = vec![
        "id",
        "created_at",
        "updated_at",
        "project_id",
        "original_filename",
        "type",
        "title",
        "description",
        "context",
        "is_processed",
        "processing_error",
    ];
    expected.sort();
    assert_eq!(keys, expected, "ResourceSchema's fields, no path");
    let fixed = json!({"id": DOC, "project_id": PROJECT, "original_filename": "budget.pdf", "type": "PDF", "title": "Budget",
        "description": "The 2025 budget", "context": null, "is_processed": false, "processing_error": null});
    for (k, v) in fixed.as_object().unwrap() {
        assert_eq!(&got[k], v, "{k}");
    }
    let created = common::datetime::parse(got["created_at"].as_str().unwrap()).expect("an ISO 8601 created_at");
    assert!(got["updated_at"].as_str().unwrap().ends_with('Z'));

    // content: a 307 to a presigned GET that serves the PDF as application/pdf.
    let (status, body, headers) = call(&app, Method::GET, &format!("/api/resources/{DOC}/content"), owner(), None).await;
    assert_eq!(status, 307, "{body}");
    let location = headers["location"].to_str().unwrap();
    assert!(location.starts_with(app.local.s3_url.as_deref().unwrap()) && location.contains("X-Amz-Signature="), "{location}");
    let pdf = app.client.get(location).send().await.unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf", "served as a PDF whatever it was stored as");
    assert_eq!(pdf.bytes().await.unwrap().as_ref(), PDF);

    // PUT: null and "" keep the stored value; updated_at moves.
    let body = json!({"title": null, "description": "", "context": "Read before the town hall"});
    let (status, put, _) = call(&app, Method::PUT, &format!("/api/resources/{DOC}"), owner(), Some(body)).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        (&put["title"], &put["description"], &put["context"]),
        (&json!("Budget"), &json!("The 2025 budget"), &json!("Read before the town hall"))
    );
    assert_eq!(common::datetime::parse(put["created_at"].as_str().unwrap()), Some(created));
    assert!(common::datetime::parse(put["updated_at"].as_str().unwrap()).unwrap() > created, "updated_at set: {put}");
    let body = json!({"title": "Budget (annotated)", "description": "Annotated", "context": null});
    let (_, put, _) = call(&app, Method::PUT, &format!("/api/resources/{DOC}"), owner(), Some(body)).await;
    assert_eq!(
        (&put["title"], &put["description"], &put["context"]),
        (&json!("Budget (annotated)"), &json!("Annotated"), &json!("Read before the town hall"))
    );
    let (_, again, _) = call(&app, Method::GET, &format!("/api/resources/{DOC}"), owner(), None).await;
    assert_eq!(again, put, "stored as answered");

    // DELETE answers the deleted row; the file stays.
    let (status, deleted, _) = call(&app, Method::DELETE, &format!("/api/resources/{DOC}"), owner(), None).await;
    assert_eq!((status, &deleted), (200, &put));
    assert_eq!(pg.row(DOC).await, None);
    let (status, body, _) = call(&app, Method::GET, &format!("/api/resources/{DOC}"), owner(), None).await;
    assert_eq!((status, body), (404, json!({"detail": "Resource not found"})));
    assert!(app.local.state.blob.head("resources/budget.pdf").await.unwrap().is_some(), "the file is not removed");
}

#[tokio::test]
async fn only_the_owner_or_an_admin_gets_in() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 10).await;
    let path = put_pdf(&app, "resources/mine.pdf").await;
    pg.insert(Row { id: DOC, project: PROJECT, path: Some(path.clone()), title: Some("Mine"), ..Default::default() }).await;
    pg.insert(Row { id: FOREIGN, project: OTHER_PROJECT, path: Some(path.clone()), title: Some("Theirs"), ..Default::default() }).await;
    pg.insert(Row { id: ORPHAN, project: GONE_PROJECT, path: Some(path), title: Some("Orphan"), ..Default::default() }).await;
    let before = pg.rows().await;

    for (method, path, body) in every_route(DOC) {
        let (status, got, _) = call(&app, method.clone(), &path, None, body.clone()).await;
        assert_eq!((status, got), (401, json!({"detail": "Invalid session"})), "{method} {path} without a token");
        let (status, got, _) = call(&app, method.clone(), &path, Some(token(OTHER_USER, false)), body.clone()).await;
        assert_eq!((status, got), (403, json!({"detail": "User does not have access to this project"})), "{method} {path}, not the owner");
    }
    for (method, path, body) in every_route(FOREIGN) {
        let (status, _, _) = call(&app, method.clone(), &path, owner(), body).await;
        assert_eq!(status, 403, "{method} {path}: the owner of another project");
    }
    for id in [UNKNOWN, ORPHAN, "not-a-uuid", "123", "66666666-6666-4666-8666-66666666660", "66666666-6666-4666-8666-6666666666011"] {
        for (method, path, body) in every_route(id) {
            let (status, got, _) = call(&app, method.clone(), &path, owner(), body).await;
            assert_eq!((status, got), (404, json!({"detail": "Resource not found"})), "{method} {path}");
        }
    }
    assert_eq!(pg.rows().await, before, "refused calls change nothing");

    // An admin owns everything, a row whose project is gone included.
    let admin = || Some(token(ADMIN, true));
    for (method, path, body) in every_route(FOREIGN).into_iter().chain(every_route(ORPHAN)) {
        let (status, got, _) = call(&app, method.clone(), &path, admin(), body).await;
        let expected = if path.ends_with("/content") { 307 } else { 200 };
        assert_eq!(status, expected, "{method} {path} as admin: {got}");
    }
    assert_eq!(pg.rows().await.len(), 1, "the admin deleted both");
}

#[tokio::test]
async fn content_checks_the_object_then_the_type() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 10).await;
    let url = put_pdf(&app, "resources/present.pdf").await;
    // (id, type, path, status, detail)
    type Case = (&'static str, Option<&'static str>, Option<String>, u16, &'static str);
    let cases: [Case; 7] = [
        ("66666666-6666-4666-8666-666666666611", Some("PDF"), Some(url.clone()), 307, ""),
        // A bare key names the object as well as a URL does (D45).
        ("66666666-6666-4666-8666-666666666612", Some("PDF"), Some("resources/present.pdf".into()), 307, ""),
        ("66666666-6666-4666-8666-666666666613", Some("PDF"), Some(url.replace("present", "absent")), 500, CONTENT),
        ("66666666-6666-4666-8666-666666666614", Some("DOCX"), Some(url.clone()), 400, FORMAT),
        // Existence comes first: a missing non-PDF is the 500, not the 400.
        ("66666666-6666-4666-8666-666666666615", Some("DOCX"), Some(url.replace("present", "absent")), 500, CONTENT),
        ("66666666-6666-4666-8666-666666666616", Some("PDF"), None, 500, CONTENT),
        // ECHO's own paths were on its server's disk.
        ("66666666-6666-4666-8666-666666666617", Some("PDF"), Some("/app/uploads/legacy.pdf".into()), 500, CONTENT),
    ];
    for (id, kind, path, _, _) in &cases {
        pg.insert(Row { id, project: PROJECT, kind: *kind, path: path.clone(), title: Some("Doc"), ..Default::default() }).await;
    }
    for (id, kind, path, status, detail) in cases {
        let (got, body, headers) = call(&app, Method::GET, &format!("/api/resources/{id}/content"), owner(), None).await;
        assert_eq!(got, status, "{kind:?} at {path:?}: {body}");
        if status == 307 {
            assert!(headers.contains_key("location"));
        } else {
            assert_eq!(body, json!({"detail": detail}), "{kind:?} at {path:?}");
        }
    }
}

const CONTENT: &str = "Resource content not found (Server Error)";
const FORMAT: &str = "Invalid file format. Only .pdf files are supported.";

#[tokio::test]
async fn put_needs_all_three_keys_and_changes_nothing_when_refused() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 10).await;
    pg.insert(Row { id: DOC, project: PROJECT, title: Some("Kept"), description: Some("Kept too"), ..Default::default() }).await;
    let before = pg.rows().await;
    let path = format!("/api/resources/{DOC}");
    for missing in ["title", "description", "context"] {
        let mut body = json!({"title": "x", "description": "y", "context": "z"});
        body.as_object_mut().unwrap().remove(missing);
        let (status, got, _) = call(&app, Method::PUT, &path, owner(), Some(body)).await;
        assert_eq!(status, 422, "{got}");
        assert_eq!(got["detail"][0]["loc"], json!(["body", missing]));
        assert_eq!(got["detail"][0]["type"], "missing");
    }
    let bad: [(Option<&str>, Value); 5] = [
        (None, json!({"title": 5, "description": null, "context": null})),
        (None, json!(["title", "description", "context"])),
        (None, json!({"title": "a\u{0}b", "description": null, "context": null})),
        (Some(""), Value::Null),
        (Some("{\"title\": "), Value::Null),
    ];
    for (raw, body) in bad {
        let request = app.client.put(app.url(&path)).bearer_auth(token(OWNER, false)).header("content-type", "application/json");
        let request = match raw {
            Some(raw) => request.body(raw),
            None => request.body(body.to_string()),
        };
        let (status, got) = read(request.send().await.unwrap()).await;
        assert_eq!(status, 422, "{raw:?} {body}: {got}");
        assert!(got["detail"].is_array(), "{got}");
    }
    // Authentication is checked before the body.
    let (status, _, _) = call(&app, Method::PUT, &path, None, Some(json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(pg.rows().await, before);
}

#[tokio::test]
async fn without_a_database_url_or_the_table_every_route_is_503() {
    let no_table = Pg::fresh(false).await;
    for url in [None, Some(no_table.url.as_str())] {
        let app = app(url, 10).await;
        for (method, path, body) in every_route(DOC) {
            let (status, got, headers) = call(&app, method.clone(), &path, owner(), body).await;
            assert_eq!((status, got), (503, json!({"detail": UNAVAILABLE})), "{method} {path} with DATABASE_URL {url:?}");
            assert_eq!(headers["retry-after"], "5");
        }
        // The other groups do not care.
        let (status, _) = app.get(&format!("/api/participant/projects/{PROJECT}")).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn a_stopped_database_is_503_then_serves_again_without_a_restart() {
    let server = OwnServer::start().await;
    let pg = Pg::fresh_on(&server.url, true).await;
    let app = app(Some(&pg.url), 5).await;
    pg.insert(Row { id: DOC, project: PROJECT, title: Some("Before"), ..Default::default() }).await;
    let path = format!("/api/resources/{DOC}");
    let get = || call(&app, Method::GET, &path, owner(), None);
    let put =
        |title: &'static str| call(&app, Method::PUT, &path, owner(), Some(json!({"title": title, "description": null, "context": null})));
    assert_eq!(get().await.0, 200);

    server.stop().await;
    for _ in 0..2 {
        let started = Instant::now();
        let (status, body, headers) = get().await;
        assert_eq!((status, body), (503, json!({"detail": UNAVAILABLE})));
        assert_eq!(headers["retry-after"], "5");
        assert!(started.elapsed() < Duration::from_secs(3), "a refused connection answers at once: {:?}", started.elapsed());
    }
    assert_eq!(put("During").await.0, 503);

    server.resume().await;
    let (status, body, _) = put("After").await;
    assert_eq!((status, &body["title"]), (200, &json!("After")), "{body}");
    assert_eq!(get().await.1["title"], "After");

    // The server ends the function's connection: the next call reconnects and succeeds.
    let admin = crate::support::postgres::connect(&pg.url).await;
    let ended = admin
        .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'echo-lambda-resources'", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(ended, 1, "the function holds one connection");
    let (status, body, _) = get().await;
    assert_eq!((status, &body["title"]), (200, &json!("After")), "{body}");
    let (status, _, _) = put("Reconnected").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_statement_over_the_timeout_is_503_and_cancelled() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 1).await;
    pg.insert(Row { id: DOC, project: PROJECT, title: Some("Locked"), ..Default::default() }).await;
    let path = format!("/api/resources/{DOC}");
    assert_eq!(call(&app, Method::GET, &path, owner(), None).await.0, 200);

    // Another session holds the row: the function's UPDATE waits on the lock.
    let mut locker = crate::support::postgres::connect(&pg.url).await;
    let lock = locker.transaction().await.unwrap();
    lock.execute("SELECT 1 FROM document WHERE id = $1::text::uuid FOR UPDATE", &[&DOC]).await.unwrap();
    let started = Instant::now();
    let body = json!({"title": "Waited", "description": null, "context": null});
    let (status, got, _) = call(&app, Method::PUT, &path, owner(), Some(body.clone())).await;
    let waited = started.elapsed();
    assert_eq!((status, got), (503, json!({"detail": UNAVAILABLE})));
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(4), "bounded by the 1 s timeout: {waited:?}");

    // The server stops waiting too (cancelled, its connection dropped).
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'echo-lambda-resources' AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::support::postgres::connect(&pg.url).await.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) > 0 {
        assert!(Instant::now() < deadline, "the UPDATE still waits on the server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock.rollback().await.unwrap();
    assert_eq!(pg.row(DOC).await.unwrap()["title"], "Locked", "the cancelled UPDATE left no trace");
    let (status, got, _) = call(&app, Method::PUT, &path, owner(), Some(body)).await;
    assert_eq!((status, &got["title"]), (200, &json!("Waited")));
}

#[tokio::test]
async fn sql_injection_through_every_field_and_the_id_changes_nothing_else() {
    let pg = Pg::fresh(true).await;
    let app = app(Some(&pg.url), 10).await;
    for (id, project) in [(DOC, PROJECT), (SIBLING, PROJECT), (FOREIGN, OTHER_PROJECT)] {
        pg.insert(Row { id, project, title: Some("Original"), description: Some("Original"), ..Default::default() }).await;
    }
    let others = || async { pg.rows().await.into_iter().filter(|r| !r.contains(DOC)).collect::<Vec<_>>() };
    let before = others().await;
    let projects = pg.client.query("SELECT id::text FROM project ORDER BY id", &[]).await.unwrap().len();

    let payloads = [
        "'; DROP TABLE document; --",
        "' OR '1'='1",
        "x', title = 'pwned', description = 'pwned' WHERE '1'='1",
        "Robert'); UPDATE document SET title = 'pwned' WHERE ('1'='1",
        "$2); DELETE FROM document WHERE (true",
        "\\'; DELETE FROM document; --",
        "1; TRUNCATE document CASCADE; DROP TABLE project; --",
        "' || (SELECT string_agg(title, ',') FROM document) || '",
    ];
    for payload in payloads {
        let body = json!({"title": payload, "description": format!("d{payload}"), "context": format!("c{payload}")});
        let (status, got, _) = call(&app, Method::PUT, &format!("/api/resources/{DOC}"), owner(), Some(body)).await;
        assert_eq!(status, 200, "{payload}: {got}");
        assert_eq!(
            (&got["title"], &got["description"], &got["context"]),
            (&json!(payload), &json!(format!("d{payload}")), &json!(format!("c{payload}")))
        );
        let stored = pg.row(DOC).await.unwrap();
        assert_eq!(stored["title"], payload, "stored verbatim");

        // The same text as the id, alone and after a real id: never more than a 404.
        let encoded: String =
            payload.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        for id in [encoded.clone(), format!("{DOC}{encoded}")] {
            for (method, path, body) in every_route(&id) {
                let (status, got, _) = call(&app, method.clone(), &path, owner(), body).await;
                assert!(status == 404 || status == 405, "{method} {path}: {status} {got}");
            }
        }
        assert_eq!(others().await, before, "{payload}: the other rows are untouched");
    }
    assert_eq!(pg.rows().await.len(), 3, "no row deleted");
    assert_eq!(pg.client.query("SELECT id::text FROM project ORDER BY id", &[]).await.unwrap().len(), projects);
}
