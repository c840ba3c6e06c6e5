//! The HTTP edge every API function shares: router pieces (health, CORS, request ids, the
//! Lambda glue), Directus session checks, the one error type and its JSON body, OpenAPI pieces
//! and the ownership checks.

pub mod access;
pub mod auth;
pub mod error;
pub mod http;
pub mod openapi;
pub mod rejections;
