//! The transcription clients against fake providers started here on 127.0.0.1. Each fake speaks
//! its provider's wire protocol (OpenAI `audio/transcriptions` multipart, AssemblyAI v2
//! transcripts, RunPod serverless `/run` and `/status/{id}`) and records every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use common::providers::transcription::{
    AssemblyAi, AssemblyAiStatus, OpenAiTranscriber, RunPod, RunPodInput, RunPodJobState, TranscribeError,
};

#[derive(Debug, Clone)]
struct FormPart {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    /// The body when it was JSON.
    json: Option<Value>,
    /// The fields when the body was multipart/form-data.
    parts: Vec<FormPart>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn part(&self, name: &str) -> &FormPart {
        self.parts.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no {name} field in {:?}", self.parts))
    }
    fn text(&self, name: &str) -> Option<String> {
        self.parts.iter().find(|p| p.name == name).map(|p| String::from_utf8(p.data.clone()).unwrap())
    }
}

/// What every request gets instead of the provider's normal answer.
#[derive(Debug, Clone)]
enum Forced {
    Status(u16, &'static str),
    Hang(Duration),
}

type Behaviour = Arc<dyn Fn(&Seen) -> (StatusCode, Value) + Send + Sync>;

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    forced: Arc<Mutex<Option<Forced>>>,
    behaviour: Behaviour,
}

struct FakeProvider {
    base: String,
    shared: Shared,
    _task: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    async fn start(behaviour: impl Fn(&Seen) -> (StatusCode, Value) + Send + Sync + 'static) -> Self {
        let shared = Shared { seen: Arc::default(), forced: Arc::default(), behaviour: Arc::new(behaviour) };
        let app = axum::Router::new().fallback(record).layer(DefaultBodyLimit::disable()).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeProvider { base, shared, _task: task }
    }

    fn force(&self, forced: Option<Forced>) {
        *self.shared.forced.lock().unwrap() = forced;
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn record(State(shared): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        json: None,
        parts: Vec::new(),
    };
    let content_type = seen.header("content-type").unwrap_or_default().to_string();
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(Request::from_parts(parts, body), &()).await.unwrap();
        while let Some(field) = form.next_field().await.unwrap() {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let data = field.bytes().await.unwrap().to_vec();
            seen.parts.push(FormPart { name, file_name, content_type, data });
        }
    } else {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        seen.json = serde_json::from_slice(&bytes).ok();
    }
    shared.seen.lock().unwrap().push(seen.clone());
    let forced = shared.forced.lock().unwrap().clone();
    match forced {
        Some(Forced::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, axum::Json(json!({}))).into_response()
        }
        Some(Forced::Status(code, body)) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        None => {
            let (status, value) = (shared.behaviour)(&seen);
            (status, axum::Json(value)).into_response()
        }
    }
}

fn not_found() -> (StatusCode, Value) {
    (StatusCode::NOT_FOUND, json!({"error": "not found"}))
}

// ---------------------------------------------------------------------------------------------
// Fakes

/// OpenAI `POST /v1/audio/transcriptions` and Azure
/// `POST /openai/deployments/{deployment}/audio/transcriptions?api-version=…`: multipart in,
/// `{"text": …}` out (the default `json` response format).
async fn fake_whisper() -> FakeProvider {
    FakeProvider::start(|seen| {
        let openai = seen.path == "/v1/audio/transcriptions";
        let azure = seen.path.starts_with("/openai/deployments/") && seen.path.ends_with("/audio/transcriptions");
        if seen.method != "POST" || !(openai || azure) {
            return not_found();
        }
        let authorized =
            if azure { seen.header("api-key") == Some("az-key") } else { seen.header("authorization") == Some("Bearer sk-test") };
        if !authorized {
            return (
                StatusCode::UNAUTHORIZED,
                json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
            );
        }
        let Some(file) = seen.parts.iter().find(|p| p.name == "file") else {
            return (StatusCode::BAD_REQUEST, json!({"error": {"message": "file is required", "type": "invalid_request_error"}}));
        };
        if openai && seen.text("model").is_none() {
            return (StatusCode::BAD_REQUEST, json!({"error": {"message": "model is required", "type": "invalid_request_error"}}));
        }
        let language = seen.text("language").unwrap_or_else(|| "auto".into());
        (StatusCode::OK, json!({"text": format!("Hallo wereld ({} bytes, {language})", file.data.len())}))
    })
    .await
}

