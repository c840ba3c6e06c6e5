//! The `Store` contract: the same assertions for every backend, SQLite and Directus (with ECHO's
//! schema, the reference). The Directus case needs a running Directus: `scripts/test.sh` starts
//! one with `scripts/directus.sh` and exports `DIRECTUS_TEST_URL` / `DIRECTUS_TEST_TOKEN`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::offload::OffloadPool;
use common::store::*;

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A backend under test and a user that may own projects (`directus_user_id` is a relation to
/// `directus_users` in Directus, so it must name a real user there).
struct Backend<'a> {
    store: &'a dyn Store,
    owner: String,
    /// Writes rows the Store never writes itself (segments, the topic modeler's views).
    seed: Seed,
}

enum Seed {
    Sqlite(std::path::PathBuf),
    Directus { url: String, token: String },
}

impl Seed {
    /// Inserts one row; its id.
    async fn insert(&self, collection: &str, row: serde_json::Value) -> serde_json::Value {
        match self {
            Seed::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).unwrap();
                let object = row.as_object().unwrap();
                let columns: Vec<&str> = object.keys().map(String::as_str).collect();
                let sql = format!(
                    "INSERT INTO {collection} ({}) VALUES ({}) RETURNING id",
                    columns.join(", "),
                    vec!["?"; columns.len()].join(", ")
                );
                let values: Vec<String> = object.values().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect();
                db.query_row(&sql, rusqlite::params_from_iter(values), |r| r.get::<_, rusqlite::types::Value>(0))
                    .map(|id| match id {
                        rusqlite::types::Value::Integer(i) => serde_json::json!(i),
                        rusqlite::types::Value::Text(t) => serde_json::json!(t),
                        other => panic!("unexpected id {other:?}"),
                    })
                    .unwrap()
            }
            Seed::Directus { url, token } => {
                let created = crate::json_of(
                    reqwest::Client::new().post(format!("{url}/items/{collection}?fields=id")).bearer_auth(token).json(&row),
                )
                .await;
                created["data"]["id"].clone()
            }
        }
    }
}

impl Seed {
    /// How many rows of `collection` have `field` = `value`.
    async fn count(&self, collection: &str, field: &str, value: &str) -> usize {
        match self {
            Seed::Sqlite(path) => {
                let db = rusqlite::Connection::open(path).unwrap();
                let sql = format!("SELECT COUNT(*) FROM {collection} WHERE {field} = ?1");
                db.query_row(&sql, [value], |r| r.get::<_, i64>(0)).unwrap() as usize
            }
            Seed::Directus { url, token } => {
                let answer = crate::json_of(
                    reqwest::Client::new()
                        .get(format!("{url}/items/{collection}"))
                        .query(&[("aggregate[count]", "*"), (&format!("filter[{field}][_eq]"), value)])
                        .bearer_auth(token),
                )
                .await;
                let count = &answer["data"][0]["count"];
                count.as_u64().or_else(|| count.as_str().and_then(|c| c.parse().ok())).unwrap() as usize
            }
        }
    }
}

