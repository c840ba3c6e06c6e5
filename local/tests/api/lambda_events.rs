//! Every file in events/ goes through lambda_http's event parsing into its function's
//! router, as the Lambda runtime hands it over: an event that no longer parses, or a
//! route that no longer answers it, fails here.

use std::path::PathBuf;

use crate::support::*;
use common::store::NewConversation;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const CONVERSATION: &str = "33333333-3333-4333-8333-333333333333";
const CHUNK: &str = "44444444-4444-4444-8444-444444444444";
const UNSUBSCRIBE_TOKEN: &str = "55555555-5555-4555-8555-555555555555";

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn event_request(file: &str) -> lambda_http::Request {
    let path = events_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{file} does not parse as an API Gateway event: {e}"))
}

/// Feeds an event to a function's router; the status and the JSON body (None when not JSON).
async fn invoke_on(router: axum::Router, file: &str) -> (u16, Option<Value>) {
    let response = router.oneshot(event_request(file)).await.unwrap();
    let status = response.status().as_u16();
    assert!(response.headers().contains_key("x-process-time"), "{file}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).ok())
}

async fn invoke(app: &TestApp, file: &str) -> (u16, Value) {
    let (status, body) = invoke_on(participant::router(app.local.state.clone()), file).await;
    (status, body.unwrap_or_else(|| panic!("{file}: not JSON")))
}

/// The conversation the events name, in the demo project.
async fn create_event_conversation(app: &TestApp) {
    let conversation =
        NewConversation { id: CONVERSATION.into(), project_id: PROJECT.into(), participant_name: Some("Ada".into()), ..Default::default() };
    app.local.store.create_conversation(conversation).await.unwrap();
}

#[tokio::test]
async fn every_participant_event_reaches_its_route() {
    let app = TestApp::start().await;
    // The ids the events carry: the demo project and tag, plus a conversation and a chunk.
    create_event_conversation(&app).await;
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(events_dir().join("participant/confirm-upload.json")).unwrap()).unwrap();
    let confirm: Value = serde_json::from_str(event["body"].as_str().unwrap()).unwrap();
    let key = app.local.state.blob.key_from_url(confirm["file_url"].as_str().unwrap()).unwrap();
    app.local.state.blob.put(&key, vec![0u8; 2048].into(), Some("audio/webm")).await.unwrap();

    let expectations: &[(&str, u16)] = &[
        ("health.json", 200),
        ("participant/get-project.json", 200),
        ("participant/initiate-conversation.json", 200),
        ("participant/get-conversation.json", 200),
        ("participant/upload-text.json", 200),
        ("participant/upload-chunk.json", 200),
        ("participant/get-upload-url.json", 200),
        ("participant/confirm-upload.json", 200),
        ("participant/list-chunks.json", 200),
        ("participant/delete-chunk.json", 200),
        ("participant/finish.json", 200),
        ("participant/report-subscribe.json", 200),
    ];
    for (file, expected) in expectations {
        let (status, body) = invoke(&app, file).await;
        assert_eq!(status, *expected, "{file}: {body}");
    }
    assert_eq!(app.local.store.get_chunk(CHUNK).await.unwrap(), None, "delete-chunk removed the confirmed chunk");
    let chunks = app.local.store.list_chunks(CONVERSATION, common::store::ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.len(), 2, "upload-text and upload-chunk left one chunk each");

    // The unsubscribe events name a fixed token; give the subscribed row that token.
    let db = app.db();
    let changed = db
        .execute(
            "UPDATE project_report_notification_participants SET email_opt_out_token = ?1 WHERE email = 'ada@example.org'",
            [UNSUBSCRIBE_TOKEN],
        )
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(invoke(&app, "participant/report-unsubscribe.json").await, (200, json!({"success": true})));
    assert_eq!(invoke(&app, "participant/unsubscribe-eligibility.json").await, (200, json!({"data": {"eligible": false}})));
}

#[tokio::test]
async fn every_event_file_is_covered() {
    let mut files = Vec::new();
    for dir in ["", "participant", "conversations", "projects", "chats", "stateless", "resources", "tasks", "scheduler"]
        .map(|d| events_dir().join(d))
    {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path.strip_prefix(events_dir()).unwrap().to_string_lossy().to_string());
            }
        }
    }
    files.sort();
    let source = include_str!("lambda_events.rs");
    for file in files {
        assert!(source.contains(&format!("\"{file}\"")), "events/{file} is not exercised by this test");
    }
}

