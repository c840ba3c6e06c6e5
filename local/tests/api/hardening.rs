//! What an attacker's battery against echo-local found, kept found: each test drives echo-local
//! (and its embedded S3) over HTTP as a hostile client would and fails if the guard goes away.

use std::time::{Duration, Instant};

use crate::support::echo_local_process::EchoLocalProcess;
use crate::support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EVIL_ORIGIN: &str = "https://evil.example";

/// One HTTP/1.1 exchange on a fresh socket, sent exactly as written (no client normalises the
/// path): status, lower-cased head, body.
async fn raw_http(base_url: &str, request: String, body: &[u8]) -> (u16, String, String) {
    let addr = base_url.trim_start_matches("http://").to_string();
    let mut socket = TcpStream::connect(&addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    socket.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), socket.read_to_end(&mut out)).await.expect("the server answers").unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A presigned PUT for `key`, as a path-and-query to send raw (the signing client keeps `..`).
async fn presigned_put_target(app: &TestApp, key: &str) -> String {
    let blob = &app.local.state.blob;
    let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    let req = blob.client().put_object().bucket(blob.bucket()).key(key).presigned(config).await.unwrap();
    let uri = req.uri().to_string();
    let s3 = app.local.s3_url.clone().unwrap();
    uri.strip_prefix(&s3).unwrap().to_string()
}

async fn put_raw(app: &TestApp, target: &str, body: &[u8]) -> (u16, String) {
    let s3 = app.local.s3_url.clone().unwrap();
    let host = s3.trim_start_matches("http://");
    let request = format!("PUT {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    let (status, _, text) = raw_http(&s3, request, body).await;
    (status, text)
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

// 1. Long filenames.

#[tokio::test]
async fn a_long_filename_still_uploads_by_presigned_post_and_by_upload_chunk() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let audio = fixture_audio("mp3.mp3");
    let long = format!("{}.webm", "recording-of-a-very-long-meeting-".repeat(8));

    let upload = app.upload_url(&cid, &long, "audio/webm").await;
    let file_url = upload["file_url"].as_str().unwrap().to_string();
    assert!(file_url.len() <= 255, "{file_url}");
    assert!(file_url.ends_with(".webm"), "the extension is kept: {file_url}");
    let (status, text) = app.browser_upload(&upload, audio.clone(), "audio/webm").await;
    assert!((200..300).contains(&status), "the embedded S3 lost the upload: {status} {text}");
    let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": file_url, "timestamp": "2025-10-16T12:00:00Z"});
    let (status, body) = app.post(&format!("/api/participant/conversations/{cid}/confirm-upload"), confirm).await;
    assert_eq!(status, 200, "{body}");

    let form = reqwest::multipart::Form::new()
        .part("chunk", reqwest::multipart::Part::bytes(audio).file_name(long.clone()).mime_str("audio/mpeg").unwrap())
        .text("timestamp", "2025-10-16T12:01:00Z");
    let res = app.client.post(app.url(&format!("/api/participant/conversations/{cid}/upload-chunk"))).multipart(form).send().await.unwrap();
    let (status, chunk) = read(res).await;
    assert_eq!(status, 200, "{chunk}");
    let path = chunk["path"].as_str().unwrap();
    assert!(path.len() <= 255 && path.ends_with(".webm"), "{path}");
    let key = app.local.state.blob.key_from_url(path).unwrap();
    assert!(app.local.state.blob.head(&key).await.unwrap().is_some());
}

#[tokio::test]
async fn the_embedded_s3_refuses_a_key_it_cannot_store_with_a_4xx() {
    let app = TestApp::start().await;
    let key = format!("conversation/x/chunks/{}", "k".repeat(300));
    let target = presigned_put_target(&app, &key).await;
    let (status, body) = put_raw(&app, &target, b"audio").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("KeyTooLong"), "{body}");
}

// 2. The upload rate limiter.

#[tokio::test]
async fn the_upload_limiter_counts_a_conversation_once_whatever_its_spelling() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    for _ in 0..10 {
        app.upload_url(&cid, "c.webm", "audio/webm").await;
    }
    let body = json!({"filename": "c.webm", "content_type": "audio/webm"});
    let spellings = [cid.clone(), cid.to_uppercase(), format!("%7B{cid}%7D"), cid.replace('-', "")];
    for spelling in spellings {
        let (status, answer) = app.post(&format!("/api/participant/conversations/{spelling}/get-upload-url"), body.clone()).await;
        assert_eq!(status, 429, "{spelling} got a fresh allowance: {answer}");
    }
    let junk = "x".repeat(48 * 1024);
    let (status, answer) = app.post(&format!("/api/participant/conversations/{junk}/get-upload-url"), body).await;
    assert_eq!((status, answer), (404, json!({"detail": "Conversation not found"})));
}

