//! The operations behind `/api/stateless/rag/*` (api.md §2.6, processing.md §9.5): who may name
//! which ids (owner of every one, admin for the whole corpus, D22), the scope they resolve to
//! (D59), and the calls to LightRAG's server. Queries never use the server's unrestricted
//! `/query`: the prompt is built from the strictly filtered candidates (`restricted_prompt`) and
//! `simple_query` answers it with the project's own model.

use std::collections::BTreeSet;
use std::time::Duration;

use common::providers::llm::Message;
use common::providers::rag::context::NO_CONTEXT;
use common::providers::rag::{Prompt, RagIndex, Turn, restricted_prompt};
use common::store::{Segment, is_uuid};
use common::web::access::{owned_conversation, owned_project};
use common::web::auth::Session;
use common::{ApiError, Dependency};

use crate::AppState;

type ApiResult<T> = Result<T, ApiError>;

pub const INVALID_SEGMENT: &str = "Invalid segment ID";
pub const INVALID_CONVERSATION: &str = "Invalid conversation ID";
pub const SEGMENT_NOT_FOUND: &str = "Segment not found";
pub const SEGMENT_FORBIDDEN: &str = "You are not authorized to access this segment";
pub const CORPUS_FORBIDDEN: &str = "Only administrators may query without naming segments, conversations or projects";
pub const NOTHING_SELECTED: &str =
    "At least one of echo_segment_ids, echo_conversation_ids, or echo_project_ids must be provided if auto_select_bool is False";
/// get_lightrag_prompt's 503 (D9).
pub const PROMPT_UNAVAILABLE: &str = "RAG query temporarily unavailable. Please try manual conversation selection or contact support.";
/// Transcripts `simple_query` returns at most (D67).
pub const MAX_TRANSCRIPTS: usize = 10;
/// The query mode of both queries (§9.5) and simple_query's size (LightRAG's default top_k).
const MODE: &str = "mix";
const SIMPLE_TOP_K: u32 = 60;
/// simple_query is buffered: its answer must come within the REST API's 29 s.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(25);

/// What a query may draw on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every document on the server (admins only).
    Corpus,
    /// These segments' documents only (ascending, distinct; possibly none).
    Segments(Vec<i64>),
}

impl Scope {
    fn allowed(&self) -> Option<&[i64]> {
        match self {
            Scope::Corpus => None,
            Scope::Segments(ids) => Some(ids),
        }
    }
}

/// The ids a request names.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    pub segments: &'a [String],
    pub conversations: &'a [String],
    pub projects: &'a [String],
}

/// Segment ids are integer text (§9.2); anything else is 400, before any store call.
pub fn parse_segment_ids(ids: &[String]) -> ApiResult<Vec<i64>> {
    ids.iter().map(|id| id.trim().parse::<i64>().map_err(|_| ApiError::bad_request(INVALID_SEGMENT))).collect()
}

/// The segment, when the caller owns its conversation's project (api.md §1.2's segment row).
pub async fn owned_segment(state: &AppState, session: &Session, id: i64) -> ApiResult<Segment> {
    let segment = state.store.get_segment(id).await?.ok_or_else(|| ApiError::not_found(SEGMENT_NOT_FOUND))?;
    if session.is_admin {
        return Ok(segment);
    }
    let conversation = match segment.conversation_id.as_deref().filter(|c| is_uuid(c)) {
        Some(cid) => state.store.get_conversation(cid).await?,
        None => None,
    };
    let project = match conversation {
        Some(conversation) => state.store.get_project(&conversation.project_id).await?,
        None => None,
    };
    // A segment without a conversation or project has no owner to match.
    if !project.is_some_and(|p| session.owns(p.directus_user_id.as_deref())) {
        return Err(ApiError::forbidden(SEGMENT_FORBIDDEN));
    }
    Ok(segment)
}

