//! `/api/conversations` over HTTP against echo-local: the auth matrix on every endpoint, the
//! success shapes, merges of real recordings, and the LLM paths against a local server speaking
//! the chat-completions protocol.

use std::time::Duration;

use crate::support::*;
use chrono::TimeZone;
use common::store::{ChunkOrder, NewChunk};
use reqwest::Method;
use serde_json::{Value, json};

const STRANGER: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

#[tokio::test]
async fn every_endpoint_checks_the_session_and_the_owner() {
    let app = TestApp::start_dashboard(None).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    let chunk = app.text_chunk(&cid, 0, "hello").await;
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/conversations/{cid}/counts"), None),
        (Method::GET, format!("/api/conversations/{cid}/content?return_url=true"), None),
        (Method::GET, format!("/api/conversations/{cid}/chunks/{chunk}/content?return_url=true"), None),
        (Method::GET, format!("/api/conversations/{cid}/transcript"), None),
        (Method::GET, format!("/api/conversations/{cid}/token-count"), None),
        (Method::POST, format!("/api/conversations/{cid}/summarize"), None),
        (Method::POST, format!("/api/conversations/{cid}/retranscribe"), Some(json!({"new_conversation_name": ""}))),
        (Method::DELETE, format!("/api/conversations/{cid}"), None),
    ];
    let (stranger, expired) = (token(STRANGER, false), {
        let exp = chrono::Utc::now().timestamp() - 5;
        common::web::auth::sign(&json!({"id": OWNER, "exp": exp}), JWT_SECRET)
    });
    let forged = common::web::auth::sign(&json!({"id": OWNER, "admin_access": true}), "not-the-secret");
    let unknown = "99999999-9999-4999-8999-999999999999";
    for (method, path, body) in &endpoints {
        let invalid = (401, json!({"detail": "Invalid session"}));
        assert_eq!(app.call(method.clone(), path, None, body.clone()).await, invalid, "{method} {path} without a token");
        assert_eq!(app.call(method.clone(), path, Some(&expired), body.clone()).await, invalid, "{method} {path} expired");
        assert_eq!(app.call(method.clone(), path, Some(&forged), body.clone()).await, invalid, "{method} {path} forged");
        assert_eq!(
            app.call(method.clone(), path, Some(&stranger), body.clone()).await,
            (403, json!({"detail": "You are not authorized to access this conversation"})),
            "{method} {path} someone else's"
        );
        let missing = path.replace(&cid, unknown);
        assert_eq!(
            app.call(method.clone(), &missing, Some(&stranger), body.clone()).await,
            (404, json!({"detail": "Conversation not found"})),
            "{method} {missing}"
        );
    }
    // Auth runs before body validation: 401 wins over 422.
    assert_eq!(app.call(Method::POST, &format!("/api/conversations/{cid}/retranscribe"), None, Some(json!({}))).await.0, 401);
    // Nothing was changed by any refused call.
    assert!(app.local.store.get_conversation(&cid).await.unwrap().is_some());
    assert!(app.published().is_empty());
    // An admin passes the ownership check, and the session cookie works as well as the header.
    let admin = token(STRANGER, true);
    assert_eq!(app.call(Method::GET, &format!("/api/conversations/{cid}/transcript"), Some(&admin), None).await, (200, json!("hello")));
    let res = app
        .client
        .get(app.url(&format!("/api/conversations/{cid}/transcript")))
        .header("cookie", format!("directus_session_token={}", token(OWNER, false)))
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await, (200, json!("hello")));
}

