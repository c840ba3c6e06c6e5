//! Deleting what a deleted conversation or chunk leaves behind (D40): RAG documents, segment
//! rows and stored objects. Run by the deletion tasks, after the row itself is gone, so a
//! deletion that failed never loses data that is still referenced.

use crate::Services;
use crate::blob::BlobError;
use crate::providers::rag::{RagError, RagIndex};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Rag(#[from] RagError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Everything named is gone; how many objects were deleted.
    Done { objects: usize },
    /// The row still exists (its delete may still be running): try again later.
    StillReferenced,
}

/// Every object prefix a conversation's audio can live under (processing.md §4.5).
pub fn conversation_prefixes(conversation_id: &str) -> Vec<String> {
    vec![
        format!("conversation/{conversation_id}/"),
        format!("chunks/{conversation_id}/"),
        format!("audio-conversations/merged-{conversation_id}-"),
        format!("conversation_id/{conversation_id}/"),
    ]
}

/// `task_delete_conversation_artifacts`: segments' RAG documents and rows, then every object.
pub async fn delete_conversation_artifacts(
    services: &Services,
    rag: Option<&dyn RagIndex>,
    conversation_id: &str,
    segment_ids: &[i64],
) -> Result<Cleanup, CleanupError> {
    if services.store.get_conversation(conversation_id).await?.is_some() {
        return Ok(Cleanup::StillReferenced);
    }
    for &segment in segment_ids {
        match rag {
            Some(index) => index.delete_segment_document(segment).await?,
            None => tracing::info!(segment_id = segment, "RAG is not configured; no document to delete"),
        }
        services.store.delete_segment(segment).await?;
    }
    let objects = delete_objects(services, &[], &conversation_prefixes(conversation_id)).await?;
    tracing::info!(conversation_id, objects, segments = segment_ids.len(), "conversation artifacts deleted");
    Ok(Cleanup::Done { objects })
}

/// `task_delete_storage_objects`: the keys and everything under the prefixes, once the chunk
/// (when named) is gone.
pub async fn delete_storage_objects(
    services: &Services,
    keys: &[String],
    prefixes: &[String],
    chunk_id: Option<&str>,
) -> Result<Cleanup, CleanupError> {
    if let Some(id) = chunk_id
        && services.store.get_chunk(id).await?.is_some()
    {
        return Ok(Cleanup::StillReferenced);
    }
    let objects = delete_objects(services, keys, prefixes).await?;
    Ok(Cleanup::Done { objects })
}

async fn delete_objects(services: &Services, keys: &[String], prefixes: &[String]) -> Result<usize, BlobError> {
    let mut all: Vec<String> = keys.to_vec();
    for prefix in prefixes {
        all.extend(services.blob.list(prefix).await?);
    }
    all.sort();
    all.dedup();
    for key in &all {
        // Deleting a missing key succeeds in S3, so repeats are harmless.
        services.blob.delete(key).await?;
    }
    Ok(all.len())
}
