//! LLM routing by model prefix (processing.md §10) against fakes speaking each provider's own
//! wire protocol over HTTP on 127.0.0.1 and checking its credential: Anthropic's Messages API
//! (support here), Gemini on Vertex AI (support/google.rs), the OpenAI protocol (support's
//! FakeLlm). Slots without their provider's credential are "not configured": nobody is called.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::config::LlmSlot;
use common::providers::llm::{LlmClient, LlmError, Message};
use common::providers::vertex::{ServiceAccount, VertexClient};
use common::queue::Task;
use common::queue::worker::{Delivery, Done, TaskRunner};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::google::FakeGoogle;
use crate::support::{JWT_SECRET, OWNER, TestApp, token};

const ANTHROPIC_KEY: &str = "sk-ant-test";

/// How the fake Anthropic answers.
#[derive(Clone)]
enum Answer {
    Text(&'static str),
    /// `stop_reason: "refusal"` after this text.
    Refusal(&'static str),
    /// 529 `overloaded_error` before anything (or, streaming, after this text as an `error` event).
    Overloaded(&'static str),
}

/// A local server speaking Anthropic's Messages API, recording each request's body.
struct FakeAnthropic {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    answer: Arc<Mutex<Answer>>,
}

fn sse(events: &[Value]) -> String {
    events.iter().map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap())).collect()
}

fn stream_body(text: &str, ending: Value) -> String {
    let mut events = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
               "model": "claude-test", "stop_reason": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
    ];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(3) {
        let piece: String = piece.iter().collect();
        events.push(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}));
    }
    events.push(json!({"type": "content_block_stop", "index": 0}));
    events.push(ending);
    sse(&events)
}

impl FakeAnthropic {
    async fn start(answer: Answer) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(answer));
        let (r, a) = (requests.clone(), answer.clone());
        let app = axum::Router::new().route(
            "/v1/messages",
            axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
                let (r, a) = (r.clone(), a.clone());
                async move { respond(&headers, body.0, &r, a.lock().unwrap().clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeAnthropic { url, requests, answer }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn slot(&self, name: &'static str) -> LlmSlot {
        LlmSlot {
            name,
            model: Some("anthropic/claude-test".into()),
            api_key: Some(ANTHROPIC_KEY.into()),
            api_base: Some(self.url.clone()),
            ..Default::default()
        }
    }

    fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn respond(headers: &HeaderMap, body: Value, requests: &Mutex<Vec<Value>>, answer: Answer) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    // Like Anthropic: the key in x-api-key (a Bearer token is not read), a version, max_tokens.
    if header("x-api-key") != ANTHROPIC_KEY {
        let error = json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let invalid = |message: &str| {
        let error = json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}});
        (StatusCode::BAD_REQUEST, axum::Json(error)).into_response()
    };
    if header("anthropic-version") != "2023-06-01" {
        return invalid("anthropic-version: header is required");
    }
    if !body["max_tokens"].is_u64() {
        return invalid("max_tokens: Field required");
    }
    if body["messages"].as_array().is_none_or(|m| m.is_empty() || m.iter().any(|m| m["role"] == "system")) {
        return invalid("messages: roles must be user or assistant; use the top-level system parameter");
    }
    requests.lock().unwrap().push(body.clone());
    let stream = body["stream"] == json!(true);
    let message = |text: &str, stop: &str| {
        axum::Json(json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": text}], "stop_reason": stop, "usage": {"input_tokens": 10, "output_tokens": 5}}))
        .into_response()
    };
    let sse_response = |body: String| ([("content-type", "text/event-stream")], body).into_response();
    let stop = |reason: &str| json!({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 5}});
    match answer {
        Answer::Text(text) if stream => {
            let mut body = stream_body(text, stop("end_turn"));
            body.push_str(&sse(&[json!({"type": "message_stop"})]));
            sse_response(body)
        }
        Answer::Text(text) => message(text, "end_turn"),
        Answer::Refusal(text) if stream => sse_response(stream_body(text, stop("refusal"))),
        Answer::Refusal(text) => message(text, "refusal"),
        Answer::Overloaded(text) if stream && !text.is_empty() => {
            sse_response(stream_body(text, json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})))
        }
        Answer::Overloaded(_) => {
            let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
            (StatusCode::from_u16(529).unwrap(), axum::Json(error)).into_response()
        }
    }
}

async fn collect(client: &LlmClient, slot: &LlmSlot, messages: &[Message]) -> (String, Option<LlmError>) {
    let mut stream = client.stream(slot, messages, Duration::from_secs(30)).await.unwrap();
    let mut text = String::new();
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(piece) => text.push_str(&piece),
            Err(err) => return (text, Some(err)),
        }
    }
    (text, None)
}

