//! Directus's own session tokens work with echo-lambda (spec/api.md §1.2): `/auth/login` in JSON
//! mode (access token) and in session mode (the `directus_session_token` cookie), for the admin and
//! for a user without admin access, verify with `common::web::auth::verify` and the same SECRET, and a
//! conversations endpoint accepts them from the project's owner and refuses everyone else.
//! Needs the Directus `scripts/test.sh` starts (`DIRECTUS_TEST_*`).

use crate::support::directus::{directus, now};
use crate::support::*;
use common::config::StoreSettings;
use common::web::auth::{AuthError, Session, verify};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn directus_session_tokens_verify_with_the_shared_secret() {
    let d = directus();
    let admin_id = d.admin(reqwest::Method::GET, "/users/me?fields=id", Value::Null).await["id"].as_str().unwrap().to_string();
    let admin = Session { user_id: admin_id.clone(), is_admin: true };

    let access = d.login_json(&d.admin_email, &d.admin_password).await;
    assert_eq!(verify(&access, &d.secret, now()), Ok(admin.clone()), "JSON-mode access token of the admin");
    let cookie = d.login_session(&d.admin_email, &d.admin_password).await;
    assert_eq!(d.verify_cookie(&cookie), Ok(admin.clone()), "session cookie of the admin");
    assert_eq!(verify(&cookie, &d.secret, now()), Ok(admin), "the cookie's token also works as a Bearer token");

    // A user without admin access: a role whose policy grants app access only.
    let (user_id, email, password) = d.create_user().await;
    let password = password.as_str();
    assert_ne!(user_id, admin_id);
    let user = Session { user_id, is_admin: false };

    let access = d.login_json(&email, password).await;
    assert_eq!(verify(&access, &d.secret, now()), Ok(user.clone()), "JSON-mode access token of a user");
    let cookie = d.login_session(&email, password).await;
    assert_eq!(d.verify_cookie(&cookie), Ok(user.clone()), "session cookie of a user");

    // The same tokens fail with another secret, after expiry, and the static token is no JWT.
    assert_eq!(verify(&access, "another-secret", now()), Err(AuthError::Signature));
    assert_eq!(verify(&access, &d.secret, now() + 24 * 3600 + 60), Err(AuthError::Expired));
    assert!(verify(&d.token, &d.secret, now()).is_err(), "a static token is not a session");
}

#[tokio::test]
async fn conversation_endpoints_accept_directus_sessions_of_the_owner_only() {
    let d = directus();
    let (owner_id, owner_email, owner_password) = d.create_user().await;
    let (_, other_email, other_password) = d.create_user().await;
    let (url, token) = (d.url.clone(), d.token.clone());
    let secret = d.secret.clone();
    let app = TestApp::start_with(move |o| {
        o.settings.store = StoreSettings::Directus { base_url: url, token: Some(token), timeout_seconds: 10, page_size: 500 };
        o.settings.auth.directus_secret = Some(secret);
    })
    .await;
    let (_, cid) = app.owned_conversation(&owner_id).await;
    app.text_chunk(&cid, 0, "said in a Directus-backed conversation").await;
    let path = format!("/api/conversations/{cid}/transcript");
    let transcript = (200, json!("said in a Directus-backed conversation"));
    let forbidden = (403, json!({"detail": "You are not authorized to access this conversation"}));
    let with_cookie = |cookie: String| {
        let req = app.client.get(app.url(&path)).header("cookie", format!("directus_session_token={cookie}"));
        async move { read(req.send().await.unwrap()).await }
    };

    let owner_access = d.login_json(&owner_email, &owner_password).await;
    assert_eq!(app.call(Method::GET, &path, Some(&owner_access), None).await, transcript, "the owner's token as Bearer");
    assert_eq!(with_cookie(d.login_session(&owner_email, &owner_password).await).await, transcript, "the owner's session cookie");

    let other_access = d.login_json(&other_email, &other_password).await;
    assert_eq!(app.call(Method::GET, &path, Some(&other_access), None).await, forbidden, "another user's token as Bearer");
    assert_eq!(with_cookie(d.login_session(&other_email, &other_password).await).await, forbidden, "another user's session cookie");

    let admin_access = d.login_json(&d.admin_email, &d.admin_password).await;
    assert_eq!(app.call(Method::GET, &path, Some(&admin_access), None).await, transcript, "an admin passes");
    assert_eq!(app.call(Method::GET, &path, Some(&d.token), None).await.0, 401, "a static token is no session");
}
