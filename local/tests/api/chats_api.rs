//! `/api/chats` (api.md §2.5): the context endpoints' shapes and refusals, the auth matrix, and
//! the streamed answer against the fake OpenAI-compatible server: manual context, auto-select,
//! follow-ups, the title, and a provider failing mid-stream.

use common::store::{ChatMessage, NewChat, NewConversation};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{FakeLlm, JWT_SECRET, LlmBehaviour, OWNER, TestApp, token};

const OTHER: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const FAILED: &str = "An error occurred while processing the chat response.";

/// echo-local with JWT checks, the SMALL and inference slots on `llm`, auto-select on or off.
async fn app(llm: &FakeLlm, auto_select: bool) -> TestApp {
    let slot = llm.slot();
    TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.small = slot.clone();
        o.settings.llm.inference = slot;
        o.settings.llm.chat_auto_select = auto_select;
    })
    .await
}

async fn new_chat(app: &TestApp, project: &str, auto_select: Option<bool>) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let chat = NewChat { id: id.clone(), project_id: project.into(), name: None, auto_select };
    app.local.store.create_chat(chat).await.unwrap();
    id
}

/// A conversation of `project` named `name` with `transcript` as its one chunk.
async fn conversation(app: &TestApp, project: &str, name: &str, transcript: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let conversation =
        NewConversation { id: id.clone(), project_id: project.into(), participant_name: Some(name.into()), ..Default::default() };
    app.local.store.create_conversation(conversation).await.unwrap();
    if !transcript.is_empty() {
        app.text_chunk(&id, 0, transcript).await;
    }
    id
}

/// About `n` o200k tokens of text.
fn words(n: usize) -> String {
    " word".repeat(n)
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    app.call(Method::POST, path, Some(token), Some(body)).await
}

async fn messages(app: &TestApp, chat: &str) -> Vec<ChatMessage> {
    app.local.store.list_chat_messages(chat).await.unwrap()
}

async fn context_ids(app: &TestApp, chat: &str) -> Vec<String> {
    app.local.store.get_chat(chat).await.unwrap().unwrap().conversation_ids
}

/// Frames of an AI-SDK data stream: each line `{code}:{JSON}`.
async fn frames(res: reqwest::Response) -> Vec<(char, Value)> {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = res.text().await.unwrap();
    body.lines()
        .map(|line| {
            let (code, payload) = line.split_once(':').unwrap_or_else(|| panic!("not a frame: {line:?}"));
            (code.chars().next().unwrap(), serde_json::from_str(payload).unwrap_or_else(|_| panic!("not JSON: {line:?}")))
        })
        .collect()
}

fn text_of(frames: &[(char, Value)]) -> String {
    frames.iter().filter(|(c, _)| *c == '0').map(|(_, v)| v.as_str().unwrap()).collect()
}

async fn ask(app: &TestApp, chat: &str, question: &str) -> reqwest::Response {
    let body = json!({"messages": [{"role": "user", "content": question}]});
    app.client.post(app.url(&format!("/api/chats/{chat}?language=en"))).bearer_auth(token(OWNER, false)).json(&body).send().await.unwrap()
}

/// The requests the fake model got whose prompt contains `marker` (non-streamed ones).
fn prompts_with(llm: &FakeLlm, marker: &str) -> Vec<String> {
    llm.requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["stream"] != json!(true))
        .map(|r| r["messages"][0]["content"].as_str().unwrap_or_default().to_string())
        .filter(|p| p.contains(marker))
        .collect()
}

fn streamed_requests(llm: &FakeLlm) -> Vec<Value> {
    llm.requests.lock().unwrap().iter().filter(|r| r["stream"] == json!(true)).cloned().collect()
}

