//! Shared by the black-box tests: start echo-local on random ports, read fixtures, upload the
//! way a browser does.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use local::{Local, LocalOptions};
use serde_json::{Value, json};

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
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
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
