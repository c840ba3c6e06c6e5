//! Property tests of what faces the internet: upload filenames and the keys made from them, the
//! embedded S3's POST-policy checks, session tokens, ids in paths and the RunPod webhook payload.
//! Each property runs 10,000 generated cases (no panic, and the stated invariant holds).

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::blob::{MAX_KEY_LEN, MAX_PATH_LEN, MAX_UPLOAD_NAME_LEN, key_from_url, sanitize_filename, upload_key};
use common::web::auth::{AuthError, sign, verify};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn call(app: &Router, req: Request<Body>) -> (u16, Option<String>, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_string());
    (status, content_type, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Any text, and text built from the characters that matter to paths and extensions.
fn filename() -> impl Strategy<Value = String> {
    let stem = prop_oneof![any::<String>(), "[a-zA-Z0-9./\\\\ _%:-]{0,300}", "(\\.\\.?/){0,6}[a-z.]{0,80}"];
    (stem, proptest::option::of("\\.[a-zA-Z0-9]{1,8}")).prop_map(|(stem, ext)| format!("{stem}{}", ext.unwrap_or_default()))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn upload_keys_are_bounded_stay_under_their_conversation_and_keep_the_extension(
        name in filename(),
        conversation in any::<u128>(),
        chunk in any::<u128>(),
        url_prefix_len in 0usize..=100,
    ) {
        let (cid, chunk_id) = (uuid::Uuid::from_u128(conversation).to_string(), uuid::Uuid::from_u128(chunk).to_string());
        let key = upload_key(&cid, &chunk_id, &name, url_prefix_len);
        let prefix = format!("conversation/{cid}/chunks/{chunk_id}-");
        let file = key.strip_prefix(&prefix).expect("the key stays under its conversation and chunk");
        prop_assert!(!file.is_empty() && file.len() <= MAX_UPLOAD_NAME_LEN, "{file}");
        prop_assert!(file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{file}");
        prop_assert!(!file.contains("..") && !file.starts_with('.') && !file.ends_with('.'), "{file}");
        // A conversion may turn `.mp3` into `.converted.mp3`: still within every bound.
        prop_assert!(key.len() + ".converted".len() <= MAX_KEY_LEN, "{key}");
        prop_assert!(key.len() + ".converted".len() <= local::embedded_s3::max_key_len("echo", false));
        prop_assert!(url_prefix_len + key.len() <= MAX_PATH_LEN);
        let endpoint = "http://127.0.0.1:8001";
        prop_assert_eq!(key_from_url(&format!("{endpoint}/echo/{key}"), endpoint, "echo"), Some(key.clone()));
        // Cutting never loses an extension the whole name had.
        let whole = sanitize_filename(&name, usize::MAX);
        if let Some(dot) = whole.rfind('.') {
            let ext = &whole[dot..];
            if ext.len() <= 9 {
                prop_assert!(file.ends_with(ext), "{whole} -> {file}");
            }
        }
    }
}

// The embedded S3's POST-policy checks.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tamper {
    None,
    Key,
    ContentType,
    TooLarge,
    PolicyByte,
    Signature,
    Expired,
    NoSignature,
    OtherSecret,
}

fn tamper() -> impl Strategy<Value = Tamper> {
    use Tamper::*;
    prop_oneof![
        Just(None),
        Just(Key),
        Just(ContentType),
        Just(TooLarge),
        Just(PolicyByte),
        Just(Signature),
        Just(Expired),
        Just(NoSignature),
        Just(OtherSecret)
    ]
}

const MAX_UPLOAD: u64 = 1024;

fn multipart(fields: &[(String, String)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "----echo-property-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"blob\"\r\n\r\n").as_bytes());
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn post_policies_accept_exactly_what_was_signed() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let policy = common::web::http::CorsPolicy::new(vec![], false, common::web::http::CorsPolicy::STORAGE_METHODS);
    let s3 = rt
        .block_on(local::embedded_s3::router(local::embedded_s3::EmbeddedS3 {
            root: dir.path().to_path_buf(),
            bucket: "echo".into(),
            access_key: "echo-local".into(),
            secret_key: "echo-local-secret".into(),
            max_upload_bytes: MAX_UPLOAD,
            cors: policy,
        }))
        .unwrap();
    let strategy = (filename(), "[a-z]{1,10}/[a-z0-9.+-]{1,20}", 0usize..=MAX_UPLOAD as usize, tamper(), any::<u128>(), any::<u8>());
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&strategy, |(name, content_type, size, tamper, id, flip)| {
            let key = upload_key(&uuid::Uuid::from_u128(id).to_string(), "k", &name, 30);
            let now = if tamper == Tamper::Expired { chrono::Utc::now() - chrono::Duration::hours(2) } else { chrono::Utc::now() };
            let secret = if tamper == Tamper::OtherSecret { "another-secret" } else { "echo-local-secret" };
            let post = common::blob::post_policy::presign(common::blob::post_policy::PostRequest {
                url: "http://127.0.0.1/echo".into(),
                bucket: "echo",
                key: &key,
                content_type: &content_type,
                max_bytes: MAX_UPLOAD,
                access_key: "echo-local",
                secret_key: secret,
                session_token: None,
                region: "us-east-1",
                now,
                lifetime: std::time::Duration::from_secs(3600),
            });
            let mut fields: Vec<(String, String)> = post.fields.into_iter().collect();
            let mut file = vec![b'a'; size];
            let set = |fields: &mut Vec<(String, String)>, name: &str, change: &dyn Fn(&str) -> String| {
                for (n, v) in fields.iter_mut() {
                    if n == name {
                        *v = change(v);
                    }
                }
            };
            match tamper {
                Tamper::Key => set(&mut fields, "key", &|v| format!("{v}x")),
                Tamper::ContentType => set(&mut fields, "Content-Type", &|v| format!("{v}x")),
                Tamper::TooLarge => file = vec![b'a'; MAX_UPLOAD as usize + 1 + size],
                Tamper::PolicyByte => set(&mut fields, "policy", &|v| {
                    let mut bytes = STANDARD.decode(v).unwrap();
                    let i = flip as usize % bytes.len();
                    bytes[i] = if bytes[i] == b' ' { b'!' } else { b' ' };
                    STANDARD.encode(bytes)
                }),
                Tamper::Signature => set(&mut fields, "x-amz-signature", &|v| {
                    let i = flip as usize % v.len();
                    let c = if &v[i..=i] == "0" { "1" } else { "0" };
                    format!("{}{c}{}", &v[..i], &v[i + 1..])
                }),
                Tamper::NoSignature => fields.retain(|(n, _)| n != "x-amz-signature"),
                Tamper::None | Tamper::Expired | Tamper::OtherSecret => {}
            }
            let (content_type, body) = multipart(&fields, &file);
            let req =
                Request::post("/echo").header("content-type", content_type).header("host", "127.0.0.1").body(Body::from(body)).unwrap();
            let (status, _, text) = rt.block_on(call(&s3, req));
            let stored = dir.path().join("echo").join(&key).exists();
            if tamper == Tamper::None {
                prop_assert!((200..300).contains(&status), "{status} {}", String::from_utf8_lossy(&text));
                prop_assert!(stored);
            } else {
                prop_assert!((400..500).contains(&status), "{tamper:?}: {status} {}", String::from_utf8_lossy(&text));
                prop_assert!(!stored, "{tamper:?} stored {key}");
            }
            Ok(())
        })
        .unwrap();
}