/// Title, follow-up and auto-select answers by prompt; the streamed answer is `answer`.
fn model(answer: &'static str, followup: bool, selected: Vec<String>) -> LlmBehaviour {
    LlmBehaviour::by(move |body| {
        let prompt = body["messages"][0]["content"].as_str().unwrap_or_default();
        if body["stream"] == json!(true) {
            LlmBehaviour::Reply(answer.into())
        } else if prompt.contains("selected_conversation_ids") {
            // Only the ids this batch shows.
            let ids: Vec<&String> = selected.iter().filter(|id| prompt.contains(id.as_str())).collect();
            LlmBehaviour::Reply(format!("```json\n{}\n```", json!({ "selected_conversation_ids": ids })))
        } else if prompt.contains("is_followup") {
            LlmBehaviour::Reply(json!({ "is_followup": followup }).to_string())
        } else {
            LlmBehaviour::Reply("\"Benches in the park\"".into())
        }
    })
}

#[tokio::test]
async fn context_shapes_and_the_auth_matrix() {
    let llm = FakeLlm::start(model("ok", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, ada) = app.owned_conversation(OWNER).await;
    app.text_chunk(&ada, 0, "The park needs more benches.").await;
    let chat = new_chat(&app, &project, Some(false)).await;
    let (owner, other, admin) = (token(OWNER, false), token(OTHER, false), token(OTHER, true));
    let path = format!("/api/chats/{chat}/context");

    assert_eq!(app.call(Method::GET, &path, None, None).await.0, 401);
    let forbidden = json!({"detail": "You are not authorized to access this chat"});
    assert_eq!(app.call(Method::GET, &path, Some(&other), None).await, (403, forbidden.clone()));
    let missing = json!({"detail": "Chat not found"});
    let unknown = format!("/api/chats/{}/context", uuid::Uuid::new_v4());
    assert_eq!(app.call(Method::GET, &unknown, Some(&owner), None).await, (404, missing.clone()));
    assert_eq!(app.call(Method::GET, "/api/chats/not-a-uuid/context", Some(&owner), None).await, (404, missing.clone()));
    for path in [format!("/api/chats/{chat}/add-context"), format!("/api/chats/{chat}/delete-context")] {
        let body = json!({"auto_select_bool": false});
        assert_eq!(app.call(Method::POST, &path, Some(&other), Some(body)).await, (403, forbidden.clone()));
    }
    assert_eq!(app.call(Method::POST, &format!("/api/chats/{chat}/lock-conversations"), Some(&other), None).await.0, 403);

    let add = format!("/api/chats/{chat}/add-context");
    assert_eq!(app.call(Method::POST, &add, Some(&owner), Some(json!({"conversation_id": ada}))).await, (200, Value::Null));
    let (status, body) = app.call(Method::GET, &path, Some(&admin), None).await;
    assert_eq!(status, 200, "an admin may read any chat: {body}");
    assert_eq!(body["conversations"][0]["conversation_id"], json!(ada));
    assert_eq!(body["conversations"][0]["conversation_participant_name"], "Ada");
    assert_eq!(body["conversations"][0]["locked"], false);
    let usage = body["conversations"][0]["token_usage"].as_f64().unwrap();
    assert!(usage > 0.0 && usage < 0.001, "{usage}");
    assert_eq!(body["messages"], json!([{"role": "user", "token_usage": 0.0}, {"role": "assistant", "token_usage": 0.0}]));
    assert_eq!((body["auto_select_bool"].clone(), body["conversation_id_list"].clone()), (json!(false), json!([ada])));
    assert_eq!(body["locked_conversation_id_list"], json!([]));
}

#[tokio::test]
async fn add_and_delete_context_refuse_with_the_documented_answers() {
    let llm = FakeLlm::start(model("ok", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, ada) = app.owned_conversation(OWNER).await;
    let chat = new_chat(&app, &project, Some(true)).await;
    let (_, theirs) = app.owned_conversation(OTHER).await;
    let owner = token(OWNER, false);
    let (add, delete) = (format!("/api/chats/{chat}/add-context"), format!("/api/chats/{chat}/delete-context"));
    let detail = |text: &str| json!({ "detail": text });

    for path in [&add, &delete] {
        assert_eq!(post_as(&app, &owner, path, json!({})).await, (400, detail("conversation_id or auto_select_bool is required")));
        let both = json!({"conversation_id": ada, "auto_select_bool": false});
        assert_eq!(post_as(&app, &owner, path, both).await, (400, detail("conversation_id and auto_select_bool cannot both be provided")));
        let unknown = json!({"conversation_id": uuid::Uuid::new_v4().to_string()});
        assert_eq!(post_as(&app, &owner, path, unknown).await, (404, detail("Conversation not found")));
        assert_eq!(post_as(&app, &owner, path, json!({"conversation_id": "nope"})).await, (404, detail("Conversation not found")));
        assert_eq!(post_as(&app, &owner, path, json!({"conversation_id": 7})).await.0, 422);
    }
    let not_yours = detail("You are not authorized to access this conversation");
    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": theirs})).await, (403, not_yours));
    assert_eq!(post_as(&app, &owner, &delete, json!({"conversation_id": ada})).await, (404, detail("Conversation not found in the chat")));
    assert_eq!(post_as(&app, &owner, &delete, json!({"auto_select_bool": true})).await, (400, detail("auto_select_bool cannot be True")));

    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": ada})).await, (200, Value::Null));
    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": ada})).await, (400, detail("Conversation already in the chat")));
    assert_eq!(context_ids(&app, &chat).await, vec![ada.clone()], "one row, refusals changed nothing");

    let long = conversation(&app, &project, "Long", &words(100_050)).await;
    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": long})).await, (400, detail("Conversation is too long")));
    let (big, bigger) =
        (conversation(&app, &project, "Big", &words(60_000)).await, conversation(&app, &project, "Bigger", &words(45_000)).await);
    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": big})).await.0, 200);
    let too_much = detail("Chat context is too long. Remove other conversations to proceed.");
    assert_eq!(post_as(&app, &owner, &add, json!({"conversation_id": bigger})).await, (400, too_much));
    assert_eq!(context_ids(&app, &chat).await, vec![ada.clone(), big.clone()]);

    assert_eq!(post_as(&app, &owner, &delete, json!({"conversation_id": big})).await, (200, Value::Null));
    assert_eq!(context_ids(&app, &chat).await, vec![ada.clone()]);
    assert_eq!(post_as(&app, &owner, &delete, json!({"auto_select_bool": false})).await, (200, Value::Null));
    assert_eq!(app.local.store.get_chat(&chat).await.unwrap().unwrap().auto_select, Some(false));
    assert_eq!(post_as(&app, &owner, &add, json!({"auto_select_bool": true})).await, (200, Value::Null));
    assert_eq!(app.local.store.get_chat(&chat).await.unwrap().unwrap().auto_select, Some(true));

    // Locked conversations stay.
    let (status, body) = app.call(Method::POST, &format!("/api/chats/{chat}/lock-conversations"), Some(&owner), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(post_as(&app, &owner, &delete, json!({"conversation_id": ada})).await, (400, detail("Conversation is locked")));
}

#[tokio::test]
async fn context_counts_message_tokens_and_checks_every_context_conversation() {
    let llm = FakeLlm::start(model("ok", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let chat = new_chat(&app, &project, Some(true)).await;
    let owner = token(OWNER, false);
    let path = format!("/api/chats/{chat}/context");
    for (from, text) in [("user", "How do people feel about the park?"), ("assistant", "Mostly positive."), ("dembrane", "note")] {
        let message = common::store::NewChatMessage {
            id: uuid::Uuid::new_v4().to_string(),
            chat_id: chat.clone(),
            message_from: from.into(),
            text: text.into(),
            ..Default::default()
        };
        app.local.store.create_chat_message(message).await.unwrap();
    }
    let (status, body) = app.call(Method::GET, &path, Some(&owner), None).await;
    assert_eq!(status, 200, "{body}");
    let stored = messages(&app, &chat).await;
    let counts: Vec<Option<i64>> = stored.iter().map(|m| m.tokens_count).collect();
    assert!(matches!(counts.as_slice(), [Some(u), Some(a), None] if *u > 5 && *a > 1), "user and assistant counted and stored: {counts:?}");
    assert_eq!(body["messages"][0]["token_usage"].as_f64().unwrap(), counts[0].unwrap() as f64 / 100000.0);
    assert_eq!(body["messages"][1]["token_usage"].as_f64().unwrap(), counts[1].unwrap() as f64 / 100000.0);

    // A context conversation the caller does not own is refused like the token-count endpoint.
    let (_, theirs) = app.owned_conversation(OTHER).await;
    app.local.store.add_chat_conversation(&chat, &theirs).await.unwrap();
    let not_yours = json!({"detail": "You are not authorized to access this conversation"});
    assert_eq!(app.call(Method::GET, &path, Some(&owner), None).await, (403, not_yours));

    let unset = new_chat(&app, &project, None).await;
    let (status, body) = app.call(Method::GET, &format!("/api/chats/{unset}/context"), Some(&owner), None).await;
    assert_eq!((status, body), (400, json!({"detail": "Auto select is not boolean"})));
}

#[tokio::test]
async fn lock_conversations_adds_one_dembrane_message_for_the_new_ones() {
    let llm = FakeLlm::start(model("ok", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, ada) = app.owned_conversation(OWNER).await;
    let bo = conversation(&app, &project, "Bo", "Swings.").await;
    let chat = new_chat(&app, &project, Some(false)).await;
    let owner = token(OWNER, false);
    let lock = format!("/api/chats/{chat}/lock-conversations");
    assert_eq!(app.call(Method::POST, &lock, Some(&owner), None).await, (200, json!([])));
    assert!(messages(&app, &chat).await.is_empty(), "nothing to lock, no message");

    app.local.store.add_chat_conversation(&chat, &ada).await.unwrap();
    app.local.store.add_chat_conversation(&chat, &bo).await.unwrap();
    let (status, body) = app.call(Method::POST, &lock, Some(&owner), None).await;
    assert_eq!(status, 200, "{body}");
    let first = &body.as_array().unwrap()[0];
    assert_eq!((first["id"].as_str(), first["participant_name"].as_str()), (Some(ada.as_str()), Some("Ada")));
    for field in ["created_at", "updated_at", "project_id", "participant_email", "participant_user_agent", "summary", "source", "duration"]
    {
        assert!(first.get(field).is_some(), "{field} in {first}");
    }
    assert_eq!(body.as_array().unwrap().len(), 2);
    let stored = messages(&app, &chat).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].message_from.as_deref(), Some("dembrane"));
    assert_eq!(stored[0].text.as_deref(), Some("You added 2 conversations as context to the chat."));
    assert_eq!(
        (stored[0].used_conversation_ids.clone(), stored[0].added_conversation_ids.clone()),
        (vec![ada.clone(), bo.clone()], vec![ada.clone(), bo.clone()])
    );

    // Locking again adds nothing; the context now shows both locked.
    assert_eq!(app.call(Method::POST, &lock, Some(&owner), None).await.0, 200);
    assert_eq!(messages(&app, &chat).await.len(), 1);
    let (_, context) = app.call(Method::GET, &format!("/api/chats/{chat}/context"), Some(&owner), None).await;
    assert_eq!(context["locked_conversation_id_list"], json!([ada, bo]));
    assert_eq!(context["conversations"][1]["locked"], true);
}

#[tokio::test]
async fn a_manual_answer_streams_with_the_locked_transcripts_and_names_the_chat_once() {
    let llm = FakeLlm::start(model("People want more benches near the pond.", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, ada) = app.owned_conversation(OWNER).await;
    app.text_chunk(&ada, 0, "The park needs more benches.").await;
    let bo = conversation(&app, &project, "Bo", "Not locked: the library opening hours.").await;
    let chat = new_chat(&app, &project, Some(false)).await;
    app.local.store.add_chat_conversation(&chat, &ada).await.unwrap();
    let owner = token(OWNER, false);
    app.call(Method::POST, &format!("/api/chats/{chat}/lock-conversations"), Some(&owner), None).await;
    app.local.store.add_chat_conversation(&chat, &bo).await.unwrap();

    let got = frames(ask(&app, &chat, "What about the park?").await).await;
    assert!(got.iter().all(|(code, _)| *code == '0'), "no references frame on the manual path: {got:?}");
    assert!(got.len() > 3, "streamed in pieces: {got:?}");
    assert_eq!(text_of(&got), "People want more benches near the pond.");

    let streamed = streamed_requests(&llm);
    assert_eq!(streamed.len(), 1);
    let sent = streamed[0]["messages"].as_array().unwrap();
    assert_eq!(sent.iter().take(3).map(|m| m["role"].as_str().unwrap()).collect::<Vec<_>>(), ["system", "system", "system"]);
    assert!(sent[1]["content"].as_str().unwrap().contains("name : Owned project"));
    let conversations = sent[2]["content"].as_str().unwrap();
    assert!(conversations.contains("The park needs more benches.") && conversations.contains("<name>Ada</name>"), "{conversations}");
    assert!(!conversations.contains("library opening hours"), "only locked conversations on the manual path");
    assert_eq!(sent.last().unwrap(), &json!({"role": "user", "content": "What about the park?"}));
    assert_eq!(streamed[0]["model"], "gpt-test");

    let chat_row = app.local.store.get_chat(&chat).await.unwrap().unwrap();
    assert_eq!(chat_row.name.as_deref(), Some("Benches in the park"), "the title, quotes trimmed");
    let stored = messages(&app, &chat).await;
    assert_eq!(stored.last().unwrap().text.as_deref(), Some("What about the park?"));
    assert_eq!(stored.last().unwrap().message_from.as_deref(), Some("user"));

    // The second question: no new title; the earlier exchange is history.
    frames(ask(&app, &chat, "And the pond?").await).await;
    assert_eq!(prompts_with(&llm, "<question>").len(), 1, "the title is generated once");
    let streamed = streamed_requests(&llm);
    let sent = streamed[1]["messages"].as_array().unwrap();
    let history: Vec<&str> = sent[3..].iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(history, ["What about the park?", "And the pond?"]);

    // Raw text with protocol=text.
    let url = app.url(&format!("/api/chats/{chat}?protocol=text"));
    let res =
        app.client.post(url).bearer_auth(&owner).json(&json!({"messages": [{"role": "user", "content": "Again?"}]})).send().await.unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    assert_eq!(res.text().await.unwrap(), "People want more benches near the pond.");
}

#[tokio::test]
async fn the_answer_refuses_bad_requests_before_streaming() {
    let llm = FakeLlm::start(model("ok", false, vec![])).await;
    let app = app(&llm, false).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let chat = new_chat(&app, &project, Some(false)).await;
    let url = app.url(&format!("/api/chats/{chat}"));
    let question = json!({"messages": [{"role": "user", "content": "Hi there"}]});
    let send = |token: Option<String>, body: Value, url: String| {
        let mut req = app.client.post(url).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(send(None, question.clone(), url.clone()).await.unwrap().status(), 401);
    let res = send(Some(token(OTHER, false)), question.clone(), url.clone()).await.unwrap();
    assert_eq!(res.status(), 403);
    let unknown = app.url(&format!("/api/chats/{}", uuid::Uuid::new_v4()));
    assert_eq!(send(Some(token(OWNER, false)), question.clone(), unknown).await.unwrap().status(), 404);
    let res = send(Some(token(OWNER, false)), json!({"messages": []}), url.clone()).await.unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["detail"][0]["loc"], json!(["body", "messages"]));
    let bad_role = json!({"messages": [{"role": "system", "content": "x"}]});
    assert_eq!(send(Some(token(OWNER, false)), bad_role, url.clone()).await.unwrap().status(), 422);
    assert!(messages(&app, &chat).await.is_empty(), "refused requests store nothing");
    assert_eq!(llm.request_count(), 0);
    // An admin may ask in any chat.
    let got = frames(send(Some(token(OTHER, true)), question, url).await.unwrap()).await;
    assert_eq!(text_of(&got), "ok");
}

#[tokio::test]
async fn a_provider_failing_mid_stream_leaves_no_user_message() {
    let llm = FakeLlm::start(LlmBehaviour::by(|body| {
        if body["stream"] == json!(true) { LlmBehaviour::StreamThenFail("The park is".into()) } else { LlmBehaviour::Reply("Title".into()) }
    }))
    .await;
    let app = app(&llm, false).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let chat = new_chat(&app, &project, Some(false)).await;

    let got = frames(ask(&app, &chat, "What about the park?").await).await;
    assert_eq!(text_of(&got), "The park is", "what came before the failure was sent");
    assert_eq!(got.last().unwrap(), &('3', json!(FAILED)));
    assert!(messages(&app, &chat).await.is_empty(), "the user message is gone");

    // Failing before the first byte, and the text protocol's error line.
    llm.set(LlmBehaviour::Status(500, "{\"error\": \"boom\"}".into()));
    let got = frames(ask(&app, &chat, "Again?").await).await;
    assert_eq!(got, vec![('3', json!(FAILED))]);
    let url = app.url(&format!("/api/chats/{chat}?protocol=text"));
    let res = app.client.post(url).bearer_auth(token(OWNER, false)).json(&json!({"messages": [{"role": "user", "content": "Text?"}]}));
    assert_eq!(res.send().await.unwrap().text().await.unwrap(), format!("Error: {FAILED}"));
    assert!(messages(&app, &chat).await.is_empty());
}

/// The `h:` frame's references: (conversation id, title) pairs.
fn references(frame: &(char, Value)) -> Vec<(String, String)> {
    assert_eq!(frame.0, 'h', "the stream starts with the references frame");
    frame.1[0]["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["conversation"].as_str().unwrap().to_string(), r["conversation_title"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn auto_select_adds_what_the_model_selects_and_a_follow_up_adds_nothing() {
    let llm = FakeLlm::start(LlmBehaviour::Reply(String::new())).await;
    let app = app(&llm, true).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let id = conversation(&app, &project, &format!("Person {i}"), "").await;
        let summary = common::store::ConversationPatch { summary: Some(format!("Topic number {i}")), ..Default::default() };
        app.local.store.update_conversation(&id, summary).await.unwrap();
        ids.push(id);
    }
    let chosen = vec![ids[3].clone(), ids[21].clone()];
    llm.set(model("Two people talk about it.", false, chosen.clone()));
    let chat = new_chat(&app, &project, Some(true)).await;

    let got = frames(ask(&app, &chat, "Who talks about topic three?").await).await;
    let mut refs = references(&got[0]);
    refs.sort();
    let mut expected: Vec<(String, String)> = vec![(ids[3].clone(), "Person 3".into()), (ids[21].clone(), "Person 21".into())];
    expected.sort();
    assert_eq!(refs, expected);
    assert_eq!(text_of(&got[1..]), "Two people talk about it.");
    assert_eq!(prompts_with(&llm, "selected_conversation_ids").len(), 2, "25 candidates: two batches of at most 20");

    let mut context = context_ids(&app, &chat).await;
    context.sort();
    let mut want = chosen.clone();
    want.sort();
    assert_eq!(context, want, "exactly the selected rows");
    let stored = messages(&app, &chat).await;
    let dembrane: Vec<&ChatMessage> = stored.iter().filter(|m| m.message_from.as_deref() == Some("dembrane")).collect();
    assert_eq!(dembrane.len(), 1);
    assert_eq!(dembrane[0].text.as_deref(), Some("Auto-selected and added 2 conversations as context to the chat."));
    let mut used = dembrane[0].used_conversation_ids.clone();
    used.sort();
    assert_eq!(used, want);
    let streamed = streamed_requests(&llm);
    assert!(streamed[0]["messages"][2]["content"].as_str().unwrap().contains("<name>Person 21</name>"));

    // A follow-up keeps the locked conversations and adds nothing.
    llm.set(model("Still the same two.", true, vec![ids[5].clone()]));
    let got = frames(ask(&app, &chat, "What else did they say?").await).await;
    assert!(references(&got[0]).is_empty());
    assert_eq!(text_of(&got[1..]), "Still the same two.");
    assert_eq!(prompts_with(&llm, "selected_conversation_ids").len(), 2, "no new auto-select");
    assert_eq!(prompts_with(&llm, "is_followup").len(), 1);
    assert_eq!(context_ids(&app, &chat).await.len(), 2);
    assert_eq!(messages(&app, &chat).await.iter().filter(|m| m.message_from.as_deref() == Some("dembrane")).count(), 1);
}

#[tokio::test]
async fn auto_select_stops_adding_at_80_percent_of_the_maximum() {
    let llm = FakeLlm::start(LlmBehaviour::Reply(String::new())).await;
    let app = app(&llm, true).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(conversation(&app, &project, &format!("Long {i}"), &words(30_000)).await);
    }
    llm.set(model("Answer.", false, ids.clone()));
    let chat = new_chat(&app, &project, Some(true)).await;
    let got = frames(ask(&app, &chat, "Summarise everything").await).await;
    let refs = references(&got[0]);
    assert_eq!(refs.len(), 2, "two of 30000 tokens fit in 80000, a third does not: {refs:?}");
    let context = context_ids(&app, &chat).await;
    assert_eq!(refs.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), context, "the references are the rows added");
    assert!(context.iter().all(|id| ids.contains(id)));
    let stored = messages(&app, &chat).await;
    assert!(stored.iter().any(|m| m.text.as_deref() == Some("Auto-selected and added 2 conversations as context to the chat.")));
}

#[tokio::test]
async fn over_long_contexts_are_400s_that_leave_no_user_message() {
    let llm = FakeLlm::start(LlmBehaviour::Reply(String::new())).await;
    let app = app(&llm, true).await;
    let (project, _) = app.owned_conversation(OWNER).await;
    let owner = token(OWNER, false);

    // A follow-up over locked conversations already past the maximum.
    let chat = new_chat(&app, &project, Some(true)).await;
    for name in ["A", "B"] {
        let id = conversation(&app, &project, name, &words(55_000)).await;
        app.local.store.add_chat_conversation(&chat, &id).await.unwrap();
    }
    app.call(Method::POST, &format!("/api/chats/{chat}/lock-conversations"), Some(&owner), None).await;
    llm.set(model("never", true, vec![]));
    let res = ask(&app, &chat, "And then?").await;
    assert_eq!(res.status(), 400);
    let detail = "The conversation context with the new message exceeds the maximum context length.";
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "detail": detail }));
    assert!(messages(&app, &chat).await.iter().all(|m| m.message_from.as_deref() != Some("user")));

    // Auto-select adding to a context that is already large.
    let chat = new_chat(&app, &project, Some(true)).await;
    for name in ["C", "D"] {
        let id = conversation(&app, &project, name, &words(45_000)).await;
        app.local.store.add_chat_conversation(&chat, &id).await.unwrap();
    }
    let extra = conversation(&app, &project, "E", &words(30_000)).await;
    llm.set(model("never", false, vec![extra.clone()]));
    let res = ask(&app, &chat, "Everything please").await;
    assert_eq!(res.status(), 400);
    let detail = "Auto select returned too many conversations. The selected conversations exceed the maximum context length.";
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "detail": detail }));
    assert!(messages(&app, &chat).await.iter().all(|m| m.message_from.as_deref() != Some("user")));
    assert!(streamed_requests(&llm).is_empty(), "no answer was asked for");
}

