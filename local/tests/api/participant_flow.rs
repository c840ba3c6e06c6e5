//! The recording flow over HTTP against echo-local's router and its embedded S3.

use crate::support::*;
use serde_json::{Value, json};

fn task_names(app: &TestApp) -> Vec<String> {
    app.published().iter().map(|m| m["task"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_participant_records_a_conversation_end_to_end() {
    let app = TestApp::start().await;
    let audio = fixture_audio("mp3.mp3");

    let (status, project) = app.get(&format!("/api/participant/projects/{PROJECT}")).await;
    assert_eq!(status, 200);
    assert_eq!(project["tags"], json!([{"id": TAG, "text": "Demo tag"}]));
    assert_eq!(project["language"], "en");

    let (status, conversation) = app
        .post(
            &format!("/api/participant/projects/{PROJECT}/conversations/initiate"),
            json!({
                "name": "Ada", "email": "ada@example.org", "pin": "1234", "user_agent": "test",
                "tag_id_list": [TAG, "deleted-tag"], "source": "PORTAL_AUDIO"
            }),
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    assert_eq!(conversation["participant_name"], "Ada");
    assert_eq!(conversation["title"], Value::Null);
    let cid = conversation["id"].as_str().unwrap().to_string();
    let stored = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    assert_eq!(stored.tag_ids, vec![TAG.to_string()], "unknown tag ids are dropped (D6)");

    // First chunk: presigned POST straight to S3, then confirm.
    let upload = app.upload_url(&cid, "chunk-1760616030000.mp3", "audio/mpeg").await;
    let chunk_id = upload["chunk_id"].as_str().unwrap().to_string();
    for field in ["key", "Content-Type", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"] {
        assert!(upload["fields"].get(field).is_some(), "missing field {field}: {upload}");
    }
    assert!(upload["file_url"].as_str().unwrap().ends_with(&format!("conversation/{cid}/chunks/{chunk_id}-chunk-1760616030000.mp3")));
    let (status, text) = app.browser_upload(&upload, audio.clone(), "audio/mpeg").await;
    assert!((200..300).contains(&status), "S3 refused a valid upload: {status} {text}");
    let key = app.local.state.blob.key_from_url(upload["file_url"].as_str().unwrap()).unwrap();
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), Some(audio.len() as u64));

    let confirm =
        json!({"chunk_id": chunk_id, "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z", "source": "PORTAL_AUDIO"});
    let confirm_path = format!("/api/participant/conversations/{cid}/confirm-upload");
    let (status, chunk) = app.post(&confirm_path, confirm.clone()).await;
    assert_eq!(status, 200, "{chunk}");
    assert_eq!(chunk["id"], chunk_id.as_str());
    assert_eq!(chunk["path"], upload["file_url"]);
    assert_eq!(chunk["timestamp"], "2025-10-16T12:00:30.000Z");

    // A second, later chunk as text, so the list order can be checked.
    let (status, text_chunk) = app
        .post(
            &format!("/api/participant/conversations/{cid}/upload-text"),
            json!({"timestamp": "2025-10-16T12:01:00Z", "content": "and then I typed this"}),
        )
        .await;
    assert_eq!(status, 200, "{text_chunk}");
    assert_eq!(text_chunk["source"], "PORTAL_TEXT");

    let chunks_path = format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks");
    let (status, chunks) = app.get(&chunks_path).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = chunks.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![text_chunk["id"].as_str().unwrap(), chunk_id.as_str()], "newest first");

    // Confirming again returns the same chunk and adds no row.
    let (status, again) = app.post(&confirm_path, confirm.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], chunk_id.as_str());
    assert_eq!(app.get(&chunks_path).await.1.as_array().unwrap().len(), 2);
    let processing: Vec<Value> = app.published().into_iter().filter(|m| m["task"] == "task_process_conversation_chunk").collect();
    assert_eq!(processing.len(), 2, "an unprocessed chunk is queued again on a repeat confirm");
    assert!(processing.iter().all(|m| m["args"]["chunk_id"] == chunk_id.as_str() && m["version"] == 1));

    // Finish comes before the last chunk's upload, as the real portal sends it.
    let (status, ok) = app.post(&format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    assert_eq!((status, ok), (200, json!("OK")));
    assert!(
        app.published().iter().any(|m| m["task"] == "task_finish_conversation_hook" && m["args"]["conversation_id"] == cid.as_str()),
        "finish publishes the finish hook"
    );

    let late = app.upload_url(&cid, "chunk-1760616090000.mp3", "audio/mpeg").await;
    let (status, _) = app.browser_upload(&late, audio, "audio/mpeg").await;
    assert!((200..300).contains(&status));
    let (status, late_chunk) = app
        .post(&confirm_path, json!({"chunk_id": late["chunk_id"], "file_url": late["file_url"], "timestamp": "2025-10-16T12:01:30Z"}))
        .await;
    assert_eq!(status, 200, "a chunk confirmed after finish is accepted: {late_chunk}");
    assert_eq!(app.get(&chunks_path).await.1.as_array().unwrap().len(), 3);
    assert!(
        app.published().iter().any(|m| m["task"] == "task_process_conversation_chunk" && m["args"]["chunk_id"] == late["chunk_id"]),
        "and queued for processing"
    );
}

#[tokio::test]
async fn s3_refuses_a_wrong_content_type_and_nothing_is_written() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "chunk.webm", "audio/webm").await;
    // The signed policy pins Content-Type to audio/webm; a form declaring another type fails.
    let mut tampered = upload.clone();
    tampered["fields"]["Content-Type"] = json!("audio/ogg");
    let (status, text) = app.browser_upload(&tampered, b"OggS".to_vec(), "audio/ogg").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("InvalidPolicyDocument"), "{text}");
    let key = app.local.state.blob.key_from_url(upload["file_url"].as_str().unwrap()).unwrap();
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), None);
    let (status, body) = app
        .post(
            &format!("/api/participant/conversations/{cid}/confirm-upload"),
            json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"}),
        )
        .await;
    assert_eq!((status, body), (400, json!({"detail": "File not found in S3. Upload may have failed. Please try again."})));
    assert!(app.local.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().is_empty());
    // A tampered signature is refused too.
    let mut forged = upload.clone();
    forged["fields"]["x-amz-signature"] = json!("0".repeat(64));
    let (status, text) = app.browser_upload(&forged, b"x".to_vec(), "audio/webm").await;
    assert_eq!(status, 403, "{text}");
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn s3_refuses_a_body_over_the_policy_limit() {
    let app = TestApp::start_with(|o| o.settings.s3.upload_max_bytes = 64 * 1024).await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "chunk.webm", "audio/webm").await;
    let (status, text) = app.browser_upload(&upload, vec![7u8; 100 * 1024], "audio/webm").await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("EntityTooLarge"), "{text}");
    let key = app.local.state.blob.key_from_url(upload["file_url"].as_str().unwrap()).unwrap();
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), None);
    // Within the limit the same URL works.
    let (status, text) = app.browser_upload(&upload, vec![7u8; 1024], "audio/webm").await;
    assert!((200..300).contains(&status), "{text}");
}

