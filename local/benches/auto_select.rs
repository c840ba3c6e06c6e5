//! `cargo bench --bench auto_select`: auto-select over 100 conversations (5 batches of 20)
//! against a fake OpenAI-compatible model that answers every call after 200 ms. The batches run
//! concurrently, so the selection should take about one call's time, not five. Measured twice:
//! the selection alone (against the batches awaited one after another), and a whole
//! `POST /api/chats/{id}` through echo-local until its `h:` references frame arrives.
//! Numbers go to docs/benchmarks.md.

use std::time::{Duration, Instant};

use chats::auto_select::{Candidate, Selector};
use common::providers::llm::LlmClient;
use serde_json::{Value, json};

const CONVERSATIONS: usize = 100;
const MODEL_DELAY: Duration = Duration::from_millis(200);
const ROUNDS: usize = 5;
const JWT_SECRET: &str = "bench-directus-secret";
const OWNER: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";

/// A chat-completions server: after MODEL_DELAY, selects the first conversation id it is shown
/// (non-streamed calls) or streams a short answer.
async fn fake_model() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|body: axum::Json<Value>| async move {
            tokio::time::sleep(MODEL_DELAY).await;
            let prompt = body.0["messages"][0]["content"].as_str().unwrap_or_default().to_string();
            if body.0["stream"] == json!(true) {
                let delta = json!({"choices": [{"index": 0, "delta": {"content": "An answer."}}]});
                let sse = format!("data: {delta}\n\ndata: [DONE]\n\n");
                return axum::response::IntoResponse::into_response(([("content-type", "text/event-stream")], sse));
            }
            let first = prompt.split("id=\"").nth(1).and_then(|rest| rest.split('"').next()).map(str::to_string);
            let answer = json!({ "selected_conversation_ids": first.into_iter().collect::<Vec<_>>() }).to_string();
            let reply = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]});
            axum::response::IntoResponse::into_response(axum::Json(reply))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn slot(url: &str) -> common::config::LlmSlot {
    common::config::LlmSlot {
        model: Some("gpt-bench".into()),
        api_key: Some("sk-bench".into()),
        api_base: Some(url.into()),
        ..Default::default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn selection_alone(url: &str) {
    let candidates: Vec<Candidate> = (0..CONVERSATIONS)
        .map(|i| Candidate {
            id: format!("conversation-{i:03}"),
            participant_name: format!("Person {i}"),
            summary: format!("A conversation about topic {i}, the park and the library."),
            tags: "park".into(),
            created_at: "2025-10-16T12:00:00Z".into(),
        })
        .collect();
    let selector = Selector {
        llm: LlmClient::default(),
        slot: slot(url),
        user_queries: vec!["What do people say about the park?".into()],
        language: "en".into(),
        retry_delay: Duration::from_secs(1),
    };
    let (mut concurrent, mut sequential) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let picked = selector.select(&candidates).await;
        concurrent.push(t.elapsed());
        assert_eq!(picked.len(), CONVERSATIONS / 20, "one pick per batch");
        let t = Instant::now();
        for batch in candidates.chunks(20) {
            selector.select(batch).await;
        }
        sequential.push(t.elapsed());
    }
    println!("selection of {CONVERSATIONS} conversations, model answering after {} ({ROUNDS} rounds, median)", ms(MODEL_DELAY));
    println!("  Selector::select (5 batches at once)      {}", ms(median(concurrent)));
    println!("  the same batches awaited one by one       {}", ms(median(sequential)));
}

async fn whole_request(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = local::LocalOptions::for_tests(dir.path());
    options.settings.auth.directus_secret = Some(JWT_SECRET.into());
    options.settings.llm.small = slot(url);
    options.settings.llm.inference = slot(url);
    options.settings.llm.chat_auto_select = true;
    let app = local::start(options).await.unwrap();
    let store = app.store.clone();
    let project = uuid::Uuid::new_v4().to_string();
    let new_project = common::store::NewProject {
        id: project.clone(),
        directus_user_id: Some(OWNER.into()),
        name: Some("Bench".into()),
        is_conversation_allowed: true,
        ..Default::default()
    };
    store.create_project(new_project).await.unwrap();
    for i in 0..CONVERSATIONS {
        let id = uuid::Uuid::new_v4().to_string();
        let conversation = common::store::NewConversation {
            id: id.clone(),
            project_id: project.clone(),
            participant_name: Some(format!("Person {i}")),
            ..Default::default()
        };
        store.create_conversation(conversation).await.unwrap();
        let summary = common::store::ConversationPatch { summary: Some(format!("Topic {i}: the park.")), ..Default::default() };
        store.update_conversation(&id, summary).await.unwrap();
    }
    let exp = chrono::Utc::now().timestamp() + 3600;
    let token = common::web::auth::sign(&json!({"id": OWNER, "admin_access": false, "app_access": true, "exp": exp}), JWT_SECRET);
    let client = reqwest::Client::new();
    let mut first_frame = Vec::new();
    for _ in 0..ROUNDS {
        // A new chat each round: no locked conversations, so no follow-up check and no title.
        let chat = uuid::Uuid::new_v4().to_string();
        let new_chat =
            common::store::NewChat { id: chat.clone(), project_id: project.clone(), name: Some("Bench".into()), auto_select: Some(true) };
        store.create_chat(new_chat).await.unwrap();
        let body = json!({"messages": [{"role": "user", "content": "What do people say about the park?"}]});
        let t = Instant::now();
        let mut res = client.post(format!("{}/api/chats/{chat}", app.api_url)).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let chunk = res.chunk().await.unwrap().unwrap();
        first_frame.push(t.elapsed());
        assert!(chunk.starts_with(b"h:"), "{chunk:?}");
        while res.chunk().await.unwrap().is_some() {}
        assert_eq!(store.get_chat(&chat).await.unwrap().unwrap().conversation_ids.len(), CONVERSATIONS / 20);
    }
    println!("POST /api/chats/{{id}} through echo-local (SQLite), time to the h: frame ({ROUNDS} rounds, median)");
    println!("  auto-select over {CONVERSATIONS} conversations, 5 rows added   {}", ms(median(first_frame)));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let url = fake_model().await;
        selection_alone(&url).await;
        whole_request(&url).await;
    });
}
