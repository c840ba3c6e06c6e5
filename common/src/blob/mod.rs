//! Object storage over aws-sdk-s3 (path-style, any S3-compatible endpoint), the URL <-> key
//! rules of spec/data-model.md §5.1, and browser POST uploads signed with SigV4 here, since
//! the SDK has no presigned-POST API.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};

use crate::config::S3Settings;

pub mod post_policy;

pub use post_policy::PresignedPost;

/// Characters a copy source keeps unescaped: keys are `[A-Za-z0-9._/-]` by construction.
const COPY_SOURCE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'.').remove(b'-').remove(b'_').remove(b'~');

/// Browser playback and downloads.
pub const PRESIGN_BROWSER: Duration = Duration::from_secs(3600);
/// How long a presigned POST may be used.
pub const POST_POLICY_LIFETIME: Duration = Duration::from_secs(3600);
/// `conversation_chunk.path` is varchar(255).
pub const MAX_PATH_LEN: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage misconfigured: {0}")]
    Config(String),
    #[error("storage error: {0}")]
    Other(String),
}

fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> BlobError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text = aws_sdk_s3::error::DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => BlobError::Unavailable(text),
        SdkError::ServiceError(e) if matches!(e.raw().status().as_u16(), 429 | 500 | 502 | 503 | 504) => BlobError::Unavailable(text),
        _ => BlobError::Other(text),
    }
}

/// The single bucket and how it is reached.
#[derive(Clone, Debug)]
pub struct Blob {
    client: Client,
    /// Signs URLs handed to browsers (the public endpoint when one is set, D44).
    browser_client: Client,
    credentials: SharedCredentialsProvider,
    bucket: String,
    endpoint: String,
    browser_endpoint: String,
    region: String,
    upload_max_bytes: u64,
}