async fn project(b: &Backend<'_>, open: bool) -> Project {
    b.store
        .create_project(NewProject {
            id: uuid(),
            directus_user_id: Some(b.owner.clone()),
            name: Some("P".into()),
            is_conversation_allowed: open,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn projects_and_tags(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    assert_eq!(p.name.as_deref(), Some("P"));
    assert_eq!(p.directus_user_id.as_deref(), Some(b.owner.as_str()));
    assert!(p.is_conversation_allowed);
    assert!(p.tags.is_empty());
    assert_eq!(p.language, None, "no default language (read as \"en\" by the API)");
    assert_eq!(p.is_get_reply_enabled, Some(false), "collection default");
    assert_eq!(p.is_project_notification_subscription_allowed, Some(false), "collection default");
    assert_eq!(p.is_enhanced_audio_processing_enabled, Some(false), "collection default");
    assert_eq!(p.default_conversation_ask_for_participant_name, Some(true), "collection default");
    assert_eq!(p.default_conversation_tutorial_slug.as_deref(), Some("none"), "collection default");
    assert_eq!(p.get_reply_mode.as_deref(), Some("summarize"), "collection default");
    assert_eq!(p.image_generation_model.as_deref(), Some("PLACEHOLDER"), "collection default");
    assert!(p.created_at.is_some() && p.updated_at.is_some(), "date-created, and updated_at's CURRENT_TIMESTAMP default");
    let closed = project(b, false).await;
    assert!(!store.get_project(&closed.id).await.unwrap().unwrap().is_conversation_allowed);
    let late = store.create_project_tag(&uuid(), &p.id, Some("second"), Some(2)).await.unwrap();
    let early = store.create_project_tag(&uuid(), &p.id, Some("first"), Some(1)).await.unwrap();
    let untitled = store.create_project_tag(&uuid(), &p.id, None, None).await.unwrap();
    let loaded = store.get_project(&p.id).await.unwrap().unwrap();
    let ids: Vec<&str> = loaded.tags.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec![early.id.as_str(), late.id.as_str(), untitled.id.as_str()], "by sort, unsorted last");
    assert_eq!(store.get_project(&uuid()).await.unwrap(), None);
}

async fn conversations(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let tag = store.create_project_tag(&uuid(), &p.id, Some("t"), None).await.unwrap();
    let id = uuid();
    let new = NewConversation {
        id: id.clone(),
        project_id: p.id.clone(),
        participant_name: Some("Ada".into()),
        participant_email: Some("ada@example.org".into()),
        participant_user_agent: Some("ua".into()),
        source: Some("PORTAL_AUDIO".into()),
        tag_ids: vec![tag.id.clone()],
        ..Default::default()
    };
    let c = store.create_conversation(new.clone()).await.unwrap();
    assert_eq!((c.id.as_str(), c.project_id.as_str()), (id.as_str(), p.id.as_str()));
    assert_eq!(c.tag_ids, vec![tag.id.clone()]);
    assert_eq!(c.participant_name.as_deref(), Some("Ada"));
    assert_eq!(c.source.as_deref(), Some("PORTAL_AUDIO"));
    assert_eq!(c.is_all_chunks_transcribed, None, "no default");
    assert_eq!((c.is_finished, c.is_audio_processing_finished), (Some(false), Some(false)), "collection defaults");
    assert!(c.created_at.is_some());
    assert_eq!(store.get_conversation(&id).await.unwrap().unwrap().tag_ids, vec![tag.id.clone()], "links read back");
    // Two tags, and none.
    let other = store.create_project_tag(&uuid(), &p.id, Some("u"), None).await.unwrap();
    let two =
        NewConversation { id: uuid(), project_id: p.id.clone(), tag_ids: vec![tag.id.clone(), other.id.clone()], ..Default::default() };
    let mut linked = store.create_conversation(two).await.unwrap().tag_ids;
    linked.sort();
    let mut expected = vec![tag.id.clone(), other.id.clone()];
    expected.sort();
    assert_eq!(linked, expected);
    let bare = store.create_conversation(NewConversation { id: uuid(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
    assert!(bare.tag_ids.is_empty());
    assert!(matches!(store.create_conversation(new).await, Err(StoreError::AlreadyExists { .. })));
    store.set_all_chunks_transcribed(&id, true).await.unwrap();
    assert_eq!(store.get_conversation(&id).await.unwrap().unwrap().is_all_chunks_transcribed, Some(true));
    store.set_all_chunks_transcribed(&id, false).await.unwrap();
    assert_eq!(store.get_conversation(&id).await.unwrap().unwrap().is_all_chunks_transcribed, Some(false));
    assert_eq!(store.get_conversation(&uuid()).await.unwrap(), None);
}

async fn chunks(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let cid = uuid();
    store.create_conversation(NewConversation { id: cid.clone(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
    let at = |s| Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, s).unwrap();
    let mk = |id: &str, second| NewChunk {
        created_at: None,
        id: id.into(),
        conversation_id: cid.clone(),
        timestamp: at(second),
        path: Some(format!("http://s3/echo/conversation/{cid}/chunks/{id}-a.webm")),
        source: Some("PORTAL_AUDIO".into()),
        transcript: None,
    };
    let (a, b, c) = (uuid(), uuid(), uuid());
    store.create_chunk(mk(&b, 30)).await.unwrap();
    let first = store.create_chunk(mk(&a, 0)).await.unwrap();
    assert_eq!(first.timestamp, at(0));
    assert_eq!(first.error, None);
    store.create_chunk(NewChunk { transcript: Some("typed".into()), path: None, ..mk(&c, 59) }).await.unwrap();
    assert!(matches!(store.create_chunk(mk(&a, 5)).await, Err(StoreError::AlreadyExists { .. })), "create-if-absent");
    assert_eq!(store.get_chunk(&a).await.unwrap().unwrap().timestamp, at(0), "the first write stands");
    // A split piece carries its own created_at (the original's + its offset, processing.md §4.2).
    let piece = uuid();
    let created = store.create_chunk(NewChunk { created_at: Some(at(42)), ..mk(&piece, 42) }).await.unwrap();
    assert_eq!(created.created_at, Some(at(42)));
    assert_eq!(store.get_chunk(&piece).await.unwrap().unwrap().created_at, Some(at(42)));
    assert!(store.delete_chunk(&piece).await.unwrap());

    let oldest: Vec<String> = store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(oldest, vec![a.clone(), b.clone(), c.clone()]);
    let newest: Vec<String> = store.list_chunks(&cid, ChunkOrder::NewestFirst).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(newest, vec![c.clone(), b.clone(), a.clone()]);

    assert!(store.delete_chunk(&b).await.unwrap());
    assert!(!store.delete_chunk(&b).await.unwrap(), "already gone is fine");
    assert_eq!(store.get_chunk(&b).await.unwrap(), None);
    assert_eq!(store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap().len(), 2);

    // A chunk of a conversation that does not exist is refused.
    let orphan = NewChunk { conversation_id: uuid(), ..mk(&uuid(), 1) };
    assert!(matches!(store.create_chunk(orphan).await, Err(StoreError::Invalid { collection: "conversation_chunk", .. })));
}

/// The RunPod job fields: set, kept by unrelated patches, cleared; the poller's list (all pages)
/// names exactly the chunks with a link. Other runs may leave chunks of their own in the list.
async fn runpod_jobs(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let cid = uuid();
    store.create_conversation(NewConversation { id: cid.clone(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
    let mk = |id: &str| NewChunk {
        created_at: None,
        id: id.into(),
        conversation_id: cid.clone(),
        timestamp: Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap(),
        path: None,
        source: Some("PORTAL_AUDIO".into()),
        transcript: None,
    };
    let ids: Vec<String> = (0..4).map(|_| uuid()).collect();
    for id in &ids {
        let created = store.create_chunk(mk(id)).await.unwrap();
        assert_eq!((created.runpod_job_status_link, created.runpod_request_count), (None, 0));
    }
    let link = |id: &str| format!("https://api.runpod.ai/v2/whisper/status/job-{id}");
    // Three with a job (more than one Directus page of 2), one without.
    for id in &ids[..3] {
        let patch = ChunkPatch { runpod_job_status_link: Some(Some(link(id))), runpod_request_count: Some(1), ..Default::default() };
        assert!(store.update_chunk(id, patch).await.unwrap());
    }
    let got = store.get_chunk(&ids[0]).await.unwrap().unwrap();
    assert_eq!((got.runpod_job_status_link.as_deref(), got.runpod_request_count), (Some(link(&ids[0]).as_str()), 1));
    let pending = store.runpod_pending_chunks().await.unwrap();
    for id in &ids[..3] {
        assert!(pending.contains(&(id.clone(), link(id))), "{id} is pending: {pending:?}");
    }
    assert!(!pending.iter().any(|(id, _)| id == &ids[3]), "no link, not pending");
    let mut sorted = pending.clone();
    sorted.sort();
    assert_eq!(pending, sorted, "by id");

    // A patch without the link leaves it; Some(None) clears it, with the completion fields.
    store.update_chunk(&ids[0], ChunkPatch { error: Some("x".into()), ..Default::default() }).await.unwrap();
    assert_eq!(store.get_chunk(&ids[0]).await.unwrap().unwrap().runpod_job_status_link, Some(link(&ids[0])));
    let done = ChunkPatch {
        transcript: Some("Hallo".into()),
        raw_transcript: Some("Hello".into()),
        hallucination_reason: Some("none".into()),
        hallucination_score: Some(0.25),
        desired_language: Some("nl".into()),
        detected_language: Some("en".into()),
        detected_language_confidence: Some(0.9),
        runpod_job_status_link: Some(None),
        ..Default::default()
    };
    for id in &ids[..3] {
        assert!(store.update_chunk(id, done.clone()).await.unwrap());
    }
    let got = store.get_chunk(&ids[1]).await.unwrap().unwrap();
    assert_eq!((got.transcript.as_deref(), got.runpod_job_status_link, got.runpod_request_count), (Some("Hallo"), None, 1));
    let pending = store.runpod_pending_chunks().await.unwrap();
    assert!(!pending.iter().any(|(id, _)| ids.contains(id)), "cleared links are not pending: {pending:?}");
}

async fn notification_participants(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let row = store
        .create_notification_participant(NewNotificationParticipant {
            email: "ada@example.org".into(),
            project_id: p.id.clone(),
            conversation_id: None,
            email_opt_in: true,
        })
        .await
        .unwrap();
    let token = row.email_opt_out_token.clone().expect("a token is generated");
    assert!(uuid::Uuid::parse_str(&row.id).is_ok() && uuid::Uuid::parse_str(&token).is_ok(), "id and token are generated uuids");
    assert_eq!((row.email.as_deref(), row.project_id.as_deref()), (Some("ada@example.org"), Some(p.id.as_str())));
    assert_eq!(row.email_opt_in, Some(true));
    assert_eq!(store.find_notification_participant("ada@example.org", &p.id).await.unwrap(), Some(row.clone()));
    assert_eq!(store.find_notification_participant("ada@example.org", &uuid()).await.unwrap(), None);
    assert_eq!(store.notification_participants_by_token(&p.id, &token).await.unwrap(), vec![row.clone()]);
    store.set_notification_opt_in(&row.id, false).await.unwrap();
    assert_eq!(store.find_notification_participant("ada@example.org", &p.id).await.unwrap().unwrap().email_opt_in, Some(false));
    store.delete_notification_participant(&row.id).await.unwrap();
    assert!(store.notification_participants_by_token(&p.id, &token).await.unwrap().is_empty());
}

async fn dashboard_operations(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let (older, newer) = (uuid(), uuid());
    for id in [&older, &newer] {
        store.create_conversation(NewConversation { id: id.clone(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let listed: Vec<String> = store.list_conversations(&p.id).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![newer.clone(), older.clone()], "newest first");

    store
        .update_conversation(
            &older,
            ConversationPatch { merged_audio_path: Some("http://s3/echo/m.mp3".into()), duration: Some(12.5), ..Default::default() },
        )
        .await
        .unwrap();
    store.update_conversation(&older, ConversationPatch { summary: Some("short".into()), ..Default::default() }).await.unwrap();
    let c = store.get_conversation(&older).await.unwrap().unwrap();
    assert_eq!(
        (c.merged_audio_path.as_deref(), c.duration, c.summary.as_deref()),
        (Some("http://s3/echo/m.mp3"), Some(12.5), Some("short"))
    );

    let at = Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap();
    let chunk = |transcript: Option<&str>| NewChunk {
        created_at: None,
        id: uuid(),
        conversation_id: older.clone(),
        timestamp: at,
        path: None,
        source: None,
        transcript: transcript.map(str::to_string),
    };
    store.create_chunk(chunk(Some("a"))).await.unwrap();
    store.create_chunk(chunk(Some("b"))).await.unwrap();
    store.create_chunk(chunk(None)).await.unwrap();
    assert_eq!(store.chunk_counts(&older).await.unwrap(), ChunkCounts { total: 3, error: 0, ok: 2 });
    assert_eq!(store.chunk_counts(&newer).await.unwrap(), ChunkCounts::default());

    let first = store.create_reply(&older, "first reply", "assistant_reply").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store.create_reply(&older, "second reply", "assistant_reply").await.unwrap();
    let replies = store.list_replies(&older, 1000).await.unwrap();
    assert_eq!(replies.iter().map(|r| r.content_text.as_deref().unwrap()).collect::<Vec<_>>(), vec!["first reply", "second reply"]);
    assert_eq!(replies[0], first);
    assert_eq!(store.list_replies(&older, 1).await.unwrap().len(), 1);

    store.create_conversation_link(&older, &newer, "CLONE").await.unwrap();
    assert!(store.segment_ids(&older).await.unwrap().is_empty());
    assert_eq!(store.latest_analysis_run(&p.id).await.unwrap(), None);

    let report = store
        .create_report(NewReport { content: "# Report".into(), project_id: p.id.clone(), language: "en".into(), status: "archived".into() })
        .await
        .unwrap();
    assert_eq!(
        (report.content.as_deref(), report.status.as_str(), report.project_id.as_deref()),
        (Some("# Report"), "archived", Some(p.id.as_str()))
    );

    assert!(store.delete_conversation(&older).await.unwrap());
    assert!(!store.delete_conversation(&older).await.unwrap());
    assert_eq!(store.get_conversation(&older).await.unwrap(), None);
    assert_eq!(store.chunk_counts(&older).await.unwrap().total, 0, "chunks go with their conversation");
}

/// More chunks than one page holds come back whole and in order.
async fn pagination(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let cid = uuid();
    store.create_conversation(NewConversation { id: cid.clone(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
    let base = Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap();
    let mut ids = Vec::new();
    for i in 0..7 {
        // Pairs share a timestamp, so the id decides their order.
        let id = uuid();
        let timestamp = base + chrono::Duration::seconds(i / 2);
        let chunk = NewChunk {
            created_at: None,
            id: id.clone(),
            conversation_id: cid.clone(),
            timestamp,
            path: None,
            source: None,
            transcript: Some("t".into()),
        };
        store.create_chunk(chunk).await.unwrap();
        ids.push((timestamp, id));
    }
    ids.sort();
    let oldest: Vec<String> = store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(oldest, ids.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>());
    let mut newest: Vec<String> = store.list_chunks(&cid, ChunkOrder::NewestFirst).await.unwrap().into_iter().map(|c| c.id).collect();
    newest.reverse();
    assert_eq!(newest, oldest);
}

/// The project library's reads: its analysis runs, the segments of its conversations, and the
/// views the topic modeler wrote.
async fn library(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let elsewhere = project(b, true).await;
    let run = uuid();
    store.create_analysis_run(&run, &p.id).await.unwrap();
    assert!(matches!(store.create_analysis_run(&run, &p.id).await, Err(StoreError::AlreadyExists { .. })), "the id is taken");
    assert_eq!(store.analysis_run_project(&run).await.unwrap().as_deref(), Some(p.id.as_str()));
    assert_eq!(store.analysis_run_project(&uuid()).await.unwrap(), None);
    assert_eq!(store.latest_analysis_run(&p.id).await.unwrap().as_deref(), Some(run.as_str()));

    let mut ours = Vec::new();
    for project_id in [&p.id, &p.id, &elsewhere.id] {
        let cid = uuid();
        store.create_conversation(NewConversation { id: cid.clone(), project_id: project_id.clone(), ..Default::default() }).await.unwrap();
        for _ in 0..2 {
            let id = b.seed.insert("conversation_segment", serde_json::json!({ "conversation_id": cid, "transcript": "t" })).await;
            if project_id == &p.id {
                ours.push(id.as_i64().unwrap());
            }
        }
    }
    ours.sort_unstable();
    assert_eq!(store.project_segment_ids(&p.id).await.unwrap(), ours, "all pages, this project's only");
    assert!(store.project_segment_ids(&uuid()).await.unwrap().is_empty());

    assert!(!store.analysis_run_has_view(&run, "themes?").await.unwrap());
    b.seed.insert("view", serde_json::json!({ "id": uuid(), "project_analysis_run_id": run, "user_input": "themes?" })).await;
    assert!(store.analysis_run_has_view(&run, "themes?").await.unwrap());
    assert!(!store.analysis_run_has_view(&run, "other?").await.unwrap());
}

/// The dashboard chat: the chat row, its context conversations (junction order, one row per
/// add, removed exactly once) and its messages with their junction rows (ascending
/// `date_created` over every page).
async fn chats(b: &Backend<'_>) {
    let store = b.store;
    let p = project(b, true).await;
    let mut cids = Vec::new();
    for _ in 0..3 {
        let cid = uuid();
        store.create_conversation(NewConversation { id: cid.clone(), project_id: p.id.clone(), ..Default::default() }).await.unwrap();
        cids.push(cid);
    }
    let id = uuid();
    let chat = store.create_chat(NewChat { id: id.clone(), project_id: p.id.clone(), name: None, auto_select: Some(true) }).await.unwrap();
    assert_eq!((chat.name, chat.auto_select, chat.conversation_ids.len()), (None, Some(true), 0));
    let again = store.create_chat(NewChat { id: id.clone(), project_id: p.id.clone(), ..Default::default() }).await;
    assert!(matches!(again, Err(StoreError::AlreadyExists { .. })), "{again:?}");
    assert_eq!(store.get_chat(&uuid()).await.unwrap(), None);
    assert!(store.update_chat(&id, ChatPatch { name: Some("Park".into()), auto_select: Some(false) }).await.unwrap());
    assert!(!store.update_chat(&uuid(), ChatPatch { name: Some("x".into()), ..Default::default() }).await.unwrap());
    let chat = store.get_chat(&id).await.unwrap().unwrap();
    assert_eq!((chat.name.as_deref(), chat.auto_select, chat.project_id.as_str()), (Some("Park"), Some(false), p.id.as_str()));

    store.add_chat_conversation(&id, &cids[1]).await.unwrap();
    store.add_chat_conversation(&id, &cids[0]).await.unwrap();
    store.add_chat_conversation(&id, &cids[2]).await.unwrap();
    assert_eq!(store.get_chat(&id).await.unwrap().unwrap().conversation_ids, vec![cids[1].clone(), cids[0].clone(), cids[2].clone()]);
    assert_eq!(b.seed.count("project_chat_conversation", "project_chat_id", &id).await, 3, "one row per add");
    assert!(store.remove_chat_conversation(&id, &cids[1]).await.unwrap());
    assert!(!store.remove_chat_conversation(&id, &cids[1]).await.unwrap(), "removed once");
    assert_eq!(b.seed.count("project_chat_conversation", "project_chat_id", &id).await, 2);
    assert_eq!(store.get_chat(&id).await.unwrap().unwrap().conversation_ids, vec![cids[0].clone(), cids[2].clone()]);

    let message = |from: &str, text: &str, used: &[&String], added: &[&String]| NewChatMessage {
        id: uuid(),
        chat_id: id.clone(),
        message_from: from.into(),
        text: text.into(),
        used_conversation_ids: used.iter().map(|s| s.to_string()).collect(),
        added_conversation_ids: added.iter().map(|s| s.to_string()).collect(),
    };
    let sent = [
        message("user", "first", &[], &[]),
        message("dembrane", "You added 2 conversations", &[&cids[0], &cids[2]], &[&cids[0]]),
        message("assistant", "an answer", &[], &[]),
        message("user", "second", &[], &[]),
        message("user", "third", &[], &[]),
    ];
    for m in &sent {
        let created = store.create_chat_message(m.clone()).await.unwrap();
        assert_eq!((created.id.as_str(), created.used_conversation_ids.len()), (m.id.as_str(), m.used_conversation_ids.len()));
        // Distinct creation times, so `date_created` orders them.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let taken = store.create_chat_message(sent[0].clone()).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists { .. })), "{taken:?}");
    let listed = store.list_chat_messages(&id).await.unwrap();
    assert_eq!(listed.iter().map(|m| m.id.clone()).collect::<Vec<_>>(), sent.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
    assert_eq!(listed[1].message_from.as_deref(), Some("dembrane"));
    assert_eq!(listed[1].used_conversation_ids, vec![cids[0].clone(), cids[2].clone()]);
    assert_eq!(listed[1].added_conversation_ids, vec![cids[0].clone()]);
    assert!(listed[0].used_conversation_ids.is_empty() && listed[0].tokens_count.is_none() && listed[0].date_created.is_some());
    assert_eq!(b.seed.count("project_chat_message_conversation", "project_chat_message_id", &sent[1].id).await, 2);
    assert_eq!(b.seed.count("project_chat_message_conversation_1", "project_chat_message_id", &sent[1].id).await, 1);

    let patch = ChatMessagePatch { tokens_count: Some(7), template_key: Some("summarize".into()) };
    assert!(store.update_chat_message(&sent[0].id, patch).await.unwrap());
    assert!(!store.update_chat_message(&uuid(), ChatMessagePatch { tokens_count: Some(1), ..Default::default() }).await.unwrap());
    let first = store.list_chat_messages(&id).await.unwrap().remove(0);
    assert_eq!((first.tokens_count, first.template_key.as_deref(), first.text.as_deref()), (Some(7), Some("summarize"), Some("first")));

    assert!(store.delete_chat_message(&sent[4].id).await.unwrap());
    assert!(!store.delete_chat_message(&sent[4].id).await.unwrap(), "deleted once");
    assert_eq!(store.list_chat_messages(&id).await.unwrap().len(), 4);
    assert!(store.list_chat_messages(&uuid()).await.unwrap().is_empty());
}

/// The RAG pipelines' segment operations (processing.md §9.2, §9.3): both links, and the new
/// pipeline's create / patch / delete.
async fn segments(b: &Backend<'_>) {
    let store = b.store;
    let (p, elsewhere) = (project(b, true).await, project(b, true).await);
    let conversation = |project_id: &str| NewConversation { id: uuid(), project_id: project_id.into(), ..Default::default() };
    let (a, old, foreign) = (conversation(&p.id), conversation(&p.id), conversation(&elsewhere.id));
    for c in [&a, &old, &foreign] {
        store.create_conversation(c.clone()).await.unwrap();
    }
    assert!(store.conversation_segments(&a.id).await.unwrap().is_empty());
    let new =
        |cid: &str, text: &str| NewSegment { conversation_id: cid.into(), transcript: Some(text.into()), contextual_transcript: None };
    let first = store.create_segment(new(&a.id, "one")).await.unwrap();
    assert_eq!((first.conversation_id.as_deref(), first.transcript.as_deref()), (Some(a.id.as_str()), Some("one")));
    assert!(!first.lightrag_flag && first.contextual_transcript.is_none(), "{first:?}");
    let second = store.create_segment(new(&a.id, "two")).await.unwrap();
    assert!(second.id > first.id, "integer ids, ascending");
    let listed: Vec<i64> = store.conversation_segments(&a.id).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![first.id, second.id], "by id, all pages");

    let patch = SegmentPatch { contextual_transcript: Some("context".into()), lightrag_flag: Some(true), ..Default::default() };
    assert!(store.update_segment(first.id, patch).await.unwrap());
    let read = store.get_segment(first.id).await.unwrap().unwrap();
    assert_eq!(
        (read.transcript.as_deref(), read.contextual_transcript.as_deref(), read.lightrag_flag),
        (Some("one"), Some("context"), true)
    );

    // Old pipeline: a segment linked to the conversation only through a chunk.
    let chunk = NewChunk {
        created_at: None,
        id: uuid(),
        conversation_id: old.id.clone(),
        timestamp: Utc::now(),
        path: None,
        source: None,
        transcript: None,
    };
    store.create_chunk(chunk.clone()).await.unwrap();
    let linked = b.seed.insert("conversation_segment", serde_json::json!({ "transcript": "old" })).await.as_i64().unwrap();
    let junction = serde_json::json!({ "conversation_segment_id": linked, "conversation_chunk_id": chunk.id });
    b.seed.insert("conversation_segment_conversation_chunk", junction).await;
    let theirs = store.create_segment(new(&foreign.id, "foreign")).await.unwrap();

    assert_eq!(store.segment_ids(&old.id).await.unwrap(), vec![linked]);
    let both = store.segments_for_conversations(&[a.id.clone(), old.id.clone(), "not-a-uuid".into()]).await.unwrap();
    assert_eq!(both, vec![first.id, second.id, linked], "both links, ascending");
    assert_eq!(store.segments_for_projects(std::slice::from_ref(&p.id)).await.unwrap(), vec![first.id, second.id, linked]);
    assert_eq!(store.project_segment_ids(&elsewhere.id).await.unwrap(), vec![theirs.id]);
    let all = store.segments_for_projects(&[p.id.clone(), elsewhere.id.clone()]).await.unwrap();
    assert_eq!(all, vec![first.id, second.id, linked, theirs.id]);
    assert!(store.segments_for_conversations(&[]).await.unwrap().is_empty());
    assert!(store.segments_for_projects(&["x".into(), uuid()]).await.unwrap().is_empty());

    store.delete_segment(second.id).await.unwrap();
    store.delete_segment(second.id).await.unwrap();
    assert_eq!(store.get_segment(second.id).await.unwrap(), None);
    assert!(!store.update_segment(second.id, SegmentPatch { lightrag_flag: Some(true), ..Default::default() }).await.unwrap());
    assert!(store.delete_conversation(&a.id).await.unwrap());
    assert_eq!(store.get_segment(first.id).await.unwrap(), None, "segments go with their conversation");
}

/// Collector pass C's selection (processing.md §3.3).
async fn rag_backlog(b: &Backend<'_>) {
    let store = b.store;
    let new_project = |enhanced: bool| NewProject {
        id: uuid(),
        directus_user_id: Some(b.owner.clone()),
        is_enhanced_audio_processing_enabled: Some(enhanced),
        ..Default::default()
    };
    let (enhanced, plain) = (new_project(true), new_project(false));
    store.create_project(enhanced.clone()).await.unwrap();
    store.create_project(plain.clone()).await.unwrap();
    let mut ids = Vec::new();
    for (project_id, finalized, indexed) in
        [(&enhanced.id, true, false), (&enhanced.id, true, true), (&enhanced.id, false, false), (&plain.id, true, false)]
    {
        let id = uuid();
        store.create_conversation(NewConversation { id: id.clone(), project_id: project_id.clone(), ..Default::default() }).await.unwrap();
        let patch = ConversationPatch {
            is_all_chunks_transcribed: Some(finalized),
            is_audio_processing_finished: Some(indexed),
            ..Default::default()
        };
        store.update_conversation(&id, patch).await.unwrap();
        ids.push(id);
    }
    let backlog = store.rag_backlog_conversations(1000).await.unwrap();
    let ours: Vec<&String> = ids.iter().filter(|id| backlog.contains(id)).collect();
    assert_eq!(ours, vec![&ids[0]], "finalized, not indexed, enhanced project only");
    assert!(store.rag_backlog_conversations(1).await.unwrap().len() <= 1, "the limit holds");
    // Leaves no backlog behind for the next run on the same database.
    let done = ConversationPatch { is_audio_processing_finished: Some(true), ..Default::default() };
    store.update_conversation(&ids[0], done).await.unwrap();
    assert!(!store.rag_backlog_conversations(1000).await.unwrap().contains(&ids[0]));
}

async fn run_contract(b: &Backend<'_>) {
    projects_and_tags(b).await;
    conversations(b).await;
    chunks(b).await;
    pagination(b).await;
    runpod_jobs(b).await;
    notification_participants(b).await;
    dashboard_operations(b).await;
    library(b).await;
    chats(b).await;
    segments(b).await;
    rag_backlog(b).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/echo.sqlite3");
    let store = SqliteStore::open(&file, OffloadPool::new(4)).await.unwrap();
    let owner = uuid();
    run_contract(&Backend { store: &store, owner: owner.clone(), seed: Seed::Sqlite(file.clone()) }).await;
    // Reopening runs no migration twice and keeps the data.
    let again = SqliteStore::open(&file, OffloadPool::new(4)).await.unwrap();
    run_contract(&Backend { store: &again, owner, seed: Seed::Sqlite(file.clone()) }).await;
}

/// `DIRECTUS_TEST_URL` and `DIRECTUS_TEST_TOKEN`, or a failure that says how to get them.
fn directus_env() -> (String, String) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var("DIRECTUS_TEST_URL"), var("DIRECTUS_TEST_TOKEN")) {
        (Some(url), Some(token)) => (url, token),
        _ => panic!(
            "the Directus contract test needs a running Directus with ECHO's schema: run `bash scripts/test.sh` (it starts one), \
             or start one with `scripts/directus.sh start ../shared/data/directus-snapshot` and export DIRECTUS_TEST_URL \
             (its DIRECTUS_BASE_URL) and DIRECTUS_TEST_TOKEN (its DIRECTUS_TOKEN)"
        ),
    }
}

/// The admin's user id, through the same token.
async fn directus_user_id(url: &str, token: &str) -> String {
    let me = crate::json_of(reqwest::Client::new().get(format!("{url}/users/me?fields=id")).bearer_auth(token)).await;
    me["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn directus_store_keeps_the_contract() {
    let (url, token) = directus_env();
    let owner = directus_user_id(&url, &token).await;
    // A page size of 2 makes every list below span several pages.
    let store = DirectusStore::new(DirectusConfig {
        base_url: url.clone(),
        token: token.clone(),
        timeout: Duration::from_secs(10),
        page_size: 2,
        retry_delays: common::store::directus::RETRY_DELAYS.to_vec(),
    })
    .unwrap();
    assert_eq!(store.backend(), common::Dependency::Directus);
    let seed = || Seed::Directus { url: url.clone(), token: token.clone() };
    run_contract(&Backend { store: &store, owner: owner.clone(), seed: seed() }).await;
    // And through `connect`, as the functions get it.
    let settings = common::config::Settings::from_lookup(|name| match name {
        "ECHO_STORE" => Some("directus".into()),
        "DIRECTUS_BASE_URL" => Some(url.clone()),
        "DIRECTUS_TOKEN" => Some(token.clone()),
        _ => None,
    })
    .unwrap();
    let connected = connect(&settings).await.unwrap();
    run_contract(&Backend { store: connected.as_ref(), owner, seed: seed() }).await;
}

#[tokio::test]
async fn an_unopenable_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = SqliteStore::open(file.join("echo.sqlite3"), OffloadPool::new(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { backend: common::Dependency::Database, .. }), "{err:?}");
}
