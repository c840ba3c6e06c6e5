//! The embedded store: one SQLite file, a small pool of connections, every call through
//! `offload` (SQLite calls block). Schema migrations live in `common/migrations/`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::*;
use crate::offload::OffloadPool;

/// Applied in order; `PRAGMA user_version` records how many ran. `updated_at` is written with
/// `created_at` on create, as ECHO's Directus schema defaults it to `CURRENT_TIMESTAMP`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_participant.sql"),
    include_str!("../../migrations/0002_dashboard.sql"),
    include_str!("../../migrations/0003_library.sql"),
    include_str!("../../migrations/0004_chats.sql"),
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections open at most: SQLite runs one writer at a time and two cores run few readers,
/// while each connection keeps its own schema, statements and page cache (docs/benchmarks.md,
/// "Memory under load"). Calls beyond it wait on their blocking thread for a free one.
const MAX_CONNECTIONS: usize = 8;
/// Page cache per connection, in KiB (SQLite's default is 2000).
const CACHE_KIB: i64 = 1024;

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Slots {
    idle: Vec<Connection>,
    open: usize,
}

struct Inner {
    path: PathBuf,
    pool: OffloadPool,
    slots: Mutex<Slots>,
    /// Signalled when a connection goes back to `slots.idle` or a slot frees up.
    returned: Condvar,
    /// Extra time each call holds its blocking thread: a slow disk, for tests and benchmarks.
    stall: Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).finish()
    }
}

fn unavailable(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { backend: Dependency::Database, reason: reason.to_string() }
}

fn classify(collection: &'static str, err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &err {
        rusqlite::Error::SqliteFailure(e, msg) => match e.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull => unavailable(err),
            ErrorCode::ConstraintViolation => {
                StoreError::Invalid { collection, field: msg.clone().unwrap_or_default(), reason: "constraint violated".into() }
            }
            _ => StoreError::Other(format!("{collection}: {err}")),
        },
        _ => StoreError::Other(format!("{collection}: {err}")),
    }
}

const SEGMENT_SELECT: &str = "SELECT id, conversation_id, transcript, contextual_transcript, lightrag_flag FROM conversation_segment";

fn segment_from_row(r: &Row<'_>) -> rusqlite::Result<Segment> {
    Ok(Segment {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        transcript: r.get(2)?,
        contextual_transcript: r.get(3)?,
        lightrag_flag: r.get::<_, Option<bool>>(4)?.unwrap_or(false),
    })
}

pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn now() -> String {
    ts(&Utc::now())
}

fn parse_ts(value: Option<String>) -> Option<DateTime<Utc>> {
    value.and_then(|v| DateTime::parse_from_rfc3339(&v).ok()).map(|t| t.with_timezone(&Utc))
}

fn is_unique_violation(err: &rusqlite::Error) -> bool {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    let rusqlite::Error::SqliteFailure(e, _) = err else { return false };
    matches!(e.extended_code, SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE)
}

fn load_chat(conn: &Connection, id: &str) -> rusqlite::Result<Option<Chat>> {
    let sql = "SELECT id, project_id, name, auto_select FROM project_chat WHERE id = ?1";
    let chat = conn
        .query_row(sql, [id], |r| {
            Ok(Chat { id: r.get(0)?, project_id: r.get(1)?, name: r.get(2)?, auto_select: r.get(3)?, conversation_ids: Vec::new() })
        })
        .optional()?;
    let Some(mut chat) = chat else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT conversation_id FROM project_chat_conversation WHERE project_chat_id = ?1 AND conversation_id IS NOT NULL ORDER BY id",
    )?;
    chat.conversation_ids = stmt.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(Some(chat))
}

const CHAT_MESSAGE_COLUMNS: &str = "id, project_chat_id, message_from, text, tokens_count, template_key, date_created";

fn chat_message_from_row(r: &Row) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: r.get(0)?,
        chat_id: r.get(1)?,
        message_from: r.get(2)?,
        text: r.get(3)?,
        tokens_count: r.get(4)?,
        template_key: r.get(5)?,
        date_created: parse_ts(r.get(6)?),
        used_conversation_ids: Vec::new(),
        added_conversation_ids: Vec::new(),
    })
}

/// The conversation ids of a message in one of its two junctions.
fn message_links(conn: &Connection, junction: &str, message_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT conversation_id FROM {junction} WHERE project_chat_message_id = ?1 AND conversation_id IS NOT NULL ORDER BY id"
    ))?;
    stmt.query_map([message_id], |r| r.get(0))?.collect()
}

fn with_links(conn: &Connection, mut message: ChatMessage) -> rusqlite::Result<ChatMessage> {
    message.used_conversation_ids = message_links(conn, "project_chat_message_conversation", &message.id)?;
    message.added_conversation_ids = message_links(conn, "project_chat_message_conversation_1", &message.id)?;
    Ok(message)
}