/// Checks every named id (404 before 403, in the order given) and resolves them to segments:
/// the segment ids ∪ the conversations' segments ∪ the projects' segments, both pipelines. Naming
/// nothing is the whole corpus, for admins only.
pub async fn resolve(state: &AppState, session: &Session, selection: &Selection<'_>) -> ApiResult<Scope> {
    let segment_ids = parse_segment_ids(selection.segments)?;
    if segment_ids.is_empty() && selection.conversations.is_empty() && selection.projects.is_empty() {
        return if session.is_admin { Ok(Scope::Corpus) } else { Err(ApiError::forbidden(CORPUS_FORBIDDEN)) };
    }
    for &id in &segment_ids {
        owned_segment(state, session, id).await?;
    }
    for cid in selection.conversations {
        owned_conversation(state.store.as_ref(), session, cid).await?;
    }
    for pid in selection.projects {
        owned_project(state.store.as_ref(), session, pid).await?;
    }
    let mut all: BTreeSet<i64> = segment_ids.into_iter().collect();
    if !selection.conversations.is_empty() {
        all.extend(state.store.segments_for_conversations(selection.conversations).await?);
    }
    if !selection.projects.is_empty() {
        all.extend(state.store.segments_for_projects(selection.projects).await?);
    }
    Ok(Scope::Segments(all.into_iter().collect()))
}

/// The configured server, or the 503 naming it (no `LIGHTRAG_SERVER_URL`).
fn index(state: &AppState) -> ApiResult<&dyn RagIndex> {
    state.rag.as_deref().ok_or_else(|| ApiError::unavailable(Dependency::Rag, "LIGHTRAG_SERVER_URL is not set"))
}

/// `rag/insert`: the text as the segment's document; one already there counts as inserted.
pub async fn insert(state: &AppState, segment_id: i64, text: &str) -> ApiResult<()> {
    let inserted = index(state)?.insert_segment(segment_id, text).await?;
    tracing::info!(segment_id, ?inserted, "segment document inserted");
    Ok(())
}

/// The restricted prompt of `query` over `scope`.
pub async fn prompt(state: &AppState, scope: &Scope, query: &str, top_k: u32, history: &[Turn]) -> ApiResult<Prompt> {
    let rag = index(state)?;
    Ok(restricted_prompt(rag, query, MODE, top_k, scope.allowed(), history).await?)
}

/// `simple_query`: the project's model (LIGHTRAG_LITELLM_INFERENCE) answers over the restricted
/// prompt; with `get_transcripts`, the stored transcripts of the segments the context cites.
pub async fn answer(state: &AppState, scope: &Scope, query: &str, get_transcripts: bool) -> ApiResult<(String, Vec<String>)> {
    let prompt = prompt(state, scope, query, SIMPLE_TOP_K, &[]).await?;
    let Some(context) = &prompt.context else { return Ok((NO_CONTEXT.to_string(), Vec::new())) };
    let messages = [Message::system(prompt.text.clone()), Message::user(query)];
    let answer = state.llm.complete_within(&state.settings.llm.inference, &messages, ANSWER_TIMEOUT).await?;
    let mut transcripts = Vec::new();
    if get_transcripts {
        let cited = context.sources.iter().filter_map(|s| s.strip_prefix("SEGMENT_ID_")?.parse::<i64>().ok());
        for id in cited.take(MAX_TRANSCRIPTS) {
            if let Some(transcript) = state.store.get_segment(id).await?.and_then(|s| s.transcript) {
                transcripts.push(transcript);
            }
        }
    }
    Ok((answer, transcripts))
}

/// `delete_conversation`: every id a UUID (400), each conversation the caller's (404, 403), then
/// for each its segments' documents and rows (both pipelines; rows already gone are fine).
pub async fn delete_conversations(state: &AppState, session: &Session, ids: &[String]) -> ApiResult<usize> {
    if ids.iter().any(|id| !is_uuid(id)) {
        return Err(ApiError::bad_request(INVALID_CONVERSATION));
    }
    for id in ids {
        owned_conversation(state.store.as_ref(), session, id).await?;
    }
    let rag = index(state)?;
    let mut deleted = 0;
    for id in ids {
        for segment in state.store.segment_ids(id).await? {
            rag.delete_segment_document(segment).await?;
            state.store.delete_segment(segment).await?;
            deleted += 1;
        }
    }
    tracing::info!(conversations = ids.len(), segments = deleted, user_id = %session.user_id, "RAG documents of conversations deleted");
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_ids_are_integer_text() {
        assert_eq!(parse_segment_ids(&[" 12".into(), "7".into()]).unwrap(), vec![12, 7]);
        for bad in ["abc", "1.5", "", "99999999999999999999"] {
            assert_eq!(parse_segment_ids(&[bad.into()]).unwrap_err().detail(), INVALID_SEGMENT, "{bad:?}");
        }
    }
}
