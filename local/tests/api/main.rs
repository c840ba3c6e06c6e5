//! echo-local's black-box tests, one module per area, in one binary so the whole stack links
//! once rather than once per file. offload_rule.rs (a timing test that needs a process to
//! itself) and browser_portal.rs (drives Chromium) stay binaries of their own and borrow `support`.

mod support;

mod chats_api;
mod conversations_api;
mod deployment_template;
mod directus_backend;
mod directus_sessions;
mod duplicate_delivery;
mod error_reporting;
mod hardening;
mod lambda_events;
mod layout;
mod llm_providers;
mod local_invoke;
mod openapi;
mod participant_flow;
mod pipeline;
mod projects_api;
mod rag_api;
mod rag_etl;
mod resources_api;
mod runpod;
mod startup_checks;
mod vertex_ai;
mod worker_tasks;
