//! Restricted retrieval (rag.md §3): a wide candidate set from `/query/data`, filtered strictly
//! to the allowed segments, then the context built as LightRAG builds its own (same sections,
//! token budgets, Python-style JSON lines, references recomputed after filtering). The filter is
//! an access-control boundary: one project's users never see another project's text.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::providers::tokens::count_blocking;

/// LightRAG's defaults for the final context (rag.md §3 steps 3-4).
pub const CHUNK_COUNT: usize = 20;
pub const ENTITY_TOKENS: usize = 6000;
pub const RELATION_TOKENS: usize = 8000;
pub const TOTAL_TOKENS: usize = 30000;
const MARGIN_TOKENS: usize = 200;
/// The candidate set a restricted query asks for (rag.md §3 step 1, measured in §3's table).
pub const CANDIDATES: u32 = 250;
const WIDE_BUDGET: u32 = 1_000_000;

/// LightRAG's answer when nothing is retrieved.
pub const NO_CONTEXT: &str = "Sorry, I'm not able to provide an answer to that question.[no-context]";

/// The segments a query may draw on; `None` is the whole corpus (admins only).
#[derive(Debug, Clone)]
pub struct Allowed {
    files: HashSet<String>,
    documents: HashSet<String>,
}

impl Allowed {
    pub fn segments(ids: &[i64]) -> Self {
        Allowed { files: ids.iter().map(|id| file_source(*id)).collect(), documents: ids.iter().map(|id| document_id(*id)).collect() }
    }

    fn file(&self, path: Option<&str>) -> bool {
        path.is_some_and(|p| self.files.contains(p))
    }

    /// Every file path is allowed and every source chunk belongs to an allowed document.
    fn merged(&self, file_path: Option<&str>, source_id: Option<&str>) -> bool {
        let all = |value: Option<&str>, ok: &dyn Fn(&str) -> bool| value.is_some_and(|v| v.split("<SEP>").all(ok));
        all(file_path, &|p| self.files.contains(p))
            && all(source_id, &|s| {
                let doc = s.rsplit_once("-chunk-").map_or(s, |(doc, n)| if n.bytes().all(|b| b.is_ascii_digit()) { doc } else { s });
                self.documents.contains(doc)
            })
    }
}

/// The `/query/data` request: wide for a restricted query, the caller's size for the corpus.
pub fn candidate_request(query: &str, mode: &str, top_k: u32, allowed: Option<&Allowed>) -> QueryRequest {
    let mut request = QueryRequest::new(query, mode);
    match allowed {
        Some(_) => {
            request.top_k = Some(CANDIDATES.max(top_k));
            request.chunk_top_k = Some(CANDIDATES.max(top_k));
            request.max_entity_tokens = Some(WIDE_BUDGET);
            request.max_relation_tokens = Some(WIDE_BUDGET);
            request.max_total_tokens = Some(WIDE_BUDGET);
        }
        None => request.top_k = Some(top_k),
    }
    request
}

/// Keeps, in the server's order, only what provably comes from allowed segments (rag.md §3 step 2).
pub fn filter(data: QueryData, allowed: &Allowed) -> QueryData {
    QueryData {
        entities: data.entities.into_iter().filter(|e| allowed.merged(e.file_path.as_deref(), e.source_id.as_deref())).collect(),
        relationships: data.relationships.into_iter().filter(|r| allowed.merged(r.file_path.as_deref(), r.source_id.as_deref())).collect(),
        chunks: data.chunks.into_iter().filter(|c| allowed.file(c.file_path.as_deref())).collect(),
    }
}

/// The context's four data sections, as LightRAG renders them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub entities: String,
    pub relations: String,
    pub chunks: String,
    pub references: String,
    /// The file sources of the reference list, in its order (`SEGMENT_ID_x`).
    pub sources: Vec<String>,
}

