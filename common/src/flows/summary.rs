//! Transcripts and the conversation summary routine (processing.md §6), shared by the
//! summarize endpoint and the summary task.

use minijinja::context;

use crate::Services;
use crate::providers::llm::{LlmClient, LlmError, Message};
use crate::store::{ChunkOrder, ConversationPatch, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Prompt(#[from] crate::providers::prompts::PromptError),
}

/// Every chunk's transcript in recording order (all chunks), non-empty ones joined by newlines.
pub async fn transcript(store: &dyn Store, conversation_id: &str) -> Result<String, StoreError> {
    let chunks = store.list_chunks(conversation_id, ChunkOrder::OldestFirst).await?;
    let parts: Vec<String> = chunks.into_iter().filter_map(|c| c.transcript).filter(|t| !t.is_empty()).collect();
    Ok(parts.join("\n"))
}

/// Summarises the conversation in `language` and stores the summary; `None` (and nothing
/// written) when there is no transcript yet.
pub async fn summarize(
    services: &Services,
    llm: &LlmClient,
    conversation_id: &str,
    language: &str,
) -> Result<Option<String>, SummaryError> {
    let text = transcript(services.store.as_ref(), conversation_id).await?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let prompt = crate::providers::prompts::render(
        "generate_conversation_summary",
        language,
        context! { quote_text_joined => text, language => language },
    )?;
    let summary = llm.complete(&services.settings.llm.summary, &[Message::user(prompt)]).await?;
    let summary = summary.trim().to_string();
    services.store.update_conversation(conversation_id, ConversationPatch { summary: Some(summary.clone()), ..Default::default() }).await?;
    Ok(Some(summary))
}