#[tokio::test]
async fn counts_transcript_and_token_count() {
    let app = TestApp::start_dashboard(None).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    let owner = token(OWNER, false);
    assert_eq!(app.call(Method::GET, &format!("/api/conversations/{cid}/transcript"), Some(&owner), None).await, (200, json!("")));
    assert_eq!(app.call(Method::GET, &format!("/api/conversations/{cid}/token-count"), Some(&owner), None).await, (200, json!(0)));

    app.text_chunk(&cid, 30, "second part").await;
    app.text_chunk(&cid, 0, "first part").await;
    let errored = uuid::Uuid::new_v4().to_string();
    app.local
        .store
        .create_chunk(NewChunk {
            created_at: None,
            id: errored.clone(),
            conversation_id: cid.clone(),
            timestamp: chrono::Utc.with_ymd_and_hms(2025, 10, 16, 12, 1, 0).unwrap(),
            path: Some("http://s3/echo/x.webm".into()),
            source: None,
            transcript: None,
        })
        .await
        .unwrap();
    let db = app.db();
    db.execute("UPDATE conversation_chunk SET error = 'Audio processing failed: corrupt' WHERE id = ?1", [&errored]).unwrap();
    app.text_chunk(&cid, 45, "").await;

    let (status, counts) = app.call(Method::GET, &format!("/api/conversations/{cid}/counts"), Some(&owner), None).await;
    assert_eq!((status, counts), (200, json!({"total": 4, "processed": 4, "error": 1, "pending": 0, "ok": 3})));
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{cid}/transcript?include_project_data=true"), Some(&owner), None).await,
        (200, json!("first part\nsecond part"))
    );
    let (status, count) = app.call(Method::GET, &format!("/api/conversations/{cid}/token-count"), Some(&owner), None).await;
    assert_eq!(status, 200);
    // The empty answer above was cached for this conversation (500 s), as ECHO caches per id.
    assert_eq!(count, json!(0));
    let (_, other) = app.owned_conversation(OWNER).await;
    app.text_chunk(&other, 0, "first part\nsecond part").await;
    let (_, count) = app.call(Method::GET, &format!("/api/conversations/{other}/token-count"), Some(&owner), None).await;
    assert!((3..=10).contains(&count.as_u64().unwrap()), "{count}");
    let (status, body) =
        app.call(Method::GET, &format!("/api/conversations/{cid}/transcript?include_project_data=maybe"), Some(&owner), None).await;
    assert_eq!(status, 422, "{body}");
}

/// Uploads a fixture as an audio chunk of the conversation; returns its path.
async fn audio_chunk(app: &TestApp, cid: &str, second: u32, file: &str) -> String {
    let at = chrono::Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, second).unwrap();
    app.stored_chunk(cid, file, fixture_audio(file), at).await.path.unwrap()
}

async fn fixture_duration(file: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, fixture_audio(file)).unwrap();
    common::audio::duration(&path).await.unwrap_or_else(|| panic!("ffprobe cannot read {file}: install ffmpeg"))
}

#[tokio::test]
async fn content_merges_real_recordings_once_and_redirects() {
    let app = TestApp::start_dashboard(None).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    let owner = token(OWNER, false);
    let files = ["wav.wav", "mp3.mp3", "m4a.m4a", "aac.aac", "webm.webm"];
    let mut expected = 0.0;
    for (i, file) in files.iter().enumerate() {
        audio_chunk(&app, &cid, i as u32 * 10, file).await;
        expected += fixture_duration(file).await;
    }
    app.text_chunk(&cid, 59, "a typed chunk has no audio").await;

    let (status, url) = app.call(Method::GET, &format!("/api/conversations/{cid}/content?return_url=true"), Some(&owner), None).await;
    assert_eq!(status, 200, "{url}");
    let conversation = app.local.store.get_conversation(&cid).await.unwrap().unwrap();
    let merged = conversation.merged_audio_path.clone().unwrap();
    assert!(merged.contains(&format!("audio-conversations/merged-{cid}-")), "{merged}");
    let duration = conversation.duration.unwrap();
    assert!((duration - expected).abs() <= 0.5, "merged {duration} s, inputs {expected} s");

    // The presigned URL serves an mp3 whose probed duration matches.
    let bytes = app.client.get(url.as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let merged_file = dir.path().join("merged.mp3");
    std::fs::write(&merged_file, &bytes).unwrap();
    let probe = common::audio::probe(&merged_file).await.unwrap();
    assert!(probe.is_mp3(), "{probe:?}");
    assert!((probe.duration.unwrap() - expected).abs() <= 0.5);

    // Asking again, even forcing a merge, reuses the same object for the same chunk set.
    let merged_objects = || async { app.local.state.blob.list("audio-conversations/").await.unwrap() };
    assert_eq!(merged_objects().await.len(), 1);
    let res =
        app.client.get(app.url(&format!("/api/conversations/{cid}/content?force_merge=true"))).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(res.status(), 307);
    assert!(res.headers()["location"].to_str().unwrap().contains("X-Amz-Signature"));
    assert_eq!(merged_objects().await.len(), 1);
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().merged_audio_path, Some(merged.clone()));
    let (_, unsigned) =
        app.call(Method::GET, &format!("/api/conversations/{cid}/content?return_url=true&signed=false"), Some(&owner), None).await;
    assert_eq!(unsigned, json!(merged));
}

