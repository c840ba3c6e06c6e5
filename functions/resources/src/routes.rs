//! The four legacy resource endpoints (spec/api.md §2.7): JWT + owner of the row's project, or
//! admin (D20).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use common::blob::PRESIGN_BROWSER;
use common::web::access::PROJECT_FORBIDDEN;
use common::web::auth::Session;
use common::web::http::JsonBody;
use common::web::openapi::ErrorBody;
use common::{ApiError, Dependency};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::db::DbError;
use crate::documents::{Document, DocumentPatch};
use crate::responses::{NotYourResource, ResourceIdParam, ResourceNotFound, ResourcesUnavailable};

type ApiResult<T> = Result<T, ApiError>;

pub const RESOURCE_NOT_FOUND: &str = "Resource not found";
pub const CONTENT_NOT_FOUND: &str = "Resource content not found (Server Error)";
pub const INVALID_FORMAT: &str = "Invalid file format. Only .pdf files are supported.";

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::NotConfigured | DbError::Unavailable(_) => ApiError::unavailable(Dependency::Resources, err),
            DbError::Other(reason) => ApiError::internal(reason),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResourceSchema {
    id: String,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    created_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "common::datetime::serialize_option")]
    updated_at: Option<DateTime<Utc>>,
    project_id: Option<String>,
    original_filename: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    title: Option<String>,
    description: Option<String>,
    context: Option<String>,
    is_processed: bool,
    processing_error: Option<String>,
}

impl From<Document> for ResourceSchema {
    fn from(d: Document) -> Self {
        ResourceSchema {
            id: d.id.to_string(),
            created_at: d.created_at,
            updated_at: d.updated_at,
            project_id: d.project_id.map(|p| p.to_string()),
            // The columns' defaults stand in for a NULL.
            original_filename: d.original_filename.unwrap_or_default(),
            kind: d.kind,
            title: d.title,
            description: d.description,
            context: d.context,
            is_processed: d.is_processed.unwrap_or(false),
            processing_error: d.processing_error,
        }
    }
}

/// All three keys are required (422 when one is missing); null or `""` keeps the stored value.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateResourceBody {
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    title: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    description: Option<String>,
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    context: Option<String>,
}

impl UpdateResourceBody {
    /// Postgres text cannot hold U+0000: a 422 here instead of a database error.
    fn check(&self) -> ApiResult<()> {
        let fields = [("title", &self.title), ("description", &self.description), ("context", &self.context)];
        match fields.iter().find(|(_, v)| v.as_deref().is_some_and(|v| v.contains('\0'))) {
            Some((name, _)) => Err(ApiError::invalid(
                vec![serde_json::json!("body"), serde_json::json!(name)],
                "string_type",
                "Text cannot contain NUL (\\u0000) characters",
            )),
            None => Ok(()),
        }
    }
}

/// The row, when the caller owns its project (or is an admin). A non-UUID id is the same 404
/// without a query (D17); so is a row whose project is gone.
async fn owned_resource(state: &AppState, session: &Session, id: &str) -> ApiResult<Document> {
    let not_found = || ApiError::not_found(RESOURCE_NOT_FOUND);
    let id = Uuid::parse_str(id).map_err(|_| not_found())?;
    let document = state.db.get_document(id).await?.ok_or_else(not_found)?;
    if session.is_admin {
        return Ok(document);
    }
    let project = match document.project_id {
        Some(project_id) => state.store.get_project(&project_id.to_string()).await?,
        None => None,
    };
    let project = project.ok_or_else(not_found)?;
    if !session.owns(project.directus_user_id.as_deref()) {
        return Err(ApiError::forbidden(PROJECT_FORBIDDEN));
    }
    Ok(document)
}

/// The checks of §2.7 in order: the object exists (else 500, as ECHO's missing file), then the
/// type is PDF (else 400); then a presigned GET served as `application/pdf` (D45).
async fn pdf_url(state: &AppState, document: &Document) -> ApiResult<String> {
    let missing = || ApiError::internal_with(CONTENT_NOT_FOUND, format!("document {}: no object at path {:?}", document.id, document.path));
    let key = document.path.as_deref().and_then(|p| state.blob.key_from_url(p)).ok_or_else(missing)?;
    if state.blob.head(&key).await?.is_none() {
        return Err(missing());
    }
    if document.kind.as_deref() != Some("PDF") {
        return Err(ApiError::bad_request(INVALID_FORMAT));
    }
    Ok(state.blob.presigned_get_as(&key, PRESIGN_BROWSER, "application/pdf").await?)
}

#[utoipa::path(
    get,
    path = "/api/resources/{resource_id}",
    tag = "resources",
    params(ResourceIdParam),
    responses(
        (status = 200, description = "The resource", body = ResourceSchema),
        NotYourResource,
        ResourceNotFound,
        ResourcesUnavailable,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn get_resource(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ApiResult<Json<ResourceSchema>> {
    let document = owned_resource(&state, &session, &id).await?;
    Ok(Json(document.into()))
}

#[utoipa::path(
    get,
    path = "/api/resources/{resource_id}/content",
    tag = "resources",
    params(ResourceIdParam),
    responses(
        (status = 307, description = "Redirect to a presigned GET of the PDF (served as application/pdf)"),
        (status = 400, description = "Invalid file format. Only .pdf files are supported.", body = ErrorBody),
        NotYourResource,
        ResourceNotFound,
        (status = 500, description = "Resource content not found (Server Error)", body = ErrorBody),
        (status = 503, description = "Resources are unavailable; or Storage is unavailable", body = ErrorBody),
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn resource_content(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ApiResult<Response> {
    let document = owned_resource(&state, &session, &id).await?;
    let url = pdf_url(&state, &document).await?;
    Ok((StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)]).into_response())
}

#[utoipa::path(
    put,
    path = "/api/resources/{resource_id}",
    tag = "resources",
    params(ResourceIdParam),
    request_body = UpdateResourceBody,
    responses(
        (status = 200, description = "The resource after the update", body = ResourceSchema),
        NotYourResource,
        ResourceNotFound,
        ResourcesUnavailable,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn update_resource(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateResourceBody>,
) -> ApiResult<Json<ResourceSchema>> {
    body.check()?;
    let document = owned_resource(&state, &session, &id).await?;
    let patch = DocumentPatch { title: body.title, description: body.description, context: body.context };
    let updated = state.db.update_document(document.id, &patch).await?;
    let updated = updated.ok_or_else(|| ApiError::not_found(RESOURCE_NOT_FOUND))?;
    tracing::info!(resource_id = %updated.id, user_id = %session.user_id, "resource updated");
    Ok(Json(updated.into()))
}

#[utoipa::path(
    delete,
    path = "/api/resources/{resource_id}",
    tag = "resources",
    params(ResourceIdParam),
    responses(
        (status = 200, description = "The deleted resource (its file is kept)", body = ResourceSchema),
        NotYourResource,
        ResourceNotFound,
        ResourcesUnavailable,
    ),
    security(("directus_session_cookie" = []), ("bearer" = [])),
)]
pub async fn delete_resource(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> ApiResult<Json<ResourceSchema>> {
    let document = owned_resource(&state, &session, &id).await?;
    let deleted = state.db.delete_document(document.id).await?;
    let deleted = deleted.ok_or_else(|| ApiError::not_found(RESOURCE_NOT_FOUND))?;
    tracing::info!(resource_id = %deleted.id, user_id = %session.user_id, "resource deleted");
    Ok(Json(deleted.into()))
}
