//! What two or more echo-lambda functions share (see ARCHITECTURE.md).

pub mod access;
pub mod audio;
pub mod auth;
pub mod blob;
pub mod cleanup;
pub mod config;
pub mod datetime;
pub mod error;
pub mod http;
pub mod llm;
pub mod merge;
pub mod offload;
pub mod openapi;
pub mod pipeline;
pub mod prompts;
pub mod rag;
pub mod runpod;
pub mod secrets;
pub mod services;
pub mod store;
pub mod summary;
pub mod tasks;
pub mod tokens;
pub mod transcribe;
pub mod vertex;
pub mod worker;

pub use error::{ApiError, Dependency};
pub use offload::offload;
pub use services::Services;