#[tokio::test]
async fn confirm_refuses_foreign_urls_bad_ids_and_reuse() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let other = app.initiate().await;
    let upload = app.upload_url(&other, "chunk.webm", "audio/webm").await;
    let (status, _) = app.browser_upload(&upload, vec![1u8; 2048], "audio/webm").await;
    assert!((200..300).contains(&status));
    let path = format!("/api/participant/conversations/{cid}/confirm-upload");

    let (status, body) =
        app.post(&path, json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"})).await;
    assert_eq!((status, body), (400, json!({"detail": "file_url does not belong to this conversation"})));
    let (status, body) =
        app.post(&path, json!({"chunk_id": "not-a-uuid", "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"})).await;
    assert_eq!((status, body), (400, json!({"detail": "Invalid chunk_id"})));
    assert!(app.local.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().is_empty());

    // The same chunk id confirmed in its own conversation, then claimed for another file: 409.
    let own = format!("/api/participant/conversations/{other}/confirm-upload");
    assert_eq!(
        app.post(&own, json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"}))
            .await
            .0,
        200
    );
    let moved = upload["file_url"].as_str().unwrap().replace("chunk.webm", "other.webm");
    app.local.state.blob.put(&app.local.state.blob.key_from_url(&moved).unwrap(), vec![1u8; 10].into(), None).await.unwrap();
    let (status, body) =
        app.post(&own, json!({"chunk_id": upload["chunk_id"], "file_url": moved, "timestamp": "2025-10-16T12:00:00Z"})).await;
    assert_eq!((status, body), (409, json!({"detail": "chunk_id already used for a different upload"})));
}

#[tokio::test]
async fn unknown_and_closed_projects() {
    let app = TestApp::start().await;
    let unknown = "99999999-9999-4999-8999-999999999999";
    assert_eq!(app.get(&format!("/api/participant/projects/{unknown}")).await, (404, json!({"detail": "Project not found"})));
    assert_eq!(app.get("/api/participant/projects/not-a-uuid").await, (404, json!({"detail": "Project not found"})));
    assert_eq!(
        app.post(&format!("/api/participant/projects/{unknown}/conversations/initiate"), json!({"name": "x"})).await,
        (404, json!({"detail": "Project not found"}))
    );

    let closed = "77777777-7777-4777-8777-777777777777";
    app.local
        .store
        .create_project(common::store::NewProject { id: closed.into(), is_conversation_allowed: false, ..Default::default() })
        .await
        .unwrap();
    let forbidden = (403, json!({"detail": "Conversation not open for participation"}));
    assert_eq!(app.get(&format!("/api/participant/projects/{closed}")).await, forbidden);
    assert_eq!(app.post(&format!("/api/participant/projects/{closed}/conversations/initiate"), json!({"name": "x"})).await, forbidden);

    // A conversation whose project closes afterwards can no longer upload.
    let cid = "66666666-6666-4666-8666-666666666666";
    app.local
        .store
        .create_conversation(common::store::NewConversation { id: cid.into(), project_id: closed.into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(
        app.post(
            &format!("/api/participant/conversations/{cid}/get-upload-url"),
            json!({"filename": "a.webm", "content_type": "audio/webm"})
        )
        .await,
        forbidden
    );
    assert_eq!(
        app.post(
            &format!("/api/participant/conversations/{cid}/upload-text"),
            json!({"timestamp": "2025-10-16T12:00:00Z", "content": "hi"})
        )
        .await,
        forbidden
    );
    assert!(app.published().is_empty());
}

#[tokio::test]
async fn conversations_belong_to_their_project() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let other_project = "88888888-8888-4888-8888-888888888888";
    app.local
        .store
        .create_project(common::store::NewProject { id: other_project.into(), is_conversation_allowed: true, ..Default::default() })
        .await
        .unwrap();
    let not_found = (404, json!({"detail": "Conversation not found"}));
    assert_eq!(app.get(&format!("/api/participant/projects/{other_project}/conversations/{cid}")).await, not_found);
    assert_eq!(app.get(&format!("/api/participant/projects/{other_project}/conversations/{cid}/chunks")).await, not_found);
    assert_eq!(app.get(&format!("/api/participant/projects/{PROJECT}/conversations/{cid}")).await.0, 200);
    let unknown = "99999999-9999-4999-8999-999999999999";
    assert_eq!(app.get(&format!("/api/participant/projects/{PROJECT}/conversations/{unknown}")).await, not_found);
    assert_eq!(app.post(&format!("/api/participant/conversations/{unknown}/finish"), json!(null)).await, not_found);
    assert!(task_names(&app).is_empty(), "nothing queued for an unknown conversation");
}

#[tokio::test]
async fn upload_urls_are_rate_limited_per_conversation() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    for _ in 0..10 {
        app.upload_url(&cid, "a.webm", "audio/webm").await;
    }
    let (status, body) = app
        .post(&format!("/api/participant/conversations/{cid}/get-upload-url"), json!({"filename": "a.webm", "content_type": "audio/webm"}))
        .await;
    assert_eq!((status, body), (429, json!({"detail": "Too many upload requests. Please wait before uploading more files."})));
    // Another conversation has its own budget.
    let other = app.initiate().await;
    app.upload_url(&other, "a.webm", "audio/webm").await;
}

#[tokio::test]
async fn malformed_bodies_are_422_and_write_nothing() {
    let app = TestApp::start().await;
    let initiate = format!("/api/participant/projects/{PROJECT}/conversations/initiate");
    let (status, body) = app.post_raw(&initiate, "{not json").await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["type"], "json_invalid");
    let (status, body) = app.post(&initiate, json!({"email": "a@b.c"})).await;
    assert_eq!((status, body), (422, json!({"detail": [{"type": "missing", "loc": ["body", "name"], "msg": "Field required"}]})));
    let (status, body) = app.post(&initiate, json!({"name": 42})).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));

    let cid = app.initiate().await;
    let (status, body) =
        app.post(&format!("/api/participant/conversations/{cid}/upload-text"), json!({"content": "x", "timestamp": "yesterday"})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "timestamp"]));
    let (status, _) = app.post(&format!("/api/participant/conversations/{cid}/confirm-upload"), json!({"chunk_id": "x"})).await;
    assert_eq!(status, 422);
    let (status, body) = app
        .post(&format!("/api/participant/conversations/{cid}/upload-text"), json!({"timestamp": "2025-10-16T12:00:00Z", "content": "  "}))
        .await;
    assert_eq!((status, body), (400, json!({"detail": "Chunk must have either an audio file (file_obj or file_url) or a transcript."})));
    assert!(app.local.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().is_empty());
    assert!(task_names(&app).is_empty());
}