// Session tokens.

const SECRET: &str = "property-secret";
const NOW: i64 = 1_760_000_000;

fn claims() -> impl Strategy<Value = Value> {
    let extra = proptest::collection::btree_map("[a-z_]{1,12}", any::<i32>(), 0..5);
    ("[a-zA-Z0-9-]{1,40}", any::<bool>(), extra).prop_map(|(id, admin, extra)| {
        let mut claims = json!({"id": id, "admin_access": admin, "exp": NOW + 600, "iat": NOW - 5});
        for (k, v) in extra {
            if !["id", "admin_access", "exp", "iat", "nbf", "aud"].contains(&k.as_str()) {
                claims[k] = json!(v);
            }
        }
        claims
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_string_is_refused_as_a_token(token in prop_oneof![any::<String>(), "[A-Za-z0-9_.=-]{0,400}"]) {
        prop_assert!(verify(&token, SECRET, NOW).is_err());
    }

    #[test]
    fn a_signed_token_verifies_and_any_one_change_is_refused(claims in claims(), at in any::<usize>(), with in "[A-Za-z0-9_.=-]") {
        let token = sign(&claims, SECRET);
        let session = verify(&token, SECRET, NOW).unwrap();
        prop_assert_eq!(session.user_id.as_str(), claims["id"].as_str().unwrap());
        prop_assert_eq!(session.is_admin, claims["admin_access"] == json!(true));
        prop_assert_eq!(verify(&token, "another-secret", NOW), Err(AuthError::Signature));
        let i = at % token.len();
        if token[i..=i] != with {
            let changed = format!("{}{with}{}", &token[..i], &token[i + 1..]);
            prop_assert!(verify(&changed, SECRET, NOW).is_err(), "{changed}");
        }
        // Structurally valid but forged: a payload of the caller's choosing under the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims.clone();
        forged["admin_access"] = json!(true);
        forged["id"] = json!("someone-else");
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(forged.to_string()), parts[2]);
        prop_assert_eq!(verify(&forged, SECRET, NOW), Err(AuthError::Signature));
    }
}

// Ids in paths and the webhook payload, against echo-local's whole router.

struct Api {
    rt: tokio::runtime::Runtime,
    app: Router,
    local: local::Local,
    _dir: tempfile::TempDir,
}

fn api() -> Api {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut options = local::LocalOptions::for_tests(dir.path());
    options.settings.api.runpod_webhook_secret = Some("webhook-secret".into());
    options.settings.auth.directus_secret = Some(SECRET.into());
    let local = rt.block_on(local::start(options)).unwrap();
    let app = local::api_router(local.state.services.clone());
    Api { rt, app, local, _dir: dir }
}

const PATHS: &[(&str, &str)] = &[
    ("GET", "/api/participant/projects/{id}"),
    ("POST", "/api/participant/projects/{id}/conversations/initiate"),
    ("GET", "/api/participant/projects/11111111-1111-4111-8111-111111111111/conversations/{id}"),
    ("GET", "/api/participant/projects/{id}/conversations/{id}/chunks"),
    ("DELETE", "/api/participant/projects/{id}/conversations/{id}/chunks/{id}"),
    ("POST", "/api/participant/conversations/{id}/upload-text"),
    ("POST", "/api/participant/conversations/{id}/get-upload-url"),
    ("POST", "/api/participant/conversations/{id}/confirm-upload"),
    ("POST", "/api/participant/conversations/{id}/finish"),
    ("POST", "/api/participant/{id}/report/unsubscribe"),
    ("GET", "/api/conversations/{id}/chunks"),
    ("GET", "/api/projects/{id}/transcripts"),
    ("POST", "/api/chats/{id}"),
];

#[test]
fn any_id_in_any_path_gets_a_json_4xx() {
    let api = api();
    let token = sign(&json!({"id": "u", "admin_access": true, "exp": chrono::Utc::now().timestamp() + 3600}), SECRET);
    let id = prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..80).prop_map(|b| percent_encoding::percent_encode(
            &b,
            percent_encoding::NON_ALPHANUMERIC
        )
        .to_string()),
        "[a-zA-Z0-9._~-]{1,60}",
        any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string().to_uppercase()),
        "%[0-9A-F]{2}(%[0-9A-F]{2}){0,5}",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&(0..PATHS.len(), id, any::<bool>()), |(which, id, authed)| {
            let (method, template) = PATHS[which];
            let path = template.replace("{id}", &id);
            let mut req = Request::builder().method(method).uri(&path).header("content-type", "application/json");
            if authed {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let body = if method == "POST" { "{}" } else { "" };
            let (status, content_type, text) = api.rt.block_on(call(&api.app, req.body(Body::from(body)).unwrap()));
            prop_assert!([401, 404, 405, 422].contains(&status), "{method} {path}: {status} {}", String::from_utf8_lossy(&text));
            prop_assert_eq!(content_type.as_deref(), Some("application/json"), "{} {}", method, path);
            let value: Value = serde_json::from_slice(&text).unwrap();
            prop_assert!(value.get("detail").is_some());
            Ok(())
        })
        .unwrap();
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        ".{0,30}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![Just("id".to_string()), Just("status".to_string()), Just("output".to_string()), ".{0,12}"],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn any_webhook_payload_is_answered_and_changes_no_other_jobs_chunk() {
    let api = api();
    let store = api.local.store.clone();
    let (chunk_id, conversation_id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    api.rt.block_on(async {
        let conversation =
            common::store::NewConversation { id: conversation_id.clone(), project_id: local::DEMO_PROJECT_ID.into(), ..Default::default() };
        store.create_conversation(conversation).await.unwrap();
        let chunk = common::store::NewChunk {
            id: chunk_id.clone(),
            conversation_id: conversation_id.clone(),
            timestamp: chrono::Utc::now(),
            path: Some("conversation/x/chunks/k-a.mp3".into()),
            source: None,
            transcript: None,
            created_at: None,
        };
        store.create_chunk(chunk).await.unwrap();
        let link = "https://api.runpod.ai/v2/endpoint/status/job-current".to_string();
        let patch = common::store::ChunkPatch { runpod_job_status_link: Some(Some(link)), ..Default::default() };
        store.update_chunk(&chunk_id, patch).await.unwrap();
    });
    let before = api.rt.block_on(store.get_chunk(&chunk_id)).unwrap().unwrap();
    // Free-form JSON, and RunPod's own shape naming this chunk with a job that is not its job.
    let shaped = (json_value(), ".{0,20}", prop_oneof![Just("COMPLETED"), Just("FAILED"), Just("IN_PROGRESS")]).prop_map({
        let chunk_id = chunk_id.clone();
        move |(output, job, status)| {
            let mut out = if output.is_object() { output } else { json!({"joined_text": output}) };
            out["conversation_chunk_id"] = json!(chunk_id);
            json!({"id": format!("other-{job}"), "status": status, "output": out})
        }
    });
    let payload = prop_oneof![json_value().prop_map(|v| v.to_string()), shaped.prop_map(|v| v.to_string()), ".{0,200}"];
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(&payload, |body| {
            let req = Request::post("/api/stateless/webhook/transcribe?token=webhook-secret")
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap();
            let (status, content_type, text) = api.rt.block_on(call(&api.app, req));
            prop_assert_eq!(status, 200, "{} -> {}", body, String::from_utf8_lossy(&text));
            prop_assert_eq!(content_type.as_deref(), Some("application/json"));
            prop_assert_eq!(text.as_slice(), b"null");
            Ok(())
        })
        .unwrap();
    let after = api.rt.block_on(store.get_chunk(&chunk_id)).unwrap().unwrap();
    assert_eq!(after, before, "no payload for another job changed the chunk");
}
