//! The production store: Directus's REST API over one pooled reqwest client, following
//! spec/data-model.md §2 to the letter:
//!
//! - static admin token as `Authorization: Bearer`; connect timeout 3 s, whole request
//!   `DIRECTUS_TIMEOUT_SECONDS`;
//! - retries after 200 ms and 800 ms on connection errors, timeouts, 502, 503 and 504, for reads
//!   and for idempotent writes only (PATCH, DELETE, POST with an explicit id, where
//!   `RECORD_NOT_UNIQUE` on a retry means the first try went through);
//! - reads are `SEARCH /items/{collection}` with an explicit `limit` (`1` for single rows), lists
//!   are paged with `DIRECTUS_PAGE_SIZE` under a total order (business sort plus `id`);
//! - existence is a SEARCH on `id _eq`, never a GET by id; a 2xx without `data` is an error;
//! - errors are classified as in §2.6.
//!
//! reqwest is async: every call is awaited directly on the tokio worker, nothing is offloaded.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::*;
use crate::config::StoreSettings;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an idle connection to Directus is kept for the next call.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Sleeps before the second and third try of a retryable call.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(800)];
/// `deep._limit` of a nested list read with its parent; a full page is then read on its own.
const NESTED_LIMIT: usize = 1000;

const PROJECT_FIELDS: &[&str] = &[
    "id",
    "created_at",
    "updated_at",
    "directus_user_id",
    "name",
    "language",
    "context",
    "is_conversation_allowed",
    "is_get_reply_enabled",
    "is_project_notification_subscription_allowed",
    "is_enhanced_audio_processing_enabled",
    "default_conversation_ask_for_participant_name",
    "default_conversation_tutorial_slug",
    "conversation_ask_for_participant_name_label",
    "default_conversation_title",
    "default_conversation_description",
    "default_conversation_finish_text",
    "default_conversation_transcript_prompt",
    "get_reply_prompt",
    "get_reply_mode",
    "image_generation_model",
];
const TAG_FIELDS: &[&str] = &["id", "project_id", "text", "sort", "created_at", "updated_at"];
const CONVERSATION_FIELDS: &[&str] = &[
    "id",
    "project_id",
    "created_at",
    "updated_at",
    "participant_name",
    "participant_email",
    "participant_user_agent",
    "source",
    "summary",
    "duration",
    "merged_audio_path",
    "is_finished",
    "is_all_chunks_transcribed",
    "is_audio_processing_finished",
];
const CHUNK_FIELDS: &[&str] = &[
    "id",
    "conversation_id",
    "created_at",
    "timestamp",
    "path",
    "source",
    "transcript",
    "error",
    "runpod_job_status_link",
    "runpod_request_count",
];
const PARTICIPANT_FIELDS: &[&str] = &["id", "email", "project_id", "conversation_id", "email_opt_in", "email_opt_out_token"];

const NOTIFICATIONS: &str = "project_report_notification_participants";
const REPLY_FIELDS: &[&str] = &["id", "conversation_id", "content_text", "type", "date_created"];
const REPORT_FIELDS: &[&str] = &["id", "content", "project_id", "language", "status", "show_portal_link", "date_created"];

const CHAT_MESSAGE_FIELDS: &[&str] = &["id", "project_chat_id", "message_from", "text", "tokens_count", "template_key", "date_created"];
/// The message junctions: used (locked) and added conversations.
const USED_LINKS: &str = "project_chat_message_conversation";
const ADDED_LINKS: &str = "project_chat_message_conversation_1";

fn chat_message_from(value: &Value) -> StoreResult<ChatMessage> {
    let r = Row::new("project_chat_message", value)?;
    Ok(ChatMessage {
        id: r.required("id")?,
        chat_id: r.string("project_chat_id").unwrap_or_default(),
        message_from: r.string("message_from"),
        text: r.string("text"),
        tokens_count: r.int("tokens_count"),
        template_key: r.string("template_key"),
        date_created: r.time("date_created"),
        used_conversation_ids: Vec::new(),
        added_conversation_ids: Vec::new(),
    })
}

fn reply_from(value: &Value) -> StoreResult<super::Reply> {
    let r = Row::new("conversation_reply", value)?;
    Ok(super::Reply {
        id: r.required("id")?,
        conversation_id: r.string("conversation_id"),
        content_text: r.string("content_text"),
        kind: r.string("type"),
        date_created: r.time("date_created"),
    })
}

fn report_from(value: &Value) -> StoreResult<Report> {
    let r = Row::new("project_report", value)?;
    Ok(Report {
        id: r.int("id").ok_or_else(|| StoreError::Other("project_report without an id".into()))?,
        content: r.string("content"),
        project_id: r.string("project_id"),
        language: r.string("language"),
        status: r.string("status").unwrap_or_default(),
        show_portal_link: r.bool("show_portal_link"),
        date_created: r.time("date_created").unwrap_or_else(Utc::now),
    })
}

/// A count aggregate's answer: a number or a numeric string (data-model.md §2.7).
fn count_of(rows: &[Value]) -> u64 {
    let n = rows.first().map(|r| &r["count"]["id"]).cloned().unwrap_or(Value::Null);
    n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())).unwrap_or(0)
}

/// How to reach Directus; `from_settings` reads it from `StoreSettings::Directus`.
#[derive(Debug, Clone)]
pub struct DirectusConfig {
    pub base_url: String,
    pub token: String,
    /// The whole request, connect included (`DIRECTUS_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Rows per page of an "all rows" read (`DIRECTUS_PAGE_SIZE`).
    pub page_size: u32,
    /// Sleeps between tries of a retryable call (tests shorten them).
    pub retry_delays: Vec<Duration>,
}

impl DirectusConfig {
    pub fn from_settings(settings: &StoreSettings) -> StoreResult<Self> {
        let StoreSettings::Directus { base_url, token, timeout_seconds, page_size } = settings else {
            return Err(StoreError::Other("the store settings are not for Directus".into()));
        };
        let token = token.clone().ok_or_else(|| StoreError::Other("DIRECTUS_TOKEN is required when ECHO_STORE=directus".into()))?;
        Ok(DirectusConfig {
            base_url: base_url.clone(),
            token,
            timeout: Duration::from_secs((*timeout_seconds).max(1)),
            page_size: *page_size,
            retry_delays: RETRY_DELAYS.to_vec(),
        })
    }
}

#[derive(Clone)]
pub struct DirectusStore {
    client: reqwest::Client,
    base_url: String,
    auth: String,
    page_size: usize,
    retry_delays: Vec<Duration>,
}

impl std::fmt::Debug for DirectusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectusStore").field("base_url", &self.base_url).field("page_size", &self.page_size).finish()
    }
}

/// A request whose failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, PATCH, DELETE.
    Idempotent,
    /// POST with an explicit id: retried; `RECORD_NOT_UNIQUE` on a retry is the first try's row.
    CreateWithId,
    /// POST without an id: one try only.
    Never,
}

/// What Directus answered (after retries), before it is read as data or an error.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
    /// The answer came from a retry of the request.
    retried: bool,
}

/// One entry of Directus's `{"errors": [...]}`.
struct DirectusError {
    code: String,
    message: String,
    field: Option<String>,
}

impl Reply {
    fn errors(&self) -> Vec<DirectusError> {
        let Some(errors) = self.body.as_ref().and_then(|b| b.get("errors")).and_then(Value::as_array) else {
            return Vec::new();
        };
        errors
            .iter()
            .map(|e| {
                let ext = e.get("extensions");
                DirectusError {
                    code: ext.and_then(|x| x.get("code")).and_then(Value::as_str).unwrap_or_default().to_string(),
                    message: e.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
                    field: ext.and_then(|x| x.get("field")).and_then(Value::as_str).map(str::to_string),
                }
            })
            .collect()
    }

