//! The client of LightRAG's own server (`lightrag-hku[api]==1.5.7`, rag.md §2), `X-API-Key`.
//! Errors as processing.md §9.1: connection, timeout, 5xx and `busy` are `Unavailable`, other
//! 4xx `Other`.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::*;

/// Where the server is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct LightRagConfig {
    pub base_url: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Waits between deletes the server answers `busy`, and for a started deletion to end.
    pub busy_retry_delays: Vec<Duration>,
}

impl LightRagConfig {
    pub fn new(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        let busy_retry_delays = [250, 500, 1000, 2000, 4000, 8000].map(Duration::from_millis).to_vec();
        LightRagConfig { base_url: base_url.into(), api_key, timeout: Duration::from_secs(30), busy_retry_delays }
    }
}

#[derive(Debug, Clone)]
pub struct LightRagClient {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
    busy_retry_delays: Vec<Duration>,
}

fn transport(err: reqwest::Error) -> RagError {
    RagError::Unavailable(format!("LightRAG server: {err}"))
}

fn detail(body: &Value) -> String {
    body.get("detail").map_or_else(|| body.to_string(), |d| d.as_str().map_or_else(|| d.to_string(), str::to_string))
}

/// `(Status: processed)` in a duplicate insert's 409 detail.
fn status_in_detail(detail: &str) -> Option<DocStatus> {
    let rest = &detail[detail.find("(Status: ")? + "(Status: ".len()..];
    DocStatus::parse(&rest[..rest.find(')')?])
}

impl LightRagClient {
    pub fn new(config: LightRagConfig) -> Result<Self, RagError> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        url::Url::parse(&base_url).map_err(|e| RagError::Other(format!("LIGHTRAG_SERVER_URL {base_url:?} is not a URL: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(config.timeout))
            .timeout(config.timeout)
            .build()
            .map_err(|e| RagError::Other(format!("building the LightRAG HTTP client: {e}")))?;
        let api_key = config.api_key.filter(|k| !k.trim().is_empty());
        Ok(LightRagClient { http, base_url, api_key, busy_retry_delays: config.busy_retry_delays })
    }

    /// Sends a request: the status and the JSON body (Null when there is none).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(StatusCode, Value), RagError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(key) = &self.api_key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(RagError::Unavailable(format!("LightRAG server {path}: HTTP {status}: {}", detail(&body))));
        }
        Ok((status, body))
    }

    /// A successful answer's body; any other status is terminal.
    async fn call_ok(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, RagError> {
        let (status, body) = self.call(method, path, body).await?;
        if !status.is_success() {
            return Err(RagError::Other(format!("LightRAG server {path}: HTTP {status}: {}", detail(&body))));
        }
        Ok(body)
    }

    /// Waits until no deletion runs (rag.md §1: deletion continues in the background).
    async fn wait_for_deletions(&self) -> Result<(), RagError> {
        for delay in self.busy_retry_delays.iter().chain([&Duration::ZERO]) {
            let status = self.call_ok(Method::GET, "/documents/pipeline_status", None).await?;
            let busy = |key: &str| status.get(key).and_then(Value::as_bool).unwrap_or(false);
            if !busy("busy") && !busy("destructive_busy") {
                return Ok(());
            }
            tokio::time::sleep(*delay).await;
        }
        Err(RagError::Unavailable("LightRAG server: its pipeline stayed busy after a deletion".into()))
    }
}

#[async_trait]
impl RagIndex for LightRagClient {
    async fn insert_segment(&self, segment_id: i64, text: &str) -> Result<Inserted, RagError> {
        let body = json!({ "text": text, "file_source": file_source(segment_id) });
        let (status, body) = self.call(Method::POST, "/documents/text", Some(body)).await?;
        if status == StatusCode::CONFLICT {
            let detail = detail(&body);
            if detail.starts_with("Pipeline is clearing or deleting documents") {
                return Err(RagError::Unavailable(format!("LightRAG server: {detail}")));
            }
            return Ok(Inserted::AlreadyThere { status: status_in_detail(&detail) });
        }
        if !status.is_success() {
            return Err(RagError::Other(format!("LightRAG server /documents/text: HTTP {status}: {}", detail(&body))));
        }
        match body.get("track_id").and_then(Value::as_str) {
            Some(track_id) => Ok(Inserted::Accepted { track_id: track_id.to_string() }),
            None => Err(RagError::Other(format!("LightRAG server /documents/text: no track id in {body}"))),
        }
    }

    async fn track_status(&self, track_id: &str) -> Result<Vec<TrackedDocument>, RagError> {
        let path =
            format!("/documents/track_status/{}", percent_encoding::utf8_percent_encode(track_id, percent_encoding::NON_ALPHANUMERIC));
        let body = self.call_ok(Method::GET, &path, None).await?;
        let text = |d: &Value, key: &str| d.get(key).and_then(Value::as_str).map(str::to_string);
        let documents = body.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(documents
            .iter()
            .map(|d| TrackedDocument {
                id: text(d, "id").unwrap_or_default(),
                file_path: text(d, "file_path"),
                status: text(d, "status").as_deref().and_then(DocStatus::parse),
                error: text(d, "error_msg"),
            })
            .collect())
    }

    async fn delete_segment_document(&self, segment_id: i64) -> Result<(), RagError> {
        let body = json!({ "doc_ids": [document_id(segment_id)], "delete_llm_cache": true });
        for delay in self.busy_retry_delays.iter().map(Some).chain([None]) {
            let answer = self.call_ok(Method::DELETE, "/documents/delete_document", Some(body.clone())).await?;
            match answer.get("status").and_then(Value::as_str) {
                Some("deletion_started") => return self.wait_for_deletions().await,
                Some("busy") => match delay {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(RagError::Unavailable("LightRAG server: busy, the document was not deleted".into())),
                },
                _ => return Err(RagError::Other(format!("LightRAG server refused the deletion: {answer}"))),
            }
        }
        unreachable!("the last attempt returns")
    }

    async fn query_data(&self, request: &QueryRequest) -> Result<QueryData, RagError> {
        let body = serde_json::to_value(request).map_err(|e| RagError::Other(e.to_string()))?;
        let answer = self.call_ok(Method::POST, "/query/data", Some(body)).await?;
        if answer.get("status").and_then(Value::as_str) != Some("success") {
            // "Query returned no results" comes as a failure with empty data.
            return Ok(QueryData::default());
        }
        serde_json::from_value(answer.get("data").cloned().unwrap_or(Value::Null))
            .map_err(|e| RagError::Other(format!("LightRAG server /query/data: unexpected data: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_detail_names_the_status() {
        let detail =
            "Document storage already contains 'SEGMENT_ID_1001' (Status: processed). Delete the existing record before re-inserting.";
        assert_eq!(status_in_detail(detail), Some(DocStatus::Processed));
        assert_eq!(status_in_detail("something else"), None);
    }
}