/// A JSON string as Python's `json.dumps(..., ensure_ascii=False)` writes it (serde_json escapes
/// the same characters the same way).
fn py_str(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `{"k1": v1, "k2": v2}` with Python's separators.
fn py_object(fields: &[(&str, &str)]) -> String {
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{}: {}", py_str(k), py_str(v))).collect();
    format!("{{{}}}", parts.join(", "))
}

/// The largest prefix of `lines` whose `\n`-joined text is within `max_tokens`.
fn token_prefix(lines: &[String], max_tokens: usize) -> usize {
    let mut total = 0;
    let mut k = 0;
    while k < lines.len() {
        total += count_blocking(&lines[k]) + usize::from(k > 0);
        if total > max_tokens {
            break;
        }
        k += 1;
    }
    while k > 0 && count_blocking(&lines[..k].join("\n")) > max_tokens {
        k -= 1;
    }
    k
}

/// Reference ids by `file_path` count (descending), then first appearance (rag.md §3 step 4).
fn references(chunks: &[Chunk]) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for path in chunks.iter().filter_map(|c| c.file_path.as_deref()).filter(|p| !p.is_empty() && *p != "unknown_source") {
        let n = counts.entry(path).or_insert(0);
        if *n == 0 {
            order.push(path);
        }
        *n += 1;
    }
    let mut ranked: Vec<(usize, &str)> = order.into_iter().enumerate().collect();
    ranked.sort_by_key(|(i, p)| (std::cmp::Reverse(counts[p]), *i));
    ranked.into_iter().map(|(_, p)| p.to_string()).collect()
}

fn chunk_lines(chunks: &[Chunk]) -> (Vec<String>, Vec<String>) {
    let sources = references(chunks);
    let lines = chunks
        .iter()
        .map(|c| {
            let reference = c.file_path.as_deref().and_then(|p| sources.iter().position(|s| s == p)).map(|i| (i + 1).to_string());
            py_object(&[("reference_id", reference.as_deref().unwrap_or("")), ("content", &c.content)])
        })
        .collect();
    (lines, sources)
}

/// LightRAG's `kg_query_context` (or `naive_query_context`) text for these sections.
pub fn render(context: &Context, naive: bool) -> String {
    let chunks = format!(
        "Document Chunks (Each entry has a reference_id refer to the `Reference Document List`; the optional `content_headings` \
         field gives the chunk's heading path within its source document, e.g. `Section 1 → Subsection 1.2`):\n\n```json\n{}\n```\n\n\
         Reference Document List (Each entry starts with a [reference_id] that corresponds to entries in the Document Chunks):\n\n\
         ```\n{}\n```\n\n",
        context.chunks, context.references
    );
    if naive {
        return format!("\n{chunks}");
    }
    format!(
        "\nKnowledge Graph Data (Entity):\n\n```json\n{}\n```\n\nKnowledge Graph Data (Relationship):\n\n```json\n{}\n```\n\n{chunks}",
        context.entities, context.relations
    )
}

