//! The prompt of a restricted query (rag.md §3 step 5): our instructions around LightRAG's own
//! data sections, built from the filtered candidates; `get_lightrag_prompt` answers it and
//! `simple_query` sends it to the project's LLM.

use super::context::{self, Allowed, Context};
use super::*;
use crate::providers::tokens::count_blocking;

/// Turns of `conversation_history` the prompt carries (ECHO's `history_turns = 10`).
pub const HISTORY_TURNS: usize = 10;

/// One message of a conversation history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

/// What a restricted query assembles.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The whole prompt, or LightRAG's no-context answer when nothing was retrieved.
    pub text: String,
    pub context: Option<Context>,
}

fn history_section(history: &[Turn]) -> String {
    if history.is_empty() {
        return String::new();
    }
    let last = &history[history.len().saturating_sub(HISTORY_TURNS)..];
    let lines: Vec<String> = last.iter().map(|t| format!("{}: {}", t.role, t.content)).collect();
    format!("---Conversation History---\n{}\n\n", lines.join("\n"))
}

fn assemble(context_text: &str, history: &str, query: &str) -> String {
    format!(
        "---Role---\n\nYou answer questions about recorded conversations, using only the context below: knowledge-graph \
         entities and relationships, and excerpts of the conversations' transcripts.\n\n---Instructions---\n\n\
         - Base every statement on the context; when it does not hold the answer, say so plainly.\n\
         - Cite the excerpts you use by their reference numbers, like [1], and end with a short list of those references.\n\
         - Answer in the language of the question, in well-organised paragraphs.\n\n{history}---Context---\n{context_text}\n\
         ---Question---\n\n{query}\n"
    )
}

/// Retrieves, filters to `allowed` (`None` = the whole corpus, admins only) and builds the
/// prompt; tokenising runs in `offload`.
pub async fn restricted_prompt(
    rag: &dyn RagIndex,
    query: &str,
    mode: &str,
    top_k: u32,
    allowed: Option<&[i64]>,
    history: &[Turn],
) -> Result<Prompt, RagError> {
    let allowed = allowed.map(Allowed::segments);
    let data = rag.query_data(&context::candidate_request(query, mode, top_k, allowed.as_ref())).await?;
    let data = match &allowed {
        Some(allowed) => context::filter(data, allowed),
        None => data,
    };
    let (query, history, naive) = (query.to_string(), history_section(history), mode == "naive");
    let cut = allowed.is_some().then_some(top_k as usize);
    crate::offload(move || {
        let template_tokens = count_blocking(&assemble("", &history, ""));
        match context::build_blocking(&data, &query, cut, template_tokens, naive) {
            Some(built) => Prompt { text: assemble(&context::render(&built, naive), &history, &query), context: Some(built) },
            None => Prompt { text: context::NO_CONTEXT.to_string(), context: None },
        }
    })
    .await
    .map_err(|e| RagError::Other(format!("building the prompt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_last_ten_turns() {
        let turns: Vec<Turn> = (0..12).map(|i| Turn { role: "user".into(), content: format!("m{i}") }).collect();
        let section = history_section(&turns);
        assert!(section.starts_with("---Conversation History---\nuser: m2\n") && section.ends_with("user: m11\n\n"), "{section}");
        assert_eq!(history_section(&[]), "");
    }
}