#[tokio::test]
async fn cors_echoes_allowed_origins_only() {
    let app = TestApp::start().await;
    let preflight = |url: String, origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let api = app.url("/api/participant/conversations/x/get-upload-url");
    let s3 = format!("{}/echo", app.local.s3_url.as_deref().unwrap());
    for url in [api.clone(), s3.clone()] {
        let ok = preflight(url.clone(), PORTAL_ORIGIN).await.unwrap();
        assert_eq!(ok.status(), 200, "{url}");
        assert_eq!(ok.headers()["access-control-allow-origin"], PORTAL_ORIGIN);
        assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
        assert_eq!(ok.headers()["access-control-allow-headers"], "content-type");
        let bad = preflight(url.clone(), "http://evil.example").await.unwrap();
        assert!(bad.headers().get("access-control-allow-origin").is_none(), "{url}");
    }
    let res = app.client.get(app.url("/api/health")).header("origin", "http://localhost:3000").send().await.unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "http://localhost:3000");
    assert!(res.headers()["access-control-expose-headers"].to_str().unwrap().contains("x-process-time"));
    let res = app.client.get(app.url("/api/health")).header("origin", "http://evil.example").send().await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn every_answer_is_json_with_a_process_time() {
    let app = TestApp::start().await;
    let res = app.client.get(app.url("/api/health")).send().await.unwrap();
    assert!(res.headers()["x-process-time"].to_str().unwrap().parse::<f64>().is_ok());
    assert_eq!(read(res).await, (200, json!({"status": "ok"})));
    assert_eq!(app.get("/api/nowhere").await, (404, json!({"detail": "Not Found"})));
    assert_eq!(app.get(&format!("/api/participant/conversations/{PROJECT}/finish")).await, (405, json!({"detail": "Method Not Allowed"})));
}