/// Blocking (tokenises): cuts `data` to `cut` entities and relations each and [`CHUNK_COUNT`]
/// chunks (a restricted query's wide candidates; the server already cut an unrestricted one), then
/// to the token budgets; `template_tokens` is what the prompt around the context costs. `None`
/// when nothing is left.
pub fn build_blocking(data: &QueryData, query: &str, cut: Option<usize>, template_tokens: usize, naive: bool) -> Option<Context> {
    let top_k = cut.unwrap_or(usize::MAX);
    let entities: Vec<String> = data
        .entities
        .iter()
        .take(top_k)
        .map(|e| {
            let kind = e.entity_type.as_deref().unwrap_or("UNKNOWN");
            py_object(&[("entity", &e.entity_name), ("type", kind), ("description", e.description.as_deref().unwrap_or("UNKNOWN"))])
        })
        .collect();
    let relations: Vec<String> = data
        .relationships
        .iter()
        .take(top_k)
        .map(|r| {
            py_object(&[("entity1", &r.src_id), ("entity2", &r.tgt_id), ("description", r.description.as_deref().unwrap_or("UNKNOWN"))])
        })
        .collect();
    let entities = entities[..token_prefix(&entities, ENTITY_TOKENS)].join("\n");
    let relations = relations[..token_prefix(&relations, RELATION_TOKENS)].join("\n");
    let frame = Context { entities: entities.clone(), relations: relations.clone(), ..Default::default() };
    let used = template_tokens + count_blocking(&render(&frame, naive)) + count_blocking(query) + MARGIN_TOKENS;
    let available = TOTAL_TOKENS.saturating_sub(used);
    let mut chunks: Vec<Chunk> = data.chunks.iter().take(cut.map_or(usize::MAX, |_| CHUNK_COUNT)).cloned().collect();
    // As LightRAG: a prefix by content alone, then re-checked as rendered.
    let approx: Vec<String> = chunks.iter().map(|c| py_object(&[("content", &c.content)])).collect();
    chunks.truncate(token_prefix(&approx, available));
    while !chunks.is_empty() && count_blocking(&chunk_lines(&chunks).0.join("\n")) > available {
        chunks.pop();
    }
    let (lines, sources) = chunk_lines(&chunks);
    if entities.is_empty() && relations.is_empty() && lines.is_empty() {
        return None;
    }
    let references = sources.iter().enumerate().map(|(i, s)| format!("[{}] {s}", i + 1)).collect::<Vec<_>>().join("\n");
    Some(Context { entities, relations, chunks: lines.join("\n"), references, sources })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(name: &str, file_path: &str, source_id: &str) -> Entity {
        Entity { entity_name: name.into(), file_path: Some(file_path.into()), source_id: Some(source_id.into()), ..Default::default() }
    }

    #[test]
    fn the_filter_keeps_only_provable_provenance() {
        let allowed = Allowed::segments(&[1, 2]);
        let (d1, d2, d3) = (document_id(1), document_id(2), document_id(3));
        let data = QueryData {
            entities: vec![
                entity("both", "SEGMENT_ID_1<SEP>SEGMENT_ID_2", &format!("{d1}-chunk-000<SEP>{d2}-chunk-001")),
                entity("shared", "SEGMENT_ID_1<SEP>SEGMENT_ID_3", &format!("{d1}-chunk-000<SEP>{d3}-chunk-000")),
                entity("hidden source", "SEGMENT_ID_1", &format!("{d1}-chunk-000<SEP>{d3}-chunk-000")),
                entity("truncated", "SEGMENT_ID_1<SEP>...truncated...", &format!("{d1}-chunk-000")),
                entity("unknown", "unknown_source", &format!("{d1}-chunk-000")),
                entity("empty", "", ""),
            ],
            relationships: vec![],
            chunks: vec![
                Chunk { content: "a".into(), file_path: Some("SEGMENT_ID_2".into()), ..Default::default() },
                Chunk { content: "b".into(), file_path: Some("SEGMENT_ID_3".into()), ..Default::default() },
                Chunk { content: "c".into(), file_path: None, ..Default::default() },
            ],
        };
        let kept = filter(data, &allowed);
        assert_eq!(kept.entities.iter().map(|e| e.entity_name.as_str()).collect::<Vec<_>>(), vec!["both"]);
        assert_eq!(kept.chunks.iter().map(|c| c.content.as_str()).collect::<Vec<_>>(), vec!["a"]);
    }

    #[test]
    fn lines_are_python_json_and_references_rank_by_count() {
        assert_eq!(py_object(&[("entity", "Zoë \"Z\""), ("type", "a\nb")]), r#"{"entity": "Zoë \"Z\"", "type": "a\nb"}"#);
        let chunk = |p: &str| Chunk { content: p.to_lowercase(), file_path: Some(p.into()), ..Default::default() };
        let data = QueryData { chunks: vec![chunk("SEGMENT_ID_9"), chunk("SEGMENT_ID_4"), chunk("SEGMENT_ID_4")], ..Default::default() };
        let context = build_blocking(&data, "q", Some(60), 0, true).unwrap();
        assert_eq!(context.references, "[1] SEGMENT_ID_4\n[2] SEGMENT_ID_9");
        assert!(context.chunks.starts_with(r#"{"reference_id": "2", "content": "segment_id_9"}"#), "{}", context.chunks);
        assert_eq!(build_blocking(&QueryData::default(), "q", None, 0, false), None);
    }
}
