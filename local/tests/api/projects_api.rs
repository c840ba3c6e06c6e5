//! `/api/projects` over HTTP against echo-local.

use std::io::Read;

use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};

const STRANGER: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

fn report_rows(app: &TestApp) -> i64 {
    let db = app.db();
    db.query_row("SELECT count(*) FROM project_report", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn every_project_endpoint_checks_the_session_and_the_owner() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("<article>r</article>".into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let (pid, _) = app.owned_conversation(OWNER).await;
    let stranger = token(STRANGER, false);
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/projects/{pid}/transcripts"), None),
        (Method::POST, format!("/api/projects/{pid}/create-library"), Some(json!({}))),
        (Method::POST, format!("/api/projects/{pid}/create-view"), Some(json!({"query": "q"}))),
        (Method::POST, format!("/api/projects/{pid}/create-report"), Some(json!({}))),
        (Method::POST, format!("/api/projects/{pid}/clone"), Some(json!({}))),
    ];
    for (method, path, body) in &endpoints {
        assert_eq!(app.call(method.clone(), path, None, body.clone()).await, (401, json!({"detail": "Invalid session"})), "{path}");
        assert_eq!(
            app.call(method.clone(), path, Some(&stranger), body.clone()).await,
            (403, json!({"detail": "User does not have access to this project"})),
            "{path}"
        );
        let missing = path.replace(&pid, "99999999-9999-4999-8999-999999999999");
        assert_eq!(
            app.call(method.clone(), &missing, Some(&stranger), body.clone()).await,
            (404, json!({"detail": "Project not found"})),
            "{path}"
        );
        let malformed = path.replace(&pid, "not-a-uuid");
        assert_eq!(app.call(method.clone(), &malformed, Some(&stranger), body.clone()).await.0, 404, "{path}");
    }
    assert_eq!(app.call(Method::POST, "/api/projects", None, Some(json!({}))).await.0, 401);
    assert!(app.published().is_empty());
    assert_eq!(llm.request_count(), 0, "no LLM budget spent on refused calls");
    assert_eq!(report_rows(&app), 0);
    // An admin may act on any project.
    let admin = token(STRANGER, true);
    assert_eq!(app.call(Method::POST, &format!("/api/projects/{pid}/create-library"), Some(&admin), Some(json!({}))).await.0, 202);
}

#[tokio::test]
async fn create_project_and_trailing_slash() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (status, project) = app
        .call(Method::POST, "/api/projects", Some(&owner), Some(json!({"name": "Town hall", "language": "nl", "context": "Budget"})))
        .await;
    assert_eq!(status, 200, "{project}");
    assert_eq!(project["name"], "Town hall");
    assert_eq!(project["language"], "nl");
    assert_eq!(project["context"], "Budget");
    assert_eq!(project["tags"], json!([]));
    assert_eq!(project["is_conversation_allowed"], true);
    assert!(project["created_at"].as_str().unwrap().ends_with('Z'));
    let stored = app.local.store.get_project(project["id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.directus_user_id.as_deref(), Some(OWNER));
    assert_eq!(stored.image_generation_model.as_deref(), Some("MODEST"));

    let (_, defaults) = app.call(Method::POST, "/api/projects", Some(&owner), Some(json!({}))).await;
    assert_eq!((defaults["name"].clone(), defaults["language"].clone()), (json!("New Project"), json!("en")));
    assert_eq!(
        app.call(Method::POST, "/api/projects", Some(&owner), Some(json!({"language": "xx"}))).await,
        (400, json!({"detail": "Language not supported"}))
    );
    let res = app.client.post(app.url("/api/projects/")).bearer_auth(&owner).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 307);
    assert_eq!(res.headers()["location"], "/api/projects");
}

#[tokio::test]
async fn transcripts_come_as_a_zip_of_markdown_files() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (pid, cid) = app.owned_conversation(OWNER).await;
    let path = format!("/api/projects/{pid}/transcripts");
    // Only a conversation without transcripts so far.
    assert_eq!(
        app.call(Method::GET, &path, Some(&owner), None).await,
        (404, json!({"detail": "No transcripts available for this project"}))
    );
    app.text_chunk(&cid, 30, "second").await;
    app.text_chunk(&cid, 0, "first").await;

    let res = app.client.get(app.url(&path)).bearer_auth(&owner).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment; filename=\"Owned_project_transcripts.zip\"; filename*=UTF-8''"), "{disposition}");
    let bytes = res.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(archive.len(), 1);
    let mut entry = archive.by_index(0).unwrap();
    let name = entry.name().unwrap().to_string();
    assert!(name.ends_with(&format!("_Ada_{}-transcript.md", &cid[..8])), "{name}");
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    assert_eq!(text, "first\nsecond\n");

    let empty_project = uuid::Uuid::new_v4().to_string();
    app.local
        .store
        .create_project(common::store::NewProject {
            id: empty_project.clone(),
            directus_user_id: Some(OWNER.into()),
            is_conversation_allowed: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        app.call(Method::GET, &format!("/api/projects/{empty_project}/transcripts"), Some(&owner), None).await,
        (404, json!({"detail": "No conversations found for this project"}))
    );
}

