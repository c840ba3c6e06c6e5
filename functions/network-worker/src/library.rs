//! The project library (processing.md §2: `task_create_project_library`, `task_create_view`):
//! an analysis run, then one topic-modeler job per view. The RunPod topic modeler writes the
//! `view`, `aspect` and `aspect_segment` rows itself; we only start its jobs.

use std::time::Duration;

use common::Services;
use common::flows::pipeline::{self, StatusIds, StatusStep};
use common::queue::Task;
use common::queue::worker::{Done, TaskError};
use common::store::StoreError;
use serde_json::json;

/// The views every new library starts with; each names a JSON prompt template.
const DEFAULT_VIEWS: &[&str] = &["default_view_recurring_themes"];
const TOPIC_MODELER_TIMEOUT: Duration = Duration::from_secs(600);

/// `task_create_project_library`: the run with the API's id, then a view task per default view.
pub async fn create_library(services: &Services, project_id: &str, language: &str, run_id: &str) -> Result<Done, TaskError> {
    let message = format!("for project {project_id}");
    if services.store.get_project(project_id).await?.is_none() {
        // The row cannot name a project that does not exist (a foreign key).
        let exit = format!("Project not found: {project_id}");
        let event = "task_create_project_library.completed".to_string();
        pipeline::record_status(services, event, exit.clone(), StatusIds::default()).await;
        return Ok(Done::Skipped(exit));
    }
    let ids = StatusIds { project_id: Some(project_id.into()), ..Default::default() };
    let step = StatusStep::start(services, "task_create_project_library", message, ids).await;
    let outcome = build_library(services, project_id, language, run_id).await;
    step.finish_with(&outcome).await;
    outcome
}

async fn build_library(services: &Services, project_id: &str, language: &str, run_id: &str) -> Result<Done, TaskError> {
    // Render first: a broken template must not leave a run without views behind.
    let mut views = Vec::with_capacity(DEFAULT_VIEWS.len());
    for name in DEFAULT_VIEWS {
        let view =
            common::providers::prompts::render_json(name, language, json!({ "language": language }), &["user_query", "user_query_context"])
                .map_err(TaskError::terminal)?;
        let text = |key: &str| view[key].as_str().unwrap_or_default().to_string();
        views.push(Task::CreateView {
            project_analysis_run_id: run_id.to_string(),
            user_query: text("user_query"),
            user_query_context: text("user_query_context"),
            language: language.to_string(),
        });
    }
    match services.store.create_analysis_run(run_id, project_id).await {
        // A duplicate delivery found the run its twin created; the views' own guard absorbs
        // the repeated view tasks.
        Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
        Err(err) => return Err(err.into()),
    }
    for view in views {
        services.tasks.publish(view, Duration::ZERO).await?;
    }
    Ok(Done::Completed)
}

/// `task_create_view`: starts the topic modeler on every segment of the run's project.
pub async fn create_view(
    services: &Services,
    run_id: &str,
    user_query: &str,
    user_query_context: &str,
    language: &str,
) -> Result<Done, TaskError> {
    if run_id.trim().is_empty() || user_query.trim().is_empty() {
        return Ok(Done::Skipped("no analysis run or no query".into()));
    }
    let Some(project_id) = services.store.analysis_run_project(run_id).await? else {
        return Ok(Done::Skipped(format!("Project analysis run not found: {run_id}")));
    };
    let ids = StatusIds { project_id: Some(project_id.clone()), project_analysis_run_id: Some(run_id.into()), ..Default::default() };
    let step = StatusStep::start(services, "task_create_view", format!("for run {run_id} of project {project_id}"), ids).await;
    let outcome = start_topic_modeler(services, run_id, &project_id, user_query, user_query_context, language).await;
    step.finish_with(&outcome).await;
    outcome
}

async fn start_topic_modeler(
    services: &Services,
    run_id: &str,
    project_id: &str,
    user_query: &str,
    user_query_context: &str,
    language: &str,
) -> Result<Done, TaskError> {
    let settings = &services.settings.topic_modeler;
    let (Some(url), Some(key)) = (&settings.url, &settings.api_key) else {
        return Err(TaskError::terminal("the topic modeler is not configured (RUNPOD_TOPIC_MODELER_URL, RUNPOD_TOPIC_MODELER_API_KEY)"));
    };
    if services.store.analysis_run_has_view(run_id, user_query).await? {
        return Ok(Done::Skipped("the topic modeler already wrote this view".into()));
    }
    let segment_ids = services.store.project_segment_ids(project_id).await?;
    if segment_ids.is_empty() {
        return Ok(Done::Skipped(format!("No segments found for project: {project_id}")));
    }
    let body = json!({ "input": {
        "project_analysis_run_id": run_id,
        "response_language": language,
        "segment_ids": segment_ids,
        "user_input": user_query,
        "user_input_description": user_query_context,
        "user_prompt": format!("{user_query}\n\n\n{user_query_context}"),
    }});
    let http = reqwest::Client::builder().timeout(TOPIC_MODELER_TIMEOUT).build().map_err(TaskError::terminal)?;
    let reply = http
        .post(format!("{url}/run"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .map_err(|err| TaskError::transient(format!("topic modeler unreachable: {err}")))?;
    let status = reply.status();
    if status == reqwest::StatusCode::OK {
        return Ok(Done::Completed);
    }
    let text: String = reply.text().await.unwrap_or_default().chars().take(300).collect();
    let reason = format!("topic modeler answered {status}: {text}");
    // §1.3: 408, 409, 429 and 5xx are worth another try; any other 4xx is a refusal.
    if status.is_server_error() || matches!(status.as_u16(), 408 | 409 | 429) {
        Err(TaskError::transient(reason))
    } else {
        Err(TaskError::terminal(reason))
    }
}
