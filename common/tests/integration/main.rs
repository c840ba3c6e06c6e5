//! common's integration tests, one module per area, in one binary so the crate links once
//! rather than once per file.

mod aws_services;
mod directus_failures;
mod lightrag;
mod rag_scoping;
mod store_contract;
mod transcription_providers;

/// The JSON body of a successful answer; a failed request or a non-2xx status fails the test.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().error_for_status().unwrap().json().await.unwrap()
}
