//! common's integration tests, one module per area, in one binary so the crate links once
//! rather than once per file.

mod aws_services;
mod directus_failures;
mod lightrag;
mod rag_scoping;
mod store_contract;
mod transcription_providers;