#[tokio::test]
async fn deleting_a_chunk_schedules_its_objects_then_removes_the_row() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "chunk.webm", "audio/webm").await;
    app.browser_upload(&upload, vec![3u8; 4096], "audio/webm").await;
    let chunk_id = upload["chunk_id"].as_str().unwrap();
    app.post(
        &format!("/api/participant/conversations/{cid}/confirm-upload"),
        json!({"chunk_id": chunk_id, "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"}),
    )
    .await;
    let path = format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks/{chunk_id}");
    let other = "88888888-8888-4888-8888-888888888888";
    assert_eq!(
        app.delete(&format!("/api/participant/projects/{other}/conversations/{cid}/chunks/{chunk_id}")).await,
        (404, json!({"detail": "Conversation not found"}))
    );
    assert_eq!(app.delete(&path).await, (200, Value::Null));
    assert_eq!(app.local.store.get_chunk(chunk_id).await.unwrap(), None);
    let queued = app.local.queue.snapshot();
    let delete = queued.iter().find(|m| m.body.contains("task_delete_storage_objects")).expect("deletion queued");
    assert!(delete.not_before > chrono::Utc::now() + chrono::Duration::seconds(50), "delayed about 60 s");
    let msg: Value = serde_json::from_str(&delete.body).unwrap();
    let key = app.local.state.blob.key_from_url(upload["file_url"].as_str().unwrap()).unwrap();
    assert_eq!(msg["args"]["keys"], json!([key]));
    assert_eq!(msg["args"]["prefixes"], json!([format!("conversation/{cid}/chunks/{chunk_id}-")]));
    assert_eq!(msg["args"]["chunk_id"], chunk_id);
    assert_eq!(app.delete(&path).await, (404, json!({"detail": "Chunk not found"})));

    // What the deletion task then does with those arguments.
    let keys: Vec<String> = serde_json::from_value(msg["args"]["keys"].clone()).unwrap();
    let prefixes: Vec<String> = serde_json::from_value(msg["args"]["prefixes"].clone()).unwrap();
    let services = app.local.state.services.clone();
    let done = common::flows::cleanup::delete_storage_objects(&services, &keys, &prefixes, Some(chunk_id)).await.unwrap();
    assert_eq!(done, common::flows::cleanup::Cleanup::Done { objects: 1 });
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), None);
}