fn prompt() -> Vec<Message> {
    vec![Message::system("Answer briefly."), Message::user("What came up?")]
}

#[tokio::test]
async fn anthropic_models_speak_the_messages_api() {
    let fake = FakeAnthropic::start(Answer::Text("Parking came up twice.")).await;
    let client = LlmClient::default();
    let slot = fake.slot("MEDIUM_LITELLM");
    assert_eq!(client.complete(&slot, &prompt()).await.unwrap(), "Parking came up twice.");
    let sent = &fake.requests()[0];
    assert_eq!(sent["model"], "claude-test", "the prefix is dropped");
    assert_eq!(sent["system"], "Answer briefly.", "system prompt moved to the top level");
    assert_eq!(sent["messages"], json!([{"role": "user", "content": "What came up?"}]));
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(sent["stream"], false);

    let (text, error) = collect(&client, &slot, &prompt()).await;
    assert_eq!((text.as_str(), error.is_none()), ("Parking came up twice.", true));
    assert_eq!(fake.requests()[1]["stream"], true);

    // A refusal is told apart from other errors, streamed or not.
    fake.set(Answer::Refusal(""));
    assert!(matches!(client.complete(&slot, &prompt()).await, Err(LlmError::ContentPolicy(_))));
    fake.set(Answer::Refusal("I can"));
    let (text, error) = collect(&client, &slot, &prompt()).await;
    assert_eq!(text, "I can");
    assert!(matches!(error, Some(LlmError::ContentPolicy(_))), "{error:?}");

    // Overloaded (529): worth a retry, before or during the stream.
    fake.set(Answer::Overloaded(""));
    assert!(matches!(client.complete(&slot, &prompt()).await, Err(LlmError::Unavailable(_))));
    fake.set(Answer::Overloaded("Par"));
    assert!(matches!(collect(&client, &slot, &prompt()).await, (t, Some(LlmError::Unavailable(_))) if t == "Par"));

    // The key is checked: a wrong one is refused, not retried.
    let wrong = LlmSlot { api_key: Some("sk-other".into()), ..slot.clone() };
    fake.set(Answer::Text("never"));
    assert!(matches!(client.complete(&wrong, &prompt()).await, Err(LlmError::Other(e)) if e.contains("authentication_error")));
}

fn vertex_client(google: &FakeGoogle) -> LlmClient {
    let account = ServiceAccount::parse(&google.service_account_json()).unwrap();
    LlmClient::default().with_vertex(Arc::new(VertexClient::new(account, "europe-west4", Some(&google.base))))
}

#[tokio::test]
async fn vertex_ai_models_call_gemini_with_the_service_account() {
    let google = FakeGoogle::start().await;
    let client = vertex_client(&google);
    let slot = LlmSlot { name: "MEDIUM_LITELLM", model: Some("vertex_ai/gemini-test".into()), ..Default::default() };
    google.answer_raw(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Parking came up twice."}]},
                                             "finishReason": "STOP"}]}));
    assert_eq!(client.complete(&slot, &prompt()).await.unwrap(), "Parking came up twice.");
    let (path, auth, body) = google.calls()[0].clone();
    assert_eq!(path, "test-project/europe-west4/gemini-test:generateContent");
    assert_eq!(auth.as_deref(), Some("Bearer ya29.token-0"), "the service account's token");
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Answer briefly.");
    assert_eq!(body["contents"], json!([{"role": "user", "parts": [{"text": "What came up?"}]}]));

    let (text, error) = collect(&client, &slot, &prompt()).await;
    assert_eq!((text.as_str(), error.is_none()), ("Parking came up twice.", true));
    assert_eq!(google.calls()[1].0, "test-project/europe-west4/gemini-test:streamGenerateContent");
    assert_eq!(google.tokens_issued(), 1, "the token is reused");

    google.answer_raw(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Sorry"}]}, "finishReason": "SAFETY"}]}));
    assert!(matches!(client.complete(&slot, &prompt()).await, Err(LlmError::ContentPolicy(_))));
    let (text, error) = collect(&client, &slot, &prompt()).await;
    assert_eq!(text, "Sorry");
    assert!(matches!(error, Some(LlmError::ContentPolicy(_))), "{error:?}");
    google.respond_with(503);
    assert!(matches!(client.complete(&slot, &prompt()).await, Err(LlmError::Unavailable(_))));

    // Without a service account the slot is not configured and Google is not called.
    let calls = google.calls().len();
    let err = LlmClient::default().complete(&slot, &prompt()).await.unwrap_err();
    assert!(matches!(err, LlmError::NotConfigured("GCP_SA_JSON")), "{err}");
    assert_eq!(google.calls().len(), calls);
}

