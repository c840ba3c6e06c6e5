//! Browser POST uploads (AWS Signature Version 4): a base64 policy that pins the bucket, the
//! exact key and content type and a size range, signed with the SigV4 signing key.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// What get-upload-url hands the browser: POST every field, then the file last, to `url`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PresignedPost {
    pub url: String,
    pub fields: BTreeMap<String, String>,
}

pub struct PostRequest<'a> {
    pub url: String,
    pub bucket: &'a str,
    pub key: &'a str,
    pub content_type: &'a str,
    pub max_bytes: u64,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
    pub now: DateTime<Utc>,
    pub lifetime: Duration,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// SigV4 signature of a base64 policy: the policy itself is the string to sign.
pub fn sign_policy(policy_b64: &str, secret_key: &str, date: &str, region: &str) -> String {
    let k_date = hmac(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, policy_b64.as_bytes()))
}

pub fn presign(req: PostRequest<'_>) -> PresignedPost {
    let amz_date = req.now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = req.now.format("%Y%m%d").to_string();
    let credential = format!("{}/{date}/{}/s3/aws4_request", req.access_key, req.region);
    let expiration = req.now + chrono::Duration::from_std(req.lifetime).expect("lifetime fits");

    let mut conditions = vec![
        json!({"bucket": req.bucket}),
        json!({"key": req.key}),
        json!({"Content-Type": req.content_type}),
        json!(["content-length-range", 0, req.max_bytes]),
        json!({"x-amz-credential": credential}),
        json!({"x-amz-algorithm": ALGORITHM}),
        json!({"x-amz-date": amz_date}),
    ];
    if let Some(token) = req.session_token {
        conditions.push(json!({"x-amz-security-token": token}));
    }
    let policy: Value = json!({
        "expiration": expiration.to_rfc3339_opts(SecondsFormat::Millis, true),
        "conditions": conditions,
    });
    let policy_b64 = STANDARD.encode(policy.to_string());
    let signature = sign_policy(&policy_b64, req.secret_key, &date, req.region);

    let mut fields = BTreeMap::from([
        ("key".to_string(), req.key.to_string()),
        ("Content-Type".to_string(), req.content_type.to_string()),
        ("policy".to_string(), policy_b64),
        ("x-amz-algorithm".to_string(), ALGORITHM.to_string()),
        ("x-amz-credential".to_string(), credential),
        ("x-amz-date".to_string(), amz_date),
        ("x-amz-signature".to_string(), signature),
    ]);
    if let Some(token) = req.session_token {
        fields.insert("x-amz-security-token".into(), token.to_string());
    }
    PresignedPost { url: req.url, fields }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The policy and signature AWS publishes in "Example: Browser-Based Upload using HTTP POST
    /// (Using AWS Signature Version 4)" of the S3 API reference.
    const AWS_EXAMPLE_POLICY: &str = concat!(
        "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tl",
        "dCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAg",
        "ICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhh",
        "bXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwg",
        "IiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAg",
        "ICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXot",
        "bWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkv",
        "dXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwN",
        "CiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9",
    );
    const AWS_EXAMPLE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const AWS_EXAMPLE_SIGNATURE: &str = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e";

    #[test]
    fn signer_matches_the_aws_published_example() {
        assert_eq!(sign_policy(AWS_EXAMPLE_POLICY, AWS_EXAMPLE_SECRET, "20151229", "us-east-1"), AWS_EXAMPLE_SIGNATURE);
    }

    fn request(token: Option<&'static str>) -> PresignedPost {
        presign(PostRequest {
            url: "http://127.0.0.1:8001/echo".into(),
            bucket: "echo",
            key: "conversation/c/chunks/k-chunk.webm",
            content_type: "audio/webm",
            max_bytes: 2_147_483_648,
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: AWS_EXAMPLE_SECRET,
            session_token: token,
            region: "eu-west-1",
            now: Utc.with_ymd_and_hms(2025, 10, 16, 12, 0, 0).unwrap(),
            lifetime: Duration::from_secs(3600),
        })
    }

    #[test]
    fn policy_pins_key_type_size_and_expiry() {
        let post = request(None);
        let policy: Value = serde_json::from_slice(&STANDARD.decode(&post.fields["policy"]).unwrap()).unwrap();
        assert_eq!(policy["expiration"], "2025-10-16T13:00:00.000Z");
        let conditions = policy["conditions"].as_array().unwrap();
        assert!(conditions.contains(&json!({"key": "conversation/c/chunks/k-chunk.webm"})));
        assert!(conditions.contains(&json!({"Content-Type": "audio/webm"})));
        assert!(conditions.contains(&json!(["content-length-range", 0, 2_147_483_648u64])));
        assert!(conditions.contains(&json!({"bucket": "echo"})));
        assert!(!post.fields.contains_key("acl"), "no ACL field (D37)");
        assert!(!policy.to_string().contains("acl"));
        assert_eq!(post.fields["x-amz-credential"], "AKIAIOSFODNN7EXAMPLE/20251016/eu-west-1/s3/aws4_request");
        assert_eq!(post.fields["x-amz-date"], "20251016T120000Z");
        assert_eq!(post.fields["x-amz-signature"], sign_policy(&post.fields["policy"], AWS_EXAMPLE_SECRET, "20251016", "eu-west-1"));
        assert!(!post.fields.contains_key("x-amz-security-token"));
    }

    #[test]
    fn temporary_credentials_carry_their_token() {
        let post = request(Some("session-token"));
        assert_eq!(post.fields["x-amz-security-token"], "session-token");
        let policy: Value = serde_json::from_slice(&STANDARD.decode(&post.fields["policy"]).unwrap()).unwrap();
        assert!(policy["conditions"].as_array().unwrap().contains(&json!({"x-amz-security-token": "session-token"})));
    }
}
