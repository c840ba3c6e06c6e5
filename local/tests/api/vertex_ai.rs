//! The Vertex AI client against the fake Google of support/google.rs, which verifies the
//! service account's signature the way Google's token endpoint does.

use crate::support::google::{FakeGoogle, rsa_key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::providers::vertex::{Part, ServiceAccount, VertexClient, VertexError};
use serde_json::{Value, json};

fn client(google: &FakeGoogle) -> VertexClient {
    // Base64 JSON, as GCP_SA_JSON is often given.
    let account = ServiceAccount::parse(&STANDARD.encode(google.service_account_json())).unwrap();
    VertexClient::new(account, "europe-west4", Some(&google.base))
}

fn schema() -> Value {
    json!({"type": "OBJECT", "properties": {"corrected_transcript": {"type": "STRING"}, "note": {"type": "STRING"}},
           "required": ["corrected_transcript", "note"]})
}

#[tokio::test]
async fn a_signed_service_account_gets_json_back_under_the_schema() {
    let google = FakeGoogle::start().await;
    let client = client(&google);
    google.answer_with(json!({"corrected_transcript": "We met at the park.", "note": "fixed a name"}));
    let audio = vec![0x49, 0x44, 0x33, 0, 1, 2, 255];
    let parts = || vec![Part::Text("we met at the bark".into()), Part::Inline { mime_type: "audio/mp3".into(), data: audio.clone() }];
    let answer = client.generate_json("gemini-2.5-flash", "Correct the transcript.", parts(), schema()).await.unwrap();
    assert_eq!(answer, json!({"corrected_transcript": "We met at the park.", "note": "fixed a name"}));

    let (path, auth, body) = google.calls()[0].clone();
    assert_eq!(path, "test-project/europe-west4/gemini-2.5-flash:generateContent");
    assert_eq!(auth.as_deref(), Some("Bearer ya29.token-0"));
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Correct the transcript.");
    assert_eq!(body["contents"][0]["role"], "user");
    assert_eq!(body["contents"][0]["parts"][0]["text"], "we met at the bark");
    let inline = &body["contents"][0]["parts"][1]["inlineData"];
    assert_eq!(inline["mimeType"], "audio/mp3");
    assert_eq!(STANDARD.decode(inline["data"].as_str().unwrap()).unwrap(), audio);
    assert_eq!(body["generationConfig"], json!({"responseMimeType": "application/json", "responseSchema": schema()}));

    // The token is reused until it nears its expiry.
    client.generate_json("gemini-2.5-flash", "Correct the transcript.", parts(), schema()).await.unwrap();
    assert_eq!(google.tokens_issued(), 1);

    // Refusals and outages are told apart.
    for status in [429, 503] {
        google.respond_with(status);
        assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient(), "{status}");
    }
    google.respond_with(400);
    let refused = client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err();
    assert!(matches!(&refused, VertexError::Refused { status: 400, body } if body.contains("INVALID_ARGUMENT")), "{refused:?}");
    // A rejected token is dropped, so the retry signs in again.
    google.respond_with(401);
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
    google.respond_with(200);
    client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap();
    assert_eq!(google.tokens_issued(), 2);
    // Text that is not the requested JSON is worth sampling again.
    google.answer_raw(json!({"candidates": [{"content": {"parts": [{"text": "Here you go:"}]}}]}));
    assert!(client.generate_json("gemini-2.5-flash", "s", parts(), schema()).await.unwrap_err().is_transient());
}

#[tokio::test]
async fn a_key_google_does_not_know_is_a_configuration_error() {
    let google = FakeGoogle::start().await;
    google.trust_only(rsa_key().1);
    let err = client(&google).generate_json("gemini-2.5-flash", "s", vec![Part::Text("x".into())], schema()).await.unwrap_err();
    assert!(matches!(&err, VertexError::Config(r) if r.contains("401") && r.contains("Invalid JWT Signature")), "{err:?}");
    assert!(google.calls().is_empty(), "nothing reached the model");
}
