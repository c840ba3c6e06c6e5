//! Auto-select (api.md §2.5.1 step 5): the SMALL model picks the conversations of the project
//! that answer the user's questions, 20 per call, every batch at once. A batch whose prompt is
//! over the maximum is split in halves (a single oversized conversation is skipped); transient
//! provider errors are retried; a batch that fails selects nothing.

use std::time::Duration;

use common::config::LlmSlot;
use common::providers::llm::{LlmClient, LlmError, Message};
use common::providers::prompts::render;
use common::store::{Conversation, Project, Store};
use futures::future::{BoxFuture, FutureExt, join_all};
use minijinja::context;
use serde::Serialize;

use crate::MAX_CHAT_CONTEXT_LENGTH;

pub const BATCH_SIZE: usize = 20;
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);
const TRIES: usize = 3;
const SUMMARY_FALLBACK_CHARS: usize = 500;

/// A conversation as the selection prompt shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub participant_name: String,
    pub summary: String,
    pub tags: String,
    pub created_at: String,
}

impl Candidate {
    /// The summary, or else the transcript's first 500 characters; neither gives `None`.
    pub async fn load(store: &dyn Store, project: &Project, conversation: &Conversation) -> Result<Option<Self>, common::ApiError> {
        let summary = match conversation.summary.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => s.to_string(),
            None => {
                let transcript = common::flows::summary::transcript(store, &conversation.id).await?;
                if transcript.trim().is_empty() {
                    return Ok(None);
                }
                format!("{}...", transcript.chars().take(SUMMARY_FALLBACK_CHARS).collect::<String>())
            }
        };
        let tags: Vec<&str> = conversation
            .tag_ids
            .iter()
            .filter_map(|id| project.tags.iter().find(|t| &t.id == id).and_then(|t| t.text.as_deref()))
            .collect();
        Ok(Some(Candidate {
            id: conversation.id.clone(),
            participant_name: conversation.participant_name.clone().unwrap_or_else(|| "Unknown".into()),
            summary,
            tags: tags.join(", "),
            created_at: conversation.created_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        }))
    }
}

/// What one selection needs besides the candidates.
#[derive(Clone)]
pub struct Selector {
    pub llm: LlmClient,
    pub slot: LlmSlot,
    pub user_queries: Vec<String>,
    pub language: String,
    /// Waits between tries of a transient failure.
    pub retry_delay: Duration,
}

impl Selector {
    /// The selected conversation ids, batch by batch in the candidates' order; every batch is
    /// sent at once.
    pub async fn select(&self, candidates: &[Candidate]) -> Vec<String> {
        let batches = candidates.chunks(BATCH_SIZE).map(|batch| self.batch(batch.to_vec()));
        join_all(batches).await.into_iter().flatten().collect()
    }

    fn batch(&self, batch: Vec<Candidate>) -> BoxFuture<'_, Vec<String>> {
        async move {
            let prompt = match self.prompt(&batch) {
                Ok(prompt) => prompt,
                Err(err) => {
                    tracing::error!(%err, "auto-select prompt failed");
                    return Vec::new();
                }
            };
            let tokens = common::providers::tokens::count(prompt.clone()).await.unwrap_or(usize::MAX);
            if tokens > MAX_CHAT_CONTEXT_LENGTH {
                if batch.len() == 1 {
                    tracing::warn!(conversation_id = %batch[0].id, tokens, "auto-select skips a conversation too long to judge");
                    return Vec::new();
                }
                let (left, right) = batch.split_at(batch.len() / 2);
                let (a, b) = futures::join!(self.batch(left.to_vec()), self.batch(right.to_vec()));
                return a.into_iter().chain(b).collect();
            }
            match self.ask(prompt).await {
                Ok(answer) => parse_selection(&answer, &batch),
                Err(err) => {
                    tracing::warn!(%err, size = batch.len(), "an auto-select batch failed; it selects nothing");
                    Vec::new()
                }
            }
        }
        .boxed()
    }

    fn prompt(&self, batch: &[Candidate]) -> Result<String, common::providers::prompts::PromptError> {
        let context = context! { user_queries => self.user_queries, conversations => batch, language => self.language };
        render("auto_select_conversations", &self.language, context)
    }

    async fn ask(&self, prompt: String) -> Result<String, LlmError> {
        let messages = [Message::user(prompt)];
        let mut last = LlmError::Other("no try".into());
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(self.retry_delay * attempt as u32).await;
            }
            match self.llm.complete_within(&self.slot, &messages, BATCH_TIMEOUT).await {
                Err(LlmError::Unavailable(reason)) => last = LlmError::Unavailable(reason),
                other => return other,
            }
        }
        Err(last)
    }
}

/// The first JSON object in `text` (models like to wrap it in a code fence).
pub fn json_object(text: &str) -> Option<serde_json::Value> {
    let (start, end) = (text.find('{')?, text.rfind('}')?);
    serde_json::from_str(text.get(start..=end)?).ok()
}

/// `selected_conversation_ids` of the answer, kept to the batch's ids, in the batch's order.
fn parse_selection(answer: &str, batch: &[Candidate]) -> Vec<String> {
    let Some(value) = json_object(answer) else {
        tracing::warn!("auto-select answer is not JSON");
        return Vec::new();
    };
    let picked: Vec<&str> =
        value["selected_conversation_ids"].as_array().map(|ids| ids.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
    batch.iter().filter(|c| picked.contains(&c.id.as_str())).map(|c| c.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str) -> Candidate {
        Candidate { id: id.into(), participant_name: "A".into(), summary: "s".into(), tags: String::new(), created_at: String::new() }
    }

    #[test]
    fn selections_keep_to_the_batch() {
        let batch = [candidate("a"), candidate("b"), candidate("c")];
        let answer = "```json\n{\"selected_conversation_ids\": [\"c\", \"zzz\", \"a\"]}\n```";
        assert_eq!(parse_selection(answer, &batch), vec!["a".to_string(), "c".to_string()]);
        assert!(parse_selection("no idea", &batch).is_empty());
        assert!(parse_selection("{\"selected_conversation_ids\": 3}", &batch).is_empty());
    }
}