#[tokio::test]
async fn the_runpod_webhook_event_completes_its_chunk() {
    // The event's ?token= and the job its payload names (events/gen_stateless_events.py).
    let app = TestApp::start_with(|o| o.settings.api.runpod_webhook_secret = Some("events-webhook-secret".into())).await;
    create_event_conversation(&app).await;
    let chunk = common::store::NewChunk {
        created_at: None,
        id: CHUNK.into(),
        conversation_id: CONVERSATION.into(),
        timestamp: chrono::Utc::now(),
        path: None,
        source: Some("PORTAL_AUDIO".into()),
        transcript: None,
    };
    app.local.store.create_chunk(chunk).await.unwrap();
    let link = common::store::ChunkPatch {
        runpod_job_status_link: Some(Some("https://api.runpod.ai/v2/whisper-priority/status/job-1".into())),
        ..Default::default()
    };
    app.local.store.update_chunk(CHUNK, link).await.unwrap();
    let router = || stateless::router(stateless::AppState::new(app.local.state.services.clone()));
    assert_eq!(invoke_on(router(), "stateless/webhook_transcribe.json").await, (200, Some(Value::Null)));
    let chunk = app.local.store.get_chunk(CHUNK).await.unwrap().unwrap();
    assert_eq!((chunk.transcript.as_deref(), chunk.runpod_job_status_link), (Some("We talked about the park."), None));
    // RunPod retries a webhook: the second delivery is ignored, still 200.
    assert_eq!(invoke_on(router(), "stateless/webhook_transcribe.json").await, (200, Some(Value::Null)));
}

/// The RAG events (events/gen_stateless_events.py) pass auth and reach their routes: the owner's
/// conversation and its segment (id 1, the first of a fresh store), no LightRAG server, so each
/// answers its documented 503.
#[tokio::test]
async fn every_stateless_rag_event_reaches_its_route() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("unused".into())).await;
    let app = dashboard_app(&llm).await;
    let segment = common::store::NewSegment { conversation_id: CONVERSATION.into(), ..Default::default() };
    assert_eq!(app.local.store.create_segment(segment).await.unwrap().id, 1, "the id the events name");
    let router = || stateless::router(stateless::AppState::new(app.local.state.services.clone()));
    let rag_down = json!({"detail": "RAG service is unavailable, please try again later"});
    let prompt_down = json!({"detail": "RAG query temporarily unavailable. Please try manual conversation selection or contact support."});
    for (file, expected) in [
        ("stateless/rag_insert.json", &rag_down),
        ("stateless/rag_simple_query.json", &rag_down),
        ("stateless/rag_get_lightrag_prompt.json", &prompt_down),
        ("stateless/rag_delete_conversation.json", &rag_down),
    ] {
        assert_eq!(invoke_on(router(), file).await, (503, Some(expected.clone())), "{file}");
    }
}

/// The dashboard events carry a token signed with this secret for this user (events/README.md).
const EVENTS_SECRET: &str = "events-directus-secret";
const EVENTS_OWNER: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";

async fn dashboard_app(llm: &FakeLlm) -> TestApp {
    let slot = llm.slot();
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(EVENTS_SECRET.into());
        o.settings.llm.medium = slot.clone();
        o.settings.llm.summary = slot;
    })
    .await;
    let db = app.db();
    db.execute("UPDATE project SET directus_user_id = ?1 WHERE id = ?2", [EVENTS_OWNER, PROJECT]).unwrap();
    create_event_conversation(&app).await;
    // The chunk the events name: real audio, made with ffmpeg.
    let dir = tempfile::tempdir().unwrap();
    let tone = dir.path().join("tone.mp3");
    common::audio::generate_tone(&tone, 2.0, 440, &["-c:a", "libmp3lame"]).await.expect("ffmpeg is needed: apt-get install ffmpeg");
    let key = format!("conversation/{CONVERSATION}/chunks/{CHUNK}-tone.mp3");
    app.local.state.blob.put(&key, std::fs::read(&tone).unwrap().into(), Some("audio/mpeg")).await.unwrap();
    app.local
        .store
        .create_chunk(common::store::NewChunk {
            created_at: None,
            id: CHUNK.into(),
            conversation_id: CONVERSATION.into(),
            timestamp: chrono::Utc::now(),
            path: Some(app.local.state.blob.url_for_key(&key)),
            source: Some("PORTAL_AUDIO".into()),
            transcript: Some("We talked about the park.".into()),
        })
        .await
        .unwrap();
    app
}