#[tokio::test]
async fn junk_ids_do_not_grow_echo_local() {
    let local = EchoLocalProcess::start();
    let client = reqwest::Client::new();
    let body = json!({"filename": "c.webm", "content_type": "audio/webm"});
    // Warm up: the allocator and the connection pool settle before the first reading.
    for _ in 0..20 {
        client.post(format!("{}/participant/conversations/warm/get-upload-url", local.api)).json(&body).send().await.unwrap();
    }
    let before = local.rss_kib();
    let mut sent = 0;
    for round in 0..1500 / 50 {
        let calls = (0..50).map(|i| {
            let id = format!("{round:04}{i:04}{}", "z".repeat(48 * 1024));
            client.post(format!("{}/participant/conversations/{id}/get-upload-url", local.api)).json(&body).send()
        });
        for res in futures::future::join_all(calls).await {
            let res = res.unwrap();
            assert_eq!(res.status().as_u16(), 404);
            sent += 1;
        }
    }
    let after = local.rss_kib();
    assert_eq!(sent, 1500);
    // 1,500 ids of 48 KiB are 72 MiB; a limiter that kept them shows it.
    assert!(after.saturating_sub(before) < 16 * 1024, "echo-local grew from {before} KiB to {after} KiB");
}

// 4. Keys that climb out of the bucket.

#[tokio::test]
async fn the_embedded_s3_refuses_dot_segments_raw_or_encoded() {
    let app = TestApp::start().await;
    let s3_root = app.dir.path().join("s3");
    for key in ["../escape.txt", "conversation/../../escape2.txt", "a/./b.txt", "conversation/x/.."] {
        let target = presigned_put_target(&app, key).await;
        let (status, body) = put_raw(&app, &target, b"not yours").await;
        assert!((400..500).contains(&status), "{key}: {status} {body}");
        // The signature covers the decoded path, so the encoded spelling carries the same one.
        let encoded = target.replace("/../", "/%2E%2E/").replace("/./", "/%2e/");
        if encoded != target {
            let (status, body) = put_raw(&app, &encoded, b"not yours").await;
            assert!((400..500).contains(&status), "{encoded}: {status} {body}");
        }
    }
    let outside: Vec<String> = files_under(&s3_root).into_iter().filter(|f| !f.contains("/s3/echo/") && !f.contains("/.")).collect();
    assert!(outside.is_empty(), "written outside the bucket: {outside:?}");
    assert!(!app.dir.path().join("escape2.txt").exists());
    // An ordinary key still works.
    let target = presigned_put_target(&app, "conversation/ok/chunks/plain.txt").await;
    assert_eq!(put_raw(&app, &target, b"fine").await.0, 200);
}

// 5. Rejections axum makes itself.

#[tokio::test]
async fn rejections_the_framework_makes_are_the_specs_json_errors() {
    let app = TestApp::start_dashboard(None).await;
    let cid = app.initiate().await;
    let not_found = |what: &str| (404, json!({"detail": what}));
    assert_eq!(app.get("/api/participant/projects/%FF").await, not_found("Project not found"));
    assert_eq!(app.get(&format!("/api/participant/projects/{PROJECT}/conversations/%C3%28")).await, not_found("Conversation not found"));
    assert_eq!(app.post("/api/participant/conversations/%FF/finish", json!({})).await, not_found("Conversation not found"));
    let owner = token(OWNER, true);
    let res = app.client.get(app.url("/api/conversations/%FF/chunks")).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(read(res).await.0, 404);

    // upload-chunk with a body that is not multipart, or a broken one.
    let path = app.url(&format!("/api/participant/conversations/{cid}/upload-chunk"));
    let res = app.client.post(&path).header("content-type", "text/plain").body("hello").send().await.unwrap();
    let (status, body) = read(res).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].is_array(), "{body}");
    let res = app
        .client
        .post(&path)
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nContent-Disposition: form-data; name=\"chunk\"; filename=\"a\"\r\n\r\nabc")
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await.0, 422);

    // A JSON body over the limit, a query that is not UTF-8, a method the route lacks.
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(3 * 1024 * 1024));
    let res = app
        .client
        .post(app.url(&format!("/api/participant/projects/{PROJECT}/conversations/initiate")))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, _) = read(res).await;
    assert!(status == 413 || status == 422, "{status}");
    let (status, _) = app.get("/api/participant/report/unsubscribe/eligibility?token=%FF&project_id=%FE").await;
    assert_eq!(status, 200);
    let res = app.client.put(app.url(&format!("/api/participant/projects/{PROJECT}"))).send().await.unwrap();
    assert_eq!(read(res).await, (405, json!({"detail": "Method Not Allowed"})));
}

// 6. Cross-site form posts.

#[tokio::test]
async fn json_endpoints_take_only_json_bodies() {
    let app = TestApp::start().await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let res = app
            .client
            .post(app.url(&format!("/api/participant/projects/{PROJECT}/conversations/initiate")))
            .header("content-type", content_type)
            .body(r#"{"name": "Mallory"}"#)
            .send()
            .await
            .unwrap();
        let (status, body) = read(res).await;
        assert_eq!(status, 422, "{content_type}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body"]), "{body}");
    }
    let res = app
        .client
        .post(app.url(&format!("/api/participant/projects/{PROJECT}/conversations/initiate")))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"name": "Ada"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await.0, 200);
}