impl SqliteStore {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>, pool: OffloadPool) -> StoreResult<Self> {
        Self::open_with_stall(path, pool, Duration::ZERO).await
    }

    pub async fn open_with_stall(path: impl AsRef<Path>, pool: OffloadPool, stall: Duration) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let store = SqliteStore { inner: Arc::new(Inner { path, pool, slots: Mutex::default(), returned: Condvar::new(), stall }) };
        store.call("migrations", migrate).await?;
        Ok(store)
    }

    fn connect(path: &Path) -> rusqlite::Result<Connection> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        Ok(conn)
    }

    /// Runs `f` with a pooled connection on the offload pool.
    async fn call<T, F>(&self, collection: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let outcome = self
            .inner
            .pool
            .run(move || {
                if !inner.stall.is_zero() {
                    std::thread::sleep(inner.stall);
                }
                let mut lease = Lease { inner: &inner, conn: Some(inner.checkout()?) };
                f(lease.conn.as_mut().expect("leased")).map_err(|e| classify(collection, e))
            })
            .await;
        outcome.map_err(|e| StoreError::Other(e.to_string()))?
    }
}

impl Inner {
    /// An idle connection, a new one while fewer than `MAX_CONNECTIONS` are open, or the next
    /// one returned (runs on a blocking thread, so waiting here blocks no tokio worker).
    fn checkout(&self) -> StoreResult<Connection> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(conn) = slots.idle.pop() {
                return Ok(conn);
            }
            if slots.open < MAX_CONNECTIONS {
                slots.open += 1;
                drop(slots);
                return SqliteStore::connect(&self.path).map_err(|err| {
                    self.slots.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                    self.returned.notify_one();
                    unavailable(err)
                });
            }
            slots = self.returned.wait(slots).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A checked-out connection: back to the idle list when the call ends, closed (freeing its
/// slot) when the call panicked, as its state is then unknown.
struct Lease<'a> {
    inner: &'a Inner,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
        match self.conn.take() {
            Some(conn) if !std::thread::panicking() => slots.idle.push(conn),
            _ => slots.open -= 1,
        }
        drop(slots);
        self.inner.returned.notify_one();
    }
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

const PROJECT_COLUMNS: &str = "id, created_at, updated_at, directus_user_id, name, language, context, is_conversation_allowed, \
    is_get_reply_enabled, is_project_notification_subscription_allowed, is_enhanced_audio_processing_enabled, \
    default_conversation_ask_for_participant_name, default_conversation_tutorial_slug, conversation_ask_for_participant_name_label, \
    default_conversation_title, default_conversation_description, default_conversation_finish_text, \
    default_conversation_transcript_prompt, get_reply_prompt, get_reply_mode, image_generation_model";

fn project_from_row(r: &Row) -> rusqlite::Result<Project> {
    Ok(Project {
        id: r.get(0)?,
        created_at: parse_ts(r.get(1)?),
        updated_at: parse_ts(r.get(2)?),
        directus_user_id: r.get(3)?,
        name: r.get(4)?,
        language: r.get(5)?,
        context: r.get(6)?,
        is_conversation_allowed: r.get(7)?,
        is_get_reply_enabled: r.get(8)?,
        is_project_notification_subscription_allowed: r.get(9)?,
        is_enhanced_audio_processing_enabled: r.get(10)?,
        default_conversation_ask_for_participant_name: r.get(11)?,
        default_conversation_tutorial_slug: r.get(12)?,
        conversation_ask_for_participant_name_label: r.get(13)?,
        default_conversation_title: r.get(14)?,
        default_conversation_description: r.get(15)?,
        default_conversation_finish_text: r.get(16)?,
        default_conversation_transcript_prompt: r.get(17)?,
        get_reply_prompt: r.get(18)?,
        get_reply_mode: r.get(19)?,
        image_generation_model: r.get(20)?,
        tags: Vec::new(),
    })
}

const TAG_COLUMNS: &str = "id, project_id, text, sort, created_at, updated_at";

fn tag_from_row(r: &Row) -> rusqlite::Result<ProjectTag> {
    Ok(ProjectTag {
        id: r.get(0)?,
        project_id: r.get(1)?,
        text: r.get(2)?,
        sort: r.get(3)?,
        created_at: parse_ts(r.get(4)?),
        updated_at: parse_ts(r.get(5)?),
    })
}

fn load_project(conn: &Connection, id: &str) -> rusqlite::Result<Option<Project>> {
    let project = conn.query_row(&format!("SELECT {PROJECT_COLUMNS} FROM project WHERE id = ?1"), [id], project_from_row).optional()?;
    let Some(mut project) = project else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TAG_COLUMNS} FROM project_tag WHERE project_id = ?1 ORDER BY sort IS NULL, sort, created_at, id"
    ))?;
    project.tags = stmt.query_map([id], tag_from_row)?.collect::<rusqlite::Result<_>>()?;
    Ok(Some(project))
}

const CONVERSATION_COLUMNS: &str = "id, project_id, created_at, updated_at, participant_name, participant_email, participant_user_agent, \
    source, summary, duration, merged_audio_path, is_finished, is_all_chunks_transcribed, is_audio_processing_finished";

fn conversation_from_row(r: &Row) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        project_id: r.get(1)?,
        created_at: parse_ts(r.get(2)?),
        updated_at: parse_ts(r.get(3)?),
        participant_name: r.get(4)?,
        participant_email: r.get(5)?,
        participant_user_agent: r.get(6)?,
        source: r.get(7)?,
        summary: r.get(8)?,
        duration: r.get(9)?,
        merged_audio_path: r.get(10)?,
        is_finished: r.get(11)?,
        is_all_chunks_transcribed: r.get(12)?,
        is_audio_processing_finished: r.get(13)?,
        tag_ids: Vec::new(),
    })
}

