//! The `network` queue: transcription, the finish hook, summaries, the collector, RunPod
//! polling, the project library and the deletion tasks (processing.md §2).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use common::Services;
use common::flows::cleanup::{self, Cleanup};
use common::flows::pipeline::{self, Finish, StatusIds, StatusStep};
use common::flows::summary::SummaryError;
use common::providers::llm::{LlmClient, LlmError};
use common::providers::rag::RagIndex;
use common::queue::worker::{Delivery, Done, TaskError, TaskRunner};
use common::queue::{Queue, Task};
use common::store::ConversationPatch;

mod diarization;
mod etl;
mod library;
mod transcribe;

pub use transcribe::runpod::REQUEST_LIMIT_ERROR;
pub use transcribe::{NO_PROVIDER, Provider};

/// What the function refuses to start without (D63): the store, storage, both queues, its dead-letter
/// queue and the summary slot; [`conditional_settings`] adds what enabled features need.
pub const REQUIRED_SETTINGS: &[&str] = &[
    "DIRECTUS_TOKEN",
    "STORAGE_S3_BUCKET",
    "STORAGE_S3_ENDPOINT",
    "AUDIO_QUEUE_URL",
    "NETWORK_QUEUE_URL",
    "NETWORK_DLQ_URL",
    "SUMMARY_LITELLM",
];

/// What enabled features add (D63): the RAG ETL its server and contextual slot (processing.md
/// §9.1), a topic-modeler URL its key, diarization its key and endpoint (data-model.md §4.8).
pub fn conditional_settings(settings: &common::config::Settings) -> Vec<&'static str> {
    let mut names = Vec::new();
    if settings.rag.enable_audio_input {
        names.extend(["LIGHTRAG_SERVER_URL", "LIGHTRAG_LITELLM"]);
    }
    if settings.topic_modeler.url.is_some() {
        names.push("RUNPOD_TOPIC_MODELER_API_KEY");
    }
    if settings.runpod_diarization {
        names.extend(["RUNPOD_DIARIZATION_API_KEY", "RUNPOD_DIARIZATION_BASE_URL"]);
    }
    names
}

/// Collector pass C's batch (processing.md §3.3).
const RAG_BACKLOG_LIMIT: u32 = 100;
const IDLE_MINUTES: i64 = 5;

pub struct NetworkWorker {
    pub services: Services,
    pub llm: LlmClient,
    /// The transcription provider, decided at start.
    pub provider: Provider,
    /// LightRAG's server; `None` without `LIGHTRAG_SERVER_URL` (or with an unusable one, logged).
    pub rag: Option<Arc<dyn RagIndex>>,
}

impl NetworkWorker {
    pub fn new(services: Services) -> Self {
        let provider = Provider::from_settings(&services.settings.transcription);
        let rag = common::providers::rag::from_settings(&services.settings.rag).unwrap_or_else(|err| {
            tracing::error!(%err, "LIGHTRAG_SERVER_URL is unusable; RAG steps are skipped");
            None
        });
        NetworkWorker { llm: LlmClient::from_settings(&services.settings), provider, rag, services }
    }
}

#[async_trait]
impl TaskRunner for NetworkWorker {
    fn queue(&self) -> Queue {
        Queue::Network
    }

    async fn run(&self, task: &Task, delivery: &Delivery) -> Result<Done, TaskError> {
        let services = &self.services;
        match task {
            Task::TranscribeChunk { conversation_chunk_id, provider_job_id, continuation, .. } => {
                let job = transcribe::Job { provider_job_id: provider_job_id.as_deref(), continuation: *continuation, task, delivery };
                transcribe::run(services, &self.provider, conversation_chunk_id, job).await
            }
            Task::FinishConversationHook { conversation_id } => {
                match pipeline::finish_conversation(services, conversation_id, services.settings.rag.enable_audio_input).await? {
                    Finish::Gone => Ok(Done::Skipped("conversation is gone".into())),
                    Finish::AlreadyFinal => Ok(Done::Skipped("finalised already; nothing new to merge".into())),
                    Finish::Pending(n) => Ok(Done::Skipped(format!("{n} chunks still pending"))),
                    Finish::Finalized => Ok(Done::Completed),
                }
            }
            Task::SummarizeConversation { conversation_id } => self.summarize(conversation_id).await,
            Task::CollectAndFinishUnfinishedConversations {} => collect(services).await,
            Task::DeleteConversationArtifacts { conversation_id, segment_ids } => {
                match cleanup::delete_conversation_artifacts(services, self.rag.as_deref(), conversation_id, segment_ids).await {
                    Ok(Cleanup::Done { .. }) => Ok(Done::Completed),
                    Ok(Cleanup::StillReferenced) => Err(TaskError::transient("the conversation still exists")),
                    Err(err) => Err(TaskError::transient(err)),
                }
            }
            Task::DeleteStorageObjects { keys, prefixes, chunk_id } => {
                match cleanup::delete_storage_objects(services, keys, prefixes, chunk_id.as_deref()).await {
                    Ok(Cleanup::Done { .. }) => Ok(Done::Completed),
                    Ok(Cleanup::StillReferenced) => Err(TaskError::transient("the chunk still exists")),
                    Err(err) => Err(TaskError::transient(err)),
                }
            }
            Task::RunEtlPipeline { conversation_id, segment_id, continuation } => match self.rag.as_deref() {
                Some(rag) => etl::Etl { services, llm: &self.llm, rag }.run(conversation_id, *segment_id, *continuation).await,
                // RAG is an optional service; requested without it, the task cannot succeed (processing.md §1.3).
                None => Err(TaskError::terminal("RAG is not configured (no LightRAG server)")),
            },
            Task::CreateProjectLibrary { project_id, language, project_analysis_run_id } => {
                library::create_library(services, project_id, language, project_analysis_run_id).await
            }
            Task::CreateView { project_analysis_run_id, user_query, user_query_context, language } => {
                library::create_view(services, project_analysis_run_id, user_query, user_query_context, language).await
            }
            Task::UpdateRunpodTranscriptionResponse {} => Ok(transcribe::runpod::queue_checks(services).await),
            Task::ProcessRunpodChunkResponse { chunk_id, status_link } => {
                transcribe::runpod::check(services, &self.provider, chunk_id, status_link).await
            }
            Task::GetRunpodDiarization { chunk_id } => Ok(diarization::run(services, chunk_id).await),
            other => Err(TaskError::terminal(format!("{} does not belong to the network queue", other.name()))),
        }
    }