#[tokio::test]
async fn content_errors() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (_, empty) = app.owned_conversation(OWNER).await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{empty}/content"), Some(&owner), None).await,
        (404, json!({"detail": "Conversation not found"}))
    );
    let (_, text_only) = app.owned_conversation(OWNER).await;
    let chunk = app.text_chunk(&text_only, 0, "typed").await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{text_only}/content"), Some(&owner), None).await,
        (404, json!({"detail": "No content found"}))
    );
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{text_only}/chunks/{chunk}/content"), Some(&owner), None).await,
        (404, json!({"detail": "No content found"}))
    );
    // Audio that ffmpeg cannot decode.
    let (_, corrupt) = app.owned_conversation(OWNER).await;
    app.stored_chunk(&corrupt, "junk.webm", vec![0x17u8; 4096], chrono::Utc::now()).await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{corrupt}/content"), Some(&owner), None).await,
        (400, json!({"detail": "Failed to merge audio files: no decodable audio"}))
    );
    assert_eq!(app.local.store.get_conversation(&corrupt).await.unwrap().unwrap().merged_audio_path, None, "nothing recorded");
}

#[tokio::test]
async fn chunk_content_redirects_to_the_chunk() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    let path = audio_chunk(&app, &cid, 0, "mp3.mp3").await;
    let chunk = app.local.store.list_chunks(&cid, ChunkOrder::OldestFirst).await.unwrap()[0].id.clone();
    let res =
        app.client.get(app.url(&format!("/api/conversations/{cid}/chunks/{chunk}/content"))).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(res.status(), 307);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let bytes = app.client.get(&location).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len(), fixture_audio("mp3.mp3").len());
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{cid}/chunks/{chunk}/content?return_url=true&signed=false"), Some(&owner), None)
            .await,
        (200, json!(path))
    );
    let (_, other) = app.owned_conversation(OWNER).await;
    assert_eq!(
        app.call(Method::GET, &format!("/api/conversations/{other}/chunks/{chunk}/content"), Some(&owner), None).await,
        (404, json!({"detail": "Conversation not found"}))
    );
}

