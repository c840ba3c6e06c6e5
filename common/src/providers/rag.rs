//! The RAG index as the rest of the code sees it. The LightRAG server client that implements
//! it belongs to the RAG work; until then no index is configured and RAG steps are skipped
//! (and logged), never faked.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum RagError {
    #[error("RAG service unavailable: {0}")]
    Unavailable(String),
    #[error("RAG service error: {0}")]
    Other(String),
}

#[async_trait]
pub trait RagIndex: Send + Sync + 'static {
    /// Removes the document of a `conversation_segment`; one already gone counts as removed.
    async fn delete_segment_document(&self, segment_id: i64) -> Result<(), RagError>;
}