impl Blob {
    /// Builds the clients; credentials are the static pair when set, else the default chain
    /// (the Lambda role, whose session token then travels in presigned POSTs).
    pub async fn connect(settings: &S3Settings) -> Result<Self, BlobError> {
        let bucket = settings.bucket.clone().ok_or_else(|| BlobError::Config("STORAGE_S3_BUCKET is not set".into()))?;
        let endpoint = settings.endpoint.clone().ok_or_else(|| BlobError::Config("STORAGE_S3_ENDPOINT is not set".into()))?;
        let region = Region::new(settings.region.clone());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(region.clone());
        if let (Some(key), Some(secret)) = (&settings.access_key, &settings.secret_key) {
            loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "echo-static"));
        }
        let shared = loader.load().await;
        let credentials = shared.credentials_provider().ok_or_else(|| BlobError::Config("no AWS credentials provider".into()))?;
        let client_for = |url: &str| {
            let conf = aws_sdk_s3::config::Builder::from(&shared)
                .endpoint_url(url)
                .force_path_style(true)
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(Duration::from_secs(60))
                        .build(),
                )
                .build();
            Client::from_conf(conf)
        };
        let browser_endpoint = settings.public_endpoint.clone().unwrap_or_else(|| endpoint.clone());
        Ok(Blob {
            client: client_for(&endpoint),
            browser_client: client_for(&browser_endpoint),
            credentials,
            bucket,
            endpoint,
            browser_endpoint,
            region: settings.region.clone(),
            upload_max_bytes: settings.upload_max_bytes,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The stored form of an object: `{endpoint}/{bucket}/{key}`.
    pub fn url_for_key(&self, key: &str) -> String {
        format!("{}/{}/{}", self.endpoint, self.bucket, key)
    }

    /// The key of an upload's object in this bucket ([`upload_key`]).
    pub fn upload_key(&self, conversation_id: &str, chunk_id: &str, filename: &str) -> String {
        upload_key(conversation_id, chunk_id, filename, self.url_for_key("").len())
    }

    /// The object key a stored URL (or bare key) names, or None when it is not a valid key.
    pub fn key_from_url(&self, url: &str) -> Option<String> {
        key_from_url(url, &self.endpoint, &self.bucket)
    }

    /// The object's size, or None when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<u64>, BlobError> {
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    pub async fn put(&self, key: &str, body: bytes::Bytes, content_type: Option<&str>) -> Result<(), BlobError> {
        let mut req = self.client.put_object().bucket(&self.bucket).key(key).body(ByteStream::from(body));
        if let Some(ct) = content_type {
            req = req.content_type(ct);
        }
        req.send().await.map(drop).map_err(classify)
    }

    /// Streams an object into a file (never whole in memory); returns its size.
    pub async fn download_to(&self, key: &str, path: &std::path::Path) -> Result<u64, BlobError> {
        let out = self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(classify)?;
        let mut reader = out.body.into_async_read();
        let mut file = tokio::fs::File::create(path).await.map_err(|e| BlobError::Other(format!("creating {}: {e}", path.display())))?;
        let size = tokio::io::copy(&mut reader, &mut file).await.map_err(|e| BlobError::Unavailable(format!("reading {key}: {e}")))?;
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(|e| BlobError::Other(e.to_string()))?;
        Ok(size)
    }

    /// Uploads a file as one object, streamed from disk.
    pub async fn upload_file(&self, key: &str, path: &std::path::Path, content_type: &str) -> Result<(), BlobError> {
        let body = ByteStream::from_path(path).await.map_err(|e| BlobError::Other(format!("reading {}: {e}", path.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    /// Server-side copy within the bucket.
    pub async fn copy(&self, from_key: &str, to_key: &str) -> Result<(), BlobError> {
        let source = format!("{}/{}", self.bucket, percent_encoding::utf8_percent_encode(from_key, COPY_SOURCE));
        self.client.copy_object().bucket(&self.bucket).key(to_key).copy_source(source).send().await.map(drop).map_err(classify)
    }

    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map(drop).map_err(classify)
    }

    /// Every key under a prefix (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(classify)?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(keys),
            }
        }
    }

    /// A GET URL for the browser (or a provider), valid for `expires`.
    pub async fn presigned_get(&self, key: &str, expires: Duration) -> Result<String, BlobError> {
        let config = PresigningConfig::expires_in(expires).map_err(|e| BlobError::Other(e.to_string()))?;
        let req = self.browser_client.get_object().bucket(&self.bucket).key(key).presigned(config).await.map_err(classify)?;
        Ok(req.uri().to_string())
    }

    /// A GET URL like `presigned_get` whose response carries `content_type` whatever the object
    /// was stored with (S3's `response-content-type`).
    pub async fn presigned_get_as(&self, key: &str, expires: Duration, content_type: &str) -> Result<String, BlobError> {
        let config = PresigningConfig::expires_in(expires).map_err(|e| BlobError::Other(e.to_string()))?;
        let get = self.browser_client.get_object().bucket(&self.bucket).key(key).response_content_type(content_type);
        let req = get.presigned(config).await.map_err(classify)?;
        Ok(req.uri().to_string())
    }

    /// A browser POST upload to exactly `key` with exactly `content_type`.
    pub async fn presigned_post(&self, key: &str, content_type: &str, now: DateTime<Utc>) -> Result<PresignedPost, BlobError> {
        let creds = self.credentials.provide_credentials().await.map_err(|e| BlobError::Unavailable(format!("credentials: {e}")))?;
        Ok(post_policy::presign(post_policy::PostRequest {
            url: format!("{}/{}", self.browser_endpoint, self.bucket),
            bucket: &self.bucket,
            key,
            content_type,
            max_bytes: self.upload_max_bytes,
            access_key: creds.access_key_id(),
            secret_key: creds.secret_access_key(),
            session_token: creds.session_token(),
            region: &self.region,
            now,
            lifetime: POST_POLICY_LIFETIME,
        }))
    }
}

/// ECHO's rule (data-model.md §5.1): strip our own `{endpoint}/{bucket}/` prefix; else, for an
/// http(s) URL with a host and bucket, the rest after the bucket; else the value as a key.
pub fn key_from_url(url: &str, endpoint: &str, bucket: &str) -> Option<String> {
    let value = url.trim();
    let value = value.split('?').next().unwrap_or_default();
    let own_prefix = format!("{}/{}/", endpoint.trim_end_matches('/'), bucket);
    let (key, from_url) = if let Some(rest) = value.strip_prefix(&own_prefix) {
        (rest.to_string(), true)
    } else if value.starts_with("http://") || value.starts_with("https://") {
        let parts: Vec<&str> = value.split('/').collect();
        if parts.len() < 5 {
            return None;
        }
        (parts[4..].join("/"), true)
    } else {
        (value.trim_start_matches('/').to_string(), false)
    };
    let invalid = key.is_empty() || key.contains("..") || (from_url && key.starts_with('/'));
    (!invalid).then_some(key)
}

/// The longest sanitized file name an upload key carries. With the 94-character
/// `conversation/{uuid}/chunks/{uuid}-` prefix and the `.converted.mp3` a conversion may put in
/// place of the extension, a key stays under [`MAX_KEY_LEN`] whatever the client sent.
pub const MAX_UPLOAD_NAME_LEN: usize = 48;
/// No key this system makes is longer: real S3 takes 1024 bytes, but the embedded S3 keeps each
/// key base64-encoded inside one file name of at most 255 bytes (about 164 bytes of key).
pub const MAX_KEY_LEN: usize = 160;

/// `conversation/{cid}/chunks/{chunk_id}-{name}` for an uploaded file: the name sanitized, at most
/// [`MAX_UPLOAD_NAME_LEN`] characters, shorter when the stored URL (`url_prefix_len` characters
/// before the key) would pass 255 (D29).
pub fn upload_key(conversation_id: &str, chunk_id: &str, filename: &str, url_prefix_len: usize) -> String {
    let prefix = format!("conversation/{conversation_id}/chunks/{chunk_id}-");
    let room = MAX_PATH_LEN.saturating_sub(url_prefix_len + prefix.len()).clamp(8, MAX_UPLOAD_NAME_LEN);
    format!("{prefix}{}", sanitize_filename(filename, room))
}

/// Reduces a client filename to `[A-Za-z0-9._-]`, collapses `..`, keeps a short extension and
/// cuts the stem so the name is at most `max_len` (at least 1) characters (D29).
pub fn sanitize_filename(name: &str, max_len: usize) -> String {
    let max_len = max_len.max(1);
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut cleaned: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    while cleaned.contains("..") {
        cleaned = cleaned.replace("..", ".");
    }
    let cleaned = cleaned.trim_matches('.').to_string();
    let cleaned = if cleaned.is_empty() { "upload".to_string() } else { cleaned };
    if cleaned.len() <= max_len {
        return cleaned;
    }
    let (stem, ext) = match cleaned.rfind('.') {
        Some(i) if cleaned.len() - i <= 16 && cleaned.len() - i < max_len => (&cleaned[..i], &cleaned[i..]),
        _ => (cleaned.as_str(), ""),
    };
    // ASCII only, so any byte index is a character boundary; a cut never leaves `..` behind.
    let stem = stem[..(max_len - ext.len()).min(stem.len())].trim_end_matches('.');
    format!("{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: &str = "http://127.0.0.1:8001";

    #[test]
    fn keys_from_urls_follow_echo() {
        assert_eq!(
            key_from_url("http://127.0.0.1:8001/echo/conversation/c/chunks/x.webm", EP, "echo").as_deref(),
            Some("conversation/c/chunks/x.webm")
        );
        assert_eq!(key_from_url(" http://127.0.0.1:8001/echo/a/b.mp3?X-Amz-Signature=1 ", EP, "echo").as_deref(), Some("a/b.mp3"));
        // Written under a previous endpoint: parts after scheme://host/bucket.
        assert_eq!(
            key_from_url("https://minio:9000/dembrane/audio-conversations/m.mp3", EP, "echo").as_deref(),
            Some("audio-conversations/m.mp3")
        );
        assert_eq!(key_from_url("/conversation/c/x.wav", EP, "echo").as_deref(), Some("conversation/c/x.wav"));
        assert_eq!(key_from_url("https://host/bucket", EP, "echo"), None);
        assert_eq!(key_from_url("http://127.0.0.1:8001/echo/conversation/../other", EP, "echo"), None);
        assert_eq!(key_from_url("http://127.0.0.1:8001/echo//abs", EP, "echo"), None);
    }

    #[test]
    fn filenames_are_sanitized_and_bounded() {
        assert_eq!(sanitize_filename("chunk-1760616060000.webm", 100), "chunk-1760616060000.webm");
        assert_eq!(sanitize_filename("../../etc/passwd", 100), "passwd");
        assert_eq!(sanitize_filename("my recording (1).m4a", 100), "my_recording__1_.m4a");
        assert_eq!(sanitize_filename("a..b....mp3", 100), "a.b.mp3");
        assert_eq!(sanitize_filename("..", 100), "upload");
        assert_eq!(sanitize_filename("ünïcödé.wav", 100), "_n_c_d_.wav");
        let long = format!("{}.webm", "x".repeat(300));
        let cut = sanitize_filename(&long, 40);
        assert_eq!(cut.len(), 40);
        assert!(cut.ends_with(".webm"));
        assert_eq!(sanitize_filename("abcdef.ghijklmnop", 4), "abcd");
        assert_eq!(sanitize_filename("a.bcdefgh.webm", 8), "a.b.webm");
        assert_eq!(sanitize_filename("ab.cdefgh.webm", 8), "ab.webm", "no `..` from the cut");
        let key = upload_key("c", "k", &long, 30);
        assert_eq!(key, format!("conversation/c/chunks/k-{}.webm", "x".repeat(MAX_UPLOAD_NAME_LEN - 5)));
    }
}
