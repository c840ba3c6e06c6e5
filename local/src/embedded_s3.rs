//! The embedded S3 endpoint: s3s-fs behind s3s's request handling, which checks SigV4
//! signatures, presigned URLs and POST policies, plus CORS so a browser can POST uploads.
//! [`KeyGuard`] refuses, before s3s-fs sees them, keys that would leave the bucket and keys too
//! long for it to store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::web::http::CorsPolicy;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::dto::{CopyObjectInput, CopySource, PutObjectInput};
use s3s::service::S3ServiceBuilder;
use s3s::{S3Request, S3Result, s3_error};

pub struct EmbeddedS3 {
    pub root: PathBuf,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub max_upload_bytes: u64,
    pub cors: CorsPolicy,
}

pub async fn router(s3: EmbeddedS3) -> anyhow::Result<Router> {
    // A bucket in s3s-fs is a directory under the root.
    tokio::fs::create_dir_all(s3.root.join(&s3.bucket)).await.with_context(|| format!("creating {}", s3.root.display()))?;
    let fs = s3s_fs::FileSystem::new(&s3.root).map_err(|e| anyhow::anyhow!("embedded S3 at {}: {e:?}", s3.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(s3.access_key, s3.secret_key));
    builder.set_access(KeyGuard);
    let mut config = S3Config::default();
    config.post_object_max_file_size = s3.max_upload_bytes;
    builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
    let service = builder.build();
    let service = axum::error_handling::HandleError::new(service, |err: s3s::HttpError| async move {
        tracing::error!(?err, "embedded S3 failed a request");
        (StatusCode::INTERNAL_SERVER_ERROR, "embedded S3 error").into_response()
    });
    Ok(Router::new().fallback_service(service).layer(axum::middleware::from_fn_with_state(s3.cors, common::web::http::cors)))
}

/// The longest key s3s-fs can keep in `bucket`: it names an object's metadata file
/// `.bucket-{b64 bucket}.object-{b64 key}[.upload-{uuid}].metadata.json`, one file name of at
/// most 255 bytes (a longer one fails in the filesystem, as a 500).
pub fn max_key_len(bucket: &str, multipart: bool) -> usize {
    let b64 = |n: usize| (n * 4).div_ceil(3);
    let upload = if multipart { ".upload-".len() + 36 } else { 0 };
    let fixed = ".bucket-".len() + b64(bucket.len()) + ".object-".len() + upload + ".metadata.json".len();
    255usize.saturating_sub(fixed) * 3 / 4
}

/// A key s3s-fs can store inside its bucket: no `.` or `..` segment (s3s decodes `%2E%2E` before
/// this runs), not absolute, no NUL, and short enough (400 `KeyTooLongError`, as S3 answers).
pub fn check_key(bucket: &str, key: &str, multipart: bool) -> S3Result<()> {
    if key.starts_with('/') || key.contains('\0') || key.split('/').any(|s| s == "." || s == "..") {
        return Err(s3_error!(InvalidArgument, "Object keys may not have `.` or `..` segments, a leading `/` or NUL"));
    }
    let max = max_key_len(bucket, multipart);
    if key.len() > max {
        return Err(s3_error!(KeyTooLongError, "Your key is too long: this store keeps keys of at most {max} bytes"));
    }
    Ok(())
}

/// Signed requests only (s3s's default), and only keys [`check_key`] accepts: in the path, in a
/// POST upload's `key` field (checked as the PutObject it becomes) and in a copy's source.
pub struct KeyGuard;

#[async_trait::async_trait]
impl S3Access for KeyGuard {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        }
        if let Some((bucket, key)) = cx.s3_path().as_object() {
            let multipart =
                matches!(cx.s3_op().name(), "CreateMultipartUpload" | "UploadPart" | "UploadPartCopy" | "CompleteMultipartUpload");
            check_key(bucket, key, multipart)?;
        }
        Ok(())
    }

    async fn put_object(&self, req: &mut S3Request<PutObjectInput>) -> S3Result<()> {
        check_key(&req.input.bucket, &req.input.key, false)
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        match &req.input.copy_source {
            CopySource::Bucket { bucket, key, .. } => check_key(bucket, key, false),
            _ => Err(s3_error!(NotImplemented, "copies from access points are not supported")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_by_the_metadata_file_name() {
        assert_eq!(max_key_len("echo", false), 164);
        assert!(max_key_len("echo", true) < 164);
        // 164 bytes are 219 base64 characters: `.bucket-ZWNobw.object-` + 219 + `.metadata.json` = 255.
        assert_eq!(".bucket-ZWNobw.object-".len() + (164 * 4usize).div_ceil(3) + ".metadata.json".len(), 255);
        assert!(check_key("echo", &"k".repeat(164), false).is_ok());
        assert!(check_key("echo", &"k".repeat(165), false).is_err());
        for bad in ["../x", "a/../b", "a/./b", "..", "/abs", "a/..", "nul\0"] {
            assert!(check_key("echo", bad, false).is_err(), "{bad}");
        }
        assert!(check_key("echo", "conversation/c/chunks/k-a..b.webm", false).is_ok(), "dots inside a name are fine");
    }
}