#[tokio::test]
async fn every_projects_event_reaches_its_route() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("<article># Report</article>".into())).await;
    let app = dashboard_app(&llm).await;
    let router = || projects::router(projects::AppState::new(app.local.state.services.clone()));
    let db = app.db();
    db.execute("INSERT INTO project_analysis_run (id, project_id, created_at) VALUES ('run-1', ?1, '2025-10-16T12:00:00.000Z')", [PROJECT])
        .unwrap();
    for (file, expected) in [
        ("projects/create-project.json", 200),
        ("projects/create-project-trailing-slash.json", 307),
        ("projects/transcripts.json", 200),
        ("projects/create-library.json", 202),
        ("projects/create-view.json", 202),
        ("projects/create-report.json", 200),
        ("projects/clone.json", 200),
    ] {
        let (status, body) = invoke_on(router(), file).await;
        assert_eq!(status, expected, "{file}: {body:?}");
    }
    let (_, report) = invoke_on(router(), "projects/create-report.json").await;
    assert_eq!(report.unwrap()["content"], "# Report");
}

#[tokio::test]
async fn every_conversations_event_reaches_its_route() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("<response>Nice park.</response>".into())).await;
    let app = dashboard_app(&llm).await;
    let router = || conversations::router(conversations::AppState::new(app.local.state.services.clone()));
    for (file, expected) in [
        ("conversations/counts.json", 200),
        ("conversations/content.json", 200),
        ("conversations/chunk-content.json", 200),
        ("conversations/transcript.json", 200),
        ("conversations/token-count.json", 200),
        ("conversations/get-reply.json", 200),
        ("conversations/summarize.json", 200),
        ("conversations/retranscribe.json", 200),
    ] {
        let (status, body) = invoke_on(router(), file).await;
        assert_eq!(status, expected, "{file}: {body:?}");
    }
    assert_eq!(app.local.store.list_replies(CONVERSATION, 10).await.unwrap()[0].content_text.as_deref(), Some("Nice park."));
    // The health stream never ends by itself: read its first event only.
    let response = router().oneshot(event_request("conversations/health-stream.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "event: ping\ndata: 0\n\n");
    let (status, _) = invoke_on(router(), "conversations/delete-conversation.json").await;
    assert_eq!(status, 200);
    assert_eq!(app.local.store.get_conversation(CONVERSATION).await.unwrap(), None);
}

/// The document the resources events name (events/gen_resources_events.py).
const RESOURCE: &str = "66666666-6666-4666-8666-666666666666";

#[tokio::test]
async fn every_resources_event_reaches_its_route() {
    let pg = crate::support::postgres::Pg::fresh(true).await;
    let url = pg.url.clone();
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(EVENTS_SECRET.into());
        o.settings.database.url = Some(url);
    })
    .await;
    app.db().execute("UPDATE project SET directus_user_id = ?1 WHERE id = ?2", [EVENTS_OWNER, PROJECT]).unwrap();
    let key = "resources/budget-2025.pdf";
    app.local.state.blob.put(key, b"%PDF-1.4\n%%EOF\n".to_vec().into(), Some("application/pdf")).await.unwrap();
    let path = Some(app.local.state.blob.url_for_key(key));
    let row = crate::support::postgres::Row { id: RESOURCE, project: PROJECT, path, title: Some("Budget 2025"), ..Default::default() };
    pg.insert(row).await;
    let router = || resources::router(resources::AppState::new(app.local.state.services.clone()));
    for (file, expected) in [
        ("resources/get-resource.json", 200),
        ("resources/resource-content.json", 307),
        ("resources/update-resource.json", 200),
        ("resources/delete-resource.json", 200),
    ] {
        let (status, body) = invoke_on(router(), file).await;
        assert_eq!(status, expected, "{file}: {body:?}");
        if file.ends_with("update-resource.json") {
            assert_eq!(body.unwrap()["title"], "Budget 2025 (annotated)");
        }
    }
    assert_eq!(pg.row(RESOURCE).await, None, "the delete event removed the row");
}

/// The chat the chat events name (events/gen_dashboard_events.py): echo-local's demo chat.
const CHAT: &str = local::DEMO_CHAT_ID;

