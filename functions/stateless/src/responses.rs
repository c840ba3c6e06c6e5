//! The error answers the RAG routes document (the OpenAPI document only).
#![allow(dead_code)]

use common::web::openapi::ErrorBody;

#[derive(utoipa::IntoResponses)]
#[response(status = 400, description = "Invalid segment ID (not integer text)")]
pub struct InvalidSegment(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(
    status = 403,
    description = "A named segment, conversation or project is not the caller's; or nothing is named and the caller is no admin"
)]
pub struct NotYours(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Segment not found, Conversation not found or Project not found")]
pub struct NotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "RAG service is unavailable, please try again later (no LIGHTRAG_SERVER_URL, or the server is down)"
)]
pub struct RagUnavailable(ErrorBody);
