//! Shared by the black-box tests: start echo-local on random ports, read fixtures, upload the
//! way a browser does.

use std::path::PathBuf;
use std::time::Duration;

use local::{Local, LocalOptions};
use serde_json::{Value, json};

#[path = "../../../benches/support/echo_local_process.rs"]
pub mod echo_local_process;

pub const PROJECT: &str = local::DEMO_PROJECT_ID;
pub const TAG: &str = local::DEMO_TAG_ID;
pub const PORTAL_ORIGIN: &str = "http://localhost:3001";

pub struct TestApp {
    pub local: Local,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut LocalOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = LocalOptions::for_tests(dir.path());
        adjust(&mut options);
        let local = local::start(options).await.expect("echo-local starts");
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        TestApp { local, client, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.local.api_url)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        read(res).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        read(res).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let res = self.client.post(self.url(path)).header("content-type", "application/json").body(body).send().await.unwrap();
        read(res).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let res = self.client.delete(self.url(path)).send().await.unwrap();
        read(res).await
    }

    /// A new conversation in the demo project.
    pub async fn initiate(&self) -> String {
        let (status, body) = self
            .post(&format!("/api/participant/projects/{PROJECT}/conversations/initiate"), json!({"name": "Ada", "tag_id_list": [TAG]}))
            .await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    pub async fn upload_url(&self, conversation: &str, filename: &str, content_type: &str) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/participant/conversations/{conversation}/get-upload-url"),
                json!({"filename": filename, "content_type": content_type, "conversation_id": conversation}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// POSTs like the portal: every returned field in order, then the file last.
    pub async fn browser_upload(&self, upload: &Value, bytes: Vec<u8>, content_type: &str) -> (u16, String) {
        let mut form = reqwest::multipart::Form::new();
        for (name, value) in upload["fields"].as_object().unwrap() {
            form = form.text(name.clone(), value.as_str().unwrap().to_string());
        }
        let part = reqwest::multipart::Part::bytes(bytes).file_name("blob").mime_str(content_type).unwrap();
        form = form.part("file", part);
        let res =
            self.client.post(upload["upload_url"].as_str().unwrap()).header("origin", PORTAL_ORIGIN).multipart(form).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// The SQLite file behind the store, for rows the Store does not write or read.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.dir.path().join("echo.sqlite3")).unwrap()
    }

    pub fn published(&self) -> Vec<Value> {
        self.local.queue.snapshot().iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect()
    }
}

pub async fn read(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("status {status}: body is not JSON: {text:?}"));
    (status, value)
}

/// `../shared/data` beside the repository (or `ECHO_SHARED_DATA`); fails loudly when absent.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("ECHO_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    assert!(
        dir.join("audio").is_dir(),
        "the test fixtures are missing: expected ../shared/data/audio beside the repository (or set ECHO_SHARED_DATA); \
         CI lays shared/ beside the clone"
    );
    dir
}

pub fn fixture_audio(name: &str) -> Vec<u8> {
    let path = shared_data().join("audio").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

pub const JWT_SECRET: &str = "test-directus-secret";
pub const OWNER: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";

/// A Directus-style session token for `user_id`.
pub fn token(user_id: &str, admin: bool) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    common::web::auth::sign(&json!({"id": user_id, "admin_access": admin, "app_access": true, "exp": exp, "iss": "directus"}), JWT_SECRET)
}

/// How the fake chat-completions server answers.
#[derive(Clone, Debug)]
pub enum LlmBehaviour {
    /// Answers with this text (streamed in pieces of a few characters when asked to stream).
    Reply(String),
    /// Answers with an HTTP status and body.
    Status(u16, String),
    /// Waits this long before answering.
    Hang(Duration),
    /// Streams this text, then an error event instead of the end (a provider failing mid-stream).
    StreamThenFail(String),
    /// Decides per request (by the request body: its prompt, whether it streams).
    By(Responder),
}