    fn has_code(&self, code: &str) -> bool {
        self.errors().iter().any(|e| e.code == code)
    }

    fn summary(&self) -> String {
        let errors = self.errors();
        if errors.is_empty() {
            return format!("HTTP {}", self.status);
        }
        let parts: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect();
        format!("HTTP {} {}", self.status, parts.join("; "))
    }
}

fn unavailable(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { backend: Dependency::Directus, reason: reason.to_string() }
}

/// A field name quoted in a Directus message (`... field "x" ...`), if any.
fn quoted_field(message: &str) -> Option<String> {
    let rest = &message[message.find("field \"")? + 7..];
    Some(rest[..rest.find('"')?].to_string())
}

/// §2.6 for an answer that is neither 2xx nor a retryable outage.
fn classify(collection: &'static str, reply: &Reply) -> StoreError {
    let status = reply.status;
    if status == StatusCode::TOO_MANY_REQUESTS || matches!(status.as_u16(), 502..=504) {
        return unavailable(format!("{collection}: {}", reply.summary()));
    }
    if status == StatusCode::UNAUTHORIZED {
        tracing::error!(collection, answer = %reply.summary(), "Directus refused DIRECTUS_TOKEN");
        return StoreError::Other(format!("{collection}: Directus refused the token (check DIRECTUS_TOKEN): {}", reply.summary()));
    }
    if status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN {
        let errors = reply.errors();
        let field = errors
            .iter()
            .find_map(|e| e.field.clone().or_else(|| quoted_field(&e.message)))
            .unwrap_or_else(|| if status == StatusCode::FORBIDDEN { "*".into() } else { "?".into() });
        return StoreError::Invalid { collection, field, reason: reply.summary() };
    }
    if status == StatusCode::NOT_FOUND {
        // ROUTE_NOT_FOUND: a wrong collection or route, which no retry mends (terminal).
        return StoreError::Invalid { collection, field: "(route)".into(), reason: reply.summary() };
    }
    StoreError::Other(format!("{collection}: {}", reply.summary()))
}

/// A 2xx answer's `data`; its absence is an error, never "no rows" (D33).
fn data(collection: &'static str, reply: Reply) -> StoreResult<Value> {
    match reply.body {
        Some(Value::Object(mut body)) if body.contains_key("data") => Ok(body.remove("data").unwrap_or(Value::Null)),
        _ => Err(StoreError::Other(format!("{collection}: Directus answered HTTP {} without data", reply.status))),
    }
}

