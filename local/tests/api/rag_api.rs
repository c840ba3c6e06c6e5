//! The four RAG routes of `/api/stateless/rag` over HTTP on echo-local (api.md §2.6): each
//! route's auth matrix and errors (400, 401, 403, 404, 422, 503 without a server and with the
//! server down), then against a real `lightrag-server` (scripts/lightrag.sh, started by
//! scripts/test.sh): insert, prompt, answer, transcripts, deletion, and the leak test across
//! three projects and their single conversations.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::rag_etl::{chunk_files, distinct_segment_ids, server};
use crate::support::*;
use common::config::RagSettings;
use common::providers::rag::{LightRagClient, LightRagConfig, file_source};
use common::store::NewSegment;
use reqwest::Method;
use serde_json::{Value, json};

const OTHER: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";
const ADMIN: &str = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
const RAG_DOWN: &str = "RAG service is unavailable, please try again later";
const PROMPT_DOWN: &str = "RAG query temporarily unavailable. Please try manual conversation selection or contact support.";

const INSERT: &str = "/api/stateless/rag/insert";
const SIMPLE: &str = "/api/stateless/rag/simple_query";
const PROMPT: &str = "/api/stateless/rag/get_lightrag_prompt";
const DELETE: &str = "/api/stateless/rag/delete_conversation";

/// echo-local with JWT checks, `url` as LightRAG's server (or none) and `llm` as simple_query's model.
async fn rag_app(url: Option<String>, key: Option<String>, llm: &FakeLlm) -> TestApp {
    let slot = llm.slot();
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.inference = slot.clone();
        o.settings.rag = RagSettings { server_url: url, api_key: key, enable_audio_input: false, contextual_llm: slot };
    })
    .await;
    distinct_segment_ids(&app);
    app
}