#[tokio::test]
async fn summarize_stores_what_the_llm_returned() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("  The group discussed parking.  ".into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    let path = format!("/api/conversations/{cid}/summarize");
    assert_eq!(
        app.call(Method::POST, &path, Some(&owner), None).await,
        (200, json!({"status": "success", "message": "Transcript is empty, so no summary was generated"}))
    );
    assert_eq!(llm.request_count(), 0, "no LLM call for an empty transcript");

    app.text_chunk(&cid, 0, "We need more parking near the station.").await;
    assert_eq!(
        app.call(Method::POST, &path, Some(&owner), None).await,
        (200, json!({"status": "success", "message": "Summary generated", "summary": "The group discussed parking."}))
    );
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().summary.as_deref(), Some("The group discussed parking."));
    let sent = llm.requests.lock().unwrap()[0].clone();
    assert_eq!(sent["model"], "gpt-test");
    assert!(sent["messages"][0]["content"].as_str().unwrap().contains("We need more parking near the station."));

    // The project's language picks the template: Spanish instructions for a Spanish project.
    app.db().execute("UPDATE project SET language = 'es' WHERE id = (SELECT project_id FROM conversation WHERE id = ?1)", [&cid]).unwrap();
    app.call(Method::POST, &path, Some(&owner), None).await;
    let prompt = llm.requests.lock().unwrap()[1]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.starts_with("A continuación está la transcripción") && prompt.contains("código \"es\""), "{prompt}");

    // A provider that fails or is unreachable: 503, and the stored summary stays.
    llm.set(LlmBehaviour::Status(503, "overloaded".into()));
    let (status, body) = app.call(Method::POST, &path, Some(&owner), None).await;
    assert_eq!((status, body), (503, json!({"detail": "LLM provider is unavailable, please try again later"})));
    llm.set(LlmBehaviour::Status(429, "slow down".into()));
    assert_eq!(app.call(Method::POST, &path, Some(&owner), None).await.0, 503);
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().summary.as_deref(), Some("The group discussed parking."));
}

#[tokio::test]
async fn summarize_with_a_slow_llm_times_out_as_503() {
    let llm = FakeLlm::start(LlmBehaviour::Hang(Duration::from_secs(5))).await;
    let slot = llm.slot();
    let app = TestApp::start_with(move |o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.summary = slot;
        o.settings.llm.timeout_seconds = 1;
    })
    .await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "words").await;
    let started = std::time::Instant::now();
    let (status, body) = app.call(Method::POST, &format!("/api/conversations/{cid}/summarize"), Some(&owner), None).await;
    assert_eq!((status, body), (503, json!({"detail": "LLM provider is unavailable, please try again later"})));
    assert!(started.elapsed() < Duration::from_secs(4), "gave up at the configured timeout");
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().summary, None);
}

#[tokio::test]
async fn summarize_with_an_unreachable_llm_stores_nothing() {
    let app = TestApp::start_with(|o| {
        o.settings.auth.directus_secret = Some(JWT_SECRET.into());
        o.settings.llm.summary = common::config::LlmSlot {
            model: Some("gpt-test".into()),
            api_key: None,
            api_base: Some("http://127.0.0.1:9/v1".into()),
            ..Default::default()
        };
    })
    .await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "words").await;
    let (status, body) = app.call(Method::POST, &format!("/api/conversations/{cid}/summarize"), Some(&owner), None).await;
    assert_eq!((status, body), (503, json!({"detail": "LLM provider is unavailable, please try again later"})));
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().summary, None);
}

/// Reads an AI-SDK data stream frame by frame.
async fn frames(res: reqwest::Response) -> Vec<(char, String)> {
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert_eq!(res.headers()["x-accel-buffering"], "no");
    let body = res.text().await.unwrap();
    body.lines()
        .map(|line| {
            let (code, json_text) = line.split_once(':').unwrap_or_else(|| panic!("not a frame: {line:?}"));
            let text: String = serde_json::from_str(json_text).unwrap_or_else(|_| panic!("frame payload is not a JSON string: {line:?}"));
            (code.chars().next().unwrap(), text)
        })
        .collect()
}