fn rows(collection: &'static str, value: Value) -> StoreResult<Vec<Value>> {
    match value {
        Value::Array(rows) => Ok(rows),
        other => Err(StoreError::Other(format!("{collection}: expected a list of rows, got {other}"))),
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads a row field by field, tolerating how SQLite and Postgres deployments encode values.
struct Row<'a> {
    collection: &'static str,
    value: &'a Map<String, Value>,
}

impl<'a> Row<'a> {
    fn new(collection: &'static str, value: &'a Value) -> StoreResult<Self> {
        let value = value.as_object().ok_or_else(|| StoreError::Other(format!("{collection}: a row is not an object: {value}")))?;
        Ok(Row { collection, value })
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.value.get(field).filter(|v| !v.is_null())
    }

    /// Strings, and ids that are numbers or a related row's `{"id": ..}`.
    fn string(&self, field: &str) -> Option<String> {
        match self.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => o.get("id").and_then(|id| match id {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            other => Some(other.to_string()),
        }
    }

    fn required(&self, field: &str) -> StoreResult<String> {
        self.string(field).ok_or_else(|| StoreError::Other(format!("{}.{field} is missing in Directus's answer", self.collection)))
    }

    fn bool(&self, field: &str) -> Option<bool> {
        match self.get(field)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => n.as_f64().map(|f| f != 0.0),
            Value::String(s) => Some(matches!(s.to_ascii_lowercase().as_str(), "true" | "1")),
            _ => None,
        }
    }

    fn int(&self, field: &str) -> Option<i64> {
        match self.get(field)? {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn float(&self, field: &str) -> Option<f64> {
        match self.get(field)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// ISO 8601 (UTC when it has no offset), or epoch milliseconds.
    fn time(&self, field: &str) -> Option<DateTime<Utc>> {
        match self.get(field)? {
            Value::String(s) => crate::datetime::parse(s),
            Value::Number(n) => n.as_i64().and_then(DateTime::from_timestamp_millis),
            _ => None,
        }
    }

    fn list(&self, field: &str) -> &'a [Value] {
        self.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }
}

fn tag_from(value: &Value) -> StoreResult<ProjectTag> {
    let r = Row::new("project_tag", value)?;
    Ok(ProjectTag {
        id: r.required("id")?,
        project_id: r.required("project_id")?,
        text: r.string("text"),
        sort: r.int("sort"),
        created_at: r.time("created_at"),
        updated_at: r.time("updated_at"),
    })
}

/// `sort`, unsorted last, then `created_at` and `id` (the trait's order on every backend).
fn sort_tags(tags: &mut [ProjectTag]) {
    tags.sort_by(|a, b| (a.sort.is_none(), a.sort, a.created_at, &a.id).cmp(&(b.sort.is_none(), b.sort, b.created_at, &b.id)));
}

fn project_from(value: &Value) -> StoreResult<(Project, usize)> {
    let r = Row::new("project", value)?;
    let nested = r.list("tags");
    let tags = nested.iter().map(tag_from).collect::<StoreResult<Vec<_>>>()?;
    let project = Project {
        id: r.required("id")?,
        created_at: r.time("created_at"),
        updated_at: r.time("updated_at"),
        directus_user_id: r.string("directus_user_id"),
        name: r.string("name"),
        language: r.string("language"),
        context: r.string("context"),
        is_conversation_allowed: r.bool("is_conversation_allowed").unwrap_or(false),
        is_get_reply_enabled: r.bool("is_get_reply_enabled"),
        is_project_notification_subscription_allowed: r.bool("is_project_notification_subscription_allowed"),
        is_enhanced_audio_processing_enabled: r.bool("is_enhanced_audio_processing_enabled"),
        default_conversation_ask_for_participant_name: r.bool("default_conversation_ask_for_participant_name"),
        default_conversation_tutorial_slug: r.string("default_conversation_tutorial_slug"),
        conversation_ask_for_participant_name_label: r.string("conversation_ask_for_participant_name_label"),
        default_conversation_title: r.string("default_conversation_title"),
        default_conversation_description: r.string("default_conversation_description"),
        default_conversation_finish_text: r.string("default_conversation_finish_text"),
        default_conversation_transcript_prompt: r.string("default_conversation_transcript_prompt"),
        get_reply_prompt: r.string("get_reply_prompt"),
        get_reply_mode: r.string("get_reply_mode"),
        image_generation_model: r.string("image_generation_model"),
        tags,
    };
    Ok((project, nested.len()))
}

/// The conversation and how many junction rows came nested.
fn conversation_from(value: &Value) -> StoreResult<(Conversation, usize)> {
    let r = Row::new("conversation", value)?;
    let nested = r.list("tags");
    let tag_ids = junction_tag_ids(nested)?;
    let conversation = Conversation {
        id: r.required("id")?,
        project_id: r.required("project_id")?,
        created_at: r.time("created_at"),
        updated_at: r.time("updated_at"),
        participant_name: r.string("participant_name"),
        participant_email: r.string("participant_email"),
        participant_user_agent: r.string("participant_user_agent"),
        source: r.string("source"),
        summary: r.string("summary"),
        duration: r.float("duration"),
        merged_audio_path: r.string("merged_audio_path"),
        is_finished: r.bool("is_finished"),
        is_all_chunks_transcribed: r.bool("is_all_chunks_transcribed"),
        is_audio_processing_finished: r.bool("is_audio_processing_finished"),
        tag_ids,
    };
    Ok((conversation, nested.len()))
}

/// `project_tag_id` of `conversation_project_tag` rows; links whose tag is gone (SET NULL) drop.
fn junction_tag_ids(rows: &[Value]) -> StoreResult<Vec<String>> {
    let mut ids = Vec::new();
    for row in rows {
        if let Some(id) = Row::new("conversation_project_tag", row)?.string("project_tag_id") {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn chunk_from(value: &Value) -> StoreResult<Chunk> {
    let r = Row::new("conversation_chunk", value)?;
    Ok(Chunk {
        id: r.required("id")?,
        conversation_id: r.required("conversation_id")?,
        created_at: r.time("created_at"),
        timestamp: r
            .time("timestamp")
            .ok_or_else(|| StoreError::Other(format!("conversation_chunk.timestamp is not a datetime: {:?}", r.get("timestamp"))))?,
        path: r.string("path"),
        source: r.string("source"),
        transcript: r.string("transcript"),
        error: r.string("error"),
        runpod_job_status_link: r.string("runpod_job_status_link"),
        runpod_request_count: r.int("runpod_request_count").unwrap_or(0),
    })
}

fn participant_from(value: &Value) -> StoreResult<NotificationParticipant> {
    let r = Row::new(NOTIFICATIONS, value)?;
    Ok(NotificationParticipant {
        id: r.required("id")?,
        email: r.string("email"),
        project_id: r.string("project_id"),
        conversation_id: r.string("conversation_id"),
        email_opt_in: r.bool("email_opt_in"),
        email_opt_out_token: r.string("email_opt_out_token"),
    })
}

fn fields_param(fields: &[&str]) -> String {
    fields.join(",")
}

const SEGMENTS: &str = "conversation_segment";
const SEGMENT_FIELDS: &[&str] = &["id", "conversation_id", "transcript", "contextual_transcript", "lightrag_flag"];

fn segment_from(value: &Value) -> StoreResult<Segment> {
    let r = Row::new(SEGMENTS, value)?;
    Ok(Segment {
        id: r.int("id").ok_or_else(|| StoreError::Other("conversation_segment without an integer id".into()))?,
        conversation_id: r.string("conversation_id"),
        transcript: r.string("transcript"),
        contextual_transcript: r.string("contextual_transcript"),
        lightrag_flag: r.bool("lightrag_flag").unwrap_or(false),
    })
}

fn eq(value: &str) -> Value {
    json!({ "_eq": value })
}

impl DirectusStore {
    pub fn new(config: DirectusConfig) -> StoreResult<Self> {
        if config.page_size == 0 {
            return Err(StoreError::Other("DIRECTUS_PAGE_SIZE must be at least 1".into()));
        }
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        url::Url::parse(&base_url).map_err(|e| StoreError::Other(format!("DIRECTUS_BASE_URL {base_url:?} is not a URL: {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .timeout(config.timeout)
            // Idle connections hold ~20 kB each (docs/benchmarks.md "Memory under load"): close
            // them soon after a burst. No cap on their number: 500 answers arriving together
            // would close all but the cap and reopen them (measured: -20 % req/s at a cap of 32).
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| StoreError::Other(format!("building the Directus HTTP client: {e}")))?;
        Ok(DirectusStore {
            client,
            base_url,
            auth: format!("Bearer {}", config.token.trim()),
            page_size: config.page_size as usize,
            retry_delays: config.retry_delays,
        })
    }

    pub fn from_settings(settings: &StoreSettings) -> StoreResult<Self> {
        Self::new(DirectusConfig::from_settings(settings)?)
    }

    /// Sends a request, retrying outages as `retry` allows; an outage that outlasts the
    /// retries (or may not be retried) is `Unavailable`.
    async fn send(&self, collection: &'static str, method: Method, path: &str, body: Option<&Value>, retry: Retry) -> StoreResult<Reply> {
        let url = format!("{}{path}", self.base_url);
        let tries = if retry == Retry::Never { 1 } else { 1 + self.retry_delays.len() };
        let mut last = String::new();
        for attempt in 0..tries {
            if attempt > 0 {
                tokio::time::sleep(self.retry_delays[attempt - 1]).await;
                tracing::warn!(collection, %method, path, attempt = attempt + 1, reason = %last, "retrying Directus");
            }
            let mut request = self.client.request(method.clone(), &url).header(reqwest::header::AUTHORIZATION, &self.auth);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    last = transport_reason(&err);
                    continue;
                }
            };
            let status = response.status();
            if matches!(status.as_u16(), 502..=504) {
                last = format!("HTTP {status}");
                continue;
            }
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(err) => {
                    last = transport_reason(&err);
                    continue;
                }
            };
            let body = if bytes.is_empty() { None } else { serde_json::from_slice(&bytes).ok() };
            if body.is_none() && !bytes.is_empty() && status.is_success() {
                return Err(StoreError::Other(format!("{collection}: Directus answered HTTP {status} with a body that is not JSON")));
            }
            return Ok(Reply { status, body, retried: attempt > 0 });
        }
        Err(unavailable(format!("{collection}: {method} {path}: {last}")))
    }

    /// `SEARCH /items/{collection}` with `query` (which carries its own `limit`).
    async fn search(&self, collection: &'static str, query: Value) -> StoreResult<Vec<Value>> {
        debug_assert!(query.get("limit").is_some(), "every Directus list query sends a limit");
        let reply = self
            .send(collection, search_method(), &format!("/items/{collection}"), Some(&json!({ "query": query })), Retry::Idempotent)
            .await?;
        if !reply.status.is_success() {
            return Err(classify(collection, &reply));
        }
        rows(collection, data(collection, reply)?)
    }

    /// The first row `filter` matches.
    async fn search_one(
        &self,
        collection: &'static str,
        filter: Value,
        fields: Vec<String>,
        deep: Option<Value>,
    ) -> StoreResult<Option<Value>> {
        let mut query = json!({ "filter": filter, "fields": fields, "sort": ["id"], "limit": 1 });
        if let Some(deep) = deep {
            query["deep"] = deep;
        }
        Ok(self.search(collection, query).await?.into_iter().next())
    }

    /// Every row `filter` matches, page by page under `sort` (which must end in a unique key).
    async fn search_all(&self, collection: &'static str, filter: Value, fields: &[&str], sort: &[&str]) -> StoreResult<Vec<Value>> {
        self.search_all_deep(collection, filter, fields, sort, None).await
    }

    /// `search_all` with `deep` settings for the nested lists in `fields`.
    async fn search_all_deep(
        &self,
        collection: &'static str,
        filter: Value,
        fields: &[&str],
        sort: &[&str],
        deep: Option<&Value>,
    ) -> StoreResult<Vec<Value>> {
        debug_assert!(sort.last().is_some_and(|s| s.trim_start_matches('-') == "id"), "pages need a total order");
        let mut all = Vec::new();
        for page in 0.. {
            let mut query = json!({
                "filter": filter,
                "fields": fields,
                "sort": sort,
                "limit": self.page_size,
                "offset": page * self.page_size,
            });
            if let Some(deep) = deep {
                query["deep"] = deep.clone();
            }
            let rows = self.search(collection, query).await?;
            let full = rows.len() == self.page_size;
            all.extend(rows);
            if !full {
                break;
            }
        }
        Ok(all)
    }

    async fn exists(&self, collection: &'static str, id: &str) -> StoreResult<bool> {
        Ok(self.search_one(collection, json!({ "id": eq(id) }), vec!["id".into()], None).await?.is_some())
    }

    /// `POST /items/{collection}?fields=..`: the created row. With `id` the call is retried
    /// on outages and an id that is taken is `AlreadyExists` (or, on a retry, the first try's
    /// row, read back with `reread`).
    async fn create(&self, collection: &'static str, body: Value, id: Option<&str>, fields: &str) -> StoreResult<CreateOutcome> {
        let retry = if id.is_some() { Retry::CreateWithId } else { Retry::Never };
        let reply = self.send(collection, Method::POST, &format!("/items/{collection}?fields={fields}"), Some(&body), retry).await?;
        if reply.status.is_success() {
            return Ok(CreateOutcome::Created(data(collection, reply)?));
        }
        if let Some(id) = id
            && reply.status == StatusCode::BAD_REQUEST
            && reply.has_code("RECORD_NOT_UNIQUE")
        {
            if reply.retried {
                tracing::info!(collection, id, "a retried create found its row: the first try went through");
                return Ok(CreateOutcome::CreatedByEarlierTry);
            }
            return Err(StoreError::AlreadyExists { collection, id: id.to_string() });
        }
        Err(classify(collection, &reply))
    }

    /// `PATCH /items/{collection}/{id}`; a missing item (403, or 204 on some versions) is
    /// `Ok(false)`.
    async fn patch(&self, collection: &'static str, id: &str, body: Value) -> StoreResult<bool> {
        let reply =
            self.send(collection, Method::PATCH, &format!("/items/{collection}/{id}?fields=id"), Some(&body), Retry::Idempotent).await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(false),
            s if s.is_success() => Ok(!data(collection, reply)?.is_null()),
            StatusCode::FORBIDDEN if reply.errors().iter().all(|e| e.code == "FORBIDDEN" && quoted_field(&e.message).is_none()) => {
                Ok(false)
            }
            _ => Err(classify(collection, &reply)),
        }
    }

    /// `DELETE /items/{collection}/{id}`; already gone (403) is fine.
    async fn delete(&self, collection: &'static str, id: &str) -> StoreResult<()> {
        let reply = self.send(collection, Method::DELETE, &format!("/items/{collection}/{id}"), None, Retry::Idempotent).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::FORBIDDEN if reply.errors().iter().all(|e| e.code == "FORBIDDEN") => Ok(()),
            _ => Err(classify(collection, &reply)),
        }
    }

    /// Segment ids through both links (processing.md §9.2): `direct` filters a segment's
    /// `conversation_id`, `through_chunk` a junction row's `conversation_chunk_id`.
    async fn segments_linked(&self, direct: Value, through_chunk: Value) -> StoreResult<Vec<i64>> {
        let direct = self.search_all(SEGMENTS, json!({ "conversation_id": direct }), &["id"], &["id"]).await?;
        let junction = "conversation_segment_conversation_chunk";
        let filter = json!({ "conversation_chunk_id": through_chunk });
        let linked = self.search_all(junction, filter, &["id", "conversation_segment_id"], &["id"]).await?;
        let mut ids: Vec<i64> = direct
            .iter()
            .filter_map(|r| Row::new(SEGMENTS, r).ok()?.int("id"))
            .chain(linked.iter().filter_map(|r| Row::new(junction, r).ok()?.int("conversation_segment_id")))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Every tag of a project, when more came than one nested read holds.
    async fn all_tags(&self, project_id: &str) -> StoreResult<Vec<ProjectTag>> {
        let rows = self.search_all("project_tag", json!({ "project_id": eq(project_id) }), TAG_FIELDS, &["sort", "id"]).await?;
        rows.iter().map(tag_from).collect()
    }

    async fn all_tag_ids(&self, conversation_id: &str) -> StoreResult<Vec<String>> {
        let rows = self
            .search_all("conversation_project_tag", json!({ "conversation_id": eq(conversation_id) }), &["id", "project_tag_id"], &["id"])
            .await?;
        junction_tag_ids(&rows)
    }

    fn project_query_fields() -> Vec<String> {
        PROJECT_FIELDS.iter().map(|f| f.to_string()).chain(TAG_FIELDS.iter().map(|f| format!("tags.{f}"))).collect()
    }

    fn conversation_query_fields() -> Vec<String> {
        CONVERSATION_FIELDS.iter().map(|f| f.to_string()).chain(["tags.id".to_string(), "tags.project_tag_id".to_string()]).collect()
    }

    async fn finish_project(&self, value: &Value) -> StoreResult<Project> {
        let (mut project, nested) = project_from(value)?;
        if nested >= NESTED_LIMIT {
            project.tags = self.all_tags(&project.id).await?;
        }
        sort_tags(&mut project.tags);
        Ok(project)
    }

    async fn finish_conversation(&self, value: &Value) -> StoreResult<Conversation> {
        let (mut conversation, nested) = conversation_from(value)?;
        if nested >= NESTED_LIMIT {
            conversation.tag_ids = self.all_tag_ids(&conversation.id).await?;
        }
        Ok(conversation)
    }

    fn project_deep() -> Value {
        json!({ "tags": { "_sort": ["sort", "created_at", "id"], "_limit": NESTED_LIMIT } })
    }

    fn conversation_deep() -> Value {
        json!({ "tags": { "_sort": ["id"], "_limit": NESTED_LIMIT } })
    }

    /// `fields` for a create answer: the same shape a read gets (nested lists are capped by
    /// Directus's default limit here, far above what a create makes).
    fn create_fields(fields: &[String]) -> String {
        fields.join(",")
    }
}

enum CreateOutcome {
    Created(Value),
    /// A retried create with an id found the row its first try wrote.
    CreatedByEarlierTry,
}

fn search_method() -> Method {
    Method::from_bytes(b"SEARCH").expect("SEARCH is a valid method token")
}

fn transport_reason(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut reason = format!("{kind}: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    reason
}

#[async_trait]
impl Store for DirectusStore {
    fn backend(&self) -> Dependency {
        Dependency::Directus
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>> {
        let row = self.search_one("project", json!({ "id": eq(id) }), Self::project_query_fields(), Some(Self::project_deep())).await?;
        match row {
            Some(row) => Ok(Some(self.finish_project(&row).await?)),
            None => Ok(None),
        }
    }

    async fn create_project(&self, p: NewProject) -> StoreResult<Project> {
        let mut body = json!({
            "id": p.id,
            // NOT NULL without a default: always sent (D34).
            "is_conversation_allowed": p.is_conversation_allowed,
        });
        let optional = [
            ("directus_user_id", p.directus_user_id.map(Value::from)),
            ("name", p.name.map(Value::from)),
            ("language", p.language.map(Value::from)),
            ("context", p.context.map(Value::from)),
            ("is_get_reply_enabled", p.is_get_reply_enabled.map(Value::from)),
            ("is_project_notification_subscription_allowed", p.is_project_notification_subscription_allowed.map(Value::from)),
            ("default_conversation_title", p.default_conversation_title.map(Value::from)),
            ("default_conversation_description", p.default_conversation_description.map(Value::from)),
            ("default_conversation_finish_text", p.default_conversation_finish_text.map(Value::from)),
            ("image_generation_model", p.image_generation_model.map(Value::from)),
            ("default_conversation_ask_for_participant_name", p.default_conversation_ask_for_participant_name.map(Value::from)),
            ("default_conversation_tutorial_slug", p.default_conversation_tutorial_slug.map(Value::from)),
            ("default_conversation_transcript_prompt", p.default_conversation_transcript_prompt.map(Value::from)),
            ("conversation_ask_for_participant_name_label", p.conversation_ask_for_participant_name_label.map(Value::from)),
            ("is_enhanced_audio_processing_enabled", p.is_enhanced_audio_processing_enabled.map(Value::from)),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                body[field] = value;
            }
        }
        let fields = Self::create_fields(&Self::project_query_fields());
        match self.create("project", body, Some(&p.id), &fields).await? {
            CreateOutcome::Created(row) => self.finish_project(&row).await,
            CreateOutcome::CreatedByEarlierTry => {
                self.get_project(&p.id).await?.ok_or_else(|| StoreError::Other(format!("project {} vanished after create", p.id)))
            }
        }
    }

    async fn create_project_tag(&self, id: &str, project_id: &str, text: Option<&str>, sort: Option<i64>) -> StoreResult<ProjectTag> {
        let body = json!({ "id": id, "project_id": project_id, "text": text, "sort": sort });
        match self.create("project_tag", body, Some(id), &fields_param(TAG_FIELDS)).await? {
            CreateOutcome::Created(row) => tag_from(&row),
            CreateOutcome::CreatedByEarlierTry => {
                let row = self.search_one("project_tag", json!({ "id": eq(id) }), TAG_FIELDS.iter().map(|f| f.to_string()).collect(), None);
                tag_from(&row.await?.ok_or_else(|| StoreError::Other(format!("project_tag {id} vanished after create")))?)
            }
        }
    }

    async fn get_conversation(&self, id: &str) -> StoreResult<Option<Conversation>> {
        let row = self
            .search_one("conversation", json!({ "id": eq(id) }), Self::conversation_query_fields(), Some(Self::conversation_deep()))
            .await?;
        match row {
            Some(row) => Ok(Some(self.finish_conversation(&row).await?)),
            None => Ok(None),
        }
    }

    async fn create_conversation(&self, c: NewConversation) -> StoreResult<Conversation> {
        let links: Vec<Value> = c.tag_ids.iter().map(|t| json!({ "project_tag_id": t })).collect();
        let body = json!({
            "id": c.id,
            "project_id": c.project_id,
            "participant_name": c.participant_name,
            "participant_email": c.participant_email,
            "participant_user_agent": c.participant_user_agent,
            "source": c.source,
            "duration": c.duration,
            "merged_audio_path": c.merged_audio_path,
            // The links are created with the conversation, in the same write.
            "tags": { "create": links },
        });
        let fields = Self::create_fields(&Self::conversation_query_fields());
        match self.create("conversation", body, Some(&c.id), &fields).await? {
            CreateOutcome::Created(row) => self.finish_conversation(&row).await,
            CreateOutcome::CreatedByEarlierTry => {
                self.get_conversation(&c.id).await?.ok_or_else(|| StoreError::Other(format!("conversation {} vanished after create", c.id)))
            }
        }
    }

    async fn set_all_chunks_transcribed(&self, conversation_id: &str, value: bool) -> StoreResult<()> {
        if !self.patch("conversation", conversation_id, json!({ "is_all_chunks_transcribed": value })).await? {
            tracing::debug!(conversation_id, "is_all_chunks_transcribed: no such conversation");
        }
        Ok(())
    }

    async fn list_chunks(&self, conversation_id: &str, order: ChunkOrder) -> StoreResult<Vec<Chunk>> {
        let sort: &[&str] = match order {
            ChunkOrder::OldestFirst => &["timestamp", "id"],
            ChunkOrder::NewestFirst => &["-timestamp", "-id"],
        };
        let rows = self.search_all("conversation_chunk", json!({ "conversation_id": eq(conversation_id) }), CHUNK_FIELDS, sort).await?;
        rows.iter().map(chunk_from).collect()
    }

    async fn get_chunk(&self, id: &str) -> StoreResult<Option<Chunk>> {
        let fields = CHUNK_FIELDS.iter().map(|f| f.to_string()).collect();
        self.search_one("conversation_chunk", json!({ "id": eq(id) }), fields, None).await?.as_ref().map(chunk_from).transpose()
    }

    async fn create_chunk(&self, c: NewChunk) -> StoreResult<Chunk> {
        let body = json!({
            "id": c.id,
            "conversation_id": c.conversation_id,
            "timestamp": ts(&c.timestamp),
            "path": c.path,
            "source": c.source,
            "transcript": c.transcript,
        });
        let mut chunk = match self.create("conversation_chunk", body, Some(&c.id), &fields_param(CHUNK_FIELDS)).await? {
            CreateOutcome::Created(row) => chunk_from(&row)?,
            CreateOutcome::CreatedByEarlierTry => self
                .get_chunk(&c.id)
                .await?
                .ok_or_else(|| StoreError::Other(format!("conversation_chunk {} vanished after create", c.id)))?,
        };
        // `created_at` is date-created: Directus stamps "now" on create whatever is sent, and
        // only an update sets it (a split piece's, processing.md §4.2).
        if let Some(created_at) = c.created_at.filter(|at| chunk.created_at != Some(*at)) {
            self.patch("conversation_chunk", &c.id, json!({ "created_at": ts(&created_at) })).await?;
            chunk.created_at = Some(created_at);
        }
        Ok(chunk)
    }

    async fn update_chunk(&self, id: &str, patch: ChunkPatch) -> StoreResult<bool> {
        let mut body = Map::new();
        let fields = [
            ("path", patch.path.map(Value::from)),
            ("transcript", patch.transcript.map(Value::from)),
            ("error", patch.error.map(Value::from)),
            ("diarization", patch.diarization),
            ("noise_ratio", patch.noise_ratio.map(Value::from)),
            ("silence_ratio", patch.silence_ratio.map(Value::from)),
            ("cross_talk_instances", patch.cross_talk_instances.map(|c| Value::from(c.round() as i64))),
            ("raw_transcript", patch.raw_transcript.map(Value::from)),
            ("hallucination_reason", patch.hallucination_reason.map(Value::from)),
            ("hallucination_score", patch.hallucination_score.map(Value::from)),
            ("desired_language", patch.desired_language.map(Value::from)),
            ("detected_language", patch.detected_language.map(Value::from)),
            ("detected_language_confidence", patch.detected_language_confidence.map(Value::from)),
            ("runpod_request_count", patch.runpod_request_count.map(Value::from)),
            // Some(None) becomes JSON null: the link is cleared.
            ("runpod_job_status_link", patch.runpod_job_status_link.map(Value::from)),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                body.insert(field.into(), value);
            }
        }
        if body.is_empty() {
            return self.exists("conversation_chunk", id).await;
        }
        // PATCH of a missing item answers 403 (or 204 on some versions): not found.
        self.patch("conversation_chunk", id, Value::Object(body)).await
    }

    async fn delete_chunk(&self, id: &str) -> StoreResult<bool> {
        if !self.exists("conversation_chunk", id).await? {
            return Ok(false);
        }
        self.delete("conversation_chunk", id).await?;
        Ok(true)
    }

    async fn runpod_pending_chunks(&self) -> StoreResult<Vec<(String, String)>> {
        let filter = json!({ "runpod_job_status_link": { "_nnull": true } });
        let rows = self.search_all("conversation_chunk", filter, &["id", "runpod_job_status_link"], &["id"]).await?;
        let mut pending = Vec::with_capacity(rows.len());
        for value in &rows {
            let r = Row::new("conversation_chunk", value)?;
            if let Some(link) = r.string("runpod_job_status_link") {
                pending.push((r.required("id")?, link));
            }
        }
        Ok(pending)
    }

    async fn list_conversations(&self, project_id: &str) -> StoreResult<Vec<Conversation>> {
        let fields: Vec<String> = Self::conversation_query_fields();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let filter = json!({ "project_id": eq(project_id) });
        // Each conversation's tags are capped by `deep`, or Directus cuts them at 100 (§2.3).
        let deep = Self::conversation_deep();
        let rows = self.search_all_deep("conversation", filter, &fields, &["-created_at", "id"], Some(&deep)).await?;
        let mut conversations = Vec::with_capacity(rows.len());
        for row in &rows {
            conversations.push(self.finish_conversation(row).await?);
        }
        Ok(conversations)
    }

    async fn update_conversation(&self, id: &str, patch: ConversationPatch) -> StoreResult<()> {
        let mut body = serde_json::Map::new();
        let fields = [
            ("merged_audio_path", patch.merged_audio_path.map(Value::from)),
            ("duration", patch.duration.map(Value::from)),
            ("summary", patch.summary.map(Value::from)),
            ("is_finished", patch.is_finished.map(Value::from)),
            ("is_all_chunks_transcribed", patch.is_all_chunks_transcribed.map(Value::from)),
            ("is_audio_processing_finished", patch.is_audio_processing_finished.map(Value::from)),
        ];
        for (field, value) in fields {
            if let Some(value) = value {
                body.insert(field.into(), value);
            }
        }
        if body.is_empty() {
            return Ok(());
        }
        if !self.patch("conversation", id, Value::Object(body)).await? {
            tracing::debug!(id, "conversation update: no such conversation");
        }
        Ok(())
    }

    async fn delete_conversation(&self, id: &str) -> StoreResult<bool> {
        if !self.exists("conversation", id).await? {
            return Ok(false);
        }
        self.delete("conversation", id).await?;
        Ok(true)
    }

    async fn chunk_counts(&self, conversation_id: &str) -> StoreResult<ChunkCounts> {
        let count = |extra: Option<Value>| {
            let mut filter = vec![json!({ "conversation_id": eq(conversation_id) })];
            filter.extend(extra);
            self.search("conversation_chunk", json!({ "filter": { "_and": filter }, "aggregate": { "count": ["id"] }, "limit": 1 }))
        };
        let total = count_of(&count(None).await?);
        let error = count_of(&count(Some(json!({ "error": { "_nnull": true } }))).await?);
        let ok = count_of(&count(Some(json!({ "_and": [{ "error": { "_null": true } }, { "transcript": { "_nnull": true } }] }))).await?);
        Ok(ChunkCounts { total, error, ok })
    }

    async fn create_conversation_link(&self, source_id: &str, target_id: &str, link_type: &str) -> StoreResult<()> {
        let body = json!({ "source_conversation_id": source_id, "target_conversation_id": target_id, "link_type": link_type });
        self.create("conversation_link", body, None, "id").await.map(drop)
    }

    async fn list_replies(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<super::Reply>> {
        let query = json!({
            "filter": { "conversation_id": eq(conversation_id) },
            "fields": REPLY_FIELDS,
            "sort": ["date_created", "id"],
            "limit": limit,
        });
        self.search("conversation_reply", query).await?.iter().map(reply_from).collect()
    }

    async fn create_reply(&self, conversation_id: &str, content_text: &str, kind: &str) -> StoreResult<super::Reply> {
        let id = uuid::Uuid::new_v4().to_string();
        let body =
            json!({ "id": id, "conversation_id": conversation_id, "reply": conversation_id, "content_text": content_text, "type": kind });
        match self.create("conversation_reply", body, Some(&id), &fields_param(REPLY_FIELDS)).await? {
            CreateOutcome::Created(row) => reply_from(&row),
            CreateOutcome::CreatedByEarlierTry => {
                let row = self.search_one(
                    "conversation_reply",
                    json!({ "id": eq(&id) }),
                    REPLY_FIELDS.iter().map(|f| f.to_string()).collect(),
                    None,
                );
                reply_from(&row.await?.ok_or_else(|| StoreError::Other(format!("conversation_reply {id} vanished after create")))?)
            }
        }
    }

    async fn segments_for_conversations(&self, conversation_ids: &[String]) -> StoreResult<Vec<i64>> {
        let ids: Vec<&String> = conversation_ids.iter().filter(|id| is_uuid(id)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.segments_linked(json!({ "_in": ids }), json!({ "conversation_id": { "_in": ids } })).await
    }

    async fn segments_for_projects(&self, project_ids: &[String]) -> StoreResult<Vec<i64>> {
        let ids: Vec<&String> = project_ids.iter().filter(|id| is_uuid(id)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.segments_linked(json!({ "project_id": { "_in": ids } }), json!({ "conversation_id": { "project_id": { "_in": ids } } })).await
    }

    async fn conversation_segments(&self, conversation_id: &str) -> StoreResult<Vec<Segment>> {
        if !is_uuid(conversation_id) {
            return Ok(Vec::new());
        }
        let rows = self.search_all(SEGMENTS, json!({ "conversation_id": eq(conversation_id) }), SEGMENT_FIELDS, &["id"]).await?;
        rows.iter().map(segment_from).collect()
    }

    async fn get_segment(&self, id: i64) -> StoreResult<Option<Segment>> {
        let row = self.search_one(SEGMENTS, json!({ "id": { "_eq": id } }), SEGMENT_FIELDS.iter().map(|f| f.to_string()).collect(), None);
        row.await?.as_ref().map(segment_from).transpose()
    }

    async fn create_segment(&self, segment: NewSegment) -> StoreResult<Segment> {
        let body = json!({
            "conversation_id": segment.conversation_id,
            "transcript": segment.transcript,
            "contextual_transcript": segment.contextual_transcript,
            "lightrag_flag": false,
        });
        match self.create(SEGMENTS, body, None, &fields_param(SEGMENT_FIELDS)).await? {
            CreateOutcome::Created(row) => segment_from(&row),
            CreateOutcome::CreatedByEarlierTry => unreachable!("creates without an id are not retried"),
        }
    }

    async fn update_segment(&self, id: i64, patch: SegmentPatch) -> StoreResult<bool> {
        let mut body = serde_json::Map::new();
        if let Some(t) = patch.transcript {
            body.insert("transcript".into(), json!(t));
        }
        if let Some(t) = patch.contextual_transcript {
            body.insert("contextual_transcript".into(), json!(t));
        }
        if let Some(flag) = patch.lightrag_flag {
            body.insert("lightrag_flag".into(), json!(flag));
        }
        self.patch(SEGMENTS, &id.to_string(), Value::Object(body)).await
    }

    async fn delete_segment(&self, id: i64) -> StoreResult<()> {
        self.delete("conversation_segment", &id.to_string()).await
    }

    async fn recent_chunk_metrics(&self, scope: MetricsScope, since: DateTime<Utc>) -> StoreResult<Vec<ChunkMetrics>> {
        let (field, ids) = match scope {
            MetricsScope::Projects(ids) => (json!({ "conversation_id": { "project_id": { "_in": ids.clone() } } }), ids),
            MetricsScope::Conversations(ids) => (json!({ "conversation_id": { "id": { "_in": ids.clone() } } }), ids),
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filter = json!({ "_and": [
            field,
            { "timestamp": { "_gte": ts(&since) } },
        ]});
        let fields =
            ["id", "conversation_id.id", "conversation_id.project_id", "timestamp", "noise_ratio", "cross_talk_instances", "silence_ratio"];
        let rows = self.search_all("conversation_chunk", filter, &fields, &["-timestamp", "id"]).await?;
        rows.iter()
            .map(|value| {
                let r = Row::new("conversation_chunk", value)?;
                let conversation = Row::new("conversation", r.get("conversation_id").unwrap_or(&Value::Null))?;
                Ok(ChunkMetrics {
                    conversation_id: conversation.required("id")?,
                    project_id: conversation.required("project_id")?,
                    timestamp: r.time("timestamp").unwrap_or_default(),
                    noise_ratio: r.float("noise_ratio"),
                    cross_talk_instances: r.float("cross_talk_instances"),
                    silence_ratio: r.float("silence_ratio"),
                })
            })
            .collect()
    }

    async fn idle_unfinished_conversations(&self, idle_since: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let since = ts(&idle_since);
        let filter = json!({ "_and": [
            { "_or": [{ "is_finished": { "_eq": false } }, { "is_finished": { "_null": true } }] },
            { "created_at": { "_lt": since } },
            { "chunks": { "_none": { "timestamp": { "_gte": since } } } },
        ]});
        let rows = self.search_all("conversation", filter, &["id"], &["created_at", "id"]).await?;
        rows.iter().map(|r| Row::new("conversation", r)?.required("id")).collect()
    }

    async fn unfinalized_conversations(&self, since: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let filter = json!({ "_and": [
            { "is_finished": { "_eq": true } },
            { "_or": [{ "is_all_chunks_transcribed": { "_eq": false } }, { "is_all_chunks_transcribed": { "_null": true } }] },
            { "created_at": { "_gte": ts(&since) } },
        ]});
        let rows = self.search_all("conversation", filter, &["id"], &["created_at", "id"]).await?;
        rows.iter().map(|r| Row::new("conversation", r)?.required("id")).collect()
    }

    async fn rag_backlog_conversations(&self, limit: u32) -> StoreResult<Vec<String>> {
        let filter = json!({ "_and": [
            { "project_id": { "is_enhanced_audio_processing_enabled": { "_eq": true } } },
            { "is_all_chunks_transcribed": { "_eq": true } },
            { "_or": [{ "is_audio_processing_finished": { "_eq": false } }, { "is_audio_processing_finished": { "_null": true } }] },
        ]});
        let query = json!({ "filter": filter, "fields": ["id"], "sort": ["created_at", "id"], "limit": limit });
        self.search("conversation", query).await?.iter().map(|r| Row::new("conversation", r)?.required("id")).collect()
    }

    async fn create_processing_status(&self, st: NewProcessingStatus) -> StoreResult<i64> {
        let body = json!({
            "event": st.event,
            "message": st.message,
            "duration_ms": st.duration_ms,
            "parent": st.parent,
            "conversation_id": st.conversation_id,
            "conversation_chunk_id": st.conversation_chunk_id,
            "project_id": st.project_id,
            "project_analysis_run_id": st.project_analysis_run_id,
        });
        match self.create("processing_status", body, None, "id").await? {
            CreateOutcome::Created(row) => {
                Row::new("processing_status", &row)?.int("id").ok_or_else(|| StoreError::Other("processing_status without id".into()))
            }
            CreateOutcome::CreatedByEarlierTry => unreachable!("creates without an id are not retried"),
        }
    }

    async fn latest_analysis_run(&self, project_id: &str) -> StoreResult<Option<String>> {
        let query = json!({ "filter": { "project_id": eq(project_id) }, "fields": ["id"], "sort": ["-created_at", "id"], "limit": 1 });
        Ok(self.search("project_analysis_run", query).await?.first().and_then(|r| Row::new("project_analysis_run", r).ok()?.string("id")))
    }

    async fn create_analysis_run(&self, id: &str, project_id: &str) -> StoreResult<()> {
        match self.create("project_analysis_run", json!({ "id": id, "project_id": project_id }), Some(id), "id").await? {
            CreateOutcome::Created(_) | CreateOutcome::CreatedByEarlierTry => Ok(()),
        }
    }

    async fn analysis_run_project(&self, run_id: &str) -> StoreResult<Option<String>> {
        let row =
            self.search_one("project_analysis_run", json!({ "id": eq(run_id) }), vec!["id".into(), "project_id".into()], None).await?;
        Ok(row.as_ref().and_then(|r| Row::new("project_analysis_run", r).ok()?.string("project_id")))
    }

    async fn analysis_run_has_view(&self, run_id: &str, user_input: &str) -> StoreResult<bool> {
        let filter = json!({ "_and": [{ "project_analysis_run_id": eq(run_id) }, { "user_input": eq(user_input) }] });
        Ok(self.search_one("view", filter, vec!["id".into()], None).await?.is_some())
    }

    async fn create_report(&self, report: NewReport) -> StoreResult<Report> {
        let body =
            json!({ "content": report.content, "project_id": report.project_id, "language": report.language, "status": report.status });
        match self.create("project_report", body, None, &fields_param(REPORT_FIELDS)).await? {
            CreateOutcome::Created(row) => report_from(&row),
            CreateOutcome::CreatedByEarlierTry => unreachable!("creates without an id are not retried"),
        }
    }

    async fn find_notification_participant(&self, email: &str, project_id: &str) -> StoreResult<Option<NotificationParticipant>> {
        let filter = json!({ "_and": [{ "email": eq(email) }, { "project_id": eq(project_id) }] });
        let fields = PARTICIPANT_FIELDS.iter().map(|f| f.to_string()).collect();
        self.search_one(NOTIFICATIONS, filter, fields, None).await?.as_ref().map(participant_from).transpose()
    }

    async fn create_notification_participant(&self, row: NewNotificationParticipant) -> StoreResult<NotificationParticipant> {
        // `id` and `email_opt_out_token` are generated by Directus; without an id the create is
        // not retried (a retry could add a second row).
        let body = json!({
            "email": row.email,
            "project_id": row.project_id,
            "conversation_id": row.conversation_id,
            "email_opt_in": row.email_opt_in,
        });
        match self.create(NOTIFICATIONS, body, None, &fields_param(PARTICIPANT_FIELDS)).await? {
            CreateOutcome::Created(row) => participant_from(&row),
            CreateOutcome::CreatedByEarlierTry => unreachable!("creates without an id are not retried"),
        }
    }

    async fn delete_notification_participant(&self, id: &str) -> StoreResult<()> {
        self.delete(NOTIFICATIONS, id).await
    }

    async fn notification_participants_by_token(&self, project_id: &str, token: &str) -> StoreResult<Vec<NotificationParticipant>> {
        let filter = json!({ "_and": [{ "project_id": eq(project_id) }, { "email_opt_out_token": eq(token) }] });
        let rows = self.search_all(NOTIFICATIONS, filter, PARTICIPANT_FIELDS, &["id"]).await?;
        rows.iter().map(participant_from).collect()
    }

    async fn set_notification_opt_in(&self, id: &str, email_opt_in: bool) -> StoreResult<()> {
        if !self.patch(NOTIFICATIONS, id, json!({ "email_opt_in": email_opt_in })).await? {
            tracing::debug!(id, "email_opt_in: no such row");
        }
        Ok(())
    }
    async fn get_chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let fields = ["id", "project_id", "name", "auto_select"].iter().map(|f| f.to_string()).collect();
        let Some(row) = self.search_one("project_chat", json!({ "id": eq(id) }), fields, None).await? else {
            return Ok(None);
        };
        let r = Row::new("project_chat", &row)?;
        let links =
            self.search_all("project_chat_conversation", json!({ "project_chat_id": eq(id) }), &["id", "conversation_id"], &["id"]).await?;
        Ok(Some(Chat {
            id: r.required("id")?,
            project_id: r.string("project_id").unwrap_or_default(),
            name: r.string("name"),
            auto_select: r.bool("auto_select"),
            conversation_ids: links
                .iter()
                .filter_map(|l| Row::new("project_chat_conversation", l).ok()?.string("conversation_id"))
                .collect(),
        }))
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat> {
        let body = json!({ "id": chat.id, "project_id": chat.project_id, "name": chat.name, "auto_select": chat.auto_select });
        self.create("project_chat", body, Some(&chat.id), "id").await?;
        self.get_chat(&chat.id).await?.ok_or_else(|| StoreError::Other(format!("project_chat {} vanished after create", chat.id)))
    }

    async fn update_chat(&self, id: &str, patch: ChatPatch) -> StoreResult<bool> {
        let mut body = Map::new();
        if let Some(name) = patch.name {
            body.insert("name".into(), json!(name));
        }
        if let Some(auto_select) = patch.auto_select {
            body.insert("auto_select".into(), json!(auto_select));
        }
        self.patch("project_chat", id, Value::Object(body)).await
    }

    async fn add_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<()> {
        let body = json!({ "project_chat_id": chat_id, "conversation_id": conversation_id });
        self.create("project_chat_conversation", body, None, "id").await.map(drop)
    }

    async fn remove_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<bool> {
        let filter = json!({ "_and": [{ "project_chat_id": eq(chat_id) }, { "conversation_id": eq(conversation_id) }] });
        let rows = self.search_all("project_chat_conversation", filter, &["id"], &["id"]).await?;
        for row in &rows {
            let id = Row::new("project_chat_conversation", row)?.required("id")?;
            self.delete("project_chat_conversation", &id).await?;
        }
        Ok(!rows.is_empty())
    }

    async fn list_chat_messages(&self, chat_id: &str) -> StoreResult<Vec<ChatMessage>> {
        let rows = self
            .search_all("project_chat_message", json!({ "project_chat_id": eq(chat_id) }), CHAT_MESSAGE_FIELDS, &["date_created", "id"])
            .await?;
        let mut messages = rows.iter().map(chat_message_from).collect::<StoreResult<Vec<_>>>()?;
        // The junction rows of all the chat's messages, one paged read per junction.
        let filter = json!({ "project_chat_message_id": { "project_chat_id": eq(chat_id) } });
        let fields = &["id", "project_chat_message_id", "conversation_id"];
        for (junction, used) in [(USED_LINKS, true), (ADDED_LINKS, false)] {
            for link in self.search_all(junction, filter.clone(), fields, &["id"]).await? {
                let link = Row::new(junction, &link)?;
                let (Some(message_id), Some(conversation_id)) = (link.string("project_chat_message_id"), link.string("conversation_id"))
                else {
                    continue;
                };
                if let Some(m) = messages.iter_mut().find(|m| m.id == message_id) {
                    if used { &mut m.used_conversation_ids } else { &mut m.added_conversation_ids }.push(conversation_id);
                }
            }
        }
        Ok(messages)
    }

    async fn create_chat_message(&self, m: NewChatMessage) -> StoreResult<ChatMessage> {
        let links = |ids: &[String]| json!({ "create": ids.iter().map(|c| json!({ "conversation_id": c })).collect::<Vec<_>>() });
        let body = json!({
            "id": m.id,
            "project_chat_id": m.chat_id,
            "message_from": m.message_from,
            "text": m.text,
            // The junction rows are created with the message, in the same write.
            "used_conversations": links(&m.used_conversation_ids),
            "added_conversations": links(&m.added_conversation_ids),
        });
        let row = match self.create("project_chat_message", body, Some(&m.id), &fields_param(CHAT_MESSAGE_FIELDS)).await? {
            CreateOutcome::Created(row) => Some(row),
            CreateOutcome::CreatedByEarlierTry => None,
        };
        let row = match row {
            Some(row) => row,
            None => self
                .search_one(
                    "project_chat_message",
                    json!({ "id": eq(&m.id) }),
                    CHAT_MESSAGE_FIELDS.iter().map(|f| f.to_string()).collect(),
                    None,
                )
                .await?
                .ok_or_else(|| StoreError::Other(format!("project_chat_message {} vanished after create", m.id)))?,
        };
        let mut message = chat_message_from(&row)?;
        message.used_conversation_ids = m.used_conversation_ids;
        message.added_conversation_ids = m.added_conversation_ids;
        Ok(message)
    }

    async fn update_chat_message(&self, id: &str, patch: ChatMessagePatch) -> StoreResult<bool> {
        let mut body = Map::new();
        if let Some(tokens) = patch.tokens_count {
            body.insert("tokens_count".into(), json!(tokens));
        }
        if let Some(key) = patch.template_key {
            body.insert("template_key".into(), json!(key));
        }
        self.patch("project_chat_message", id, Value::Object(body)).await
    }

    async fn delete_chat_message(&self, id: &str) -> StoreResult<bool> {
        let existed = self.exists("project_chat_message", id).await?;
        self.delete("project_chat_message", id).await?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_field_is_found() {
        assert_eq!(
            quoted_field("You don't have permission to access field \"nope\" in collection \"conversation\" or it does not exist."),
            Some("nope".into())
        );
        assert_eq!(
            quoted_field("Validation failed for field \"is_conversation_allowed\". Value is required."),
            Some("is_conversation_allowed".into())
        );
        assert_eq!(quoted_field("Invalid foreign key."), None);
    }

    #[test]
    fn rows_tolerate_sqlite_and_postgres_encodings() {
        let v = json!({
            "id": 7, "b1": 1, "b0": "false", "n": "42",
            "t": "2025-10-16T12:34:56.000Z", "naive": "2025-10-16T12:34:56", "rel": {"id": "u"}
        });
        let r = Row::new("x", &v).unwrap();
        assert_eq!(r.string("id").as_deref(), Some("7"));
        assert_eq!((r.bool("b1"), r.bool("b0"), r.bool("missing")), (Some(true), Some(false), None));
        assert_eq!(r.int("n"), Some(42));
        assert_eq!(r.time("t"), r.time("naive"));
        assert_eq!(r.string("rel").as_deref(), Some("u"));
    }

    #[test]
    fn tags_sort_with_unsorted_last() {
        let tag =
            |id: &str, sort| ProjectTag { id: id.into(), project_id: "p".into(), text: None, sort, created_at: None, updated_at: None };
        let mut tags = vec![tag("c", None), tag("b", Some(2)), tag("a", Some(1))];
        sort_tags(&mut tags);
        assert_eq!(tags.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn the_token_is_required() {
        let settings = StoreSettings::Directus { base_url: "http://127.0.0.1:1".into(), token: None, timeout_seconds: 10, page_size: 500 };
        assert!(matches!(DirectusStore::from_settings(&settings), Err(StoreError::Other(m)) if m.contains("DIRECTUS_TOKEN")));
    }
}
