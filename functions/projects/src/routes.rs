//! Project creation, cloning and the topic-library tasks.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::ApiError;
use common::queue::Task;
use common::store::{NewProject, Project, ProjectTag};
use common::web::access::owned_project;
use common::web::auth::Session;
use common::web::http::JsonBody;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::AppState;
use crate::responses::{LanguageNotSupported, NotYourProject};
use common::web::openapi::{ErrorBody, ProjectIdParam, ProjectNotFound};

type ApiResult<T> = Result<T, ApiError>;

pub const LANGUAGES: &[&str] = &["en", "nl", "de", "fr", "es"];

fn check_language(language: Option<&str>) -> ApiResult<()> {
    match language {
        Some(l) if !LANGUAGES.contains(&l) => Err(ApiError::bad_request("Language not supported")),
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateProjectBody {
    name: Option<String>,
    context: Option<String>,
    language: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectTagSchema {
    id: String,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    project_id: String,
    text: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectSchema {
    id: String,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
    language: String,
    name: Option<String>,
    context: Option<String>,
    tags: Vec<ProjectTagSchema>,
    is_conversation_allowed: bool,
    default_conversation_title: Option<String>,
    default_conversation_description: Option<String>,
    default_conversation_finish_text: Option<String>,
}

impl From<Project> for ProjectSchema {
    fn from(p: Project) -> Self {
        ProjectSchema {
            id: p.id,
            created_at: p.created_at,
            updated_at: p.updated_at,
            language: p.language.unwrap_or_else(|| "en".into()),
            name: p.name,
            context: p.context,
            tags: p
                .tags
                .into_iter()
                .map(|t| ProjectTagSchema {
                    id: t.id,
                    created_at: t.created_at,
                    updated_at: t.updated_at,
                    project_id: t.project_id,
                    text: t.text,
                })
                .collect(),
            is_conversation_allowed: p.is_conversation_allowed,
            default_conversation_title: p.default_conversation_title,
            default_conversation_description: p.default_conversation_description,
            default_conversation_finish_text: p.default_conversation_finish_text,
        }
    }
}

/// Only `name`, `context` and `language` are used (as ECHO); defaults are sent explicitly (D34).
#[utoipa::path(
    post,
    path = "/api/projects",
    tag = "projects",
    request_body = CreateProjectBody,
    responses(
        (status = 200, description = "The new project", body = ProjectSchema),
        LanguageNotSupported,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn create_project(
    State(state): State<AppState>,
    session: Session,
    JsonBody(body): JsonBody<CreateProjectBody>,
) -> ApiResult<Json<ProjectSchema>> {
    check_language(body.language.as_deref())?;
    let project = state
        .store
        .create_project(NewProject {
            id: Uuid::new_v4().to_string(),
            directus_user_id: Some(session.user_id.clone()),
            name: Some(body.name.filter(|n| !n.is_empty()).unwrap_or_else(|| "New Project".into())),
            context: body.context.filter(|c| !c.is_empty()),
            language: Some(body.language.unwrap_or_else(|| "en".into())),
            is_conversation_allowed: true,
            image_generation_model: Some("MODEST".into()),
            ..Default::default()
        })
        .await?;
    tracing::info!(project_id = %project.id, user_id = %session.user_id, "project created");
    Ok(Json(project.into()))
}

/// As ECHO (FastAPI's slash redirect): the path without the slash.
#[utoipa::path(
    post,
    path = "/api/projects/",
    tag = "projects",
    responses(
        (status = 307, description = "Redirect to /api/projects (as ECHO)"),
    ),
)]
pub async fn trailing_slash() -> Response {
    (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/api/projects")]).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LibraryBody {
    language: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/create-library",
    tag = "projects",
    params(ProjectIdParam),
    request_body = LibraryBody,
    responses(
        (status = 202, description = "Queued; JSON null", body = Option<String>, example = json!(null)),
        NotYourProject,
        ProjectNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn create_library(
    State(state): State<AppState>,
    session: Session,
    Path(pid): Path<String>,
    JsonBody(body): JsonBody<LibraryBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let project = owned_project(state.store.as_ref(), &session, &pid).await?;
    let task = Task::CreateProjectLibrary {
        project_id: project.id,
        language: body.language.unwrap_or_else(|| "en".into()),
        project_analysis_run_id: Uuid::new_v4().to_string(),
    };
    state.tasks.publish(task, Duration::ZERO).await?;
    Ok((StatusCode::ACCEPTED, Json(Value::Null)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ViewBody {
    query: String,
    additional_context: Option<String>,
    language: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/create-view",
    tag = "projects",
    params(ProjectIdParam),
    request_body = ViewBody,
    responses(
        (status = 202, description = "Queued; JSON null", body = Option<String>, example = json!(null)),
        NotYourProject,
        (status = 404, description = "Project not found; No analysis found for this project", body = ErrorBody),
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn create_view(
    State(state): State<AppState>,
    session: Session,
    Path(pid): Path<String>,
    JsonBody(body): JsonBody<ViewBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    // Ownership before the analysis run (D23).
    let project = owned_project(state.store.as_ref(), &session, &pid).await?;
    let run =
        state.store.latest_analysis_run(&project.id).await?.ok_or_else(|| ApiError::not_found("No analysis found for this project"))?;
    let task = Task::CreateView {
        project_analysis_run_id: run,
        user_query: body.query,
        user_query_context: body.additional_context.unwrap_or_default(),
        language: body.language.unwrap_or_else(|| "en".into()),
    };
    state.tasks.publish(task, Duration::ZERO).await?;
    Ok((StatusCode::ACCEPTED, Json(Value::Null)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CloneBody {
    name: Option<String>,
    language: Option<String>,
}

/// A copy of the project's settings and tags that belongs to the caller (D19).
#[utoipa::path(
    post,
    path = "/api/projects/{project_id}/clone",
    tag = "projects",
    params(ProjectIdParam),
    request_body = CloneBody,
    responses(
        (status = 200, description = "The new project's id (JSON string)", body = String),
        LanguageNotSupported,
        NotYourProject,
        ProjectNotFound,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn clone_project(
    State(state): State<AppState>,
    session: Session,
    Path(pid): Path<String>,
    JsonBody(body): JsonBody<CloneBody>,
) -> ApiResult<Json<String>> {
    let source = owned_project(state.store.as_ref(), &session, &pid).await?;
    check_language(body.language.as_deref().filter(|l| !l.is_empty()))?;
    let id = Uuid::new_v4().to_string();
    let copy = NewProject {
        name: body.name.filter(|n| !n.is_empty()).or_else(|| source.name.clone()),
        language: body.language.filter(|l| !l.is_empty()).or_else(|| source.language.clone()),
        ..NewProject::copy_of(&source, id.clone(), session.user_id.clone())
    };
    create_with_tags(&state, copy, &source.tags).await?;
    tracing::info!(project_id = %pid, new_project_id = %id, "project cloned");
    Ok(Json(id))
}

/// The project, then a copy of each tag in it.
async fn create_with_tags(state: &AppState, project: NewProject, tags: &[ProjectTag]) -> ApiResult<()> {
    let id = project.id.clone();
    state.store.create_project(project).await?;
    for tag in tags {
        state.store.create_project_tag(&Uuid::new_v4().to_string(), &id, tag.text.as_deref(), tag.sort).await?;
    }
    Ok(())
}