/// A per-request choice of behaviour.
#[derive(Clone)]
pub struct Responder(pub std::sync::Arc<dyn Fn(&Value) -> LlmBehaviour + Send + Sync>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

impl LlmBehaviour {
    pub fn by(f: impl Fn(&Value) -> LlmBehaviour + Send + Sync + 'static) -> Self {
        LlmBehaviour::By(Responder(std::sync::Arc::new(f)))
    }
}

/// The SSE body of a streamed answer: `text` in deltas of three characters.
fn sse_deltas(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(3)
        .map(|piece| format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": piece.iter().collect::<String>()}}]})))
        .collect()
}

/// A local server speaking the OpenAI chat-completions wire protocol, recording every request.
pub struct FakeLlm {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    pub behaviour: std::sync::Arc<std::sync::Mutex<LlmBehaviour>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    pub async fn start(behaviour: LlmBehaviour) -> Self {
        use axum::response::IntoResponse;
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let behaviour = std::sync::Arc::new(std::sync::Mutex::new(behaviour));
        let (r, b) = (requests.clone(), behaviour.clone());
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                let (r, b) = (r.clone(), b.clone());
                async move {
                    // Like OpenAI: no request without the key.
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test") {
                        let error = json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}});
                        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
                    }
                    r.lock().unwrap().push(body.0.clone());
                    let mut behaviour = b.lock().unwrap().clone();
                    if let LlmBehaviour::By(Responder(choose)) = &behaviour {
                        behaviour = choose(&body.0);
                    }
                    let stream = body.0["stream"] == json!(true);
                    match behaviour {
                        LlmBehaviour::Hang(d) => {
                            tokio::time::sleep(d).await;
                            (axum::http::StatusCode::OK, "{}").into_response()
                        }
                        LlmBehaviour::Status(code, text) => (axum::http::StatusCode::from_u16(code).unwrap(), text).into_response(),
                        LlmBehaviour::StreamThenFail(text) => {
                            let mut sse = sse_deltas(&text);
                            sse.push_str(&format!("data: {}\n\n", json!({"error": {"message": "upstream overloaded", "code": 529}})));
                            ([("content-type", "text/event-stream")], sse).into_response()
                        }
                        LlmBehaviour::Reply(text) if stream => {
                            let mut sse = sse_deltas(&text);
                            sse.push_str(&format!(
                                "data: {}\n\n",
                                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                            ));
                            sse.push_str("data: [DONE]\n\n");
                            ([("content-type", "text/event-stream")], sse).into_response()
                        }
                        LlmBehaviour::Reply(text) => axum::Json(json!({
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
                        }))
                        .into_response(),
                        LlmBehaviour::By(_) => {
                            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "a responder chose a responder").into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeLlm { url, requests, behaviour, _task: task }
    }

    pub fn set(&self, behaviour: LlmBehaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn slot(&self) -> common::config::LlmSlot {
        common::config::LlmSlot {
            model: Some("openai/gpt-test".into()),
            api_key: Some("sk-test".into()),
            api_base: Some(self.url.clone()),
            ..Default::default()
        }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl TestApp {
    /// echo-local with JWT checks and every LLM slot pointed at `llm`.
    pub async fn start_dashboard(llm: Option<&FakeLlm>) -> Self {
        let slot = llm.map(FakeLlm::slot);
        Self::start_with(move |o| {
            o.settings.auth.directus_secret = Some(JWT_SECRET.into());
            if let Some(slot) = slot {
                o.settings.llm.medium = slot.clone();
                o.settings.llm.summary = slot.clone();
                o.settings.llm.small = slot.clone();
                o.settings.llm.inference = slot;
            }
        })
        .await
    }

    /// A project owned by `owner` with one conversation; returns (project id, conversation id).
    pub async fn owned_conversation(&self, owner: &str) -> (String, String) {
        let project = uuid::Uuid::new_v4().to_string();
        self.local
            .store
            .create_project(common::store::NewProject {
                id: project.clone(),
                directus_user_id: Some(owner.into()),
                name: Some("Owned project".into()),
                language: Some("en".into()),
                is_conversation_allowed: true,
                is_get_reply_enabled: Some(true),
                ..Default::default()
            })
            .await
            .unwrap();
        let conversation = uuid::Uuid::new_v4().to_string();
        self.local
            .store
            .create_conversation(common::store::NewConversation {
                id: conversation.clone(),
                project_id: project.clone(),
                participant_name: Some("Ada".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        (project, conversation)
    }

    /// `bytes` stored as an upload of the conversation (`conversation/{cid}/chunks/{id}-{file}`)
    /// and a portal-audio chunk pointing at it.
    pub async fn stored_chunk(
        &self,
        conversation: &str,
        file: &str,
        bytes: Vec<u8>,
        timestamp: chrono::DateTime<chrono::Utc>,
    ) -> common::store::Chunk {
        let id = uuid::Uuid::new_v4().to_string();
        let key = format!("conversation/{conversation}/chunks/{id}-{file}");
        self.local.state.blob.put(&key, bytes.into(), None).await.unwrap();
        self.local
            .store
            .create_chunk(common::store::NewChunk {
                created_at: None,
                id,
                conversation_id: conversation.into(),
                timestamp,
                path: Some(self.local.state.blob.url_for_key(&key)),
                source: Some("PORTAL_AUDIO".into()),
                transcript: None,
            })
            .await
            .unwrap()
    }

    /// A text chunk at `second` past a fixed minute.
    pub async fn text_chunk(&self, conversation: &str, second: u32, text: &str) -> String {
        use chrono::TimeZone;
        let id = uuid::Uuid::new_v4().to_string();
        self.local
            .store
            .create_chunk(common::store::NewChunk {
                created_at: None,
                id: id.clone(),
                conversation_id: conversation.into(),
                timestamp: chrono::Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, second).unwrap(),
                path: None,
                source: Some("PORTAL_TEXT".into()),
                transcript: Some(text.into()),
            })
            .await
            .unwrap();
        id
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.unwrap()).await
    }
}
pub mod directus;
pub mod google;
pub mod postgres;

pub const WHISPER_KEY: &str = "sk-whisper";

/// A local server speaking the OpenAI `/v1/audio/transcriptions` protocol: answers every
/// upload with the key with `text`, recording the multipart fields it got (the file as its size).
pub struct FakeWhisper {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeWhisper {
    pub async fn start(text: &'static str) -> Self {
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new()
            .route(
                "/v1/audio/transcriptions",
                axum::routing::post(move |headers: axum::http::HeaderMap, mut form: axum::extract::Multipart| {
                    let seen = seen.clone();
                    async move {
                        use axum::response::IntoResponse;
                        // Like OpenAI: no transcription without the key.
                        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(format!("Bearer {WHISPER_KEY}").as_str()) {
                            let error = json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}});
                            return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
                        }
                        let mut fields = std::collections::BTreeMap::new();
                        while let Some(field) = form.next_field().await.unwrap() {
                            let name = field.name().unwrap_or_default().to_string();
                            let value = if name == "file" {
                                format!("{} bytes", field.bytes().await.unwrap().len())
                            } else {
                                field.text().await.unwrap()
                            };
                            fields.insert(name, value);
                        }
                        seen.lock().unwrap().push(fields);
                        axum::Json(json!({"text": text})).into_response()
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeWhisper { url, requests, _task: task }
    }

    /// echo-local transcribing with this server and summarising with `llm`.
    pub async fn app_with(&self, llm: &FakeLlm) -> TestApp {
        let slot = llm.slot();
        TestApp::start_with(|o| {
            self.configure(&mut o.settings);
            o.settings.llm.summary = slot;
        })
        .await
    }

    /// Points the settings' transcription at this server.
    pub fn configure(&self, settings: &mut common::config::Settings) {
        settings.transcription.provider_name = Some("LiteLLM".into());
        settings.transcription.litellm_whisper_url = Some(self.url.clone());
        settings.transcription.litellm_whisper_model = Some("openai/whisper-1".into());
        settings.transcription.litellm_whisper_api_key = Some(WHISPER_KEY.into());
    }
}

/// One job the fake RunPod holds.
#[derive(Clone, Debug)]
pub struct RunpodJob {
    pub endpoint: String,
    pub input: Value,
    pub webhook: Option<String>,
    pub status: String,
    pub output: Value,
}

#[derive(Default)]
pub struct RunpodState {
    pub jobs: std::collections::BTreeMap<String, RunpodJob>,
    /// Every `/run` body and its `Authorization` header, in order.
    pub runs: Vec<(Value, String)>,
    pub status_requests: usize,
    /// Every status request answers this status code instead (a RunPod outage).
    pub status_failure: Option<u16>,
    /// Finish every new job with this transcript and call its webhook, as RunPod does.
    pub auto_complete: Option<String>,
    /// Each automatic webhook call: the job and the status code echo-local answered (`None`: no
    /// webhook URL, or the request failed). A detached task cannot fail the test; the test reads these.
    pub webhook_calls: Vec<(String, Option<u16>)>,
    /// Requests refused for a missing or wrong key.
    pub unauthorized: usize,
}

/// A local server speaking RunPod's serverless protocol: `POST /v2/{endpoint}/run` answers
/// `{id, status: IN_QUEUE}`; `GET /v2/{endpoint}/status/{id}` answers the job's `{id, status,
/// output}` (404 for an unknown job); a finished job's webhook is called like RunPod calls it.
pub struct FakeRunpod {
    pub base: String,
    pub state: std::sync::Arc<std::sync::Mutex<RunpodState>>,
    _task: tokio::task::JoinHandle<()>,
}

pub const RUNPOD_KEY: &str = "rp-key";
pub const WEBHOOK_SECRET: &str = "hook-secret";

impl FakeRunpod {
    pub async fn start() -> Self {
        use axum::Json;
        use axum::extract::{Path, State};
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        type Shared = std::sync::Arc<std::sync::Mutex<RunpodState>>;
        let state: Shared = Default::default();
        let run = |State(state): State<Shared>, Path(endpoint): Path<String>, headers: HeaderMap, body: Json<Value>| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let (id, auto) = {
                let mut s = state.lock().unwrap();
                // Like RunPod: 401 without the key.
                if auth != format!("Bearer {RUNPOD_KEY}") {
                    s.unauthorized += 1;
                    return (axum::http::StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
                }
                s.runs.push((body.0.clone(), auth));
                let id = format!("job-{}", s.runs.len());
                let job = RunpodJob {
                    endpoint,
                    input: body.0["input"].clone(),
                    webhook: body.0["webhook"].as_str().map(str::to_string),
                    status: "IN_QUEUE".into(),
                    output: Value::Null,
                };
                s.jobs.insert(id.clone(), job);
                (id, s.auto_complete.clone())
            };
            if let Some(text) = auto {
                let (state, id) = (state.clone(), id.clone());
                tokio::spawn(async move {
                    // After the worker stored the job's link (a result that beats it is ignored).
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    let chunk = state.lock().unwrap().jobs[&id].input["conversation_chunk_id"].clone();
                    complete_job(&state, &id, json!({"conversation_chunk_id": chunk, "joined_text": text}));
                    let status = call_webhook(&state, &id).await;
                    state.lock().unwrap().webhook_calls.push((id, status));
                });
            }
            axum::Json(json!({"id": id, "status": "IN_QUEUE"})).into_response()
        };
        let status = |State(state): State<Shared>, Path((endpoint, id)): Path<(String, String)>, headers: HeaderMap| async move {
            let mut s = state.lock().unwrap();
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(format!("Bearer {RUNPOD_KEY}").as_str()) {
                s.unauthorized += 1;
                return (axum::http::StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
            }
            s.status_requests += 1;
            if let Some(code) = s.status_failure {
                return (axum::http::StatusCode::from_u16(code).unwrap(), "busy").into_response();
            }
            match s.jobs.get(&id).filter(|j| j.endpoint == endpoint) {
                Some(job) => axum::Json(job_payload(&id, job)).into_response(),
                None => (axum::http::StatusCode::NOT_FOUND, axum::Json(json!({"error": "request does not exist"}))).into_response(),
            }
        };
        let app = axum::Router::new()
            .route("/v2/{endpoint}/run", axum::routing::post(run))
            .route("/v2/{endpoint}/status/{id}", axum::routing::get(status))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeRunpod { base, state, _task: task }
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/v2/{name}", self.base)
    }

    /// Points the settings at this server: provider Runpod, both endpoints, the key, the secret.
    pub fn configure(&self, settings: &mut common::config::Settings) {
        let t = &mut settings.transcription;
        t.provider_name = Some("Runpod".into());
        t.runpod_whisper_api_key = Some(RUNPOD_KEY.into());
        t.runpod_whisper_base_url = Some(self.endpoint("whisper"));
        t.runpod_whisper_priority_base_url = Some(self.endpoint("whisper-priority"));
        settings.api.runpod_webhook_secret = Some(WEBHOOK_SECRET.into());
    }

    pub fn runs(&self) -> Vec<(Value, String)> {
        self.state.lock().unwrap().runs.clone()
    }

    pub fn set_status(&self, id: &str, status: &str) {
        self.state.lock().unwrap().jobs.get_mut(id).unwrap().status = status.into();
    }

    pub fn complete(&self, id: &str, output: Value) {
        complete_job(&self.state, id, output);
    }

    pub fn forget(&self, id: &str) {
        self.state.lock().unwrap().jobs.remove(id);
    }

    /// The job's status object, as the webhook and status requests carry it.
    pub fn payload(&self, id: &str) -> Value {
        let s = self.state.lock().unwrap();
        job_payload(id, &s.jobs[id])
    }

    /// Calls the job's webhook URL as RunPod does; the answer's status code.
    pub async fn call_webhook(&self, id: &str) -> Option<u16> {
        call_webhook(&self.state, id).await
    }
}

fn job_payload(id: &str, job: &RunpodJob) -> Value {
    let mut payload = json!({"id": id, "status": job.status, "delayTime": 10, "executionTime": 20});
    if !job.output.is_null() {
        payload["output"] = job.output.clone();
    }
    payload
}

fn complete_job(state: &std::sync::Mutex<RunpodState>, id: &str, output: Value) {
    let mut s = state.lock().unwrap();
    let job = s.jobs.get_mut(id).unwrap();
    job.status = "COMPLETED".into();
    job.output = output;
}

async fn call_webhook(state: &std::sync::Mutex<RunpodState>, id: &str) -> Option<u16> {
    let (url, payload) = {
        let s = state.lock().unwrap();
        let job = &s.jobs[id];
        (job.webhook.clone()?, job_payload(id, job))
    };
    let res = reqwest::Client::new().post(url).json(&payload).send().await.ok()?;
    Some(res.status().as_u16())
}
pub mod runtime_api;
pub mod sentry;

/// RunPod's diarization endpoint (`/run`, then `/status/{id}`), checking `Bearer rp-key`: every
/// job completes at once with `output`; the bodies of the runs are kept.
pub struct FakeDiarization {
    pub base: String,
    pub runs: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl FakeDiarization {
    pub const KEY: &'static str = "rp-key";

    pub async fn start(output: Value) -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let keyed = |h: &HeaderMap| h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer rp-key");
        let refused = || (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Unauthorized"})));
        let runs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = runs.clone();
        let router = axum::Router::new()
            .route(
                "/run",
                axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| async move {
                    if !keyed(&headers) {
                        return refused();
                    }
                    let mut runs = seen.lock().unwrap();
                    runs.push(body.0);
                    (StatusCode::OK, axum::Json(json!({"id": format!("job-{}", runs.len()), "status": "IN_QUEUE"})))
                }),
            )
            .route(
                "/status/{job}",
                axum::routing::get(move |headers: HeaderMap, axum::extract::Path(job): axum::extract::Path<String>| {
                    let output = output.clone();
                    async move {
                        if !keyed(&headers) {
                            return refused();
                        }
                        (StatusCode::OK, axum::Json(json!({"id": job, "status": "COMPLETED", "output": output})))
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        FakeDiarization { base, runs }
    }
}
