//! `GET /api/conversations/health/stream` (spec/api.md §2.3.3, processing.md §8.2): Server-Sent
//! Events with a ping and the conversations' audio health, until the client leaves or the
//! stream's time is up (EventSource reconnects by itself, D58).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;
use common::ApiError;
use common::store::{ChunkMetrics, MetricsScope};
use common::web::http::QueryParams;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use common::web::openapi::ErrorBody;

const INTERVAL: Duration = Duration::from_secs(45);
const MAX_IDS: usize = 20;
const WINDOW_MINUTES: i64 = 5;

fn ids(query: &QueryParams, name: &str) -> Vec<String> {
    query.str(name).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// The conversations and projects a stream watches, as the query names them.
struct Watched {
    conversation_ids: Vec<String>,
    project_ids: Vec<String>,
}

impl Watched {
    fn from_query(query: &QueryParams) -> Result<Self, ApiError> {
        let watched = Watched { conversation_ids: ids(query, "conversation_ids"), project_ids: ids(query, "project_ids") };
        if watched.conversation_ids.is_empty() && watched.project_ids.is_empty() {
            return Err(ApiError::bad_request("At least one of conversation_ids or project_ids must be provided"));
        }
        let n = watched.conversation_ids.len() + watched.project_ids.len();
        if n > MAX_IDS {
            return Err(ApiError::bad_request(format!("Too many IDs provided ({n}). Maximum allowed is {MAX_IDS}.")));
        }
        Ok(watched)
    }

    /// One conversation alone gets only its issue, not the whole health tree.
    fn single_conversation(&self) -> Option<&str> {
        match (self.conversation_ids.as_slice(), self.project_ids.is_empty()) {
            ([only], true) => Some(only),
            _ => None,
        }
    }
}

fn event(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

#[utoipa::path(
    get,
    path = "/api/conversations/health/stream",
    tag = "conversations",
    params(
        ("conversation_ids" = Option<String>, Query, description = "Comma-separated conversation ids"),
        ("project_ids" = Option<String>, Query, description = "Comma-separated project ids (at most 20 ids in all)"),
    ),
    responses(
        (status = 200, description = "Server-sent events: ping, health_update, error", content_type = "text/event-stream", body = String),
        (
            status = 400,
            description = "At least one of conversation_ids or project_ids must be provided; Too many IDs provided",
            body = ErrorBody,
        ),
    ),
)]
pub async fn stream(State(state): State<AppState>, query: QueryParams) -> Result<Response, ApiError> {
    let watched = Watched::from_query(&query)?;
    let deadline = Instant::now() + Duration::from_secs(state.settings.health_stream_max_seconds);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(send_events(state, watched, deadline, tx));
    Ok(common::web::http::event_stream_response(rx))
}

/// A ping every interval and the health whenever it changed, until the deadline, the client
/// leaving, or a failure (sent as an `error` event).
async fn send_events(state: AppState, watched: Watched, deadline: Instant, tx: mpsc::Sender<Bytes>) {
    let mut last_sent: Option<Value> = None;
    let mut counter: u64 = 0;
    while Instant::now() < deadline {
        if tx.send(event("ping", &counter.to_string())).await.is_err() {
            return;
        }
        counter += 1;
        let payload = match health(&state, &watched.conversation_ids, &watched.project_ids).await {
            Ok(full) => match watched.single_conversation() {
                Some(cid) => json!({"conversation_issue": full["projects"].as_object().and_then(|projects| {
                    projects.values().find_map(|p| p["conversations"][cid].get("conversation_issue").cloned())
                })}),
                None => full,
            },
            Err(err) => {
                tracing::error!(%err, "health computation failed");
                let data = json!({"error": "Internal server error", "timestamp": Utc::now().timestamp_millis() as f64 / 1000.0});
                let _ = tx.send(event("error", &data.to_string())).await;
                return;
            }
        };
        if last_sent.as_ref() != Some(&payload) {
            if tx.send(event("health_update", &payload.to_string())).await.is_err() {
                return;
            }
            last_sent = Some(payload);
        }
        let wait = INTERVAL.min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tx.closed() => return,
        }
    }
}

