//! Retranscription: a new conversation with a copy of the original's merged audio as its one
//! chunk, queued for processing.

use std::time::Duration;

use chrono::Utc;
use common::ApiError;
use common::blob::Blob;
use common::flows::merge;
use common::queue::Task;
use common::store::{Conversation, NewChunk, NewConversation};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RetranscribeBody {
    new_conversation_name: String,
    #[serde(default)]
    use_pii_redaction: Option<bool>,
}

/// Merges `original`'s audio, copies it into a new conversation and queues that conversation's
/// chunk; the new conversation's id. If queueing fails, the copy and its conversation go again.
pub async fn start(state: &AppState, original: &Conversation, body: RetranscribeBody) -> Result<String, ApiError> {
    let merged = merge::merge_conversation(&state.services, &original.id).await?;
    let duration = (merged.duration >= 0.0).then_some(merged.duration);

    // The new conversation owns a copy of the audio, so deleting either never breaks the other (D40).
    let new_id = Uuid::new_v4().to_string();
    let copy_key = copy_merged_audio(&state.blob, &merged.key, &new_id).await?;
    let copy_url = state.blob.url_for_key(&copy_key);
    let name = if body.new_conversation_name.is_empty() {
        format!("{} (retranscribed)", original.participant_name.clone().unwrap_or_default())
    } else {
        body.new_conversation_name
    };
    state
        .store
        .create_conversation(NewConversation {
            id: new_id.clone(),
            project_id: original.project_id.clone(),
            participant_name: Some(name),
            participant_email: original.participant_email.clone(),
            participant_user_agent: original.participant_user_agent.clone(),
            source: Some("CLONE".into()),
            duration,
            merged_audio_path: Some(copy_url.clone()),
            ..Default::default()
        })
        .await?;
    if let Err(err) = state.store.create_conversation_link(&original.id, &new_id, "CLONE").await {
        tracing::warn!(%err, "linking the retranscribed conversation failed");
    }

    if let Err(reason) = queue_chunk(state, &new_id, copy_url, body.use_pii_redaction.unwrap_or(false)).await {
        let _ = state.store.delete_conversation(&new_id).await;
        let _ = state.blob.delete(&copy_key).await;
        return Err(ApiError::internal_with(format!("Failed to process audio: {reason}"), &reason));
    }
    tracing::info!(conversation_id = %original.id, new_conversation_id = %new_id, "retranscription queued");
    Ok(new_id)
}

/// Copies a merged file to the key the new conversation's merge of the same audio would have.
async fn copy_merged_audio(blob: &Blob, merged_key: &str, new_id: &str) -> Result<String, ApiError> {
    let fingerprint = merged_key.rsplit_once('-').map(|(_, f)| f.trim_end_matches(".mp3")).unwrap_or_default();
    let copy_key = merge::merged_key(new_id, fingerprint);
    blob.copy(merged_key, &copy_key).await?;
    Ok(copy_key)
}

/// The new conversation's one chunk and its processing task; the reason when either fails.
async fn queue_chunk(state: &AppState, conversation_id: &str, audio_url: String, use_pii_redaction: bool) -> Result<(), String> {
    let chunk_id = Uuid::new_v4().to_string();
    state
        .store
        .create_chunk(NewChunk {
            created_at: None,
            id: chunk_id.clone(),
            conversation_id: conversation_id.to_string(),
            timestamp: Utc::now(),
            path: Some(audio_url),
            source: Some("CLONE".into()),
            transcript: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let task = Task::ProcessConversationChunk { chunk_id, use_pii_redaction };
    state.tasks.publish(task, Duration::ZERO).await.map_err(|e| e.to_string())
}
