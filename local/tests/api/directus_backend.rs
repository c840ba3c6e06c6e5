//! echo-local with the Directus store: an outage answers 503 naming Directus, and the
//! recording flow works against a real Directus with ECHO's schema (`scripts/test.sh` starts
//! one with `scripts/directus.sh` and exports `DIRECTUS_TEST_URL` / `DIRECTUS_TEST_TOKEN`).

use crate::support::*;
use common::config::StoreSettings;
use common::store::ChunkOrder;
use serde_json::json;

/// echo-local whose Directus is a loopback port nothing listens on.
async fn app_on_unreachable_directus() -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    TestApp::start_with(|o| {
        o.settings.store = StoreSettings::Directus {
            base_url: format!("http://127.0.0.1:{port}"),
            token: Some("static-admin-token".into()),
            timeout_seconds: 2,
            page_size: 500,
        };
        o.seed_demo = false;
    })
    .await
}

#[tokio::test]
async fn the_participant_api_answers_503_when_directus_is_down() {
    let app = app_on_unreachable_directus().await;
    assert_eq!(app.local.store.backend(), common::Dependency::Directus);
    let res = app.client.get(app.url(&format!("/api/participant/projects/{PROJECT}"))).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("5"));
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({"detail": "Directus is unavailable, please try again later"}));

    let (status, body) = app.post(&format!("/api/participant/projects/{PROJECT}/conversations/initiate"), json!({"name": "Ada"})).await;
    assert_eq!((status, body), (503, json!({"detail": "Directus is unavailable, please try again later"})));
    // Health needs no store.
    assert_eq!(app.get("/api/health").await.0, 200);
}

#[tokio::test]
async fn a_worker_reports_a_directus_outage_as_a_transient_batch_failure() {
    use common::queue::worker::TaskRunner;
    let app = app_on_unreachable_directus().await;
    let worker = app.local.network_worker.clone();
    assert_eq!(worker.queue(), common::queue::Queue::Network);
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    let task = common::queue::Task::FinishConversationHook { conversation_id: uuid::Uuid::new_v4().to_string() };
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = Some("finish-1".into());
    record.body = Some(common::queue::TaskMessage::new(task).to_json());
    record.attributes.insert("ApproximateReceiveCount".into(), "1".into());
    event.records.push(record);
    let response = common::queue::worker::handle_batch(worker.as_ref(), &NoDeadLetters, event, 5, None).await;
    let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(failed, vec!["finish-1".to_string()], "retried later, not dropped");
    assert!(app.published().is_empty(), "no follow-up was queued: nothing half-done");
}

struct NoDeadLetters;

#[async_trait::async_trait]
impl common::queue::worker::QueueOps for NoDeadLetters {
    async fn dead_letter(&self, _body: &str, task: &str, error: &str) -> Result<(), String> {
        panic!("{task} was dead-lettered: {error}");
    }
    async fn retry_after(&self, _receipt_handle: &str, _delay: std::time::Duration) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn echo_local_refuses_a_directus_store_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = local::LocalOptions::for_tests(dir.path());
    options.settings.store =
        StoreSettings::Directus { base_url: "http://127.0.0.1:9".into(), token: None, timeout_seconds: 10, page_size: 500 };
    let err = local::start(options).await.err().expect("no token, no start");
    assert!(err.to_string().contains("DIRECTUS_TOKEN"), "{err:#}");
}

fn directus_env() -> (String, String) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("DIRECTUS_TEST_URL"), var("DIRECTUS_TEST_TOKEN")) {
        (Some(url), Some(token)) => (url, token),
        _ => panic!(
            "this test needs a running Directus with ECHO's schema: run `bash scripts/test.sh` (it starts one), or start one with \
             `scripts/directus.sh start ../shared/data/directus-snapshot` and export DIRECTUS_TEST_URL (its DIRECTUS_BASE_URL) and \
             DIRECTUS_TEST_TOKEN (its DIRECTUS_TOKEN)"
        ),
    }
}

