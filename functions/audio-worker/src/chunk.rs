//! `task_process_conversation_chunk` (processing.md §4.2): probe, convert to mp3, split above
//! 15 MiB into pieces with deterministic ids and keys, queue transcription per resulting chunk,
//! and delete the original row after a split. Every step is safe to repeat.

use std::path::Path;
use std::time::Duration;

use common::Services;
use common::audio::TempDir;
use common::audio::{self, AudioError};
use common::flows::pipeline::{StatusIds, StatusStep, record_chunk_failure};
use common::queue::Task;
use common::queue::worker::{Delivery, Done, TaskError};
use common::store::{Chunk, ChunkPatch, NewChunk, StoreError};

pub const SPLIT_BYTES: u64 = 15 * 1024 * 1024;
const MIN_BYTES: u64 = 1024;
const MAX_BYTES: u64 = 2048 * 1024 * 1024;
/// Time a conversion or split may need, checked against the invocation's budget.
const STEP_ESTIMATE: Duration = Duration::from_secs(120);

/// The chunk's `error` after a final failure, then the completion trigger.
pub async fn record_failure(services: &Services, chunk_id: &str, reason: &str) {
    record_chunk_failure(services, chunk_id, format!("Audio processing failed: {reason}")).await;
}

/// UUIDv5 (URL namespace) of `echo-lambda/split/{chunk_id}/{i}/{n}`.
pub fn piece_id(chunk_id: &str, i: u64, n: u64) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("echo-lambda/split/{chunk_id}/{i}/{n}").as_bytes()).to_string()
}

/// The converted key: the final extension replaced by `.mp3` (D42); `.converted.mp3` when the
/// raw key already ends in `.mp3`.
pub fn converted_key(key: &str) -> String {
    let file_start = key.rfind('/').map_or(0, |i| i + 1);
    match key[file_start..].rfind('.') {
        Some(dot) if key[file_start + dot..].eq_ignore_ascii_case(".mp3") => format!("{}.converted.mp3", &key[..file_start + dot]),
        Some(dot) => format!("{}.mp3", &key[..file_start + dot]),
        None => format!("{key}.mp3"),
    }
}

fn audio_error(err: AudioError) -> TaskError {
    match err {
        AudioError::ToolMissing(_) | AudioError::Io(_) => TaskError::transient(err),
        AudioError::Undecodable(_) => TaskError::terminal("unsupported or corrupt audio"),
        AudioError::Ffmpeg(reason) => TaskError::Terminal(reason),
    }
}

pub async fn process(services: &Services, chunk_id: &str, use_pii_redaction: bool, delivery: &Delivery) -> Result<Done, TaskError> {
    let Some(chunk) = services.store.get_chunk(chunk_id).await? else {
        return Ok(Done::Skipped("chunk is gone (already split or deleted)".into()));
    };
    let ids = StatusIds::for_chunk(&chunk);
    let step = StatusStep::start(services, "task_process_conversation_chunk.split_audio_chunk", format!("for chunk {chunk_id}"), ids).await;
    let outcome = convert_and_split(services, &chunk, use_pii_redaction, delivery).await;
    step.finish_with(&outcome).await;
    outcome
}