#[tokio::test]
async fn every_chats_event_reaches_its_route() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("People like the park.".into())).await;
    let slot = llm.slot();
    let app = dashboard_app(&llm).await;
    let mut services = app.local.state.services.clone();
    let mut settings = (*services.settings).clone();
    (settings.llm.small, settings.llm.inference) = (slot.clone(), slot);
    services.settings = std::sync::Arc::new(settings);
    assert_eq!(app.local.store.get_chat(CHAT).await.unwrap().map(|c| c.project_id), Some(PROJECT.to_string()), "echo-local seeds it");
    let router = || chats::router(chats::AppState::new(services.clone()));
    for (file, expected) in [
        ("chats/add-context.json", Some(Value::Null)),
        ("chats/lock-conversations.json", None),
        ("chats/delete-context.json", Some(Value::Null)),
        ("chats/context.json", None),
    ] {
        let (status, body) = invoke_on(router(), file).await;
        assert_eq!(status, 200, "{file}: {body:?}");
        if let Some(expected) = expected {
            assert_eq!(body, Some(expected), "{file}");
        }
    }
    let (_, context) = invoke_on(router(), "chats/context.json").await;
    assert_eq!(context.unwrap()["locked_conversation_id_list"], json!([CONVERSATION]));
    let response = router().oneshot(event_request("chats/chat.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).starts_with("0:\"Peo"), "{body:?}");
    let prompt = llm.requests.lock().unwrap().last().unwrap()["messages"][2]["content"].to_string();
    assert!(prompt.contains("We talked about the park."), "the locked conversation's transcript: {prompt}");
}

#[derive(Default)]
struct RecordedDeadLetters(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl common::queue::worker::QueueOps for RecordedDeadLetters {
    async fn dead_letter(&self, _body: &str, task: &str, _error: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(task.to_string());
        Ok(())
    }
    async fn retry_after(&self, _receipt_handle: &str, _delay: std::time::Duration) -> Result<(), String> {
        Ok(())
    }
}

/// Feeds an SQS event file to the worker of its queue; the ids of the records to retry.
async fn deliver(app: &TestApp, file: &str, dead: &RecordedDeadLetters) -> Vec<String> {
    let text = std::fs::read_to_string(events_dir().join(file)).unwrap();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} does not parse as an SQS event: {e}"));
    let arn = event.records[0].event_source_arn.clone().unwrap();
    let runner: &dyn common::queue::worker::TaskRunner =
        if arn.ends_with("-audio") { app.local.audio_worker.as_ref() } else { app.local.network_worker.as_ref() };
    let response = common::queue::worker::handle_batch(runner, dead, event, 5, None).await;
    response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
}

#[tokio::test]
async fn every_task_event_reaches_its_worker() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("A summary.".into())).await;
    let app = dashboard_app(&llm).await;
    let dead = RecordedDeadLetters::default();
    for file in [
        "tasks/process-conversation-chunk.json",
        "tasks/transcribe-chunk.json",
        "tasks/finish-conversation-hook.json",
        "tasks/merge-conversation-chunks.json",
        "tasks/summarize-conversation.json",
        "tasks/collect-and-finish-unfinished-conversations.json",
        "tasks/update-runpod-transcription-response.json",
        "tasks/process-runpod-chunk-response.json",
        "tasks/get-runpod-diarization.json",
        // The library records its run and queues its views.
        "tasks/create-project-library.json",
        // Optional services that are not configured here: terminal, so dead-lettered.
        "tasks/run-etl-pipeline.json",
        "tasks/create-view.json",
    ] {
        assert!(deliver(&app, file, &dead).await.is_empty(), "{file} failed");
    }
    assert_eq!(dead.0.lock().unwrap().clone(), vec!["task_run_etl_pipeline", "task_create_view"]);
    assert!(app.published().iter().any(|m| m["task"] == "task_create_view"), "the library queued its default view");
    let conversation = app.local.store.get_conversation(CONVERSATION).await.unwrap().unwrap();
    assert!(conversation.merged_audio_path.is_some() && conversation.summary.is_some());

    // The deletion tasks wait until their rows are gone, then clean up.
    assert_eq!(deliver(&app, "tasks/delete-storage-objects.json", &dead).await.len(), 1, "the chunk still exists: retry later");
    app.local.store.delete_conversation(CONVERSATION).await.unwrap();
    for file in ["tasks/delete-storage-objects.json", "tasks/delete-conversation-artifacts.json"] {
        assert!(deliver(&app, file, &dead).await.is_empty(), "{file} failed");
    }
    assert!(app.local.state.blob.list(&format!("conversation/{CONVERSATION}/")).await.unwrap().is_empty());

    for file in ["scheduler/collector.json", "scheduler/runpod-poller.json", "scheduler/scheduled-event.json"] {
        let input: Value = serde_json::from_str(&std::fs::read_to_string(events_dir().join(file)).unwrap()).unwrap();
        scheduler::handle(&input, &app.local.queue, Some("Runpod")).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
