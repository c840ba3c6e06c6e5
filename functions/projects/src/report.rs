//! `POST /api/projects/{id}/create-report` (processing.md §7): summaries first, then full
//! transcripts, of the most recently updated conversations that fit the model's context; one
//! completion; the article stored as an archived `project_report`.

use axum::Json;
use axum::extract::{Path, State};
use common::ApiError;
use common::providers::llm::{LlmError, Message};
use common::store::{NewReport, Project, Report};
use common::web::access::owned_project;
use common::web::auth::Session;
use common::web::http::JsonBody;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::responses::NotYourProject;
use common::web::openapi::{ProjectIdParam, ProjectNotFound};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReportBody {
    language: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReportConversation {
    name: String,
    tags: String,
    transcript: String,
    created_at: String,
    updated_at: String,
}

#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/create-report",
    tag = "projects",
    params(ProjectIdParam),
    request_body = ReportBody,
    responses(
        (
            status = 200,
            description = "The created project_report item (id, content, project_id, language, status, date_created)",
            body = Object,
        ),
        NotYourProject,
        ProjectNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn create_report(
    State(state): State<AppState>,
    session: Session,
    Path(pid): Path<String>,
    JsonBody(body): JsonBody<ReportBody>,
) -> Result<Json<Report>, ApiError> {
    let project = owned_project(state.store.as_ref(), &session, &pid).await?;
    let language = body.language.unwrap_or_else(|| "en".into());
    let content = write_report(&state, &project, &language).await?;
    let report =
        state.store.create_report(NewReport { content, project_id: project.id.clone(), language, status: "archived".into() }).await?;
    tracing::info!(project_id = %project.id, report_id = report.id, "report created");
    Ok(Json(report))
}

/// The context limit of the MEDIUM model, in tokens.
fn context_limit(model: Option<&str>) -> usize {
    if model.is_some_and(|m| m.contains("4.1")) { 700_000 } else { 128_000 }
}

async fn write_report(state: &AppState, project: &Project, language: &str) -> Result<String, ApiError> {
    // Before any work: a 503 naming the setting (processing.md §10), no provider called.
    if let Some(setting) = state.llm.missing(&state.settings.llm.medium) {
        return Err(LlmError::NotConfigured(setting).into());
    }
    let limit = context_limit(state.settings.llm.medium.model.as_deref());
    let mut conversations = state.store.list_conversations(&project.id).await?;
    conversations.sort_by_key(|c| std::cmp::Reverse(c.updated_at.or(c.created_at)));

    // Pass 1: summaries, most recent first, while they fit.
    let mut included = Vec::new();
    let mut total = 0usize;
    for c in conversations.iter().filter(|c| c.summary.is_some()) {
        let tags: String = c
            .tag_ids
            .iter()
            .filter_map(|id| project.tags.iter().find(|t| &t.id == id).and_then(|t| t.text.clone()))
            .map(|t| format!("{t}, "))
            .collect();
        let entry = ReportConversation {
            name: c.participant_name.clone().unwrap_or_default(),
            tags,
            transcript: c.summary.clone().unwrap_or_default(),
            created_at: c.created_at.map(|t| common::datetime::format(&t)).unwrap_or_default(),
            updated_at: c.updated_at.map(|t| common::datetime::format(&t)).unwrap_or_default(),
        };
        let tokens = common::providers::tokens::count(format!("{} {} {}", entry.name, entry.tags, entry.transcript)).await?;
        if total + tokens >= limit {
            break;
        }
        total += tokens;
        included.push((c.id.clone(), entry));
    }
    // Pass 2: the full transcripts of those conversations, while they fit (D61).
    for (id, entry) in included.iter_mut() {
        let transcript = common::flows::summary::transcript(state.store.as_ref(), id).await?;
        if transcript.is_empty() {
            continue;
        }
        let tokens = common::providers::tokens::count(transcript.clone()).await?;
        if total + tokens >= limit {
            break;
        }
        total += tokens;
        entry.transcript = format!("{}\n{transcript}", entry.transcript);
    }
    let entries: Vec<ReportConversation> = included.into_iter().map(|(_, e)| e).collect();
    let prompt = common::providers::prompts::render("system_report", language, context! { conversations => entries, language => language })
        .map_err(ApiError::internal)?;
    let reply = state.llm.complete(&state.settings.llm.medium, &[Message::user(prompt)]).await?;
    Ok(article(&reply))
}

/// The text between `<article>` and `</article>`; without them, the reply with stray tags removed.
fn article(reply: &str) -> String {
    if let (Some(start), Some(end)) = (reply.find("<article>"), reply.rfind("</article>"))
        && start < end
    {
        return reply[start + "<article>".len()..end].trim().to_string();
    }
    reply.replace("<article>", "").replace("</article>", "").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn article_extraction() {
        assert_eq!(article("intro <article>\n# Report\n</article> outro"), "# Report");
        assert_eq!(article("# Just text </article>"), "# Just text");
        assert_eq!(context_limit(Some("azure/gpt-4.1")), 700_000);
        assert_eq!(context_limit(Some("gpt-4o")), 128_000);
    }
}
