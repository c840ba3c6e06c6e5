//! The three system messages of a chat answer (api.md §2.5.1 step 7): the assistant's role, the
//! project, and the context conversations with their transcripts.

use std::collections::HashMap;

use common::ApiError;
use common::providers::llm::Message;
use common::providers::prompts::render;
use common::store::{Conversation, Project, Store};
use minijinja::context;
use serde::Serialize;

/// One conversation as the context template lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ConversationBlock {
    pub id: String,
    pub name: String,
    pub tags: String,
    pub created_at: String,
    pub duration: String,
    pub transcript: String,
}

/// Loads conversations with their transcripts and tag texts, each project read once.
#[derive(Default)]
pub struct Blocks {
    projects: HashMap<String, Option<Project>>,
    blocks: HashMap<String, ConversationBlock>,
}

impl Blocks {
    pub async fn block(&mut self, store: &dyn Store, conversation: &Conversation) -> Result<ConversationBlock, ApiError> {
        if let Some(block) = self.blocks.get(&conversation.id) {
            return Ok(block.clone());
        }
        if !self.projects.contains_key(&conversation.project_id) {
            let project = store.get_project(&conversation.project_id).await?;
            self.projects.insert(conversation.project_id.clone(), project);
        }
        let tags = self.projects[&conversation.project_id].as_ref().map(|p| tag_texts(p, conversation)).unwrap_or_default();
        let block = ConversationBlock {
            id: conversation.id.clone(),
            name: conversation.participant_name.clone().unwrap_or_default(),
            tags,
            created_at: conversation.created_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            duration: conversation.duration.map(|d| format!("{d:.0} s")).unwrap_or_default(),
            transcript: common::flows::summary::transcript(store, &conversation.id).await?,
        };
        self.blocks.insert(conversation.id.clone(), block.clone());
        Ok(block)
    }

    /// Blocks of the conversations with these ids (unknown ids are left out).
    pub async fn for_ids(&mut self, store: &dyn Store, ids: &[String]) -> Result<Vec<ConversationBlock>, ApiError> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(conversation) = store.get_conversation(id).await? {
                out.push(self.block(store, &conversation).await?);
            }
        }
        Ok(out)
    }
}

fn tag_texts(project: &Project, conversation: &Conversation) -> String {
    let texts: Vec<&str> =
        conversation.tag_ids.iter().filter_map(|id| project.tags.iter().find(|t| &t.id == id).and_then(|t| t.text.as_deref())).collect();
    texts.join(", ")
}

/// `key : value` lines of the project's name, language, context and default conversation texts.
fn project_context(project: &Project) -> String {
    [
        ("name", &project.name),
        ("language", &project.language),
        ("context", &project.context),
        ("default_conversation_title", &project.default_conversation_title),
        ("default_conversation_description", &project.default_conversation_description),
    ]
    .iter()
    .map(|(key, value)| format!("{key} : {}", value.as_deref().unwrap_or_default()))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The system messages for `conversations`, answering in `language`.
pub fn messages(project: &Project, conversations: &[ConversationBlock], language: &str) -> Result<Vec<Message>, ApiError> {
    let prompt = |name: &str, ctx| render(name, language, ctx).map_err(ApiError::internal);
    Ok(vec![
        Message::system(prompt("system_chat", context! { language })?),
        Message::system(prompt("context_project", context! { project_context => project_context(project), language })?),
        Message::system(prompt("context_conversations", context! { conversations, language })?),
    ])
}

/// Tokens of every message's content together.
pub async fn tokens(messages: &[Message]) -> Result<usize, ApiError> {
    let text: String = messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n");
    Ok(common::providers::tokens::count(text).await?)
}