#[tokio::test]
async fn legacy_upload_chunk_stores_small_files_and_refuses_large_ones() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let url = app.url(&format!("/api/participant/conversations/{cid}/upload-chunk"));
    let form = |size: usize| {
        reqwest::multipart::Form::new()
            .text("timestamp", "2025-10-16T12:00:00Z")
            .part("chunk", reqwest::multipart::Part::bytes(vec![5u8; size]).file_name("my rec?.wav").mime_str("audio/wav").unwrap())
    };
    let (status, chunk) = read(app.client.post(&url).multipart(form(10_000)).send().await.unwrap()).await;
    assert_eq!(status, 200, "{chunk}");
    assert_eq!(chunk["source"], "PORTAL_AUDIO");
    let path = chunk["path"].as_str().unwrap();
    assert!(path.ends_with(&format!("conversation/{cid}/chunks/{}-my_rec_.wav", chunk["id"].as_str().unwrap())), "{path}");
    let key = app.local.state.blob.key_from_url(path).unwrap();
    assert_eq!(app.local.state.blob.head(&key).await.unwrap(), Some(10_000));

    let (status, body) = read(app.client.post(&url).multipart(form(4 * 1024 * 1024 + 1)).send().await.unwrap()).await;
    assert_eq!((status, body), (413, json!({"detail": "File too large for direct upload. Use get-upload-url instead."})));
    assert_eq!(app.local.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().len(), 1);
}

#[tokio::test]
async fn report_subscription_round_trip() {
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let (status, body) = app
        .post(
            "/api/participant/report/subscribe",
            json!({"emails": ["Ada@Example.org", "bob@example.org"], "project_id": PROJECT, "conversation_id": cid}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"status": "success"})));
    let row = app.local.store.find_notification_participant("ada@example.org", PROJECT).await.unwrap().expect("lower-cased row");
    assert_eq!(row.email_opt_in, Some(true));
    let token = row.email_opt_out_token.clone().unwrap();

    // Subscribing again while opted in changes nothing.
    app.post("/api/participant/report/subscribe", json!({"emails": ["ada@example.org"], "project_id": PROJECT, "conversation_id": cid}))
        .await;
    assert_eq!(app.local.store.find_notification_participant("ada@example.org", PROJECT).await.unwrap().unwrap().id, row.id);

    let eligibility = format!("/api/participant/report/unsubscribe/eligibility?token={token}&project_id={PROJECT}");
    assert_eq!(app.get(&eligibility).await, (200, json!({"data": {"eligible": true}})));
    assert_eq!(
        app.post(&format!("/api/participant/{PROJECT}/report/unsubscribe"), json!({"token": token, "email_opt_in": false})).await,
        (200, json!({"success": true}))
    );
    assert_eq!(app.get(&eligibility).await, (200, json!({"data": {"eligible": false}})));
    assert_eq!(
        app.post(
            &format!("/api/participant/{PROJECT}/report/unsubscribe"),
            json!({"token": "99999999-9999-4999-8999-999999999999", "email_opt_in": false})
        )
        .await,
        (404, json!({"detail": "No data found"}))
    );
    assert_eq!(
        app.get(&format!("/api/participant/report/unsubscribe/eligibility?token=&project_id={PROJECT}")).await,
        (400, json!({"detail": "Invalid or missing unsubscribe link."}))
    );
    let (status, body) = app.get(&format!("/api/participant/report/unsubscribe/eligibility?project_id={PROJECT}")).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "token"]));

    // Opting in again after an opt-out replaces the row.
    app.post("/api/participant/report/subscribe", json!({"emails": ["ada@example.org"], "project_id": PROJECT, "conversation_id": cid}))
        .await;
    let renewed = app.local.store.find_notification_participant("ada@example.org", PROJECT).await.unwrap().unwrap();
    assert_ne!(renewed.id, row.id);
    assert_eq!(renewed.email_opt_in, Some(true));

    // A conversation that does not exist fails that email, with ECHO's object detail.
    let (status, body) = app
        .post(
            "/api/participant/report/subscribe",
            json!({"emails": ["carol@example.org"], "project_id": PROJECT, "conversation_id": "99999999-9999-4999-8999-999999999999"}),
        )
        .await;
    assert_eq!((status, body), (400, json!({"detail": {"message": "Some emails failed to process", "failed": ["carol@example.org"]}})));
}

