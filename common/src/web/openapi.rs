//! The OpenAPI document of the HTTP API. Each function crate annotates its handlers with
//! `#[utoipa::path]` and registers them with `utoipa_axum::routes!` on an `OpenApiRouter`, so a
//! route's method and path are written once and feed both its axum router and its fragment;
//! `document` merges the fragments and adds what every route shares (spec/api.md §1).

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::tag::Tag;
use utoipa::openapi::{Components, Info, OpenApi, OpenApiBuilder, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Security scheme names that handlers needing a Directus JWT list (either one will do, §1.2).
pub const SESSION_COOKIE: &str = "directus_session_cookie";
pub const BEARER: &str = "bearer";
/// RunPod's shared secret (D21): `X-Webhook-Token`, or the `token` query parameter.
pub const WEBHOOK_TOKEN: &str = "webhook_token";

/// Every error answer: `{"detail": ...}`, a string except for 422 (FastAPI's issue list) and the
/// report-subscribe 400 (an object).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    detail: Value,
}

// Path parameters and error answers that routes of several functions share: annotations name
// them in `params(...)` and `responses(...)`. They only describe the document; nothing builds them.

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ConversationIdParam {
    /// Conversation id (UUID)
    conversation_id: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ProjectIdParam {
    /// Project id (UUID)
    project_id: String,
}

#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ChunkIdParam {
    /// Chunk id (UUID)
    chunk_id: String,
}

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Conversation not found")]
#[allow(dead_code)]
pub struct ConversationNotFound(ErrorBody);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "Project not found")]
#[allow(dead_code)]
pub struct ProjectNotFound(ErrorBody);

/// The groups, in the order the document lists them.
const TAGS: &[(&str, &str)] = &[
    ("health", "Liveness; answered by every HTTP function"),
    ("participant", "The recording portal (public)"),
    ("conversations", "Dashboard conversation endpoints, get-reply and the health stream"),
    ("projects", "Dashboard project endpoints"),
    ("chats", "The dashboard's chat: context conversations and streamed answers"),
    ("stateless", "RunPod's transcription webhook, and RAG over LightRAG's server restricted to the caller's conversations"),
    ("resources", "Legacy project documents (PDFs): the Postgres `document` table"),
];

/// One error response with the JSON error body.
pub fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
        .into()
}

/// The whole API: `/api/health` plus the given groups, with the shared security schemes, tags
/// and the 401/422/500/503 answers every route may give.
pub fn document(fragments: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut info = Info::new("echo-lambda", env!("CARGO_PKG_VERSION"));
    info.description = Some("ECHO's HTTP API on AWS Lambda (spec/api.md).".into());
    let mut doc = OpenApiBuilder::new()
        .info(info)
        .servers(Some([Server::new("/")]))
        .tags(Some(TAGS.iter().map(|(name, description)| {
            let mut tag = Tag::new(name);
            tag.description = Some(description.to_string());
            tag
        })))
        .build();
    doc.merge(crate::web::http::health_api::<()>().into_openapi());
    for fragment in fragments {
        doc.merge(fragment);
    }
    let components = doc.components.get_or_insert_with(Components::new);
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.add_security_scheme(SESSION_COOKIE, SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("directus_session_token"))));
    components
        .add_security_scheme(BEARER, SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
    components.add_security_scheme(WEBHOOK_TOKEN, SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Webhook-Token"))));
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten() {
            add_shared_responses(op);
        }
    }
    doc
}

/// The answers of spec/api.md §1.2-1.4 that any route of their kind may give; an annotation's
/// own entry for a status wins.
fn add_shared_responses(op: &mut Operation) {
    let public_health = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "health"));
    if public_health {
        return;
    }
    let mut shared: BTreeMap<&str, &str> = BTreeMap::new();
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        shared.insert("401", "Invalid session (no, bad or expired Directus token)");
    }
    let has_input =
        op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| p.iter().any(|p| !matches!(p, RefOr::T(p) if is_path(p))));
    if has_input {
        shared.insert("422", "Invalid body or query (FastAPI's issue list as detail)");
    }
    shared.insert("500", "Internal Server Error");
    shared.insert("503", "A dependency is unavailable (Retry-After: 5)");
    for (status, description) in shared {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description));
    }
}

fn is_path(p: &utoipa::openapi::path::Parameter) -> bool {
    matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_health_and_the_shared_parts() {
        let doc = serde_json::to_value(document([])).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(doc["info"]["title"], "echo-lambda");
        assert_eq!(doc["servers"][0]["url"], "/");
        assert!(doc["paths"]["/api/health"]["get"].is_object());
        assert!(doc["components"]["securitySchemes"][BEARER].is_object());
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }
}