async fn health(state: &AppState, conversation_ids: &[String], project_ids: &[String]) -> Result<Value, common::store::StoreError> {
    if !state.settings.runpod_diarization {
        return Ok(json!({}));
    }
    let since = Utc::now() - chrono::Duration::minutes(WINDOW_MINUTES);
    let mut rows = Vec::new();
    if !project_ids.is_empty() {
        rows.extend(state.store.recent_chunk_metrics(MetricsScope::Projects(project_ids.to_vec()), since).await?);
    }
    if !conversation_ids.is_empty() {
        let recent = state.store.recent_chunk_metrics(MetricsScope::Conversations(conversation_ids.to_vec()), since).await?;
        // Only the newest two chunks of each conversation (rows come newest first).
        let mut seen: HashMap<String, usize> = HashMap::new();
        rows.extend(recent.into_iter().filter(|r| {
            let n = seen.entry(r.conversation_id.clone()).or_default();
            *n += 1;
            *n <= 2
        }));
    }
    // Only now, after the newest two were picked, rows with a null metric go (§8.2).
    rows.retain(|r| r.noise_ratio.is_some() && r.cross_talk_instances.is_some() && r.silence_ratio.is_some());
    Ok(summarize_health(&rows))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn issue(noise: f64, cross_talk: f64, silence: f64) -> &'static str {
    if cross_talk > 1.0 {
        "HIGH_CROSSTALK"
    } else if noise > 0.5 {
        "HIGH_NOISE"
    } else if silence > 0.8 {
        "HIGH_SILENCE"
    } else {
        "NONE"
    }
}

/// Per conversation the metric means and an issue; per project and globally, means of means.
fn summarize_health(rows: &[ChunkMetrics]) -> Value {
    if rows.is_empty() {
        return json!({});
    }
    let mut projects: BTreeMap<&str, BTreeMap<&str, Vec<&ChunkMetrics>>> = BTreeMap::new();
    for row in rows {
        projects.entry(&row.project_id).or_default().entry(&row.conversation_id).or_default().push(row);
    }
    let mut project_values = serde_json::Map::new();
    let mut project_means = Vec::new();
    for (pid, conversations) in projects {
        let mut conversation_values = serde_json::Map::new();
        let mut means = Vec::new();
        for (cid, chunks) in conversations {
            let noise = mean(chunks.iter().map(|c| c.noise_ratio.unwrap_or_default()));
            let cross = mean(chunks.iter().map(|c| c.cross_talk_instances.unwrap_or_default()));
            let silence = mean(chunks.iter().map(|c| c.silence_ratio.unwrap_or_default()));
            means.push((noise, cross, silence));
            conversation_values.insert(
                cid.to_string(),
                json!({
                    "conversation_noise_ratio": noise,
                    "conversation_cross_talk_instances": cross,
                    "conversation_silence_ratio": silence,
                    "conversation_issue": issue(noise, cross, silence),
                }),
            );
        }
        let p = (mean(means.iter().map(|m| m.0)), mean(means.iter().map(|m| m.1)), mean(means.iter().map(|m| m.2)));
        project_means.push(p);
        project_values.insert(
            pid.to_string(),
            json!({
                "project_noise_ratio": p.0,
                "project_cross_talk_instances": p.1,
                "project_silence_ratio": p.2,
                "conversations": conversation_values,
            }),
        );
    }
    json!({
        "global_noise_ratio": mean(project_means.iter().map(|m| m.0)),
        "global_cross_talk_instances": mean(project_means.iter().map(|m| m.1)),
        "global_silence_ratio": mean(project_means.iter().map(|m| m.2)),
        "projects": project_values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(p: &str, c: &str, noise: f64, cross: f64, silence: f64) -> ChunkMetrics {
        ChunkMetrics {
            conversation_id: c.into(),
            project_id: p.into(),
            timestamp: Utc::now(),
            noise_ratio: Some(noise),
            cross_talk_instances: Some(cross),
            silence_ratio: Some(silence),
        }
    }

    #[test]
    fn issues_and_means() {
        assert_eq!(summarize_health(&[]), json!({}));
        let h = summarize_health(&[row("p", "a", 0.6, 0.0, 0.0), row("p", "a", 0.6, 0.0, 0.0), row("p", "b", 0.0, 2.0, 0.0)]);
        assert_eq!(h["projects"]["p"]["conversations"]["a"]["conversation_issue"], "HIGH_NOISE");
        assert_eq!(h["projects"]["p"]["conversations"]["b"]["conversation_issue"], "HIGH_CROSSTALK");
        assert_eq!(h["projects"]["p"]["project_noise_ratio"], 0.3);
        assert_eq!(h["global_cross_talk_instances"], 1.0);
        assert_eq!(issue(0.1, 0.1, 0.9), "HIGH_SILENCE");
        assert_eq!(issue(0.1, 0.1, 0.1), "NONE");
    }
}