fn load_tag_ids(conn: &Connection, conversation: &mut Conversation) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT project_tag_id FROM conversation_project_tag WHERE conversation_id = ?1 AND project_tag_id IS NOT NULL ORDER BY id",
    )?;
    conversation.tag_ids = stmt.query_map([&conversation.id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(())
}

fn load_conversation(conn: &Connection, id: &str) -> rusqlite::Result<Option<Conversation>> {
    let conversation = conn
        .query_row(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE id = ?1"), [id], conversation_from_row)
        .optional()?;
    let Some(mut conversation) = conversation else { return Ok(None) };
    load_tag_ids(conn, &mut conversation)?;
    Ok(Some(conversation))
}

const CHUNK_COLUMNS: &str =
    "id, conversation_id, created_at, timestamp, path, source, transcript, error, runpod_job_status_link, runpod_request_count";

fn chunk_from_row(r: &Row) -> rusqlite::Result<Chunk> {
    let timestamp: String = r.get(3)?;
    Ok(Chunk {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        created_at: parse_ts(r.get(2)?),
        timestamp: parse_ts(Some(timestamp.clone())).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, format!("bad timestamp {timestamp:?}").into())
        })?,
        path: r.get(4)?,
        source: r.get(5)?,
        transcript: r.get(6)?,
        error: r.get(7)?,
        runpod_job_status_link: r.get(8)?,
        runpod_request_count: r.get::<_, Option<i64>>(9)?.unwrap_or(0),
    })
}

fn load_chunk(conn: &Connection, id: &str) -> rusqlite::Result<Option<Chunk>> {
    conn.query_row(&format!("SELECT {CHUNK_COLUMNS} FROM conversation_chunk WHERE id = ?1"), [id], chunk_from_row).optional()
}

fn reply_from_row(r: &Row) -> rusqlite::Result<Reply> {
    Ok(Reply { id: r.get(0)?, conversation_id: r.get(1)?, content_text: r.get(2)?, kind: r.get(3)?, date_created: parse_ts(r.get(4)?) })
}

const PARTICIPANT_COLUMNS: &str = "id, email, project_id, conversation_id, email_opt_in, email_opt_out_token";

