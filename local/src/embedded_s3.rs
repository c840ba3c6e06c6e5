//! The embedded S3 endpoint: s3s-fs behind s3s's request handling, which checks SigV4
//! signatures, presigned URLs and POST policies, plus CORS so a browser can POST uploads.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::web::http::CorsPolicy;
use s3s::auth::SimpleAuth;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::S3ServiceBuilder;

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
