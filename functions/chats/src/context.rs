//! The context computation (api.md §2.5) and the operations on a chat's context: add, delete,
//! lock. Token counts are o200k (D65) and run on the offload pool.

use common::ApiError;
use common::store::{Chat, ChatMessage, ChatMessagePatch, ChatPatch, Conversation, NewChatMessage, Store, is_uuid};
use common::web::access::owned_conversation;
use common::web::auth::Session;

use crate::{AppState, MAX_CHAT_CONTEXT_LENGTH};

pub const CHAT_NOT_FOUND: &str = "Chat not found";
pub const CHAT_FORBIDDEN: &str = "You are not authorized to access this chat";

/// The chat, when the caller owns its project (or is an admin); unknown ids are 404 (D8).
pub async fn owned_chat(store: &dyn Store, session: &Session, chat_id: &str) -> Result<Chat, ApiError> {
    let chat = if is_uuid(chat_id) { store.get_chat(chat_id).await? } else { None };
    let chat = chat.ok_or_else(|| ApiError::not_found(CHAT_NOT_FOUND))?;
    let project = store.get_project(&chat.project_id).await?.ok_or_else(|| ApiError::not_found(CHAT_NOT_FOUND))?;
    if !session.owns(project.directus_user_id.as_deref()) {
        return Err(ApiError::forbidden(CHAT_FORBIDDEN));
    }
    Ok(chat)
}

/// Tokens in a conversation's transcript: what the token-count endpoint answers.
pub async fn conversation_tokens(store: &dyn Store, conversation_id: &str) -> Result<usize, ApiError> {
    let text = common::flows::summary::transcript(store, conversation_id).await?;
    if text.is_empty() { Ok(0) } else { Ok(common::providers::tokens::count(text).await?) }
}

pub struct ContextConversation {
    pub conversation: Conversation,
    pub tokens: usize,
    pub locked: bool,
}

/// A chat's context as computed from its messages and context conversations.
pub struct ChatContext {
    pub chat: Chat,
    pub messages: Vec<ChatMessage>,
    /// Every conversation a message used, in first-use order.
    pub locked: Vec<String>,
    pub conversations: Vec<ContextConversation>,
    pub user_tokens: usize,
    pub assistant_tokens: usize,
    pub auto_select: bool,
}

impl ChatContext {
    pub fn conversation_tokens(&self) -> usize {
        self.conversations.iter().map(|c| c.tokens).sum()
    }

    pub fn contains(&self, conversation_id: &str) -> bool {
        self.conversations.iter().any(|c| c.conversation.id == conversation_id)
    }
}

/// The context computation: messages (ascending), locked conversations, missing message token
/// counts filled in, the per-role sums, and each context conversation's tokens (ownership
/// checked, so another owner's conversation is 403).
pub async fn compute(state: &AppState, session: &Session, chat: Chat) -> Result<ChatContext, ApiError> {
    let store = state.store.as_ref();
    let mut messages = store.list_chat_messages(&chat.id).await?;
    let mut locked: Vec<String> = Vec::new();
    for id in messages.iter().flat_map(|m| &m.used_conversation_ids) {
        if !locked.contains(id) {
            locked.push(id.clone());
        }
    }
    let (mut user_tokens, mut assistant_tokens) = (0, 0);
    for message in &mut messages {
        let role = message.message_from.as_deref().unwrap_or_default();
        if role != "user" && role != "assistant" {
            continue;
        }
        let tokens = match message.tokens_count {
            Some(n) => n.max(0) as usize,
            None => {
                let n = common::providers::tokens::count(message.text.clone().unwrap_or_default()).await?;
                store.update_chat_message(&message.id, ChatMessagePatch { tokens_count: Some(n as i64), ..Default::default() }).await?;
                message.tokens_count = Some(n as i64);
                n
            }
        };
        if role == "user" { user_tokens += tokens } else { assistant_tokens += tokens }
    }
    let auto_select = chat.auto_select.ok_or_else(|| ApiError::bad_request("Auto select is not boolean"))?;
    let mut conversations = Vec::new();
    for id in &chat.conversation_ids {
        let (conversation, _) = owned_conversation(store, session, id).await?;
        let tokens = conversation_tokens(store, id).await?;
        conversations.push(ContextConversation { locked: locked.contains(id), conversation, tokens });
    }
    Ok(ChatContext { chat, messages, locked, conversations, user_tokens, assistant_tokens, auto_select })
}

