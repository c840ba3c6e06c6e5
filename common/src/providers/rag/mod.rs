//! The RAG index as the rest of the code sees it (processing.md §9, rag.md): one document per
//! `conversation_segment`, file source `SEGMENT_ID_{id}`. `lightrag.rs` is the client of
//! LightRAG's own server that implements it; without `LIGHTRAG_SERVER_URL` no index is
//! configured and RAG steps are skipped (and logged), never faked.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod context;
pub mod lightrag;
pub mod prompt;

pub use lightrag::{LightRagClient, LightRagConfig};
pub use prompt::{Prompt, Turn, restricted_prompt};

#[derive(Debug, thiserror::Error)]
pub enum RagError {
    /// Connection, timeout, 5xx or `busy`: retry later (API 503, task retry).
    #[error("RAG service unavailable: {0}")]
    Unavailable(String),
    /// Any other refusal: retrying the same call cannot help.
    #[error("RAG service error: {0}")]
    Other(String),
}

/// The configured index: `None` without `LIGHTRAG_SERVER_URL`.
pub fn from_settings(settings: &crate::config::RagSettings) -> Result<Option<std::sync::Arc<dyn RagIndex>>, RagError> {
    let Some(url) = &settings.server_url else { return Ok(None) };
    let client = LightRagClient::new(LightRagConfig::new(url.clone(), settings.api_key.clone()))?;
    Ok(Some(std::sync::Arc::new(client)))
}

/// The file source a segment's document carries.
pub fn file_source(segment_id: i64) -> String {
    format!("SEGMENT_ID_{segment_id}")
}

/// `"doc-" + md5(file source)` (rag.md §1): computed, never looked up.
pub fn document_id(segment_id: i64) -> String {
    use md5::{Digest, Md5};
    format!("doc-{}", hex::encode(Md5::digest(file_source(segment_id).as_bytes())))
}

/// A document's processing status on the server; parsing, analyzing and preprocessed count as
/// processing (rag.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocStatus {
    Pending,
    Processing,
    Processed,
    Failed,
}

impl DocStatus {
    pub fn parse(status: &str) -> Option<Self> {
        match status.trim().to_ascii_lowercase().as_str() {
            "pending" => Some(DocStatus::Pending),
            "processing" | "parsing" | "analyzing" | "preprocessed" => Some(DocStatus::Processing),
            "processed" => Some(DocStatus::Processed),
            "failed" => Some(DocStatus::Failed),
            _ => None,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Accepted; indexing continues in the background under this track id.
    Accepted { track_id: String },
    /// The segment's document was there already (409), with the status the server named.
    AlreadyThere { status: Option<DocStatus> },
}

/// One document of a track id.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedDocument {
    pub id: String,
    pub file_path: Option<String>,
    pub status: Option<DocStatus>,
    pub error: Option<String>,
}

/// `POST /query/data`'s request (rag.md §2; unknown keys are ignored by the server).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRequest {
    pub query: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_entity_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_relation_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u32>,
    pub enable_rerank: bool,
}

impl QueryRequest {
    pub fn new(query: impl Into<String>, mode: &str) -> Self {
        QueryRequest {
            query: query.into(),
            mode: mode.into(),
            top_k: None,
            chunk_top_k: None,
            max_entity_tokens: None,
            max_relation_tokens: None,
            max_total_tokens: None,
            enable_rerank: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Entity {
    pub entity_name: String,
    pub entity_type: Option<String>,
    pub description: Option<String>,
    pub source_id: Option<String>,
    pub file_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Relationship {
    pub src_id: String,
    pub tgt_id: String,
    pub description: Option<String>,
    pub keywords: Option<String>,
    pub weight: Option<f64>,
    pub source_id: Option<String>,
    pub file_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Chunk {
    pub reference_id: Option<String>,
    pub content: String,
    pub file_path: Option<String>,
    pub chunk_id: Option<String>,
}

/// The retrieved lists, in the order LightRAG puts them into its own context.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueryData {
    pub entities: Vec<Entity>,
    pub relationships: Vec<Relationship>,
    pub chunks: Vec<Chunk>,
}

#[async_trait]
pub trait RagIndex: Send + Sync + 'static {
    /// Inserts a segment's text as its document; a document already there is `AlreadyThere`.
    async fn insert_segment(&self, segment_id: i64, text: &str) -> Result<Inserted, RagError>;
    /// The documents an insert's track id follows (none for an unknown track id).
    async fn track_status(&self, track_id: &str) -> Result<Vec<TrackedDocument>, RagError>;
    /// Removes the document of a `conversation_segment`; one already gone counts as removed.
    async fn delete_segment_document(&self, segment_id: i64) -> Result<(), RagError>;
    /// Retrieval only (`/query/data`); an empty result is empty lists.
    async fn query_data(&self, request: &QueryRequest) -> Result<QueryData, RagError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_statuses() {
        // Measured on the 1.5.7 server (rag.md §1).
        assert_eq!(document_id(5001), "doc-01def6e07b249bd5a834323813a76f26");
        assert_eq!(file_source(7), "SEGMENT_ID_7");
        assert_eq!(DocStatus::parse("preprocessed"), Some(DocStatus::Processing));
        assert_eq!(DocStatus::parse("PROCESSED"), Some(DocStatus::Processed));
        assert_eq!(DocStatus::parse("odd"), None);
    }
}
