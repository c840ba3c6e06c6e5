//! The merge routine (processing.md §4.3), shared by `GET /conversations/{id}/content`,
//! retranscribe and the merge task: one mp3 per distinct chunk set, at a key derived from that
//! set, so repeats and concurrent merges reuse one object (D41).

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::Services;
use crate::audio::{self, AudioError, TempDir};
use crate::blob::BlobError;
use crate::store::{Chunk, ChunkOrder, ConversationPatch, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("conversation has no chunks")]
    NoChunks,
    #[error("conversation has no audio chunk")]
    NoContent,
    /// Shown to the caller as "Failed to merge audio files: {0}".
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// The merged object of a chunk set.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedAudio {
    pub key: String,
    pub url: String,
    /// Seconds; -1.0 when the merged file could not be probed (as ECHO).
    pub duration: f64,
}

/// First 16 hex characters of SHA-256 over `"{chunk_id}|{path}\n"` of the audio chunks in order.
pub fn fingerprint(audio_chunks: &[&Chunk]) -> String {
    let mut hasher = Sha256::new();
    for chunk in audio_chunks {
        hasher.update(format!("{}|{}\n", chunk.id, chunk.path.as_deref().unwrap_or_default()));
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

pub fn merged_key(conversation_id: &str, fingerprint: &str) -> String {
    let safe: String = conversation_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    format!("audio-conversations/merged-{safe}-{fingerprint}.mp3")
}

/// Merges the conversation's audio chunks (or reuses the merge of the same set), records
/// `merged_audio_path` and `duration` on the conversation, and returns the merged object.
pub async fn merge_conversation(services: &Services, conversation_id: &str) -> Result<MergedAudio, MergeError> {
    // Without a current path there is always a merge.
    merge_unless_current(services, conversation_id, None).await?.ok_or_else(|| MergeError::Failed("nothing merged".into()))
}

/// The task's merge (§4.3 step 4): `None`, touching nothing, when `current` (the conversation's
/// `merged_audio_path`) already is the URL of this chunk set's merge.
pub async fn merge_unless_current(
    services: &Services,
    conversation_id: &str,
    current: Option<&str>,
) -> Result<Option<MergedAudio>, MergeError> {
    let chunks = services.store.list_chunks(conversation_id, ChunkOrder::OldestFirst).await?;
    if chunks.is_empty() {
        return Err(MergeError::NoChunks);
    }
    let audio: Vec<&Chunk> = chunks.iter().filter(|c| c.path.as_deref().is_some_and(|p| p.starts_with("http"))).collect();
    if audio.is_empty() {
        return Err(MergeError::NoContent);
    }
    let key = merged_key(conversation_id, &fingerprint(&audio));
    let url = services.blob.url_for_key(&key);
    if current == Some(url.as_str()) {
        return Ok(None);
    }
    let blob = &services.blob;

    let dir = TempDir::new().await.map_err(|e| MergeError::Failed(format!("temporary directory: {e}")))?;
    let merged_file = dir.path().join("merged.mp3");
    if blob.head(&key).await?.is_some() {
        tracing::info!(conversation_id, %key, "reusing the merge of this chunk set");
        blob.download_to(&key, &merged_file).await?;
    } else {
        let inputs = download_chunks(services, &audio, dir.path()).await?;
        // Usually every file decodes, so try them all at once; only when that fails, probe each
        // and leave out what ffprobe cannot read, as ECHO did.
        if let Err(first) = audio::concat_to_mp3(&inputs, &merged_file).await {
            if let AudioError::ToolMissing(tool) = first {
                return Err(MergeError::Failed(format!("{tool} is not installed")));
            }
            let mut decodable = Vec::new();
            for file in inputs {
                match audio::probe(&file).await {
                    Ok(_) => decodable.push(file),
                    Err(err) => tracing::warn!(file = %file.display(), %err, "skipping undecodable chunk"),
                }
            }
            if decodable.is_empty() {
                return Err(MergeError::Failed("no decodable audio".into()));
            }
            audio::concat_to_mp3(&decodable, &merged_file).await.map_err(|e| MergeError::Failed(e.to_string()))?;
        }
        blob.upload_file(&key, &merged_file, "audio/mpeg").await?;
        tracing::info!(conversation_id, %key, chunks = audio.len(), "merged audio uploaded");
    }
    let duration = audio::duration(&merged_file).await.unwrap_or(-1.0);
    dir.remove().await;
    services
        .store
        .update_conversation(
            conversation_id,
            ConversationPatch { merged_audio_path: Some(url.clone()), duration: Some(duration), ..Default::default() },
        )
        .await?;
    Ok(Some(MergedAudio { key, url, duration }))
}

/// Downloads the chunks' objects into `dir`, a few at a time, in chunk order; chunks whose object
/// is missing are left out (logged), an unreachable store fails the merge.
async fn download_chunks(services: &Services, chunks: &[&Chunk], dir: &std::path::Path) -> Result<Vec<PathBuf>, MergeError> {
    use futures::StreamExt;
    let mut jobs = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let Some(key) = chunk.path.as_deref().and_then(|p| services.blob.key_from_url(p)) else {
            tracing::warn!(chunk_id = %chunk.id, "skipping a chunk whose path names no object");
            continue;
        };
        let ext = key.rsplit_once('.').map(|(_, e)| e.to_string()).filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()));
        let file = dir.join(format!("{i}.{}", ext.as_deref().unwrap_or("bin")));
        jobs.push((chunk.id.clone(), key, file));
    }
    let downloads = jobs.into_iter().map(|(chunk_id, key, file)| {
        let blob = services.blob.clone();
        async move {
            match blob.download_to(&key, &file).await {
                Ok(_) => Ok(Some(file)),
                Err(BlobError::Unavailable(reason)) => Err(MergeError::Blob(BlobError::Unavailable(reason))),
                Err(err) => {
                    tracing::warn!(%chunk_id, %err, "skipping a chunk that cannot be downloaded");
                    Ok(None)
                }
            }
        }
    });
    let results: Vec<Result<Option<PathBuf>, MergeError>> =
        futures::stream::iter(downloads.collect::<Vec<_>>()).buffered(4).collect().await;
    let mut files = Vec::new();
    for result in results {
        files.extend(result?);
    }
    if files.is_empty() {
        return Err(MergeError::Failed("no decodable audio".into()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn chunk(id: &str, path: &str) -> Chunk {
        Chunk {
            id: id.into(),
            conversation_id: "c".into(),
            created_at: None,
            timestamp: Utc::now(),
            path: Some(path.into()),
            source: None,
            transcript: None,
            error: None,
            runpod_job_status_link: None,
            runpod_request_count: 0,
        }
    }

    #[test]
    fn the_key_follows_the_chunk_set() {
        let (a, b) = (chunk("a", "http://s3/x/a.webm"), chunk("b", "http://s3/x/b.webm"));
        let one = fingerprint(&[&a, &b]);
        assert_eq!(one.len(), 16);
        assert_eq!(one, fingerprint(&[&a, &b]));
        assert_ne!(one, fingerprint(&[&b, &a]), "order matters");
        assert_ne!(one, fingerprint(&[&a]));
        assert_eq!(merged_key("4c5d-../x", "0123456789abcdef"), "audio-conversations/merged-4c5d-x-0123456789abcdef.mp3");
    }
}