async fn segment(app: &TestApp, conversation: &str, transcript: &str) -> i64 {
    let new = NewSegment { conversation_id: conversation.into(), transcript: Some(transcript.into()), contextual_transcript: None };
    app.local.store.create_segment(new).await.unwrap().id
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

/// (status, detail) of a POST.
async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> (u16, Value) {
    app.call(Method::POST, path, Some(token), Some(body)).await
}

#[tokio::test]
async fn each_route_checks_ids_and_owners_then_answers_503_without_a_server() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("unused".into())).await;
    let app = rag_app(None, None, &llm).await;
    let (project, cid) = app.owned_conversation(OWNER).await;
    let own = segment(&app, &cid, "own words").await;
    let (other_project, other_cid) = app.owned_conversation(OTHER).await;
    let foreign = segment(&app, &other_cid, "their words").await;
    let (owner, admin) = (token(OWNER, false), token(ADMIN, true));
    let missing_uuid = "00000000-0000-4000-8000-000000000000";
    let insert = |id: &str| json!({"content": "text", "transcripts": [], "echo_segment_id": id});

    for path in [INSERT, SIMPLE, PROMPT, DELETE] {
        let (status, body) = app.call(Method::POST, path, None, Some(json!({}))).await;
        assert_eq!((status, detail(&body)), (401, "Invalid session"), "{path}: auth runs before validation");
    }
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (INSERT, &owner, insert("12a"), 400, "Invalid segment ID"),
        (INSERT, &owner, insert("987654321"), 404, "Segment not found"),
        (INSERT, &owner, insert(&foreign.to_string()), 403, "You are not authorized to access this segment"),
        (INSERT, &owner, insert(&own.to_string()), 503, RAG_DOWN),
        (INSERT, &admin, insert(&foreign.to_string()), 503, RAG_DOWN),
        (SIMPLE, &owner, json!({"query": "q", "echo_segment_ids": ["x"]}), 400, "Invalid segment ID"),
        (SIMPLE, &owner, json!({"query": "q", "echo_segment_ids": ["987654321"]}), 404, "Segment not found"),
        (
            SIMPLE,
            &owner,
            json!({"query": "q", "echo_segment_ids": [own.to_string(), foreign.to_string()]}),
            403,
            "You are not authorized to access this segment",
        ),
        (SIMPLE, &owner, json!({"query": "q"}), 403, "Only administrators may query without naming segments, conversations or projects"),
        (SIMPLE, &owner, json!({"query": "q", "echo_segment_ids": [own.to_string()]}), 503, RAG_DOWN),
        (SIMPLE, &admin, json!({"query": "q"}), 503, RAG_DOWN),
        (
            PROMPT,
            &owner,
            json!({"query": "q"}),
            400,
            "At least one of echo_segment_ids, echo_conversation_ids, or echo_project_ids must be provided if auto_select_bool is False",
        ),
        (
            PROMPT,
            &owner,
            json!({"query": "q", "auto_select_bool": true}),
            403,
            "Only administrators may query without naming segments, conversations or projects",
        ),
        (PROMPT, &owner, json!({"query": "q", "echo_segment_ids": ["1.5"]}), 400, "Invalid segment ID"),
        (PROMPT, &owner, json!({"query": "q", "echo_conversation_ids": ["not-a-uuid"]}), 404, "Conversation not found"),
        (PROMPT, &owner, json!({"query": "q", "echo_conversation_ids": [missing_uuid]}), 404, "Conversation not found"),
        (
            PROMPT,
            &owner,
            json!({"query": "q", "echo_conversation_ids": [cid, other_cid]}),
            403,
            "You are not authorized to access this conversation",
        ),
        (PROMPT, &owner, json!({"query": "q", "echo_project_ids": [missing_uuid]}), 404, "Project not found"),
        (
            PROMPT,
            &owner,
            json!({"query": "q", "echo_project_ids": [project, other_project]}),
            403,
            "User does not have access to this project",
        ),
        (
            PROMPT,
            &owner,
            json!({"query": "q", "echo_segment_ids": [foreign.to_string()]}),
            403,
            "You are not authorized to access this segment",
        ),
        (PROMPT, &owner, json!({"query": "q", "echo_project_ids": [project], "echo_conversation_ids": [cid]}), 503, PROMPT_DOWN),
        (PROMPT, &admin, json!({"query": "q", "auto_select_bool": true}), 503, PROMPT_DOWN),
        (PROMPT, &admin, json!({"query": "q", "echo_project_ids": [other_project]}), 503, PROMPT_DOWN),
        (DELETE, &owner, json!({"conversation_ids": [cid, "nope"]}), 400, "Invalid conversation ID"),
        (DELETE, &owner, json!({"conversation_ids": [missing_uuid]}), 404, "Conversation not found"),
        (DELETE, &owner, json!({"conversation_ids": [cid, other_cid]}), 403, "You are not authorized to access this conversation"),
        (DELETE, &owner, json!({"conversation_ids": [cid]}), 503, RAG_DOWN),
        (DELETE, &admin, json!({"conversation_ids": [other_cid]}), 503, RAG_DOWN),
    ];
    for (path, token, body, status, expected) in cases {
        let (got, answer) = post(&app, path, token, body.clone()).await;
        assert_eq!((got, detail(&answer)), (status, expected), "{path} {body}");
    }
    for (path, body) in [
        (INSERT, json!({"content": "text", "echo_segment_id": own.to_string()})),
        (INSERT, json!({"content": "  ", "transcripts": [], "echo_segment_id": own.to_string()})),
        (SIMPLE, json!({"echo_segment_ids": [own.to_string()]})),
        (PROMPT, json!({"query": "q", "echo_segment_ids": [own.to_string()], "top_k": 0})),
        (DELETE, json!({"conversation_ids": "not a list"})),
    ] {
        let (status, answer) = post(&app, path, &owner, body.clone()).await;
        assert_eq!(status, 422, "{path} {body}: {answer}");
        assert!(answer["detail"].is_array(), "FastAPI's shape: {answer}");
    }
    let res =
        app.client.post(app.url(PROMPT)).bearer_auth(&owner).json(&json!({"query": "q", "echo_conversation_ids": [cid]})).send().await;
    assert_eq!(res.unwrap().headers().get("retry-after").map(|v| v.to_str().unwrap().to_string()), Some("5".into()));
    // Nothing was deleted by the refused deletions.
    assert!(app.local.store.get_segment(own).await.unwrap().is_some() && app.local.store.get_segment(foreign).await.unwrap().is_some());
    assert_eq!(llm.request_count(), 0, "no answer without retrieval");
}

