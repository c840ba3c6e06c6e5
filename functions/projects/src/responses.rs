//! Error answers that several project routes document (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "User does not have access to this project")]
pub struct NotYourProject(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Language not supported")]
pub struct LanguageNotSupported(ErrorBody);