#[tokio::test]
async fn get_reply_and_chat_stream_through_anthropic() {
    let answer = "<detailed_analysis>x</detailed_analysis><response>Parking came up twice.</response>";
    let fake = FakeAnthropic::start(Answer::Text(answer)).await;
    let (medium, small, inference) = (fake.slot("MEDIUM_LITELLM"), fake.slot("SMALL_LITELLM"), fake.slot("LIGHTRAG_LITELLM_INFERENCE"));
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.medium = medium;
        o.settings.llm.small = small;
        o.settings.llm.inference = inference;
    })
    .await;
    let owner = token(OWNER, false);
    let (pid, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "Parking is a problem.").await;
    let res = app
        .client
        .post(app.url(&format!("/api/conversations/{cid}/get-reply")))
        .bearer_auth(&owner)
        .json(&json!({"language": "en"}))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    let text: String = body.lines().filter_map(|l| l.strip_prefix("0:")).map(|t| serde_json::from_str::<String>(t).unwrap()).collect();
    assert_eq!(text, "Parking came up twice.", "{body}");
    assert_eq!(fake.requests()[0]["stream"], true);

    // A chat answer streams through the same provider.
    fake.set(Answer::Text("Twice."));
    let chat_id = uuid::Uuid::new_v4().to_string();
    let chat = common::store::NewChat { id: chat_id.clone(), project_id: pid, name: None, auto_select: Some(false) };
    app.local.store.create_chat(chat).await.unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/chats/{chat_id}?language=en")))
        .bearer_auth(&owner)
        .json(&json!({"messages": [{"role": "user", "content": "What came up?"}]}))
        .send()
        .await
        .unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("Twi") && body.contains("ce."), "{body}");
    assert!(fake.requests().iter().any(|r| r["system"].is_string() && r["stream"] == true), "the chat's system prompt moved");
}

#[tokio::test]
async fn unconfigured_slots_call_nobody_and_say_what_to_set() {
    // A fresh echo-local: ECHO's anthropic/ defaults without ANTHROPIC_API_KEY, no MEDIUM model.
    let app = TestApp::start_with(|o| o.settings.auth.directus_secret = Some(JWT_SECRET.into())).await;
    let owner = token(OWNER, false);
    let (pid, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "Parking is a problem.").await;
    let report = format!("/api/projects/{pid}/create-report");
    assert_eq!(
        app.call(Method::POST, &report, Some(&owner), Some(json!({}))).await,
        (503, json!({"detail": "The LLM is not configured: set MEDIUM_LITELLM_MODEL"}))
    );
    assert_eq!(
        app.call(Method::POST, &format!("/api/conversations/{cid}/summarize"), Some(&owner), None).await,
        (503, json!({"detail": "The LLM is not configured: set SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY)"}))
    );

    // The summary task records it and calls nobody.
    let delivery = Delivery { message_id: "m".into(), receive_count: 1, max_attempts: 5, deadline: None };
    let task = Task::SummarizeConversation { conversation_id: cid.clone() };
    assert!(matches!(app.local.network_worker.run(&task, &delivery).await, Ok(Done::Skipped(r)) if r.contains("SUMMARY_LITELLM_API_KEY")));
    let message: String = app
        .db()
        .query_row(
            "SELECT message FROM processing_status WHERE event = 'task_summarize_conversation.failed' AND conversation_id = ?1",
            [&cid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(message.contains("not configured (set SUMMARY_LITELLM_API_KEY (or ANTHROPIC_API_KEY))"), "{message}");
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().summary, None);

    // An anthropic/ MEDIUM model without its key: 503 naming the key, Anthropic never called.
    let fake = FakeAnthropic::start(Answer::Text("never")).await;
    let keyless = LlmSlot { api_key: None, ..fake.slot("MEDIUM_LITELLM") };
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.medium = keyless;
    })
    .await;
    let (pid, _) = app.owned_conversation(OWNER).await;
    assert_eq!(
        app.call(Method::POST, &format!("/api/projects/{pid}/create-report"), Some(&owner), Some(json!({}))).await,
        (503, json!({"detail": "The LLM is not configured: set MEDIUM_LITELLM_API_KEY"}))
    );
    assert!(fake.requests().is_empty());
}