#[tokio::test]
async fn get_reply_streams_the_response_and_stores_it() {
    let answer = "<detailed_analysis>They talk about parking.</detailed_analysis>\n\
                  <response>Parking came up twice. What would help most?</response>";
    let llm = FakeLlm::start(LlmBehaviour::Reply(answer.into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "Parking is a problem.").await;
    let url = app.url(&format!("/api/conversations/{cid}/get-reply"));

    let got = frames(app.client.post(&url).json(&json!({"language": "en"})).send().await.unwrap()).await;
    assert!(got.iter().all(|(code, _)| *code == '0'), "{got:?}");
    let text: String = got.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(text, "Parking came up twice. What would help most?");
    assert!(got.len() > 3, "streamed in pieces, not at once: {got:?}");
    let replies = app.local.store.list_replies(&cid, 10).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].content_text.as_deref(), Some("Parking came up twice. What would help most?"));
    assert_eq!(replies[0].kind.as_deref(), Some("assistant_reply"));
    let prompt = llm.requests.lock().unwrap()[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("Parking is a problem."));

    // The earlier reply is part of the next prompt.
    frames(app.client.post(&url).json(&json!({"language": "en"})).send().await.unwrap()).await;
    let prompt = llm.requests.lock().unwrap()[1]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("[Assistant Reply at this point in time: Parking came up twice."), "{prompt}");

    // Missing language: 422 before any stream.
    assert_eq!(app.client.post(&url).json(&json!({})).send().await.unwrap().status(), 422);
}

#[tokio::test]
async fn get_reply_in_dutch_renders_the_dutch_templates() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("<response>Parkeren kwam twee keer terug.</response>".into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let (project, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "Parkeren is een probleem.").await;
    app.db().execute("UPDATE project SET get_reply_mode = 'summarize' WHERE id = ?1", [&project]).unwrap();
    let url = app.url(&format!("/api/conversations/{cid}/get-reply"));
    let prompt_of = |i: usize| llm.requests.lock().unwrap()[i]["messages"][0]["content"].as_str().unwrap().to_string();

    let got = frames(app.client.post(&url).json(&json!({"language": "nl"})).send().await.unwrap()).await;
    assert_eq!(got.iter().map(|(_, t)| t.as_str()).collect::<String>(), "Parkeren kwam twee keer terug.");
    let prompt = prompt_of(0);
    assert!(prompt.contains("Je bent de reflectie-assistent"), "the Dutch system template: {prompt}");
    assert!(prompt.contains("Antwoord in de taal met code \"nl\""), "{prompt}");
    assert!(prompt.contains("Vat de belangrijkste punten"), "the Dutch summarize mode: {prompt}");
    assert!(!prompt.contains("Summarise the main points"), "{prompt}");

    app.db().execute("UPDATE project SET get_reply_mode = 'brainstorm' WHERE id = ?1", [&project]).unwrap();
    frames(app.client.post(&url).json(&json!({"language": "de"})).send().await.unwrap()).await;
    let prompt = prompt_of(1);
    assert!(prompt.contains("Hilf den Teilnehmenden, weiterzudenken") && prompt.contains("Code \"de\""), "{prompt}");

    // A language without its own templates gets the English ones, told the language.
    frames(app.client.post(&url).json(&json!({"language": "it"})).send().await.unwrap()).await;
    let prompt = prompt_of(2);
    assert!(prompt.contains("Help the participants think further") && prompt.contains("code \"it\""), "{prompt}");
}

