//! `GET /api/projects/{id}/transcripts` (spec/api.md §2.4.1): one Markdown file per
//! conversation with a transcript, zipped in memory on an offload thread (D39).

use std::io::Write;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use common::ApiError;
use common::store::{ChunkOrder, Conversation};
use common::web::access::owned_project;
use common::web::auth::Session;

use crate::AppState;
use crate::responses::NotYourProject;
use common::web::openapi::{ErrorBody, ProjectIdParam};

/// Alphanumerics kept, runs of anything else collapsed to one `_`, trimmed, cut to `max`.
fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').chars().take(max).collect::<String>().trim_matches('_').to_string()
}

pub fn entry_name(conversation: &Conversation) -> String {
    let mut parts =
        vec![conversation.created_at.map(|t| t.format("%Y%m%d_%H%M%S").to_string()).unwrap_or_else(|| "00000000_000000".into())];
    if let Some(name) = conversation.participant_name.as_deref().map(|n| slug(n, 50)).filter(|s| !s.is_empty()) {
        parts.push(name);
    }
    let local_part = conversation.participant_email.as_deref().and_then(|e| e.split('@').next()).map(|l| slug(l, 30));
    if let Some(email) = local_part.filter(|s| !s.is_empty()) {
        parts.push(email);
    }
    let short_id: String = conversation.id.chars().take(8).collect();
    format!("{}_{short_id}-transcript.md", parts.join("_"))
}

pub fn archive_name(project_name: Option<&str>, project_id: &str) -> String {
    let base = project_name.unwrap_or(project_id).replace(['/', '\\', ' '], "_");
    format!("{base}_transcripts.zip")
}

/// `attachment; filename="<ascii>"; filename*=UTF-8''<percent-encoded>` (D39).
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String =
        name.chars().map(|c| if c.is_ascii() && c != '"' && c != '\\' && !c.is_ascii_control() { c } else { '_' }).collect();
    let encoded = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
    HeaderValue::from_str(&format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")).expect("ascii only")
}

#[utoipa::path(
    get,
    path = "/api/projects/{project_id}/transcripts",
    tag = "projects",
    params(ProjectIdParam),
    responses(
        (status = 200, description = "A zip of the transcripts, as an attachment", content_type = "application/zip", body = Vec<u8>),
        NotYourProject,
        (
            status = 404,
            description = "Project not found; No conversations found for this project; No transcripts available for this project",
            body = ErrorBody,
        ),
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn download(State(state): State<AppState>, session: Session, Path(pid): Path<String>) -> Result<Response, ApiError> {
    let project = owned_project(state.store.as_ref(), &session, &pid).await?;
    let conversations = state.store.list_conversations(&project.id).await?;
    if conversations.is_empty() {
        return Err(ApiError::not_found("No conversations found for this project"));
    }
    let mut entries = Vec::new();
    for conversation in conversations {
        let chunks = state.store.list_chunks(&conversation.id, ChunkOrder::OldestFirst).await?;
        let transcripts: Vec<String> = chunks.into_iter().filter_map(|c| c.transcript).collect();
        if transcripts.is_empty() {
            continue;
        }
        let content: String = transcripts.iter().map(|t| format!("{t}\n")).collect();
        entries.push((entry_name(&conversation), content));
    }
    if entries.is_empty() {
        return Err(ApiError::not_found("No transcripts available for this project"));
    }
    let count = entries.len();
    let bytes = common::offload(move || build_zip(entries)).await?.map_err(ApiError::internal)?;
    tracing::info!(project_id = %project.id, entries = count, bytes = bytes.len(), "transcripts exported");
    let mut res = Response::new(Body::from(bytes));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/zip"));
    res.headers_mut().insert(header::CONTENT_DISPOSITION, content_disposition(&archive_name(project.name.as_deref(), &project.id)));
    Ok(res)
}

fn build_zip(entries: Vec<(String, String)>) -> zip::result::ZipResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut used = std::collections::HashSet::new();
    for (name, content) in entries {
        // Two conversations can share a second and a name prefix; keep both.
        let mut unique = name.clone();
        let mut n = 1;
        while !used.insert(unique.clone()) {
            n += 1;
            unique = name.replacen("-transcript.md", &format!("-{n}-transcript.md"), 1);
        }
        writer.start_file(unique, options)?;
        writer.write_all(content.as_bytes())?;
    }
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_follow_echo() {
        let c = Conversation {
            id: "0123456789abcdef".into(),
            project_id: "p".into(),
            created_at: Some(chrono::Utc.with_ymd_and_hms(2025, 10, 16, 9, 5, 7).unwrap()),
            updated_at: None,
            participant_name: Some("  Ada  Lovelace!! ".into()),
            participant_email: Some("ada.l@example.org".into()),
            participant_user_agent: None,
            source: None,
            summary: None,
            duration: None,
            merged_audio_path: None,
            is_finished: None,
            is_all_chunks_transcribed: None,
            is_audio_processing_finished: None,
            tag_ids: vec![],
        };
        assert_eq!(entry_name(&c), "20251016_090507_Ada_Lovelace_ada_l_01234567-transcript.md");
        let anonymous = Conversation { participant_name: Some("!!!".into()), participant_email: None, ..c };
        assert_eq!(entry_name(&anonymous), "20251016_090507_01234567-transcript.md");
        assert_eq!(archive_name(Some("Town hall / 2025"), "id"), "Town_hall___2025_transcripts.zip");
        assert_eq!(archive_name(None, "abc"), "abc_transcripts.zip");
        assert_eq!(
            content_disposition("Café_transcripts.zip").to_str().unwrap(),
            "attachment; filename=\"Caf__transcripts.zip\"; filename*=UTF-8''Caf%C3%A9%5Ftranscripts%2Ezip"
        );
    }
}