#[tokio::test]
async fn a_storage_outage_is_503_naming_storage() {
    // Point echo-local at an S3 endpoint where nothing listens.
    let app = TestApp::start_with(|o| {
        o.settings.s3.endpoint = Some("http://127.0.0.1:9".into());
        o.settings.s3.bucket = Some("echo".into());
        o.settings.s3.access_key = Some("k".into());
        o.settings.s3.secret_key = Some("s".into());
    })
    .await;
    let cid = app.initiate().await;
    let upload = app.upload_url(&cid, "a.webm", "audio/webm").await;
    let res = app
        .client
        .post(app.url(&format!("/api/participant/conversations/{cid}/confirm-upload")))
        .json(&json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!(read(res).await, (503, json!({"detail": "Storage is unavailable, please try again later"})));
    assert!(app.local.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_queue_outage_is_503_and_deletes_nothing() {
    use tower::ServiceExt;
    let app = TestApp::start().await;
    let cid = app.initiate().await;
    let (status, chunk) = app
        .post(
            &format!("/api/participant/conversations/{cid}/upload-text"),
            json!({"timestamp": "2025-10-16T12:00:00Z", "content": "hello"}),
        )
        .await;
    assert_eq!(status, 200);
    // The same store and storage, but tasks go to an SQS endpoint where nothing listens.
    let creds = aws_credential_types::Credentials::new("k", "s", None, None, "test");
    let client = common::queue::sqs::SqsPublisher::client("us-east-1", Some("http://127.0.0.1:9"), Some(creds)).await;
    let queue = "http://127.0.0.1:9/000000000000/q".to_string();
    let mut state = app.local.state.clone();
    state.services.tasks = std::sync::Arc::new(common::queue::sqs::SqsPublisher::new(client, queue.clone(), queue));
    let router = participant::router(state);
    let call =
        |method: &str, path: String| axum::http::Request::builder().method(method).uri(path).body(axum::body::Body::empty()).unwrap();
    let res = router.clone().oneshot(call("POST", format!("/api/participant/conversations/{cid}/finish"))).await.unwrap();
    assert_eq!(res.status(), 503);
    let chunk_id = chunk["id"].as_str().unwrap();
    let res =
        router.oneshot(call("DELETE", format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks/{chunk_id}"))).await.unwrap();
    assert_eq!(res.status(), 503);
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"detail": "Task queue is unavailable, please try again later"}));
    assert!(app.local.store.get_chunk(chunk_id).await.unwrap().is_some(), "the chunk stays when its deletion cannot be queued");
}

#[tokio::test]
async fn echo_local_serves_the_metrics_in_prometheus_text() {
    let app = TestApp::start().await;
    let (status, _) = app.get(&format!("/api/participant/projects/{PROJECT}")).await;
    assert_eq!(status, 200);
    let text = app.client.get(app.url("/_local/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("echo_api_requests_total{group=\"participant\",class=\"2xx\"}"), "{text}");
    assert!(text.contains("# TYPE echo_api_latency_seconds summary"), "{text}");
    assert!(text.contains("echo_offload_waiting "), "{text}");
}