#[tokio::test]
async fn a_participant_records_a_conversation_on_directus() {
    let (url, token) = directus_env();
    let app = TestApp::start_with(|o| {
        o.settings.store = StoreSettings::Directus { base_url: url, token: Some(token), timeout_seconds: 10, page_size: 500 };
        o.seed_demo = true;
    })
    .await;
    assert_eq!(app.local.store.backend(), common::Dependency::Directus);
    // Seeding is idempotent: a second call finds the project.
    local::seed_demo_project(app.local.store.as_ref()).await.unwrap();

    let (status, project) = app.get(&format!("/api/participant/projects/{PROJECT}")).await;
    assert_eq!(status, 200, "{project}");
    assert_eq!(project["tags"], json!([{"id": TAG, "text": "Demo tag"}]));
    assert_eq!(project["language"], "en");
    assert_eq!(project["default_conversation_tutorial_slug"], "none", "Directus's default");

    let (status, conversation) = app
        .post(
            &format!("/api/participant/projects/{PROJECT}/conversations/initiate"),
            json!({
                "name": "Ada", "email": "ada@example.org", "user_agent": "test",
                "tag_id_list": [TAG, "deleted-tag"], "source": "PORTAL_AUDIO"
            }),
        )
        .await;
    assert_eq!(status, 200, "{conversation}");
    let cid = conversation["id"].as_str().unwrap().to_string();
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().tag_ids, vec![TAG.to_string()]);

    let upload = app.upload_url(&cid, "chunk-1760616030000.mp3", "audio/mpeg").await;
    let chunk_id = upload["chunk_id"].as_str().unwrap().to_string();
    let (status, text) = app.browser_upload(&upload, fixture_audio("mp3.mp3"), "audio/mpeg").await;
    assert!((200..300).contains(&status), "S3 refused a valid upload: {status} {text}");
    let confirm =
        json!({"chunk_id": chunk_id, "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z", "source": "PORTAL_AUDIO"});
    let confirm_path = format!("/api/participant/conversations/{cid}/confirm-upload");
    let (status, chunk) = app.post(&confirm_path, confirm.clone()).await;
    assert_eq!(status, 200, "{chunk}");
    assert_eq!(chunk["id"], chunk_id.as_str());
    assert_eq!(chunk["timestamp"], "2025-10-16T12:00:30.000Z");
    let (status, again) = app.post(&confirm_path, confirm).await;
    assert_eq!((status, &again["id"]), (200, &json!(chunk_id)), "a repeat confirm answers the same chunk");

    let (status, text_chunk) = app
        .post(
            &format!("/api/participant/conversations/{cid}/upload-text"),
            json!({"timestamp": "2025-10-16T12:01:00Z", "content": "typed"}),
        )
        .await;
    assert_eq!(status, 200, "{text_chunk}");

    let chunks_path = format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks");
    let (status, chunks) = app.get(&chunks_path).await;
    assert_eq!(status, 200, "{chunks}");
    let ids: Vec<&str> = chunks.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![text_chunk["id"].as_str().unwrap(), chunk_id.as_str()], "newest first");
    assert_eq!(app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap().len(), 2);
    assert!(
        app.published().iter().any(|m| m["task"] == "task_process_conversation_chunk" && m["args"]["chunk_id"] == chunk_id.as_str()),
        "the audio chunk is queued for processing"
    );

    // Deleting a chunk goes through the store too.
    let (status, _) = app.delete(&format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks/{chunk_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(app.get(&chunks_path).await.1.as_array().unwrap().len(), 1);
    let (status, body) = app.delete(&format!("/api/participant/projects/{PROJECT}/conversations/{cid}/chunks/{chunk_id}")).await;
    assert_eq!((status, body), (404, json!({"detail": "Chunk not found"})));

    // Report subscription round trip.
    let (status, _) = app
        .post("/api/participant/report/subscribe", json!({"emails": ["Ada@Example.org"], "project_id": PROJECT, "conversation_id": cid}))
        .await;
    assert_eq!(status, 200);
    let row = app.local.store.find_notification_participant("ada@example.org", PROJECT).await.unwrap().expect("a lower-cased row");
    let token = row.email_opt_out_token.unwrap();
    let eligibility = format!("/api/participant/report/unsubscribe/eligibility?token={token}&project_id={PROJECT}");
    assert_eq!(app.get(&eligibility).await, (200, json!({"data": {"eligible": true}})));
    let (status, _) =
        app.post(&format!("/api/participant/{PROJECT}/report/unsubscribe"), json!({"token": token, "email_opt_in": false})).await;
    assert_eq!(status, 200);
    assert_eq!(app.get(&eligibility).await, (200, json!({"data": {"eligible": false}})));
}

/// A request of the portal, repeated while echo-local answers 503 (as the portal's retry does).
async fn until_served(app: &TestApp, path: &str, body: serde_json::Value) -> serde_json::Value {
    for _ in 0..20 {
        let (status, answer) = app.post(path, body.clone()).await;
        if status != 503 {
            assert_eq!(status, 200, "{path}: {answer}");
            return answer;
        }
        assert_eq!(answer, json!({"detail": "Directus is unavailable, please try again later"}));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{path} never got through");
}

/// What a conversation ends as: chunk count, transcripts, every chunk converted, finished,
/// finalised, summary, merged.
type Ended = (usize, Vec<Option<String>>, bool, Option<bool>, Option<bool>, Option<String>, bool);

/// One recording through the portal and the whole pipeline.
async fn record_and_process(app: &TestApp) -> Ended {
    let body = json!({"name": "Ada", "tag_id_list": [TAG]});
    let cid = until_served(app, &format!("/api/participant/projects/{PROJECT}/conversations/initiate"), body).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/participant/conversations/{cid}/get-upload-url");
    let upload = until_served(app, &path, json!({"filename": "chunk.webm", "content_type": "audio/webm"})).await;
    let (status, text) = app.browser_upload(&upload, fixture_audio("webm.webm"), "audio/webm").await;
    assert!((200..300).contains(&status), "{status} {text}");
    let confirm = json!({"chunk_id": upload["chunk_id"], "file_url": upload["file_url"], "timestamp": "2025-10-16T12:00:30Z"});
    until_served(app, &format!("/api/participant/conversations/{cid}/confirm-upload"), confirm).await;
    until_served(app, &format!("/api/participant/conversations/{cid}/finish"), json!(null)).await;
    app.local.run_tasks().await;
    let chunks = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap();
    let c = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    (
        chunks.len(),
        chunks.iter().map(|k| k.transcript.clone()).collect(),
        chunks.iter().all(|k| k.path.as_deref().is_some_and(|p| p.ends_with("-chunk.mp3"))),
        c.is_finished,
        c.is_all_chunks_transcribed,
        c.summary,
        c.merged_audio_path.is_some_and(|p| p.contains(&format!("merged-{cid}-"))),
    )
}

#[tokio::test]
async fn directus_failing_in_the_middle_of_the_pipeline_converges_on_retry() {
    let (url, token) = directus_env();
    let proxy = crate::support::directus::FlakyProxy::start(&url).await;
    let whisper = FakeWhisper::start("We would like a bench in the park.").await;
    let llm = FakeLlm::start(LlmBehaviour::Reply("A bench.".into())).await;
    let slot = llm.slot();
    let app = TestApp::start_with(|o| {
        o.settings.store = StoreSettings::Directus { base_url: proxy.url.clone(), token: Some(token), timeout_seconds: 10, page_size: 500 };
        o.seed_demo = true;
        whisper.configure(&mut o.settings);
        o.settings.llm.summary = slot;
    })
    .await;

    // A clean run: what the pipeline ends as, and how many Directus requests it takes.
    let start = proxy.count();
    let clean = record_and_process(&app).await;
    let requests = proxy.count() - start;
    assert_eq!(
        clean,
        (1, vec![Some("We would like a bench in the park.".into())], true, Some(true), Some(true), Some("A bench.".into()), true)
    );
    assert!(app.local.queue.dead_letters().is_empty(), "{:?}", app.local.queue.dead_letters());

    // Then Directus fails for four requests at points spread over the whole operation: API
    // calls, conversion, transcription, the finish hook, merge, summary. Every run ends as the
    // clean one: no chunk twice, none lost, nothing left unfinished.
    for eighth in 1..8 {
        let before = proxy.failures();
        proxy.fail_after(requests * eighth / 8, 4);
        let outcome = record_and_process(&app).await;
        let after = proxy.failures();
        assert!(after.0 > before.0 && after.1 > before.1, "the window was hit both ways at {eighth}/8: {before:?} -> {after:?}");
        assert_eq!(outcome, clean, "Directus failing {eighth}/8 into the operation");
        assert!(app.local.queue.dead_letters().is_empty(), "{eighth}/8: {:?}", app.local.queue.dead_letters());
    }
}