#[tokio::test]
async fn with_the_server_down_every_route_answers_503_and_changes_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let llm = FakeLlm::start(LlmBehaviour::Reply("unused".into())).await;
    let app = rag_app(Some(format!("http://127.0.0.1:{port}")), Some("k".into()), &llm).await;
    let (project, cid) = app.owned_conversation(OWNER).await;
    let own = segment(&app, &cid, "own words").await;
    let owner = token(OWNER, false);
    let insert = json!({"content": ["a", "b"], "transcripts": ["a"], "echo_segment_id": own.to_string()});
    assert_eq!(post(&app, INSERT, &owner, insert).await, (503, json!({"detail": RAG_DOWN})));
    let query = json!({"query": "q", "echo_segment_ids": [own.to_string()], "get_transcripts": true});
    assert_eq!(post(&app, SIMPLE, &owner, query).await, (503, json!({"detail": RAG_DOWN})));
    let prompt = json!({"query": "q", "echo_project_ids": [project]});
    assert_eq!(post(&app, PROMPT, &owner, prompt).await, (503, json!({"detail": PROMPT_DOWN})));
    assert_eq!(post(&app, DELETE, &owner, json!({"conversation_ids": [cid]})).await, (503, json!({"detail": RAG_DOWN})));
    assert!(app.local.store.get_segment(own).await.unwrap().is_some(), "the segment row stays when its document could not go");
    assert_eq!(llm.request_count(), 0);
}

/// A client of the test server, for what the API does not show (indexing status, raw chunks).
fn client(url: &str, key: &Option<String>) -> LightRagClient {
    LightRagClient::new(LightRagConfig::new(url, key.clone())).unwrap()
}

/// Inserts through the API, retrying while another test's deletion keeps the server busy (503).
async fn api_insert(app: &TestApp, token: &str, id: i64, content: Value) -> Value {
    let body = json!({"content": content, "transcripts": [], "echo_segment_id": id.to_string()});
    for _ in 0..120 {
        match post(app, INSERT, token, body.clone()).await {
            (503, _) => tokio::time::sleep(Duration::from_millis(500)).await,
            (status, answer) => {
                assert_eq!(status, 200, "{answer}");
                return answer;
            }
        }
    }
    panic!("the server stayed busy for 60 s");
}

