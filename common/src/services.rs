//! The backends every function works with, wired once per execution environment.

use std::sync::Arc;

use crate::blob::Blob;
use crate::config::Settings;
use crate::queue::SharedPublisher;
use crate::store::SharedStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Store, storage, task queue and settings; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: SharedStore,
    pub blob: Blob,
    pub tasks: SharedPublisher,
    pub settings: Arc<Settings>,
}

impl Services {
    /// A Lambda's start-up: settings from the environment (secrets from SSM where named), the
    /// variables this function needs checked (D63) and Directus as the store, then the backends.
    pub async fn from_env(required: &[&'static str]) -> Result<Self, BoxError> {
        crate::config::check_lambda_store(|name| std::env::var(name).ok())?;
        let settings = crate::secrets::settings_from_env().await?;
        settings.require(required)?;
        Self::connect(Arc::new(settings)).await
    }

    /// Production wiring: the configured store, S3 and the SQS queues.
    pub async fn connect(settings: Arc<Settings>) -> Result<Self, BoxError> {
        let store = crate::store::connect(&settings).await?;
        let blob = Blob::connect(&settings.s3).await?;
        let tasks = crate::queue::sqs::connect_sqs(&settings).await?;
        Ok(Services { store, blob, tasks, settings })
    }
}

/// Lets a function's state (a struct with a `services` field) be used as `Services`, which also
/// gives it the session checks of `AuthConfig`.
#[macro_export]
macro_rules! deref_to_services {
    ($state:ty) => {
        impl std::ops::Deref for $state {
            type Target = $crate::Services;
            fn deref(&self) -> &$crate::Services {
                &self.services
            }
        }
    };
}