#[tokio::test]
async fn library_and_views_queue_their_tasks() {
    let app = TestApp::start_dashboard(None).await;
    let owner = token(OWNER, false);
    let (pid, _) = app.owned_conversation(OWNER).await;
    assert_eq!(
        app.call(Method::POST, &format!("/api/projects/{pid}/create-library"), Some(&owner), Some(json!({"language": null}))).await,
        (202, Value::Null)
    );
    let library = app.published().pop().unwrap();
    assert_eq!(library["task"], "task_create_project_library");
    assert_eq!(library["args"]["language"], "en");
    assert!(uuid::Uuid::parse_str(library["args"]["project_analysis_run_id"].as_str().unwrap()).is_ok());

    let view = format!("/api/projects/{pid}/create-view");
    assert_eq!(
        app.call(Method::POST, &view, Some(&owner), Some(json!({"query": "parking"}))).await,
        (404, json!({"detail": "No analysis found for this project"}))
    );
    let run = uuid::Uuid::new_v4().to_string();
    let db = app.db();
    db.execute("INSERT INTO project_analysis_run (id, project_id, created_at) VALUES (?1, ?2, '2025-10-16T12:00:00.000Z')", [&run, &pid])
        .unwrap();
    assert_eq!(app.call(Method::POST, &view, Some(&owner), Some(json!({"query": "parking", "language": "nl"}))).await, (202, Value::Null));
    let task = app.published().pop().unwrap();
    assert_eq!(task["task"], "task_create_view");
    assert_eq!(task["args"], json!({"project_analysis_run_id": run, "user_query": "parking", "user_query_context": "", "language": "nl"}));
    assert_eq!(app.call(Method::POST, &view, Some(&owner), Some(json!({}))).await.0, 422);
}

#[tokio::test]
async fn create_report_stores_the_article() {
    let llm = FakeLlm::start(LlmBehaviour::Reply("Here you go.\n<article>\n# Parking\nPeople want more of it.\n</article>".into())).await;
    let app = TestApp::start_dashboard(Some(&llm)).await;
    let owner = token(OWNER, false);
    let (pid, cid) = app.owned_conversation(OWNER).await;
    app.text_chunk(&cid, 0, "The full transcript about parking.").await;
    app.local
        .store
        .update_conversation(
            &cid,
            common::store::ConversationPatch { summary: Some("A summary about parking.".into()), ..Default::default() },
        )
        .await
        .unwrap();
    let path = format!("/api/projects/{pid}/create-report");
    let (status, report) = app.call(Method::POST, &path, Some(&owner), Some(json!({"language": "en"}))).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["content"], "# Parking\nPeople want more of it.");
    assert_eq!(report["status"], "archived");
    assert_eq!(report["project_id"], pid.as_str());
    assert_eq!(report["language"], "en");
    assert!(report["id"].is_i64() && report["date_created"].is_string());
    let prompt = llm.requests.lock().unwrap()[0]["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.contains("A summary about parking.") && prompt.contains("The full transcript about parking."), "{prompt}");
    assert_eq!(report_rows(&app), 1);

    llm.set(LlmBehaviour::Status(502, "bad gateway".into()));
    assert_eq!(
        app.call(Method::POST, &path, Some(&owner), Some(json!({}))).await,
        (503, json!({"detail": "LLM provider is unavailable, please try again later"}))
    );
    assert_eq!(report_rows(&app), 1, "nothing stored when the LLM fails");

    // A French report is asked for with the French template (processing.md §10).
    llm.set(LlmBehaviour::Reply("<article># Stationnement</article>".into()));
    let (status, report) = app.call(Method::POST, &path, Some(&owner), Some(json!({"language": "fr"}))).await;
    assert_eq!((status, report["language"].as_str()), (200, Some("fr")), "{report}");
    let prompt = llm.requests.lock().unwrap().last().unwrap()["messages"][0]["content"].as_str().unwrap().to_string();
    assert!(prompt.starts_with("Tu rédiges un rapport") && prompt.contains("« fr »"), "{prompt}");
}

#[tokio::test]
async fn clone_belongs_to_the_caller_and_copies_tags() {
    let app = TestApp::start_dashboard(None).await;
    let (pid, _) = app.owned_conversation(OWNER).await;
    app.local.store.create_project_tag(&uuid::Uuid::new_v4().to_string(), &pid, Some("parks"), Some(1)).await.unwrap();
    let admin_id = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
    let admin = token(admin_id, true);
    let (status, new_id) = app.call(Method::POST, &format!("/api/projects/{pid}/clone"), Some(&admin), Some(json!({"name": "Copy"}))).await;
    assert_eq!(status, 200, "{new_id}");
    let copy = app.local.store.get_project(new_id.as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!(copy.directus_user_id.as_deref(), Some(admin_id), "the clone belongs to the caller (D19)");
    assert_eq!(copy.name.as_deref(), Some("Copy"));
    assert_eq!(copy.language.as_deref(), Some("en"));
    assert!(copy.is_get_reply_enabled.unwrap());
    assert_eq!(copy.tags.iter().map(|t| t.text.clone().unwrap()).collect::<Vec<_>>(), vec!["parks"]);
    assert_ne!(copy.tags[0].project_id, pid);
    assert_eq!(
        app.call(Method::POST, &format!("/api/projects/{pid}/clone"), Some(&admin), Some(json!({"language": "klingon"}))).await,
        (400, json!({"detail": "Language not supported"}))
    );
}