fn participant_from_row(r: &Row) -> rusqlite::Result<NotificationParticipant> {
    Ok(NotificationParticipant {
        id: r.get(0)?,
        email: r.get(1)?,
        project_id: r.get(2)?,
        conversation_id: r.get(3)?,
        email_opt_in: r.get(4)?,
        email_opt_out_token: r.get(5)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Dependency {
        Dependency::Database
    }

    async fn get_project(&self, id: &str) -> StoreResult<Option<Project>> {
        let id = id.to_string();
        self.call("project", move |conn| load_project(conn, &id)).await
    }

    async fn create_project(&self, p: NewProject) -> StoreResult<Project> {
        let id = p.id.clone();
        self.call("project", move |conn| {
            conn.execute(
                "INSERT INTO project (id, created_at, updated_at, directus_user_id, name, language, context, is_conversation_allowed, \
                 is_get_reply_enabled, is_project_notification_subscription_allowed, default_conversation_title, \
                 default_conversation_description, default_conversation_finish_text, image_generation_model, \
                 default_conversation_ask_for_participant_name, default_conversation_tutorial_slug, \
                 default_conversation_transcript_prompt, conversation_ask_for_participant_name_label, \
                 is_enhanced_audio_processing_enabled) \
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, coalesce(?8, 0), coalesce(?9, 0), ?10, ?11, ?12, coalesce(?13, 'PLACEHOLDER'), \
                 coalesce(?14, 1), coalesce(?15, 'none'), ?16, ?17, coalesce(?18, 0))",
                params![
                    p.id,
                    now(),
                    p.directus_user_id,
                    p.name,
                    p.language,
                    p.context,
                    p.is_conversation_allowed,
                    p.is_get_reply_enabled,
                    p.is_project_notification_subscription_allowed,
                    p.default_conversation_title,
                    p.default_conversation_description,
                    p.default_conversation_finish_text,
                    p.image_generation_model,
                    p.default_conversation_ask_for_participant_name,
                    p.default_conversation_tutorial_slug,
                    p.default_conversation_transcript_prompt,
                    p.conversation_ask_for_participant_name_label,
                    p.is_enhanced_audio_processing_enabled
                ],
            )?;
            load_project(conn, &p.id)
        })
        .await
        .and_then(|p| p.ok_or_else(|| StoreError::Other(format!("project {id} vanished after create"))))
    }

    async fn create_project_tag(&self, id: &str, project_id: &str, text: Option<&str>, sort: Option<i64>) -> StoreResult<ProjectTag> {
        let (id, project_id, text) = (id.to_string(), project_id.to_string(), text.map(str::to_string));
        self.call("project_tag", move |conn| {
            conn.execute(
                "INSERT INTO project_tag (id, project_id, text, sort, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, project_id, text, sort, now()],
            )?;
            conn.query_row(&format!("SELECT {TAG_COLUMNS} FROM project_tag WHERE id = ?1"), [&id], tag_from_row)
        })
        .await
    }

    async fn get_conversation(&self, id: &str) -> StoreResult<Option<Conversation>> {
        let id = id.to_string();
        self.call("conversation", move |conn| load_conversation(conn, &id)).await
    }

    async fn create_conversation(&self, c: NewConversation) -> StoreResult<Conversation> {
        let id = c.id.clone();
        let created = self
            .call("conversation", move |conn| {
                let tx = conn.transaction()?;
                let inserted = tx.execute(
                    "INSERT INTO conversation (id, created_at, updated_at, project_id, participant_name, participant_email, \
                     participant_user_agent, source, duration, merged_audio_path) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        c.id,
                        now(),
                        c.project_id,
                        c.participant_name,
                        c.participant_email,
                        c.participant_user_agent,
                        c.source,
                        c.duration,
                        c.merged_audio_path
                    ],
                );
                if let Err(err) = inserted {
                    return if is_unique_violation(&err) { Ok(None) } else { Err(err) };
                }
                for tag in &c.tag_ids {
                    tx.execute(
                        "INSERT INTO conversation_project_tag (conversation_id, project_tag_id) VALUES (?1, ?2)",
                        params![c.id, tag],
                    )?;
                }
                tx.commit()?;
                load_conversation(conn, &c.id)
            })
            .await?;
        created.ok_or(StoreError::AlreadyExists { collection: "conversation", id })
    }

    async fn set_all_chunks_transcribed(&self, conversation_id: &str, value: bool) -> StoreResult<()> {
        let id = conversation_id.to_string();
        self.call("conversation", move |conn| {
            conn.execute("UPDATE conversation SET is_all_chunks_transcribed = ?2, updated_at = ?3 WHERE id = ?1", params![id, value, now()])
                .map(drop)
        })
        .await
    }

    async fn list_chunks(&self, conversation_id: &str, order: ChunkOrder) -> StoreResult<Vec<Chunk>> {
        let id = conversation_id.to_string();
        let direction = match order {
            ChunkOrder::OldestFirst => "ASC",
            ChunkOrder::NewestFirst => "DESC",
        };
        self.call("conversation_chunk", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CHUNK_COLUMNS} FROM conversation_chunk WHERE conversation_id = ?1 ORDER BY timestamp {direction}, id {direction}"
            ))?;
            stmt.query_map([id], chunk_from_row)?.collect()
        })
        .await
    }

    async fn get_chunk(&self, id: &str) -> StoreResult<Option<Chunk>> {
        let id = id.to_string();
        self.call("conversation_chunk", move |conn| load_chunk(conn, &id)).await
    }

    async fn create_chunk(&self, c: NewChunk) -> StoreResult<Chunk> {
        let id = c.id.clone();
        let created = self
            .call("conversation_chunk", move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO conversation_chunk (id, created_at, updated_at, conversation_id, timestamp, path, source, transcript) \
                     VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        c.id,
                        c.created_at.as_ref().map_or_else(now, ts),
                        c.conversation_id,
                        ts(&c.timestamp),
                        c.path,
                        c.source,
                        c.transcript
                    ],
                );
                match inserted {
                    Ok(_) => load_chunk(conn, &c.id),
                    Err(err) if is_unique_violation(&err) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await?;
        created.ok_or(StoreError::AlreadyExists { collection: "conversation_chunk", id })
    }

    async fn update_chunk(&self, id: &str, patch: ChunkPatch) -> StoreResult<bool> {
        let id = id.to_string();
        // A link of Some(None) clears it; ?17 says whether the link is part of the patch.
        let (set_link, link) = match patch.runpod_job_status_link {
            Some(link) => (true, link),
            None => (false, None),
        };
        self.call("conversation_chunk", move |conn| {
            conn.execute(
                "UPDATE conversation_chunk SET path = coalesce(?2, path), transcript = coalesce(?3, transcript), \
                 error = coalesce(?4, error), diarization = coalesce(?6, diarization), noise_ratio = coalesce(?7, noise_ratio), \
                 silence_ratio = coalesce(?8, silence_ratio), cross_talk_instances = coalesce(?9, cross_talk_instances), \
                 raw_transcript = coalesce(?10, raw_transcript), hallucination_reason = coalesce(?11, hallucination_reason), \
                 hallucination_score = coalesce(?12, hallucination_score), desired_language = coalesce(?13, desired_language), \
                 detected_language = coalesce(?14, detected_language), \
                 detected_language_confidence = coalesce(?15, detected_language_confidence), \
                 runpod_request_count = coalesce(?16, runpod_request_count), \
                 runpod_job_status_link = CASE WHEN ?17 THEN ?18 ELSE runpod_job_status_link END, \
                 updated_at = ?5 WHERE id = ?1",
                params![
                    id,
                    patch.path,
                    patch.transcript,
                    patch.error,
                    now(),
                    patch.diarization.map(|d| d.to_string()),
                    patch.noise_ratio,
                    patch.silence_ratio,
                    patch.cross_talk_instances.map(|c| c.round() as i64),
                    patch.raw_transcript,
                    patch.hallucination_reason,
                    patch.hallucination_score,
                    patch.desired_language,
                    patch.detected_language,
                    patch.detected_language_confidence,
                    patch.runpod_request_count,
                    set_link,
                    link
                ],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn delete_chunk(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.call("conversation_chunk", move |conn| conn.execute("DELETE FROM conversation_chunk WHERE id = ?1", [id]).map(|n| n > 0)).await
    }

    async fn runpod_pending_chunks(&self) -> StoreResult<Vec<(String, String)>> {
        self.call("conversation_chunk", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, runpod_job_status_link FROM conversation_chunk WHERE runpod_job_status_link IS NOT NULL ORDER BY id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        })
        .await
    }

    async fn list_conversations(&self, project_id: &str) -> StoreResult<Vec<Conversation>> {
        let project_id = project_id.to_string();
        self.call("conversation", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversation WHERE project_id = ?1 ORDER BY created_at DESC, id"
            ))?;
            let mut conversations: Vec<Conversation> =
                stmt.query_map([&project_id], conversation_from_row)?.collect::<rusqlite::Result<_>>()?;
            for c in &mut conversations {
                load_tag_ids(conn, c)?;
            }
            Ok(conversations)
        })
        .await
    }

    async fn update_conversation(&self, id: &str, patch: ConversationPatch) -> StoreResult<()> {
        let id = id.to_string();
        self.call("conversation", move |conn| {
            conn.execute(
                "UPDATE conversation SET merged_audio_path = coalesce(?2, merged_audio_path), duration = coalesce(?3, duration), \
                 summary = coalesce(?4, summary), is_finished = coalesce(?5, is_finished), \
                 is_all_chunks_transcribed = coalesce(?6, is_all_chunks_transcribed), \
                 is_audio_processing_finished = coalesce(?7, is_audio_processing_finished), updated_at = ?8 WHERE id = ?1",
                params![
                    id,
                    patch.merged_audio_path,
                    patch.duration,
                    patch.summary,
                    patch.is_finished,
                    patch.is_all_chunks_transcribed,
                    patch.is_audio_processing_finished,
                    now()
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn delete_conversation(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.call("conversation", move |conn| conn.execute("DELETE FROM conversation WHERE id = ?1", [id]).map(|n| n > 0)).await
    }

    async fn chunk_counts(&self, conversation_id: &str) -> StoreResult<ChunkCounts> {
        let id = conversation_id.to_string();
        self.call("conversation_chunk", move |conn| {
            conn.query_row(
                "SELECT count(*), count(error), coalesce(sum(error IS NULL AND transcript IS NOT NULL), 0) \
                 FROM conversation_chunk WHERE conversation_id = ?1",
                [id],
                |r| {
                    Ok(ChunkCounts { total: r.get::<_, i64>(0)? as u64, error: r.get::<_, i64>(1)? as u64, ok: r.get::<_, i64>(2)? as u64 })
                },
            )
        })
        .await
    }

    async fn create_conversation_link(&self, source_id: &str, target_id: &str, link_type: &str) -> StoreResult<()> {
        let (source_id, target_id, link_type) = (source_id.to_string(), target_id.to_string(), link_type.to_string());
        self.call("conversation_link", move |conn| {
            conn.execute(
                "INSERT INTO conversation_link (source_conversation_id, target_conversation_id, link_type, date_created) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![source_id, target_id, link_type, now()],
            )
            .map(drop)
        })
        .await
    }

    async fn list_replies(&self, conversation_id: &str, limit: u32) -> StoreResult<Vec<Reply>> {
        let id = conversation_id.to_string();
        self.call("conversation_reply", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, conversation_id, content_text, type, date_created FROM conversation_reply \
                 WHERE conversation_id = ?1 ORDER BY date_created, rowid LIMIT ?2",
            )?;
            stmt.query_map(params![id, limit], reply_from_row)?.collect()
        })
        .await
    }

    async fn create_reply(&self, conversation_id: &str, content_text: &str, kind: &str) -> StoreResult<Reply> {
        let (cid, text, kind) = (conversation_id.to_string(), content_text.to_string(), kind.to_string());
        self.call("conversation_reply", move |conn| {
            let id = uuid::Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO conversation_reply (id, conversation_id, reply, content_text, type, date_created) \
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5)",
                params![id, cid, text, kind, now()],
            )?;
            let sql = "SELECT id, conversation_id, content_text, type, date_created FROM conversation_reply WHERE id = ?1";
            conn.query_row(sql, [id], reply_from_row)
        })
        .await
    }

    async fn segments_for_conversations(&self, conversation_ids: &[String]) -> StoreResult<Vec<i64>> {
        let ids = serde_json::to_string(conversation_ids).unwrap_or_default();
        self.call("conversation_segment", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM conversation_segment WHERE conversation_id IN (SELECT value FROM json_each(?1)) \
                 UNION SELECT j.conversation_segment_id FROM conversation_segment_conversation_chunk j \
                 JOIN conversation_chunk c ON c.id = j.conversation_chunk_id \
                 WHERE c.conversation_id IN (SELECT value FROM json_each(?1)) AND j.conversation_segment_id IS NOT NULL ORDER BY 1",
            )?;
            stmt.query_map([ids], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn segments_for_projects(&self, project_ids: &[String]) -> StoreResult<Vec<i64>> {
        let ids = serde_json::to_string(project_ids).unwrap_or_default();
        self.call("conversation_segment", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.id FROM conversation_segment s JOIN conversation c ON c.id = s.conversation_id \
                 WHERE c.project_id IN (SELECT value FROM json_each(?1)) \
                 UNION SELECT j.conversation_segment_id FROM conversation_segment_conversation_chunk j \
                 JOIN conversation_chunk ch ON ch.id = j.conversation_chunk_id JOIN conversation c ON c.id = ch.conversation_id \
                 WHERE c.project_id IN (SELECT value FROM json_each(?1)) AND j.conversation_segment_id IS NOT NULL ORDER BY 1",
            )?;
            stmt.query_map([ids], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn conversation_segments(&self, conversation_id: &str) -> StoreResult<Vec<Segment>> {
        let id = conversation_id.to_string();
        self.call("conversation_segment", move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{SEGMENT_SELECT} WHERE conversation_id = ?1 ORDER BY id"))?;
            stmt.query_map([id], segment_from_row)?.collect()
        })
        .await
    }

    async fn get_segment(&self, id: i64) -> StoreResult<Option<Segment>> {
        self.call("conversation_segment", move |conn| {
            conn.query_row(&format!("{SEGMENT_SELECT} WHERE id = ?1"), [id], segment_from_row).optional()
        })
        .await
    }

    async fn create_segment(&self, segment: NewSegment) -> StoreResult<Segment> {
        self.call("conversation_segment", move |conn| {
            let id: i64 = conn.query_row(
                "INSERT INTO conversation_segment (conversation_id, transcript, contextual_transcript, lightrag_flag) \
                 VALUES (?1, ?2, ?3, 0) RETURNING id",
                params![segment.conversation_id, segment.transcript, segment.contextual_transcript],
                |r| r.get(0),
            )?;
            conn.query_row(&format!("{SEGMENT_SELECT} WHERE id = ?1"), [id], segment_from_row)
        })
        .await
    }

    async fn update_segment(&self, id: i64, patch: SegmentPatch) -> StoreResult<bool> {
        self.call("conversation_segment", move |conn| {
            conn.execute(
                "UPDATE conversation_segment SET transcript = coalesce(?2, transcript), \
                 contextual_transcript = coalesce(?3, contextual_transcript), lightrag_flag = coalesce(?4, lightrag_flag) WHERE id = ?1",
                params![id, patch.transcript, patch.contextual_transcript, patch.lightrag_flag],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn delete_segment(&self, id: i64) -> StoreResult<()> {
        self.call("conversation_segment", move |conn| conn.execute("DELETE FROM conversation_segment WHERE id = ?1", [id]).map(drop)).await
    }

    async fn recent_chunk_metrics(&self, scope: MetricsScope, since: DateTime<Utc>) -> StoreResult<Vec<ChunkMetrics>> {
        self.call("conversation_chunk", move |conn| {
            let (column, ids) = match scope {
                MetricsScope::Projects(ids) => ("v.project_id", ids),
                MetricsScope::Conversations(ids) => ("ch.conversation_id", ids),
            };
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders = vec!["?"; ids.len()].join(", ");
            let sql = format!(
                "SELECT ch.conversation_id, v.project_id, ch.timestamp, ch.noise_ratio, ch.cross_talk_instances, ch.silence_ratio \
                 FROM conversation_chunk ch JOIN conversation v ON v.id = ch.conversation_id \
                 WHERE ch.timestamp >= ? AND {column} IN ({placeholders}) \
                 ORDER BY ch.timestamp DESC, ch.id"
            );
            let mut values: Vec<String> = vec![ts(&since)];
            values.extend(ids);
            let mut stmt = conn.prepare(&sql)?;
            stmt.query_map(rusqlite::params_from_iter(values), |r| {
                let timestamp: String = r.get(2)?;
                Ok(ChunkMetrics {
                    conversation_id: r.get(0)?,
                    project_id: r.get(1)?,
                    timestamp: parse_ts(Some(timestamp)).unwrap_or_default(),
                    noise_ratio: r.get(3)?,
                    cross_talk_instances: r.get(4)?,
                    silence_ratio: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn idle_unfinished_conversations(&self, idle_since: DateTime<Utc>) -> StoreResult<Vec<String>> {
        self.call("conversation", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT v.id FROM conversation v WHERE coalesce(v.is_finished, 0) = 0 AND v.created_at < ?1 \
                 AND NOT EXISTS (SELECT 1 FROM conversation_chunk c WHERE c.conversation_id = v.id AND c.timestamp >= ?1) \
                 ORDER BY v.created_at, v.id",
            )?;
            stmt.query_map([ts(&idle_since)], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn unfinalized_conversations(&self, since: DateTime<Utc>) -> StoreResult<Vec<String>> {
        self.call("conversation", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM conversation WHERE is_finished = 1 AND coalesce(is_all_chunks_transcribed, 0) = 0 \
                 AND created_at >= ?1 ORDER BY created_at, id",
            )?;
            stmt.query_map([ts(&since)], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn rag_backlog_conversations(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.call("conversation", move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.id FROM conversation c JOIN project p ON p.id = c.project_id \
                 WHERE p.is_enhanced_audio_processing_enabled = 1 AND c.is_all_chunks_transcribed = 1 \
                 AND coalesce(c.is_audio_processing_finished, 0) = 0 ORDER BY c.created_at, c.id LIMIT ?1",
            )?;
            stmt.query_map([limit], |r| r.get(0))?.collect()
        })
        .await
    }

    async fn create_processing_status(&self, st: NewProcessingStatus) -> StoreResult<i64> {
        self.call("processing_status", move |conn| {
            conn.execute(
                "INSERT INTO processing_status (timestamp, event, message, duration_ms, parent, conversation_id, conversation_chunk_id, \
                 project_id, project_analysis_run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    now(),
                    st.event,
                    st.message,
                    st.duration_ms,
                    st.parent,
                    st.conversation_id,
                    st.conversation_chunk_id,
                    st.project_id,
                    st.project_analysis_run_id
                ],
            )?;
            Ok(conn.last_insert_rowid())
        })
        .await
    }

    async fn latest_analysis_run(&self, project_id: &str) -> StoreResult<Option<String>> {
        let id = project_id.to_string();
        self.call("project_analysis_run", move |conn| {
            conn.query_row("SELECT id FROM project_analysis_run WHERE project_id = ?1 ORDER BY created_at DESC, id LIMIT 1", [id], |r| {
                r.get(0)
            })
            .optional()
        })
        .await
    }

    async fn create_analysis_run(&self, id: &str, project_id: &str) -> StoreResult<()> {
        let (run, project) = (id.to_string(), project_id.to_string());
        let created = self
            .call("project_analysis_run", move |conn| {
                let now = now();
                match conn.execute(
                    "INSERT INTO project_analysis_run (id, project_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                    params![run, project, now],
                ) {
                    Ok(_) => Ok(true),
                    Err(err) if is_unique_violation(&err) => Ok(false),
                    Err(err) => Err(err),
                }
            })
            .await?;
        if created { Ok(()) } else { Err(StoreError::AlreadyExists { collection: "project_analysis_run", id: id.to_string() }) }
    }

    async fn analysis_run_project(&self, run_id: &str) -> StoreResult<Option<String>> {
        let id = run_id.to_string();
        self.call("project_analysis_run", move |conn| {
            conn.query_row("SELECT project_id FROM project_analysis_run WHERE id = ?1", [id], |r| r.get::<_, Option<String>>(0))
                .optional()
                .map(Option::flatten)
        })
        .await
    }

    async fn analysis_run_has_view(&self, run_id: &str, user_input: &str) -> StoreResult<bool> {
        let (run, input) = (run_id.to_string(), user_input.to_string());
        self.call("view", move |conn| {
            conn.query_row("SELECT EXISTS (SELECT 1 FROM view WHERE project_analysis_run_id = ?1 AND user_input = ?2)", [run, input], |r| {
                r.get(0)
            })
        })
        .await
    }

    async fn create_report(&self, report: NewReport) -> StoreResult<Report> {
        self.call("project_report", move |conn| {
            conn.execute(
                "INSERT INTO project_report (status, content, project_id, language, date_created) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![report.status, report.content, report.project_id, report.language, now()],
            )?;
            let id = conn.last_insert_rowid();
            conn.query_row(
                "SELECT id, content, project_id, language, status, show_portal_link, date_created FROM project_report WHERE id = ?1",
                [id],
                |r| {
                    let created: String = r.get(6)?;
                    Ok(Report {
                        id: r.get(0)?,
                        content: r.get(1)?,
                        project_id: r.get(2)?,
                        language: r.get(3)?,
                        status: r.get(4)?,
                        show_portal_link: r.get(5)?,
                        date_created: parse_ts(Some(created)).unwrap_or_default(),
                    })
                },
            )
        })
        .await
    }

    async fn find_notification_participant(&self, email: &str, project_id: &str) -> StoreResult<Option<NotificationParticipant>> {
        let (email, project_id) = (email.to_string(), project_id.to_string());
        self.call("project_report_notification_participants", move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {PARTICIPANT_COLUMNS} FROM project_report_notification_participants \
                     WHERE email = ?1 AND project_id = ?2 ORDER BY id LIMIT 1"
                ),
                params![email, project_id],
                participant_from_row,
            )
            .optional()
        })
        .await
    }

    async fn create_notification_participant(&self, row: NewNotificationParticipant) -> StoreResult<NotificationParticipant> {
        self.call("project_report_notification_participants", move |conn| {
            let id = uuid::Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO project_report_notification_participants \
                 (id, email, project_id, conversation_id, email_opt_in, email_opt_out_token, date_submitted) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, row.email, row.project_id, row.conversation_id, row.email_opt_in, uuid::Uuid::new_v4().to_string(), now()],
            )?;
            conn.query_row(
                &format!("SELECT {PARTICIPANT_COLUMNS} FROM project_report_notification_participants WHERE id = ?1"),
                [&id],
                participant_from_row,
            )
        })
        .await
    }

    async fn delete_notification_participant(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.call("project_report_notification_participants", move |conn| {
            conn.execute("DELETE FROM project_report_notification_participants WHERE id = ?1", [id]).map(drop)
        })
        .await
    }

    async fn notification_participants_by_token(&self, project_id: &str, token: &str) -> StoreResult<Vec<NotificationParticipant>> {
        let (project_id, token) = (project_id.to_string(), token.to_string());
        self.call("project_report_notification_participants", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {PARTICIPANT_COLUMNS} FROM project_report_notification_participants \
                 WHERE project_id = ?1 AND email_opt_out_token = ?2 ORDER BY id"
            ))?;
            stmt.query_map(params![project_id, token], participant_from_row)?.collect()
        })
        .await
    }

    async fn set_notification_opt_in(&self, id: &str, email_opt_in: bool) -> StoreResult<()> {
        let id = id.to_string();
        self.call("project_report_notification_participants", move |conn| {
            conn.execute(
                "UPDATE project_report_notification_participants SET email_opt_in = ?2, date_updated = ?3 WHERE id = ?1",
                params![id, email_opt_in, now()],
            )
            .map(drop)
        })
        .await
    }

    async fn get_chat(&self, id: &str) -> StoreResult<Option<Chat>> {
        let id = id.to_string();
        self.call("project_chat", move |conn| load_chat(conn, &id)).await
    }

    async fn create_chat(&self, chat: NewChat) -> StoreResult<Chat> {
        let id = chat.id.clone();
        let created = self
            .call("project_chat", move |conn| {
                let inserted = conn.execute(
                    "INSERT INTO project_chat (id, project_id, name, auto_select, date_created) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![chat.id, chat.project_id, chat.name, chat.auto_select, now()],
                );
                match inserted {
                    Ok(_) => load_chat(conn, &chat.id),
                    Err(err) if is_unique_violation(&err) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await?;
        created.ok_or(StoreError::AlreadyExists { collection: "project_chat", id })
    }

    async fn update_chat(&self, id: &str, patch: ChatPatch) -> StoreResult<bool> {
        let id = id.to_string();
        self.call("project_chat", move |conn| {
            conn.execute(
                "UPDATE project_chat SET name = COALESCE(?2, name), auto_select = COALESCE(?3, auto_select), date_updated = ?4 \
                 WHERE id = ?1",
                params![id, patch.name, patch.auto_select, now()],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn add_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<()> {
        let (chat_id, conversation_id) = (chat_id.to_string(), conversation_id.to_string());
        self.call("project_chat_conversation", move |conn| {
            conn.execute(
                "INSERT INTO project_chat_conversation (project_chat_id, conversation_id) VALUES (?1, ?2)",
                params![chat_id, conversation_id],
            )
            .map(drop)
        })
        .await
    }

    async fn remove_chat_conversation(&self, chat_id: &str, conversation_id: &str) -> StoreResult<bool> {
        let (chat_id, conversation_id) = (chat_id.to_string(), conversation_id.to_string());
        self.call("project_chat_conversation", move |conn| {
            conn.execute(
                "DELETE FROM project_chat_conversation WHERE project_chat_id = ?1 AND conversation_id = ?2",
                params![chat_id, conversation_id],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn list_chat_messages(&self, chat_id: &str) -> StoreResult<Vec<ChatMessage>> {
        let chat_id = chat_id.to_string();
        self.call("project_chat_message", move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {CHAT_MESSAGE_COLUMNS} FROM project_chat_message WHERE project_chat_id = ?1 ORDER BY date_created, rowid"
            ))?;
            let messages = stmt.query_map([chat_id], chat_message_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            messages.into_iter().map(|m| with_links(conn, m)).collect()
        })
        .await
    }

    async fn create_chat_message(&self, m: NewChatMessage) -> StoreResult<ChatMessage> {
        let id = m.id.clone();
        let created = self
            .call("project_chat_message", move |conn| {
                let tx = conn.transaction()?;
                let inserted = tx.execute(
                    "INSERT INTO project_chat_message (id, project_chat_id, message_from, text, date_created) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![m.id, m.chat_id, m.message_from, m.text, now()],
                );
                match inserted {
                    Ok(_) => {}
                    Err(err) if is_unique_violation(&err) => return Ok(None),
                    Err(err) => return Err(err),
                }
                for (junction, ids) in [
                    ("project_chat_message_conversation", &m.used_conversation_ids),
                    ("project_chat_message_conversation_1", &m.added_conversation_ids),
                ] {
                    for cid in ids {
                        tx.execute(
                            &format!("INSERT INTO {junction} (project_chat_message_id, conversation_id) VALUES (?1, ?2)"),
                            params![m.id, cid],
                        )?;
                    }
                }
                let sql = format!("SELECT {CHAT_MESSAGE_COLUMNS} FROM project_chat_message WHERE id = ?1");
                let message = tx.query_row(&sql, [&m.id], chat_message_from_row)?;
                let message = with_links(&tx, message)?;
                tx.commit()?;
                Ok(Some(message))
            })
            .await?;
        created.ok_or(StoreError::AlreadyExists { collection: "project_chat_message", id })
    }

    async fn update_chat_message(&self, id: &str, patch: ChatMessagePatch) -> StoreResult<bool> {
        let id = id.to_string();
        self.call("project_chat_message", move |conn| {
            conn.execute(
                "UPDATE project_chat_message SET tokens_count = COALESCE(?2, tokens_count), \
                 template_key = COALESCE(?3, template_key), date_updated = ?4 WHERE id = ?1",
                params![id, patch.tokens_count, patch.template_key, now()],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn delete_chat_message(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.call("project_chat_message", move |conn| conn.execute("DELETE FROM project_chat_message WHERE id = ?1", [id]).map(|n| n > 0))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_stay_bounded_and_a_panic_frees_its_slot() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("t.sqlite3"), OffloadPool::new(64)).await.unwrap();
        let peak = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..40)
            .map(|_| {
                let (store, peak, inner) = (store.clone(), peak.clone(), store.inner.clone());
                tokio::spawn(async move {
                    store
                        .call("t", move |conn| {
                            peak.fetch_max(inner.slots.lock().unwrap().open, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), 1);
        }
        let peak = peak.load(Ordering::Relaxed);
        assert!((2..=MAX_CONNECTIONS).contains(&peak), "{peak} connections open at once");

        // Panicking calls close their connection; none of them keeps a slot.
        for _ in 0..3 {
            let err = store.call("t", |_| -> rusqlite::Result<()> { panic!("boom") }).await.unwrap_err();
            assert!(err.to_string().contains("boom"), "{err}");
        }
        {
            let slots = store.inner.slots.lock().unwrap();
            assert_eq!(slots.open, slots.idle.len(), "every open connection is idle again, none counted for a panicked call");
        }
        assert_eq!(store.call("t", |c| c.query_row("SELECT 2", [], |r| r.get::<_, i64>(0))).await.unwrap(), 2);
    }
}