/// `conversation_id` xor `auto_select_bool`, as add-context and delete-context take them.
pub enum ContextChange {
    Conversation(String),
    AutoSelect(bool),
}

impl ContextChange {
    pub fn from_body(conversation_id: Option<String>, auto_select_bool: Option<bool>) -> Result<Self, ApiError> {
        match (conversation_id, auto_select_bool) {
            (None, None) => Err(ApiError::bad_request("conversation_id or auto_select_bool is required")),
            (Some(_), Some(_)) => Err(ApiError::bad_request("conversation_id and auto_select_bool cannot both be provided")),
            (Some(id), None) => Ok(ContextChange::Conversation(id)),
            (None, Some(value)) => Ok(ContextChange::AutoSelect(value)),
        }
    }
}

async fn set_auto_select(state: &AppState, chat: &Chat, value: bool) -> Result<(), ApiError> {
    state.store.update_chat(&chat.id, ChatPatch { auto_select: Some(value), ..Default::default() }).await?;
    Ok(())
}

/// add-context: the conversation must be the caller's, not in the context yet, and fit.
pub async fn add(state: &AppState, session: &Session, chat: Chat, change: ContextChange) -> Result<(), ApiError> {
    let cid = match change {
        ContextChange::AutoSelect(value) => return set_auto_select(state, &chat, value).await,
        ContextChange::Conversation(cid) => cid,
    };
    let (conversation, _) = owned_conversation(state.store.as_ref(), session, &cid).await?;
    if chat.conversation_ids.contains(&conversation.id) {
        return Err(ApiError::bad_request("Conversation already in the chat"));
    }
    let tokens = conversation_tokens(state.store.as_ref(), &conversation.id).await?;
    if tokens > MAX_CHAT_CONTEXT_LENGTH {
        return Err(ApiError::bad_request("Conversation is too long"));
    }
    let context = compute(state, session, chat).await?;
    if context.conversation_tokens() + tokens > MAX_CHAT_CONTEXT_LENGTH {
        return Err(ApiError::bad_request("Chat context is too long. Remove other conversations to proceed."));
    }
    state.store.add_chat_conversation(&context.chat.id, &conversation.id).await?;
    Ok(())
}

/// delete-context: a conversation leaves the context unless a message used it already.
pub async fn delete(state: &AppState, session: &Session, chat: Chat, change: ContextChange) -> Result<(), ApiError> {
    let cid = match change {
        ContextChange::AutoSelect(true) => return Err(ApiError::bad_request("auto_select_bool cannot be True")),
        ContextChange::AutoSelect(false) => return set_auto_select(state, &chat, false).await,
        ContextChange::Conversation(cid) => cid,
    };
    let conversation = if is_uuid(&cid) { state.store.get_conversation(&cid).await? } else { None };
    let conversation = conversation.ok_or_else(|| ApiError::not_found(common::web::access::CONVERSATION_NOT_FOUND))?;
    let context = compute(state, session, chat).await?;
    match context.conversations.iter().find(|c| c.conversation.id == conversation.id) {
        None => Err(ApiError::not_found("Conversation not found in the chat")),
        Some(c) if c.locked => Err(ApiError::bad_request("Conversation is locked")),
        Some(_) => {
            state.store.remove_chat_conversation(&context.chat.id, &conversation.id).await?;
            Ok(())
        }
    }
}

/// lock-conversations: one `dembrane` message using and adding every context conversation no
/// message used yet; the context's conversations.
pub async fn lock(state: &AppState, session: &Session, chat: Chat) -> Result<Vec<Conversation>, ApiError> {
    let context = compute(state, session, chat).await?;
    let fresh: Vec<String> = context.conversations.iter().filter(|c| !c.locked).map(|c| c.conversation.id.clone()).collect();
    if !fresh.is_empty() {
        let message = NewChatMessage {
            id: uuid::Uuid::new_v4().to_string(),
            chat_id: context.chat.id.clone(),
            message_from: "dembrane".into(),
            text: format!("You added {} conversations as context to the chat.", fresh.len()),
            used_conversation_ids: fresh.clone(),
            added_conversation_ids: fresh,
        };
        state.store.create_chat_message(message).await?;
    }
    Ok(context.conversations.into_iter().map(|c| c.conversation).collect())
}
