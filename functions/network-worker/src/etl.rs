//! `task_run_etl_pipeline` (processing.md §9.3): one segment per conversation, its contextual
//! transcript inserted as the segment's LightRAG document, indexing awaited by re-publishing the
//! message. Each step is re-runnable, so a crash or a retry finishes what was started.

use std::time::Duration;

use common::Services;
use common::providers::llm::{LlmClient, Message};
use common::providers::rag::{DocStatus, Inserted, RagIndex};
use common::queue::Task;
use common::queue::worker::{Done, TaskError};
use common::store::{ChunkOrder, ConversationPatch, NewSegment, Segment, SegmentPatch};

/// Waits for indexing: 96 continuations of 60 s, as §9.3.
pub const MAX_CONTINUATIONS: u32 = 96;
const CONTINUATION_DELAY: Duration = Duration::from_secs(60);

pub struct Etl<'a> {
    pub services: &'a Services,
    pub llm: &'a LlmClient,
    pub rag: &'a dyn RagIndex,
}

impl Etl<'_> {
    pub async fn run(&self, conversation_id: &str, segment_id: Option<i64>, continuation: u32) -> Result<Done, TaskError> {
        let store = &self.services.store;
        let Some(conversation) = store.get_conversation(conversation_id).await? else { return Ok(skip("conversation is gone")) };
        let Some(project) = store.get_project(&conversation.project_id).await? else { return Ok(skip("project is gone")) };
        if !(self.services.settings.rag.enable_audio_input && project.is_enhanced_audio_processing_enabled == Some(true)) {
            self.mark_conversation(conversation_id).await?;
            return Ok(skip("RAG is off for this project"));
        }
        if conversation.is_audio_processing_finished == Some(true) {
            return Ok(skip("already indexed"));
        }
        let chunks = store.list_chunks(conversation_id, ChunkOrder::OldestFirst).await?;
        let parts: Vec<&str> = chunks.iter().filter_map(|c| c.transcript.as_deref().map(str::trim)).filter(|t| !t.is_empty()).collect();
        if parts.is_empty() {
            if conversation.is_all_chunks_transcribed == Some(true) {
                self.mark_conversation(conversation_id).await?;
            }
            return Ok(skip("no transcript"));
        }
        let transcript = parts.join("\n\n");
        let segments = store.conversation_segments(conversation_id).await?;
        if segments.iter().any(|s| s.lightrag_flag) {
            self.mark_conversation(conversation_id).await?;
            return Ok(Done::Completed);
        }
        let existing = segment_id.and_then(|id| segments.iter().find(|s| s.id == id)).or_else(|| segments.first());
        if let Some(segment) = existing.filter(|s| s.contextual_transcript.as_deref().is_some_and(|t| !t.trim().is_empty())) {
            let text = segment.contextual_transcript.clone().unwrap_or_default();
            return self.follow(conversation_id, segment.id, &text, continuation, segment_id.is_some()).await;
        }
        let contextual = self.contextualize(&project, &transcript).await;
        let segment = self.segment(conversation_id, existing, &transcript, &contextual).await?;
        self.follow(conversation_id, segment, &contextual, continuation, true).await
    }

    /// Inserts (or learns the state of) the segment's document and acts on it (§9.3 steps 6, 8-10);
    /// a document still indexing is awaited only by the delivery that waits for it (`waiting`).
    async fn follow(
        &self,
        conversation_id: &str,
        segment_id: i64,
        text: &str,
        continuation: u32,
        waiting: bool,
    ) -> Result<Done, TaskError> {
        match self.rag.insert_segment(segment_id, text).await? {
            Inserted::AlreadyThere { status: Some(DocStatus::Processed) } => self.finish(conversation_id, segment_id).await,
            Inserted::AlreadyThere { status: Some(DocStatus::Failed) } => {
                self.rag.delete_segment_document(segment_id).await?;
                self.rag.insert_segment(segment_id, text).await?;
                self.wait(conversation_id, segment_id, continuation).await
            }
            Inserted::Accepted { .. } => self.wait(conversation_id, segment_id, continuation).await,
            Inserted::AlreadyThere { .. } if waiting => self.wait(conversation_id, segment_id, continuation).await,
            Inserted::AlreadyThere { .. } => Ok(skip("the segment is indexing; its own delivery waits for it")),
        }
    }

    /// Step 9: the same message again in a minute, naming the segment.
    async fn wait(&self, conversation_id: &str, segment_id: i64, continuation: u32) -> Result<Done, TaskError> {
        if continuation >= MAX_CONTINUATIONS {
            return Err(TaskError::terminal(format!("segment {segment_id} was not indexed after {MAX_CONTINUATIONS} continuations")));
        }
        let task =
            Task::RunEtlPipeline { conversation_id: conversation_id.into(), segment_id: Some(segment_id), continuation: continuation + 1 };
        self.services.tasks.publish(task, CONTINUATION_DELAY).await?;
        Ok(Done::Skipped(format!("segment {segment_id} is indexing; continuation {} queued", continuation + 1)))
    }

    /// Step 10: flags, the segment's first, the conversation's last.
    async fn finish(&self, conversation_id: &str, segment_id: i64) -> Result<Done, TaskError> {
        let store = &self.services.store;
        store.update_segment(segment_id, SegmentPatch { lightrag_flag: Some(true), ..Default::default() }).await?;
        for other in store.conversation_segments(conversation_id).await?.iter().filter(|s| !s.lightrag_flag) {
            if let Err(err) = store.update_segment(other.id, SegmentPatch { lightrag_flag: Some(true), ..Default::default() }).await {
                tracing::warn!(%err, segment = other.id, "could not flag a sibling segment");
            }
        }
        self.mark_conversation(conversation_id).await?;
        Ok(Done::Completed)
    }

    async fn mark_conversation(&self, conversation_id: &str) -> Result<(), TaskError> {
        let patch = ConversationPatch { is_audio_processing_finished: Some(true), ..Default::default() };
        Ok(self.services.store.update_conversation(conversation_id, patch).await?)
    }

    /// Step 8: reuse the earlier attempt's segment, or create one; a concurrent delivery's
    /// lower id wins.
    async fn segment(
        &self,
        conversation_id: &str,
        existing: Option<&Segment>,
        transcript: &str,
        contextual: &str,
    ) -> Result<i64, TaskError> {
        let store = &self.services.store;
        let patch =
            SegmentPatch { transcript: Some(transcript.into()), contextual_transcript: Some(contextual.into()), ..Default::default() };
        if let Some(segment) = existing {
            store.update_segment(segment.id, patch).await?;
            return Ok(segment.id);
        }
        let new = NewSegment {
            conversation_id: conversation_id.into(),
            transcript: Some(transcript.into()),
            contextual_transcript: Some(contextual.into()),
        };
        let created = store.create_segment(new).await?;
        let lowest = store.conversation_segments(conversation_id).await?.into_iter().find(|s| !s.lightrag_flag).map(|s| s.id);
        match lowest {
            Some(lower) if lower < created.id => {
                store.delete_segment(created.id).await?;
                store.update_segment(lower, patch).await?;
                Ok(lower)
            }
            _ => Ok(created.id),
        }
    }

    /// Step 7: the contextual analysis; any failure falls back to the raw transcript.
    async fn contextualize(&self, project: &common::store::Project, transcript: &str) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
        let event_text =
            format!("name : {}\n\ncontext : {}\n\nlanguage : {}", show(&project.name), show(&project.context), show(&project.language));
        let language = project.language.as_deref().unwrap_or("en");
        let context = serde_json::json!({ "event_text": event_text, "previous_conversation_text": "" });
        let system = match common::providers::prompts::render("audio_model_system_prompt", language, context) {
            Ok(system) => system,
            Err(err) => {
                tracing::warn!(%err, "no contextualisation prompt; indexing the raw transcript");
                return transcript.to_string();
            }
        };
        let user = format!(
            "The conversation below is already transcribed. Skip the transcription task and give only the \
             contextual analysis.\n\n{transcript}"
        );
        let slot = &self.services.settings.rag.contextual_llm;
        match self.llm.complete(slot, &[Message::system(system), Message::user(user)]).await {
            Ok(reply) => serde_json::from_str::<serde_json::Value>(&reply)
                .ok()
                .and_then(|v| v.get("CONTEXTUAL_TRANSCRIPT").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or(reply),
            Err(err) => {
                tracing::warn!(%err, "contextualisation failed; indexing the raw transcript");
                transcript.to_string()
            }
        }
    }
}

fn skip(reason: &str) -> Done {
    Done::Skipped(reason.into())
}