#[tokio::test]
async fn a_cookie_session_from_a_foreign_origin_cannot_change_anything() {
    let app = TestApp::start_dashboard(None).await;
    let cookie = format!("directus_session_token={}", token(OWNER, false));
    let create = |origin: Option<&'static str>, content_type: &'static str| {
        let mut req = app.client.post(app.url("/api/projects")).header("cookie", cookie.clone()).header("content-type", content_type);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        req.body(r#"{"name": "planted"}"#).send()
    };
    let count = || app.db().query_row("SELECT count(*) FROM project WHERE name = 'planted'", [], |r| r.get::<_, i64>(0)).unwrap();

    // What a foreign page can make a browser send without a preflight.
    let (status, body) = read(create(Some(EVIL_ORIGIN), "text/plain").await.unwrap()).await;
    assert!(status == 403 || status == 422, "{status} {body}");
    let (status, body) = read(create(Some(EVIL_ORIGIN), "application/json").await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = read(create(Some("null"), "application/json").await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(count(), 0, "nothing was created");
    // The dashboard's own origin and tools that send no Origin still work.
    assert_eq!(read(create(Some("http://localhost:3000"), "application/json").await.unwrap()).await.0, 200);
    assert_eq!(read(create(None, "application/json").await.unwrap()).await.0, 200);
    // Bearer tokens are not sent by browsers on their own: the origin does not matter.
    let res = app
        .client
        .post(app.url("/api/projects"))
        .bearer_auth(token(OWNER, false))
        .header("origin", EVIL_ORIGIN)
        .json(&json!({"name": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await.0, 200);
}

// Also found.

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let app = TestApp::start().await;
    let addr = app.local.api_url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..20 {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 0 {
            // Headers that never end.
            socket.write_all(b"GET /api/health HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
        } else {
            // A body that never arrives.
            let head = format!(
                "POST /api/participant/projects/{PROJECT}/conversations/initiate HTTP/1.1\r\nhost: x\r\n\
                 content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"name\""
            );
            socket.write_all(head.as_bytes()).await.unwrap();
        }
        sockets.push(socket);
    }
    for mut socket in sockets {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(40), socket.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "a slow socket was still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(40));
}

#[tokio::test]
async fn vary_origin_is_sent_whatever_the_origin() {
    let app = TestApp::start().await;
    for origin in [EVIL_ORIGIN, PORTAL_ORIGIN] {
        let res = app.client.get(app.url(&format!("/api/participant/projects/{PROJECT}"))).header("origin", origin).send().await.unwrap();
        let vary: Vec<String> = res.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_ascii_lowercase()).collect();
        assert!(vary.iter().any(|v| v.contains("origin")), "{origin}: {vary:?}");
    }
}

#[tokio::test]
async fn a_request_id_is_echoed_only_when_short_and_plain() {
    let app = TestApp::start().await;
    let long = "r".repeat(8 * 1024);
    let res = app.client.get(app.url("/api/health")).header("x-request-id", &long).send().await.unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(echoed.len() <= 128, "{} bytes echoed", echoed.len());
    let res = app.client.get(app.url("/api/health")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-42");
}

fn count_tasks(app: &TestApp, name: &str) -> usize {
    app.published().iter().filter(|m| m["task"] == name).count()
}

#[tokio::test]
async fn repeated_finishes_queue_the_merge_and_summary_once() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let (status, _) = app
        .post(&format!("/api/participant/conversations/{cid}/upload-text"), json!({"timestamp": "2025-10-16T12:00:00Z", "content": "hi"}))
        .await;
    assert_eq!(status, 200);
    let finish = format!("/api/participant/conversations/{cid}/finish");
    for _ in 0..50 {
        assert_eq!(app.post(&finish, json!({})).await, (200, json!("OK")));
    }
    app.local.run_tasks().await;
    for _ in 0..50 {
        assert_eq!(app.post(&finish, json!({})).await, (200, json!("OK")));
    }
    app.local.run_tasks().await;
    assert_eq!(count_tasks(&app, "task_merge_conversation_chunks"), 1);
    assert_eq!(count_tasks(&app, "task_summarize_conversation"), 1);

    // New content after the finish is finalised again once.
    let (status, _) = app
        .post(&format!("/api/participant/conversations/{cid}/upload-text"), json!({"timestamp": "2025-10-16T12:05:00Z", "content": "more"}))
        .await;
    assert_eq!(status, 200);
    for _ in 0..5 {
        app.post(&finish, json!({})).await;
    }
    app.local.run_tasks().await;
    assert_eq!(count_tasks(&app, "task_summarize_conversation"), 2);
}