/// AssemblyAI `POST /v2/transcript` and `GET /v2/transcript/{id}`: a job is `queued` at the
/// first poll, `processing` at the second and `completed` from then on; audio URLs containing
/// `broken` end in `error`.
async fn fake_assemblyai() -> FakeProvider {
    let jobs: Arc<Mutex<HashMap<String, (String, u32)>>> = Arc::default();
    FakeProvider::start(move |seen| {
        if seen.header("authorization") != Some("Bearer aai-key") {
            return (StatusCode::UNAUTHORIZED, json!({"error": "Authentication error, API token missing/invalid"}));
        }
        let mut jobs = jobs.lock().unwrap();
        if seen.method == "POST" && seen.path == "/v2/transcript" {
            let Some(audio_url) = seen.json.as_ref().and_then(|b| b["audio_url"].as_str()) else {
                return (StatusCode::BAD_REQUEST, json!({"error": "audio_url is required"}));
            };
            let id = format!("tr-{}", jobs.len() + 1);
            jobs.insert(id.clone(), (audio_url.to_string(), 0));
            return (StatusCode::OK, json!({"id": id, "status": "queued", "audio_url": audio_url, "text": null, "words": null}));
        }
        let Some(id) = seen.path.strip_prefix("/v2/transcript/").filter(|_| seen.method == "GET") else {
            return not_found();
        };
        let Some((audio_url, polls)) = jobs.get_mut(id) else {
            return (StatusCode::NOT_FOUND, json!({"error": "Transcript not found"}));
        };
        *polls += 1;
        let answer = match (*polls, audio_url.contains("broken")) {
            (1, _) => json!({"id": id, "status": "queued"}),
            (2, _) => json!({"id": id, "status": "processing"}),
            (_, true) => json!({"id": id, "status": "error", "error": "Download error, unable to download the audio"}),
            (_, false) => json!({
                "id": id,
                "status": "completed",
                "language_code": "nl",
                "text": "Goedemorgen allemaal.",
                "words": [
                    {"text": "Goedemorgen", "start": 120, "end": 800, "confidence": 0.98, "speaker": null},
                    {"text": "allemaal.", "start": 820, "end": 1400, "confidence": 0.95, "speaker": null}
                ],
                "audio_duration": 2
            }),
        };
        (StatusCode::OK, answer)
    })
    .await
}