    async fn give_up(&self, task: &Task, reason: &str) {
        match task {
            Task::TranscribeChunk { conversation_chunk_id, .. } => {
                transcribe::record_failure(&self.services, conversation_chunk_id, reason).await
            }
            Task::RunEtlPipeline { conversation_id, .. } => {
                // So pass C stops re-sending (D56); an operator resets the flag to retry.
                let patch = ConversationPatch { is_audio_processing_finished: Some(true), ..Default::default() };
                if let Err(err) = self.services.store.update_conversation(conversation_id, patch).await {
                    tracing::error!(%err, conversation_id, "could not mark the ETL as given up");
                }
                let ids = StatusIds { conversation_id: Some(conversation_id.clone()), ..Default::default() };
                pipeline::record_status(&self.services, "task_run_etl_pipeline.failed".into(), reason.into(), ids).await;
            }
            other => tracing::error!(task = other.name(), reason, "given up"),
        }
    }
}

impl NetworkWorker {
    /// `task_summarize_conversation`: once per conversation; an empty transcript writes nothing.
    async fn summarize(&self, conversation_id: &str) -> Result<Done, TaskError> {
        let services = &self.services;
        let Some(conversation) = services.store.get_conversation(conversation_id).await? else {
            return Ok(Done::Skipped("conversation is gone".into()));
        };
        if conversation.summary.is_some() {
            return Ok(Done::Skipped("already summarised".into()));
        }
        let language = services.store.get_project(&conversation.project_id).await?.and_then(|p| p.language).unwrap_or_else(|| "en".into());
        let ids = StatusIds {
            conversation_id: Some(conversation_id.into()),
            project_id: Some(conversation.project_id.clone()),
            ..Default::default()
        };
        let step = StatusStep::start(services, "task_summarize_conversation", format!("for conversation {conversation_id}"), ids).await;
        let result = common::flows::summary::summarize(services, &self.llm, conversation_id, &language).await;
        if let Err(SummaryError::Llm(LlmError::NotConfigured(setting))) = &result {
            // Nothing was sent; retrying cannot help until an operator sets it.
            let reason = format!("the summary model is not configured (set {setting})");
            step.finish(Err(&reason)).await;
            return Ok(Done::Skipped(reason));
        }
        let outcome = match result {
            Ok(Some(_)) => Ok(Done::Completed),
            Ok(None) => Ok(Done::Skipped("empty transcript".into())),
            Err(SummaryError::Store(e)) => Err(e.into()),
            Err(SummaryError::Llm(e)) => Err(e.into()),
            Err(SummaryError::Prompt(e)) => Err(TaskError::terminal(e)),
        };
        step.finish_with(&outcome).await;
        outcome
    }
}

/// `task_collect_and_finish_unfinished_conversations`, passes A and B (D49); pass C needs RAG.
async fn collect(services: &Services) -> Result<Done, TaskError> {
    let now = Utc::now();
    let idle = services.store.idle_unfinished_conversations(now - chrono::Duration::minutes(IDLE_MINUTES)).await?;
    let unfinalized =
        services.store.unfinalized_conversations(now - chrono::Duration::hours(services.settings.collector_redrive_hours as i64)).await?;
    let mut queued = 0;
    for conversation_id in idle.into_iter().chain(unfinalized) {
        services.tasks.publish(Task::FinishConversationHook { conversation_id }, Duration::ZERO).await?;
        queued += 1;
    }
    if services.settings.rag.enable_audio_input {
        for conversation_id in services.store.rag_backlog_conversations(RAG_BACKLOG_LIMIT).await? {
            services.tasks.publish(Task::RunEtlPipeline { conversation_id, segment_id: None, continuation: 0 }, Duration::ZERO).await?;
            queued += 1;
        }
    }
    tracing::info!(queued, "collector pass done");
    Ok(Done::Completed)
}