fn candidate(id: &str, summary: String) -> chats::auto_select::Candidate {
    chats::auto_select::Candidate {
        id: id.into(),
        participant_name: "Unknown".into(),
        summary,
        tags: String::new(),
        created_at: String::new(),
    }
}

#[tokio::test]
async fn auto_select_retries_transient_errors_and_splits_oversized_batches() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    // The first two calls hit a 503; the third answers.
    let llm = FakeLlm::start(LlmBehaviour::by(move |body| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            return LlmBehaviour::Status(503, "{\"error\": \"overloaded\"}".into());
        }
        let prompt = body["messages"][0]["content"].as_str().unwrap_or_default();
        let ids: Vec<&str> = ["a", "b", "c"].into_iter().filter(|id| prompt.contains(&format!("id=\"{id}\""))).collect();
        LlmBehaviour::Reply(json!({ "selected_conversation_ids": ids }).to_string())
    }))
    .await;
    let selector = chats::auto_select::Selector {
        llm: common::providers::llm::LlmClient::default(),
        slot: llm.slot(),
        user_queries: vec!["What about the park?".into()],
        language: "en".into(),
        retry_delay: std::time::Duration::from_millis(10),
    };
    let picked = selector.select(&[candidate("a", "short".into())]).await;
    assert_eq!(picked, vec!["a".to_string()], "selected after two transient failures");
    assert_eq!(llm.request_count(), 3);

    // Two 60000-token summaries do not fit one prompt: each half asks on its own. A summary
    // over the maximum by itself is skipped without a call.
    let (before, big) = (llm.request_count(), words(60_000));
    let picked = selector.select(&[candidate("b", big.clone()), candidate("c", big), candidate("d", words(100_500))]).await;
    assert_eq!(picked, vec!["b".to_string(), "c".to_string()]);
    let prompts: Vec<String> =
        llm.requests.lock().unwrap()[before..].iter().map(|r| r["messages"][0]["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(prompts.len(), 2, "one call per half, none for the oversized one");
    assert!(prompts.iter().all(|p| p.contains("id=\"b\"") != p.contains("id=\"c\"")) && !prompts.iter().any(|p| p.contains("id=\"d\"")));

    // A provider that keeps failing: the batch selects nothing after three tries.
    llm.set(LlmBehaviour::Status(429, "slow down".into()));
    let before = llm.request_count();
    assert!(selector.select(&[candidate("a", "short".into())]).await.is_empty());
    assert_eq!(llm.request_count() - before, 3);
}

#[tokio::test]
async fn echo_local_answers_a_chat_over_the_demo_project() {
    let llm = FakeLlm::start(model("The demo project has one conversation.", false, vec![])).await;
    let app = app(&llm, true).await;
    let cid = app.initiate().await;
    app.text_chunk(&cid, 0, "We would like a bigger playground.").await;
    let summary = common::store::ConversationPatch { summary: Some("A playground.".into()), ..Default::default() };
    app.local.store.update_conversation(&cid, summary).await.unwrap();
    llm.set(model("The demo project has one conversation.", false, vec![cid.clone()]));
    // The demo project has no owner: an admin asks.
    let body = json!({"messages": [{"role": "user", "content": "What do people want?"}]});
    let url = app.url(&format!("/api/chats/{}", local::DEMO_CHAT_ID));
    let got = frames(app.client.post(url).bearer_auth(token(OTHER, true)).json(&body).send().await.unwrap()).await;
    assert_eq!(references(&got[0]), vec![(cid.clone(), "Ada".to_string())]);
    assert_eq!(text_of(&got[1..]), "The demo project has one conversation.");
    let prompt = streamed_requests(&llm)[0]["messages"][2]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("bigger playground"), "{prompt}");
}