/// Waits until the segments' documents are indexed. The API gives no track id and a repeated
/// insert cannot probe (right after an insert the server may accept the same file source again),
/// so this reads the server's newest documents.
async fn wait_indexed(url: &str, key: &Option<String>, ids: &[i64]) {
    let wanted: BTreeSet<String> = ids.iter().map(|id| file_source(*id)).collect();
    let body = json!({"page": 1, "page_size": 200, "sort_field": "updated_at", "sort_direction": "desc"});
    for _ in 0..240 {
        let mut request = reqwest::Client::new().post(format!("{url}/documents/paginated")).json(&body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        let documents = answer["documents"].as_array().cloned().unwrap_or_default();
        let status = |file: &String| documents.iter().find(|d| d["file_path"] == file.as_str()).and_then(|d| d["status"].as_str());
        assert!(wanted.iter().all(|f| status(f) != Some("failed")), "a document failed: {answer}");
        if wanted.iter().all(|f| status(f) == Some("processed")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{wanted:?} were not indexed within 60 s");
}

/// The fake model answers with what it was given, so a leak into the prompt shows in the answer.
fn echoing_llm() -> LlmBehaviour {
    LlmBehaviour::by(|body| LlmBehaviour::Reply(format!("ANSWER over: {}", body["messages"][0]["content"].as_str().unwrap_or_default())))
}

#[tokio::test]
async fn insert_prompt_answer_and_delete_against_the_real_server() {
    let (url, key) = server();
    let llm = FakeLlm::start(echoing_llm()).await;
    let app = rag_app(Some(url.clone()), key.clone(), &llm).await;
    let rag = client(&url, &key);
    let marker = format!("apimarker{}", uuid::Uuid::new_v4().simple());
    let (project, cid) = app.owned_conversation(OWNER).await;
    let id = segment(&app, &cid, &format!("The stored transcript about {marker}.")).await;
    let owner = token(OWNER, false);

    let content = json!([format!("Residents praised the {marker} playground."), "They asked for more shade."]);
    let answer = api_insert(&app, &owner, id, content.clone()).await;
    assert_eq!(answer, json!({"status": "success", "result": {"status": "inserted", "content": content}}));
    wait_indexed(&url, &key, &[id]).await;
    assert_eq!(api_insert(&app, &owner, id, json!("again")).await["result"]["status"], "inserted", "already there = inserted");
    assert_eq!(chunk_files(&rag, &marker).await, BTreeSet::from([file_source(id)]), "one document, joined with blank lines");

    let history: Vec<Value> = (0..12).map(|i| json!({"role": "user", "content": format!("turn number {i}")})).collect();
    let body =
        json!({"query": format!("What about the {marker} playground?"), "echo_conversation_ids": [cid], "conversation_history": history});
    let (status, prompt) = post(&app, PROMPT, &owner, body).await;
    assert_eq!(status, 200, "{prompt}");
    let prompt = prompt.as_str().expect("a JSON string");
    assert!(prompt.contains(&format!("Residents praised the {marker} playground.\\n\\nThey asked")), "{prompt}");
    assert!(prompt.contains(&format!("[1] {}", file_source(id))), "{prompt}");
    let section = prompt.split("---Conversation History---\n").nth(1).expect("a history section").split("\n\n").next().unwrap();
    let turns: Vec<&str> = section.lines().collect();
    assert_eq!(turns.len(), 10, "the last ten turns: {section}");
    assert_eq!((turns[0], turns[9]), ("user: turn number 2", "user: turn number 11"));
    let (_, by_project) = post(&app, PROMPT, &owner, json!({"query": format!("{marker} playground"), "echo_project_ids": [project]})).await;
    assert!(by_project.as_str().unwrap().contains(&marker), "a project's segments: {by_project}");

    let body =
        json!({"query": format!("What about the {marker} playground?"), "echo_segment_ids": [id.to_string()], "get_transcripts": true});
    let (status, answer) = post(&app, SIMPLE, &owner, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["result"].as_str().unwrap().starts_with("ANSWER over: ") && answer["result"].as_str().unwrap().contains(&marker));
    assert_eq!(answer["transcripts"], json!([format!("The stored transcript about {marker}.")]));
    let request = llm.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(request["model"], "gpt-test", "the LIGHTRAG_LITELLM_INFERENCE slot");
    assert_eq!(request["messages"][1]["content"], format!("What about the {marker} playground?"));
    let (_, nothing) = post(&app, SIMPLE, &token(ADMIN, true), json!({"query": "zzzzqqqq xxxxyyyy"})).await;
    assert!(nothing["result"].is_string(), "the whole corpus for an admin: {nothing}");

    for _ in 0..60 {
        match post(&app, DELETE, &owner, json!({"conversation_ids": [cid]})).await {
            (503, _) => tokio::time::sleep(Duration::from_millis(500)).await,
            answer => {
                assert_eq!(answer, (200, Value::Null));
                break;
            }
        }
    }
    assert_eq!(app.local.store.get_segment(id).await.unwrap(), None, "the row is gone");
    assert!(chunk_files(&rag, &marker).await.is_empty(), "the document is gone");
    assert!(app.local.store.get_conversation(&cid).await.unwrap().is_some(), "only the RAG part: the conversation stays");
}

/// Marker words no other scope shares.
fn project_marker(run: &str, p: usize) -> String {
    format!("zp{p}proj{run}")
}
fn conversation_marker(run: &str, p: usize, c: usize) -> String {
    format!("zc{p}x{c}conv{run}")
}

#[tokio::test]
async fn no_api_answer_ever_carries_another_scopes_marker() {
    let (url, key) = server();
    let llm = FakeLlm::start(echoing_llm()).await;
    let app = rag_app(Some(url.clone()), key.clone(), &llm).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let topics = ["the park budget", "traffic near the school", "the library opening hours"];
    let owners: Vec<String> = (0..3).map(|p| format!("{p}{p}{p}{p}{p}{p}{p}{p}-0000-4000-8000-00000000000{p}")).collect();
    // Three projects of three conversations, one segment each: every text carries its project's
    // and its conversation's marker and shares theme words (entities merge across projects).
    let mut projects = Vec::new();
    let mut conversations = Vec::new();
    let mut ids = Vec::new();
    for (p, owner) in owners.iter().enumerate() {
        let (project, first) = app.owned_conversation(owner).await;
        projects.push(project.clone());
        for (c, topic) in topics.iter().enumerate() {
            let cid = if c == 0 { first.clone() } else { new_conversation(&app, &project).await };
            let (pm, cm) = (project_marker(&run, p), conversation_marker(&run, p, c));
            let text = format!("Residents {pm} discussed {topic} with {cm}. Everyone in {pm} agreed {topic} matters, said {cm}.");
            let id = segment(&app, &cid, &text).await;
            api_insert(&app, &token(owner, false), id, json!(text)).await;
            conversations.push((p, c, cid));
            ids.push(id);
        }
    }
    wait_indexed(&url, &key, &ids).await;
    let markers: Vec<(usize, Option<usize>, String)> = (0..3)
        .flat_map(|p| {
            let run = run.clone();
            std::iter::once((p, None, project_marker(&run, p))).chain((0..3).map(move |c| (p, Some(c), conversation_marker(&run, p, c))))
        })
        .collect();
    // (owner, body key, ids, project, conversation or None for the whole project)
    let mut scopes: Vec<(usize, &str, Vec<String>, Option<usize>)> =
        projects.iter().enumerate().map(|(p, pid)| (p, "echo_project_ids", vec![pid.clone()], None)).collect();
    scopes.extend(conversations.iter().map(|(p, c, cid)| (*p, "echo_conversation_ids", vec![cid.clone()], Some(*c))));
    let queries = ["What did residents say about the park budget?", "traffic school", "library opening hours", "residents agreed matters"];
    let (mut checked, mut own_seen) = (0, 0);
    for round in 0..5 {
        for (i, (p, key, scope_ids, conversation)) in scopes.iter().enumerate() {
            let owner = token(&owners[*p], false);
            let query = format!("{} {}", queries[(round + i) % queries.len()], project_marker(&run, (p + 1) % 3));
            let (status, prompt) = post(&app, PROMPT, &owner, json!({"query": query, *key: scope_ids})).await;
            assert_eq!(status, 200, "{prompt}");
            let prompt = prompt.as_str().unwrap().to_string();
            // simple_query takes segment ids: the scope's own.
            let segments: Vec<String> = match conversation {
                Some(c) => vec![ids[p * 3 + c].to_string()],
                None => (0..3).map(|c| ids[p * 3 + c].to_string()).collect(),
            };
            let body = json!({"query": query, "echo_segment_ids": segments, "get_transcripts": true});
            let (status, answer) = post(&app, SIMPLE, &owner, body).await;
            assert_eq!(status, 200, "{answer}");
            // The query itself names another project's marker; only what came back is judged.
            let returned =
                [prompt.replace(&query, ""), answer["result"].as_str().unwrap().replace(&query, ""), answer["transcripts"].to_string()];
            for (mp, mc, marker) in &markers {
                let allowed = mp == p && (conversation.is_none() || mc.is_none() || mc == conversation);
                if !allowed {
                    for text in &returned {
                        assert!(!text.contains(marker.as_str()), "scope {key} {scope_ids:?} of project {p} saw {marker}:\n{text}");
                    }
                }
            }
            own_seen += usize::from(prompt.contains(&project_marker(&run, *p)));
            checked += 2;
        }
    }
    assert!(checked >= 100, "{checked} queries");
    assert!(own_seen * 2 > checked / 2, "not vacuous: the scope's own marker in {own_seen} of {} prompts", checked / 2);
    // Unrestricted, the same question does reach every project's text: the filter is what keeps it out.
    let (status, corpus) =
        post(&app, PROMPT, &token(ADMIN, true), json!({"query": queries[3], "auto_select_bool": true, "top_k": 200})).await;
    assert_eq!(status, 200);
    let seen = (0..3).filter(|p| corpus.as_str().unwrap().contains(&project_marker(&run, *p))).count();
    assert!(seen >= 2, "an admin's whole-corpus prompt holds several projects' markers ({seen}): {corpus}");
}

async fn new_conversation(app: &TestApp, project: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let new = common::store::NewConversation { id: id.clone(), project_id: project.into(), ..Default::default() };
    app.local.store.create_conversation(new).await.unwrap();
    id
}