async fn convert_and_split(services: &Services, chunk: &Chunk, use_pii_redaction: bool, delivery: &Delivery) -> Result<Done, TaskError> {
    let blob = &services.blob;
    let path = chunk.path.as_deref().filter(|p| !p.trim().is_empty()).ok_or_else(|| TaskError::terminal("no audio path"))?;
    let key = blob.key_from_url(path).ok_or_else(|| TaskError::terminal("the path names no object"))?;
    let size = blob.head(&key).await?.ok_or_else(|| TaskError::terminal("the audio object does not exist"))?;
    if size < MIN_BYTES {
        return Err(TaskError::terminal("file too small"));
    }
    if size > MAX_BYTES {
        return Err(TaskError::terminal("file too large"));
    }
    if !delivery.has_time_for(STEP_ESTIMATE) {
        return Err(TaskError::transient("not enough time left in this invocation"));
    }
    let dir = TempDir::new().await.map_err(TaskError::transient)?;
    let raw = dir.path().join(format!("raw.{}", key.rsplit('.').next().filter(|e| e.len() <= 5).unwrap_or("bin")));
    blob.download_to(&key, &raw).await?;
    let probe = audio::probe(&raw).await.map_err(audio_error)?;

    // Convert unless it is mp3 already; an existing converted object is reused.
    let (mp3_key, mp3_file) = if probe.is_mp3() {
        (key.clone(), raw.clone())
    } else {
        let target = converted_key(&key);
        let file = dir.path().join("converted.mp3");
        if blob.head(&target).await?.is_some() {
            blob.download_to(&target, &file).await?;
        } else {
            audio::convert_to_mp3(&raw, &file).await.map_err(audio_error)?;
            blob.upload_file(&target, &file, "audio/mpeg").await?;
        }
        let url = blob.url_for_key(&target);
        if chunk.path.as_deref() != Some(url.as_str())
            && !services.store.update_chunk(&chunk.id, ChunkPatch { path: Some(url), ..Default::default() }).await?
        {
            return Ok(Done::Skipped("chunk vanished while converting".into()));
        }
        (target, file)
    };

    let mp3_size = tokio::fs::metadata(&mp3_file).await.map_err(TaskError::transient)?.len();
    let pieces = if mp3_size <= SPLIT_BYTES {
        vec![chunk.clone()]
    } else {
        split(services, chunk, &mp3_key, &mp3_file, mp3_size, dir.path()).await?
    };
    dir.remove().await;

    for piece in &pieces {
        let task = Task::TranscribeChunk {
            conversation_chunk_id: piece.id.clone(),
            conversation_id: piece.conversation_id.clone(),
            use_pii_redaction,
            provider_job_id: None,
            continuation: 0,
        };
        services.tasks.publish(task, Duration::ZERO).await?;
        let from_upload = piece.source.as_deref().is_some_and(|s| s.to_lowercase().contains("upload"));
        if services.settings.runpod_diarization && !from_upload {
            services.tasks.publish(Task::GetRunpodDiarization { chunk_id: piece.id.clone() }, Duration::ZERO).await?;
        }
    }
    if pieces.len() > 1 || pieces[0].id != chunk.id {
        // Last: a redelivery either redoes the idempotent steps above or finds the chunk gone.
        services.store.delete_chunk(&chunk.id).await?;
    }
    tracing::info!(chunk_id = %chunk.id, pieces = pieces.len(), "chunk processed");
    Ok(Done::Completed)
}

/// Cuts the mp3 into `n` equal pieces, each its own chunk row with a deterministic id.
async fn split(
    services: &Services,
    chunk: &Chunk,
    mp3_key: &str,
    mp3_file: &Path,
    mp3_size: u64,
    dir: &Path,
) -> Result<Vec<Chunk>, TaskError> {
    let n = mp3_size.div_ceil(SPLIT_BYTES);
    let duration = audio::duration(mp3_file).await.ok_or_else(|| TaskError::terminal("duration not found"))?;
    let length = duration / n as f64;
    let mut pieces = Vec::new();
    for i in 0..n {
        let id = piece_id(&chunk.id, i, n);
        let key = format!("chunks/{}/{id}_{i}-of-{n}.mp3", chunk.conversation_id);
        if services.blob.head(&key).await?.is_none() {
            let file = dir.join(format!("piece-{i}.mp3"));
            audio::cut_mp3(mp3_file, i as f64 * length, length, &file).await.map_err(audio_error)?;
            services.blob.upload_file(&key, &file, "audio/mpeg").await?;
        }
        let offset = chrono::Duration::milliseconds((i as f64 * length * 1000.0) as i64);
        let new = NewChunk {
            id: id.clone(),
            conversation_id: chunk.conversation_id.clone(),
            created_at: chunk.created_at.map(|at| at + offset),
            timestamp: chunk.timestamp + offset,
            path: Some(services.blob.url_for_key(&key)),
            source: chunk.source.clone(),
            transcript: None,
        };
        let piece = match services.store.create_chunk(new).await {
            Ok(piece) => piece,
            Err(StoreError::AlreadyExists { .. }) => {
                services.store.get_chunk(&id).await?.ok_or_else(|| TaskError::transient("piece vanished"))?
            }
            Err(err) => return Err(err.into()),
        };
        pieces.push(piece);
    }
    tracing::info!(chunk_id = %chunk.id, from = %mp3_key, pieces = n, "split");
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_keys_replace_only_the_last_extension() {
        assert_eq!(converted_key("conversation/c/chunks/x-webm-test.webm"), "conversation/c/chunks/x-webm-test.mp3");
        assert_eq!(converted_key("conversation/c/chunks/aac1-a.b.aac"), "conversation/c/chunks/aac1-a.b.mp3");
        assert_eq!(converted_key("conversation/c/chunks/x.MP3"), "conversation/c/chunks/x.converted.mp3");
        assert_eq!(converted_key("conversation/c.d/chunks/noext"), "conversation/c.d/chunks/noext.mp3");
    }

    #[test]
    fn piece_ids_are_stable() {
        assert_eq!(piece_id("c", 0, 2), piece_id("c", 0, 2));
        assert_ne!(piece_id("c", 0, 2), piece_id("c", 1, 2));
        assert_ne!(piece_id("c", 0, 2), piece_id("c", 0, 3));
        assert_eq!(uuid::Uuid::parse_str(&piece_id("c", 0, 2)).unwrap().get_version_num(), 5);
    }
}
