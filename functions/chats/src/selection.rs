//! The auto-select path of an answer (api.md §2.5.1 step 5): a follow-up keeps the locked
//! conversations; otherwise auto-select picks conversations of the project and adds them while
//! they fit 80 % of the maximum.

use std::time::Duration;

use common::ApiError;
use common::providers::llm::Message;
use common::store::{Conversation, NewChatMessage, Project};
use common::web::auth::Session;
use minijinja::context;

use crate::auto_select::{Candidate, Selector, json_object};
use crate::context::{self, ChatContext};
use crate::system::{self, Blocks};
use crate::{AppState, MAX_CHAT_CONTEXT_LENGTH};

const FOLLOWUP_TIMEOUT: Duration = Duration::from_secs(60);
const FILL_BUDGET: usize = MAX_CHAT_CONTEXT_LENGTH * 80 / 100;
const RETRY_DELAY: Duration = Duration::from_secs(1);

type Plan = (Vec<Message>, Option<Vec<(String, String)>>);

pub async fn auto_path(
    state: &AppState,
    session: &Session,
    project: &Project,
    context: ChatContext,
    history: Vec<Message>,
    language: &str,
) -> Result<Plan, ApiError> {
    let store = state.store.as_ref();
    if !context.locked.is_empty() && is_followup(state, &history, language).await {
        let blocks = Blocks::default().for_ids(store, &context.locked).await?;
        let mut messages = system::messages(project, &blocks, language)?;
        messages.extend(history);
        if system::tokens(&messages).await? > MAX_CHAT_CONTEXT_LENGTH {
            return Err(ApiError::bad_request("The conversation context with the new message exceeds the maximum context length."));
        }
        return Ok((messages, Some(Vec::new())));
    }
    let added = select_and_add(state, project, &context, &history, language).await?;
    let chat = store.get_chat(&context.chat.id).await?.ok_or_else(|| ApiError::not_found(context::CHAT_NOT_FOUND))?;
    let context = context::compute(state, session, chat).await?;
    let ids: Vec<String> = context.conversations.iter().map(|c| c.conversation.id.clone()).collect();
    let blocks = Blocks::default().for_ids(store, &ids).await?;
    let mut messages = system::messages(project, &blocks, language)?;
    messages.extend(history);
    if system::tokens(&messages).await? > MAX_CHAT_CONTEXT_LENGTH {
        return Err(ApiError::bad_request(
            "Auto select returned too many conversations. The selected conversations exceed the maximum context length.",
        ));
    }
    let references = added.into_iter().map(|c| (c.id, c.participant_name.unwrap_or_default())).collect();
    Ok((messages, Some(references)))
}

/// Whether the question follows on from the previous messages (SMALL model, 60 s); any failure
/// counts as no.
async fn is_followup(state: &AppState, history: &[Message], language: &str) -> bool {
    let Some((current, previous)) = history.split_last() else { return false };
    let previous = &previous[previous.len().saturating_sub(3)..];
    let ctx = context! { previous_messages => previous, current_question => current.content, language };
    let answer = match common::providers::prompts::render("is_followup_question", language, ctx) {
        Ok(prompt) => state.llm.complete_within(&state.settings.llm.small, &[Message::user(prompt)], FOLLOWUP_TIMEOUT).await,
        Err(err) => {
            tracing::error!(%err, "follow-up prompt failed");
            return false;
        }
    };
    match answer {
        Ok(text) => json_object(&text).and_then(|v| v["is_followup"].as_bool()).unwrap_or(false),
        Err(err) => {
            tracing::warn!(%err, "follow-up detection failed; treated as a new question");
            false
        }
    }
}

/// Auto-select over the project's conversations; the selected ones not yet in the context are
/// added in order while the system messages of those added so far plus the history stay within
/// 80 % of the maximum; one `dembrane` message names them.
async fn select_and_add(
    state: &AppState,
    project: &Project,
    context: &ChatContext,
    history: &[Message],
    language: &str,
) -> Result<Vec<Conversation>, ApiError> {
    let store = state.store.as_ref();
    let conversations = store.list_conversations(&project.id).await?;
    let mut candidates = Vec::new();
    for conversation in &conversations {
        candidates.extend(Candidate::load(store, project, conversation).await?);
    }
    let user_queries = history.iter().filter(|m| m.role == "user").map(|m| m.content.clone()).collect();
    let selector = Selector {
        llm: state.llm.clone(),
        slot: state.settings.llm.small.clone(),
        user_queries,
        language: language.to_string(),
        retry_delay: RETRY_DELAY,
    };
    let selected = selector.select(&candidates).await;
    let history_tokens = system::tokens(history).await?;
    let (mut blocks, mut added_blocks, mut added) = (Blocks::default(), Vec::new(), Vec::<Conversation>::new());
    for id in selected {
        let Some(conversation) = conversations.iter().find(|c| c.id == id) else { continue };
        if context.contains(&id) || added.iter().any(|c| c.id == id) {
            continue;
        }
        let mut trial = added_blocks.clone();
        trial.push(blocks.block(store, conversation).await?);
        if system::tokens(&system::messages(project, &trial, language)?).await? + history_tokens > FILL_BUDGET {
            break;
        }
        store.add_chat_conversation(&context.chat.id, &id).await?;
        added_blocks = trial;
        added.push(conversation.clone());
    }
    if !added.is_empty() {
        let message = NewChatMessage {
            id: uuid::Uuid::new_v4().to_string(),
            chat_id: context.chat.id.clone(),
            message_from: "dembrane".into(),
            text: format!("Auto-selected and added {} conversations as context to the chat.", added.len()),
            used_conversation_ids: added.iter().map(|c| c.id.clone()).collect(),
            added_conversation_ids: Vec::new(),
        };
        store.create_chat_message(message).await?;
    }
    Ok(added)
}
