//! The path parameter and error answers every resource route documents (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ResourceIdParam {
    /// Resource id (UUID)
    resource_id: String,
}

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "User does not have access to this project")]
pub struct NotYourResource(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Resource not found (also for a non-UUID id)")]
pub struct ResourceNotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 503, description = "Resources are unavailable (no DATABASE_URL, no document table, database down)")]
pub struct ResourcesUnavailable(ErrorBody);
