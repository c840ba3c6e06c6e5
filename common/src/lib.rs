//! What two or more echo-lambda functions share, in wings (docs/architecture.md is the map):
//! `web` the HTTP edge, `queue` the task contract and its runners, `providers` the external
//! APIs, `flows` the workflows an endpoint and a task share; `store` and `blob` the data; the
//! base modules at this level.

pub mod audio;
pub mod blob;
pub mod config;
pub mod datetime;
pub mod dependency;
pub mod flows;
pub mod offload;
pub mod providers;
pub mod queue;
pub mod secrets;
pub mod services;
pub mod store;
pub mod telemetry;
pub mod web;

pub use dependency::Dependency;
pub use offload::offload;
pub use services::Services;
pub use web::error::ApiError;