/// RunPod serverless `POST /v2/{endpoint}/run` and `GET /v2/{endpoint}/status/{id}`: a job is
/// `IN_QUEUE` at the first status request and `COMPLETED` afterwards; unknown ids are 404.
async fn fake_runpod() -> FakeProvider {
    let jobs: Arc<Mutex<HashMap<String, (Value, u32)>>> = Arc::default();
    FakeProvider::start(move |seen| {
        if seen.header("authorization") != Some("Bearer rp-key") {
            return (StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
        }
        let mut jobs = jobs.lock().unwrap();
        let segments: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
        match (seen.method.as_str(), segments.as_slice()) {
            ("POST", ["v2", _endpoint, "run"]) => {
                let Some(input) = seen.json.as_ref().map(|b| b["input"].clone()).filter(Value::is_object) else {
                    return (StatusCode::BAD_REQUEST, json!({"error": "input is required"}));
                };
                let id = format!("job-{}", jobs.len() + 1);
                jobs.insert(id.clone(), (input, 0));
                (StatusCode::OK, json!({"id": id, "status": "IN_QUEUE"}))
            }
            ("GET", ["v2", _endpoint, "status", id]) => match jobs.get_mut(*id) {
                None => (StatusCode::NOT_FOUND, json!({"error": "request does not exist"})),
                Some((_, polls)) if *polls == 0 => {
                    *polls += 1;
                    (StatusCode::OK, json!({"id": id, "status": "IN_QUEUE", "delayTime": 120}))
                }
                Some((input, _)) => (
                    StatusCode::OK,
                    json!({
                        "id": id,
                        "status": "COMPLETED",
                        "delayTime": 120,
                        "executionTime": 5400,
                        "output": {
                            "conversation_chunk_id": input["conversation_chunk_id"],
                            "joined_text": "Good morning everyone.",
                            "language": input["language"],
                            "detected_language": "en",
                            "detected_language_confidence": 0.97
                        }
                    }),
                ),
            },
            _ => not_found(),
        }
    })
    .await
}

/// A port nothing listens on.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// Audio-like bytes (the clients never decode audio), several read chunks long.
fn audio_bytes(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, TranscribeError>, what: &str) {
    match result {
        Err(err @ TranscribeError::Unavailable(_)) => assert!(err.is_transient()),
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

fn assert_rejected<T: std::fmt::Debug>(result: Result<T, TranscribeError>, code: u16, body_part: &str, what: &str) {
    match result {
        Err(TranscribeError::Rejected { status, body }) => {
            assert_eq!(status, code, "{what}");
            assert!(body.contains(body_part), "{what}: {body}");
        }
        other => panic!("{what}: expected Rejected({code}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible Whisper

#[tokio::test]
async fn whisper_upload_streams_the_mp3_with_its_fields() {
    let fake = fake_whisper().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chunk_0-of-2.mp3");
    let audio = audio_bytes(300 * 1024 + 17);
    tokio::fs::write(&path, &audio).await.unwrap();

    let whisper = OpenAiTranscriber::new(&format!("{}/v1/", fake.base), "openai/whisper-1", "sk-test", "2024-06-01");
    let text = whisper.transcribe(&path, Some("nl"), Some("Een gesprek over de wijk. Dembrane, ECHO.")).await.unwrap();
    assert_eq!(text, format!("Hallo wereld ({} bytes, nl)", audio.len()));

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!((req.method.as_str(), req.path.as_str(), req.query.as_deref()), ("POST", "/v1/audio/transcriptions", None));
    assert_eq!(req.header("authorization"), Some("Bearer sk-test"));
    assert!(req.header("api-key").is_none());
    assert!(req.header("content-type").unwrap().starts_with("multipart/form-data; boundary="));
    assert!(req.header("content-length").is_some(), "the streamed file has a known length");
    let file = req.part("file");
    assert_eq!(file.file_name.as_deref(), Some("chunk_0-of-2.mp3"));
    assert_eq!(file.content_type.as_deref(), Some("audio/mpeg"));
    assert!(file.data == audio, "the uploaded bytes are the file's bytes");
    assert_eq!(req.text("model").as_deref(), Some("whisper-1"), "the openai/ prefix is dropped");
    assert_eq!(req.text("language").as_deref(), Some("nl"));
    assert_eq!(req.text("prompt").as_deref(), Some("Een gesprek over de wijk. Dembrane, ECHO."));
    assert!(req.text("response_format").is_none(), "the default json format answers {{text}}");
    let names: Vec<&str> = req.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file", "model", "language", "prompt"]);
}

#[tokio::test]
async fn whisper_on_azure_names_the_deployment_and_uses_api_key() {
    let fake = fake_whisper().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("piece");
    tokio::fs::write(&path, b"ID3 not really audio").await.unwrap();

    let whisper = OpenAiTranscriber::new(&fake.base, "azure/whisper-eu", "az-key", "2024-06-01");
    let text = whisper.transcribe(&path, None, None).await.unwrap();
    assert_eq!(text, "Hallo wereld (20 bytes, auto)");

    let req = &fake.seen()[0];
    assert_eq!(req.path, "/openai/deployments/whisper-eu/audio/transcriptions");
    assert_eq!(req.query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(req.header("api-key"), Some("az-key"));
    assert!(req.header("authorization").is_none());
    let file = req.part("file");
    assert_eq!((file.file_name.as_deref(), file.content_type.as_deref()), (Some("piece.mp3"), Some("audio/mpeg")));
    assert_eq!(file.data, b"ID3 not really audio");
    let names: Vec<&str> = req.parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["file"], "no model (the deployment names it), no empty language or prompt");
}

#[tokio::test]
async fn whisper_errors_are_classified() {
    let fake = fake_whisper().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mp3");
    tokio::fs::write(&path, audio_bytes(2048)).await.unwrap();
    let whisper = OpenAiTranscriber::new(&format!("{}/v1", fake.base), "whisper-1", "sk-test", "2024-06-01");

    let wrong_key = OpenAiTranscriber::new(&format!("{}/v1", fake.base), "whisper-1", "sk-wrong", "2024-06-01");
    assert_rejected(wrong_key.transcribe(&path, Some("en"), None).await, 401, "Incorrect API key", "bad key");

    fake.force(Some(Forced::Status(400, r#"{"error":{"message":"Invalid language 'multi'"}}"#)));
    assert_rejected(whisper.transcribe(&path, Some("multi"), None).await, 400, "Invalid language", "400");
    fake.force(Some(Forced::Status(429, r#"{"error":{"message":"Rate limit reached"}}"#)));
    assert_unavailable(whisper.transcribe(&path, Some("en"), None).await, "429");
    fake.force(Some(Forced::Status(500, "upstream exploded")));
    assert_unavailable(whisper.transcribe(&path, Some("en"), None).await, "500");
    fake.force(Some(Forced::Status(200, r#"{"transcript":"wrong shape"}"#)));
    assert!(matches!(whisper.transcribe(&path, Some("en"), None).await, Err(TranscribeError::Other(_))));
    fake.force(None);

    let missing = whisper.transcribe(&dir.path().join("gone.mp3"), Some("en"), None).await;
    assert!(matches!(missing, Err(TranscribeError::Other(ref m)) if m.contains("gone.mp3")), "{missing:?}");

    let refused = OpenAiTranscriber::new(&closed_port_url().await, "whisper-1", "sk-test", "2024-06-01");
    assert_unavailable(refused.transcribe(&path, Some("en"), None).await, "connection refused");
}

// ---------------------------------------------------------------------------------------------
// AssemblyAI

#[tokio::test]
async fn assemblyai_submits_then_polls_to_completion() {
    let fake = fake_assemblyai().await;
    let aai = AssemblyAi::new(&format!("{}/", fake.base), "aai-key");
    let audio_url = "https://bucket.s3.eu-west-1.amazonaws.com/chunks/c/p.mp3?X-Amz-Expires=259200&X-Amz-Signature=abc";
    let id = aai.submit(audio_url, "nl", &["Dembrane".into(), "wijkraad".into()]).await.unwrap();
    assert_eq!(id, "tr-1");

    let submitted = &fake.seen()[0];
    assert_eq!((submitted.method.as_str(), submitted.path.as_str()), ("POST", "/v2/transcript"));
    assert_eq!(submitted.header("authorization"), Some("Bearer aai-key"));
    assert_eq!(submitted.header("content-type"), Some("application/json"));
    assert_eq!(
        submitted.json.as_ref().unwrap(),
        &json!({
            "audio_url": audio_url,
            "speech_model": "universal",
            "language_detection": true,
            "language_detection_options": {
                "expected_languages": ["nl", "fr", "es", "de", "it", "pt", "en"],
                "fallback_language": "nl"
            },
            "keyterms_prompt": ["Dembrane", "wijkraad"]
        })
    );

    assert_eq!(aai.poll(&id).await.unwrap(), AssemblyAiStatus::Queued);
    assert_eq!(aai.poll(&id).await.unwrap(), AssemblyAiStatus::Processing);
    let AssemblyAiStatus::Completed { text, words, raw } = aai.poll(&id).await.unwrap() else { panic!("not completed") };
    assert_eq!(text, "Goedemorgen allemaal.");
    assert_eq!(words.as_array().unwrap().len(), 2);
    assert_eq!(words[0]["text"], "Goedemorgen");
    assert_eq!(raw["id"], "tr-1");
    assert_eq!(raw["language_code"], "nl");
    assert_eq!(raw["words"], words);

    let polls: Vec<_> = fake.seen().into_iter().skip(1).collect();
    assert_eq!(polls.len(), 3);
    for poll in &polls {
        assert_eq!((poll.method.as_str(), poll.path.as_str()), ("GET", "/v2/transcript/tr-1"));
        assert_eq!(poll.header("authorization"), Some("Bearer aai-key"));
    }
}

#[tokio::test]
async fn assemblyai_reports_failed_and_unknown_transcripts() {
    let fake = fake_assemblyai().await;
    let aai = AssemblyAi::new(&fake.base, "aai-key");
    let id = aai.submit("https://bucket/broken.mp3", "auto", &[]).await.unwrap();
    let body = fake.seen()[0].json.clone().unwrap();
    assert_eq!(body["language_detection_options"]["fallback_language"], "en", "auto falls back to en");
    assert!(body.get("keyterms_prompt").is_none(), "no hotwords, no key terms");

    aai.poll(&id).await.unwrap();
    aai.poll(&id).await.unwrap();
    assert_eq!(aai.poll(&id).await.unwrap(), AssemblyAiStatus::Error("Download error, unable to download the audio".into()));
    assert_rejected(aai.poll("tr-404").await, 404, "Transcript not found", "unknown transcript");

    let wrong_key = AssemblyAi::new(&fake.base, "other");
    assert_rejected(wrong_key.submit("https://bucket/a.mp3", "en", &[]).await, 401, "Authentication error", "bad key");
}

#[tokio::test]
async fn assemblyai_errors_are_classified() {
    let fake = fake_assemblyai().await;
    let aai = AssemblyAi::new(&fake.base, "aai-key");
    fake.force(Some(Forced::Status(400, r#"{"error":"Invalid audio_url"}"#)));
    assert_rejected(aai.submit("not a url", "en", &[]).await, 400, "Invalid audio_url", "400");
    fake.force(Some(Forced::Status(429, r#"{"error":"Too many requests"}"#)));
    assert_unavailable(aai.submit("https://bucket/a.mp3", "en", &[]).await, "429 submit");
    fake.force(Some(Forced::Status(503, "maintenance")));
    assert_unavailable(aai.poll("tr-1").await, "503 poll");
    fake.force(Some(Forced::Status(500, "oops")));
    assert_unavailable(aai.submit("https://bucket/a.mp3", "en", &[]).await, "500 submit");
    fake.force(Some(Forced::Status(200, r#"{"status":"queued"}"#)));
    assert!(matches!(aai.submit("https://bucket/a.mp3", "en", &[]).await, Err(TranscribeError::Other(_))), "no id");

    let refused = AssemblyAi::new(&closed_port_url().await, "aai-key");
    assert_unavailable(refused.submit("https://bucket/a.mp3", "en", &[]).await, "connection refused");
    assert_unavailable(refused.poll("tr-1").await, "connection refused");
}

// ---------------------------------------------------------------------------------------------
// RunPod

fn runpod_input() -> RunPodInput {
    RunPodInput {
        audio: "https://bucket/chunks/c/p.mp3?X-Amz-Signature=abc".into(),
        hotwords: vec!["Dembrane".into(), "ECHO".into()],
        conversation_chunk_id: "chunk-1".into(),
        language: Some("en".into()),
    }
}

#[tokio::test]
async fn runpod_submits_and_reads_the_status_link() {
    let fake = fake_runpod().await;
    let runpod = RunPod::new("rp-key");
    let base = format!("{}/v2/whisper-priority/", fake.base);
    let webhook = common::providers::transcription::runpod_webhook_url("https://echo.example/api", "s3cret");
    let job = runpod.submit(&base, &runpod_input(), Some(&webhook)).await.unwrap();
    assert_eq!(job.id, "job-1");
    assert_eq!(job.status_link, format!("{}/v2/whisper-priority/status/job-1", fake.base), "the endpoint that accepted the job");

    let run = &fake.seen()[0];
    assert_eq!((run.method.as_str(), run.path.as_str()), ("POST", "/v2/whisper-priority/run"));
    assert_eq!(run.header("authorization"), Some("Bearer rp-key"));
    assert_eq!(
        run.json.as_ref().unwrap(),
        &json!({
            "input": {
                "audio": "https://bucket/chunks/c/p.mp3?X-Amz-Signature=abc",
                "hotwords": "Dembrane, ECHO",
                "conversation_chunk_id": "chunk-1",
                "language": "en"
            },
            "webhook": "https://echo.example/api/stateless/webhook/transcribe?token=s3cret"
        })
    );

    let queued = runpod.status(&job.status_link).await.unwrap();
    assert_eq!(queued.state, RunPodJobState::InQueue);
    assert_eq!(queued.payload["id"], "job-1");
    let done = runpod.status(&job.status_link).await.unwrap();
    assert_eq!(done.state, RunPodJobState::Completed);
    assert_eq!(done.payload["status"], "COMPLETED");
    assert_eq!(done.payload["output"]["conversation_chunk_id"], "chunk-1");
    assert_eq!(done.payload["output"]["joined_text"], "Good morning everyone.");
    assert_eq!(common::providers::transcription::runpod_job_id(&job.status_link), Some(done.payload["id"].as_str().unwrap()));

    let status = &fake.seen()[1];
    assert_eq!((status.method.as_str(), status.path.as_str()), ("GET", "/v2/whisper-priority/status/job-1"));
    assert_eq!(status.header("authorization"), Some("Bearer rp-key"));

    let unknown = runpod.status(&format!("{}/v2/whisper-priority/status/job-expired", fake.base)).await.unwrap();
    assert_eq!(unknown.state, RunPodJobState::Unknown, "404 means the job is unknown or expired");
    assert_eq!(unknown.payload["error"], "request does not exist");

    let bare = RunPodInput { hotwords: vec![], language: None, ..runpod_input() };
    runpod.submit(&base, &bare, Some(&webhook)).await.unwrap();
    let input = fake.seen().last().unwrap().json.clone().unwrap()["input"].clone();
    assert_eq!(input["hotwords"], Value::Null);
    assert!(input.get("language").is_none());
}

#[tokio::test]
async fn runpod_errors_are_classified() {
    let fake = fake_runpod().await;
    let base = format!("{}/v2/whisper", fake.base);
    let link = format!("{base}/status/job-1");
    let runpod = RunPod::new("rp-key");

    let wrong_key = RunPod::new("nope");
    assert_rejected(wrong_key.submit(&base, &runpod_input(), Some("https://w")).await, 401, "Unauthorized", "bad key");
    assert_rejected(wrong_key.status(&link).await, 401, "Unauthorized", "bad key status");

    fake.force(Some(Forced::Status(400, r#"{"error":"input is malformed"}"#)));
    assert_rejected(runpod.submit(&base, &runpod_input(), Some("https://w")).await, 400, "malformed", "400");
    fake.force(Some(Forced::Status(429, "slow down")));
    assert_unavailable(runpod.submit(&base, &runpod_input(), Some("https://w")).await, "429 run");
    assert_unavailable(runpod.status(&link).await, "429 status");
    fake.force(Some(Forced::Status(500, "worker crashed")));
    assert_unavailable(runpod.submit(&base, &runpod_input(), Some("https://w")).await, "500 run");
    assert_unavailable(runpod.status(&link).await, "500 status");
    fake.force(None);

    let refused = closed_port_url().await;
    assert_unavailable(runpod.submit(&format!("{refused}/v2/whisper"), &runpod_input(), Some("https://w")).await, "refused run");
    assert_unavailable(runpod.status(&format!("{refused}/v2/whisper/status/job-1")).await, "refused status");
}

// ---------------------------------------------------------------------------------------------
// Timeouts

#[tokio::test]
async fn slow_providers_time_out_as_unavailable() {
    let short = Duration::from_millis(300);
    let hang = Some(Forced::Hang(Duration::from_secs(5)));

    let whisper_fake = fake_whisper().await;
    whisper_fake.force(hang.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.mp3");
    tokio::fs::write(&path, audio_bytes(4096)).await.unwrap();
    let whisper = OpenAiTranscriber::new(&format!("{}/v1", whisper_fake.base), "whisper-1", "sk-test", "2024-06-01").with_timeout(short);
    let started = Instant::now();
    assert_unavailable(whisper.transcribe(&path, Some("en"), None).await, "whisper timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let aai_fake = fake_assemblyai().await;
    aai_fake.force(hang.clone());
    let aai = AssemblyAi::new(&aai_fake.base, "aai-key").with_timeout(short);
    let started = Instant::now();
    assert_unavailable(aai.submit("https://bucket/a.mp3", "en", &[]).await, "assemblyai submit timeout");
    assert_unavailable(aai.poll("tr-1").await, "assemblyai poll timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let rp_fake = fake_runpod().await;
    rp_fake.force(hang);
    let base = format!("{}/v2/whisper", rp_fake.base);
    let runpod = RunPod::new("rp-key").with_timeouts(short, short);
    let started = Instant::now();
    assert_unavailable(runpod.submit(&base, &runpod_input(), Some("https://w")).await, "runpod run timeout");
    assert_unavailable(runpod.status(&format!("{base}/status/job-1")).await, "runpod status timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