#[tokio::test]
async fn get_reply_errors_arrive_in_the_stream() {
    let llm = FakeLlm::start(LlmBehaviour::Status(500, "boom".into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let (project, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "hello").await;
    let reply = |id: String| {
        let (client, url) = (app.client.clone(), app.url(&format!("/api/conversations/{id}/get-reply")));
        async move { frames(client.post(url).json(&json!({"language": "en"})).send().await.unwrap()).await }
    };
    let wrong = vec![('3', "Something went wrong.".to_string())];
    assert_eq!(reply(cid.clone()).await, wrong, "provider failure");
    assert_eq!(reply("99999999-9999-4999-8999-999999999999".into()).await, wrong, "unknown conversation");
    llm.set(LlmBehaviour::Status(400, r#"{"error":{"code":"content_policy_violation","message":"no"}}"#.into()));
    assert_eq!(reply(cid.clone()).await, vec![('3', "CONTENT_POLICY_VIOLATION".to_string())]);
    let db = app.db();
    db.execute("UPDATE project SET is_get_reply_enabled = 0 WHERE id = ?1", [&project]).unwrap();
    llm.set(LlmBehaviour::Reply("<response>should not be asked</response>".into()));
    let asked = llm.request_count();
    assert_eq!(reply(cid.clone()).await, wrong, "replies disabled");
    assert_eq!(llm.request_count(), asked);
    assert!(app.local.store.list_replies(&cid, 10).await.unwrap().is_empty(), "nothing stored");
}

#[tokio::test]
async fn retranscribe_clones_the_audio_and_queues_processing() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    audio_chunk(&app, &cid, 0, "wav.wav").await;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/conversations/{cid}/retranscribe"),
            Some(&owner),
            Some(json!({"new_conversation_name": "", "use_pii_redaction": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Retranscription in progress");
    let new_id = body["new_conversation_id"].as_str().unwrap();
    let clone = app.local.store.get_conversation(new_id).await.unwrap().unwrap();
    assert_eq!(clone.participant_name.as_deref(), Some("Ada (retranscribed)"));
    assert_eq!(clone.source.as_deref(), Some("CLONE"));
    let own_audio = clone.merged_audio_path.clone().unwrap();
    assert!(own_audio.contains(&format!("merged-{new_id}-")), "the clone owns its copy: {own_audio}");
    let key = app.local.state.blob.key_from_url(&own_audio).unwrap();
    assert!(app.local.state.blob.head(&key).await.unwrap().is_some());
    let chunks = app.local.store.list_chunks(new_id, ChunkOrder::OldestFirst).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].path.as_deref(), Some(own_audio.as_str()));
    let queued = app.published();
    assert!(queued.iter().any(
        |m| m["task"] == "task_process_conversation_chunk" && m["args"] == json!({"chunk_id": chunks[0].id, "use_pii_redaction": true})
    ));
    // The original now records its merged audio too.
    assert!(app.local.store.get_conversation(&cid).await.unwrap().unwrap().merged_audio_path.is_some());

    let (_, silent) = app.owned_conversation(OWNER).await;
    app.text_chunk(&silent, 0, "typed only").await;
    assert_eq!(
        app.call(
            Method::POST,
            &format!("/api/conversations/{silent}/retranscribe"),
            Some(&owner),
            Some(json!({"new_conversation_name": "x"}))
        )
        .await,
        (404, json!({"detail": "No content found"}))
    );
}

#[tokio::test]
async fn delete_queues_the_artifacts_then_deletes() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (_, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "bye").await;
    audio_chunk(&app, &cid, 5, "mp3.mp3").await;
    app.call(Method::GET, &format!("/api/conversations/{cid}/content?return_url=true"), Some(&owner), None).await;
    let (_, keep) = app.owned_conversation(OWNER).await;
    audio_chunk(&app, &keep, 0, "mp3.mp3").await;
    let services = app.local.state.services.clone();
    assert_eq!(
        common::flows::cleanup::delete_conversation_artifacts(&services, None, &cid, &[]).await.unwrap(),
        common::flows::cleanup::Cleanup::StillReferenced,
        "nothing is removed while the conversation exists"
    );
    let objects_of = |id: String| {
        let services = services.clone();
        async move {
            let mut n = 0;
            for prefix in common::flows::cleanup::conversation_prefixes(&id) {
                n += services.blob.list(&prefix).await.unwrap().len();
            }
            n
        }
    };
    assert_eq!(objects_of(cid.clone()).await, 2, "the chunk and the merged audio");
    assert_eq!(
        app.call(Method::DELETE, &format!("/api/conversations/{cid}"), Some(&owner), None).await,
        (200, json!({"status": "success", "message": "Conversation deleted successfully"}))
    );
    assert_eq!(app.local.store.get_conversation(&cid).await.unwrap(), None);
    let queued = app.local.queue.snapshot();
    assert_eq!(queued.len(), 1);
    assert!(queued[0].not_before > chrono::Utc::now() + chrono::Duration::seconds(50));
    let msg: Value = serde_json::from_str(&queued[0].body).unwrap();
    assert_eq!(msg["task"], "task_delete_conversation_artifacts");
    assert_eq!(msg["args"], json!({"conversation_id": cid, "segment_ids": []}));
    assert_eq!(app.call(Method::DELETE, &format!("/api/conversations/{cid}"), Some(&owner), None).await.0, 404);

    // What the deletion task then does: every object under the conversation's prefixes, only.
    let done = common::flows::cleanup::delete_conversation_artifacts(&services, None, &cid, &[]).await.unwrap();
    assert_eq!(done, common::flows::cleanup::Cleanup::Done { objects: 2 });
    assert_eq!(objects_of(cid.clone()).await, 0);
    assert_eq!(objects_of(keep).await, 1, "another conversation's audio stays");
}

#[tokio::test]
async fn health_stream_validates_and_sends_events() {
    let app = TestApp::start_with(|o| o.settings.runpod_diarization = true).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    let chunk = app.text_chunk(&cid, 0, "x").await;
    let db = app.db();
    let now = common::datetime::format(&chrono::Utc::now());
    db.execute(
        "UPDATE conversation_chunk SET timestamp = ?2, noise_ratio = 0.7, silence_ratio = 0.1, cross_talk_instances = 0 WHERE id = ?1",
        [&chunk, &now],
    )
    .unwrap();

    assert_eq!(
        app.get("/api/conversations/health/stream").await,
        (400, json!({"detail": "At least one of conversation_ids or project_ids must be provided"}))
    );
    let many: Vec<String> = (0..21).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    assert_eq!(
        app.get(&format!("/api/conversations/health/stream?conversation_ids={}", many.join(","))).await,
        (400, json!({"detail": "Too many IDs provided (21). Maximum allowed is 20."}))
    );

    let mut res = app.client.get(app.url(&format!("/api/conversations/health/stream?conversation_ids=%20{cid}%20,"))).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("health_update") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.expect("events arrive at once").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: ping\ndata: 0\n\n"), "{text}");
    assert!(text.contains("event: health_update\ndata: {\"conversation_issue\":\"HIGH_NOISE\"}\n\n"), "{text}");
}

#[tokio::test]
async fn health_takes_the_newest_two_chunks_before_dropping_null_metrics() {
    let app = TestApp::start_with(|o| o.settings.runpod_diarization = true).await;
    let (_, cid) = app.owned_conversation(OWNER).await;
    let db = app.db();
    // Newest first: one without metrics yet, one noisy, one quiet (older than the newest two).
    let now = chrono::Utc::now();
    for (seconds_ago, noise) in [(10, None), (20, Some(0.9)), (30, Some(0.0))] {
        let chunk = app.text_chunk(&cid, 0, "x").await;
        let at = common::datetime::format(&(now - chrono::Duration::seconds(seconds_ago)));
        db.execute(
            "UPDATE conversation_chunk SET timestamp = ?2, noise_ratio = ?3, silence_ratio = ?4, cross_talk_instances = ?4 WHERE id = ?1",
            rusqlite::params![chunk, at, noise, noise.map(|_| 0.0)],
        )
        .unwrap();
    }
    let mut res = app.client.get(app.url(&format!("/api/conversations/health/stream?conversation_ids={cid}"))).send().await.unwrap();
    let mut text = String::new();
    while !text.contains("health_update") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.expect("events arrive at once").unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    // Of the newest two only the noisy one has metrics: 0.9 > 0.5. (Dropping nulls first would
    // average in the quiet third chunk: 0.45, no issue.)
    assert!(text.contains("data: {\"conversation_issue\":\"HIGH_NOISE\"}"), "{text}");
}
