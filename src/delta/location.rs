//! Where a Delta table lives: weir's resolved location (`file://`, plain paths, `s3://`,
//! `memory://`) turned into the table URL and the log store deltalake works through, with the
//! object store weir built (so `s3://` uses the session's `weir.s3.*` settings and `AWS_*`).

use std::sync::{Arc, Once};

use datafusion::error::{DataFusionError, Result};
use deltalake_core::DeltaTableBuilder;
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, LogStoreRef, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories,
};
use futures::TryStreamExt;
use object_store::ObjectStore;
use url::Url;

use crate::storage::{Location, PROBE_PREFIX};

/// A log store committing with a conditional put (create only if absent), which S3 and
/// S3-compatible stores honour; weir checks it when a table is opened
/// (`Location::check_create_only_once`).
#[derive(Debug)]
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_log_stores() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        if let Ok(s3) = Url::parse("s3://") {
            logstore_factories().insert(s3, Arc::new(ConditionalPutLogStores));
        }
    });
}

/// The URL of the table at `location` (a directory URL, ending in `/`).
pub fn table_url(location: &Location) -> Result<Url> {
    let root = location.root.as_ref().trim_matches('/');
    let text = match location.store_url.scheme() {
        "file" => format!("file:///{root}/"),
        _ => format!(
            "{}/{root}/",
            location.store_url.as_str().trim_end_matches('/')
        ),
    };
    Url::parse(&text).map_err(|e| {
        DataFusionError::Plan(format!(
            "location '{}' is not a valid table URL: {e}",
            location.display
        ))
    })
}

/// The log store of the table at `location`.
pub fn log_store(location: &Location) -> Result<LogStoreRef> {
    register_s3_log_stores();
    let url = table_url(location)?;
    DeltaTableBuilder::from_url(url.clone())
        .and_then(|b| {
            b.with_storage_backend(Arc::clone(&location.store), url)
                .build_storage()
        })
        .map_err(|e| {
            DataFusionError::Plan(format!(
                "cannot open a Delta log at '{}': {e}",
                location.display
            ))
        })
}

/// Whether anything is stored at `location` (an empty location may become a new table),
/// besides the probes of `Location::check_create_only_once` (one a crash left behind).
pub async fn holds_anything(location: &Location) -> Result<bool> {
    let prefix = (!location.root.as_ref().is_empty()).then_some(&location.root);
    let mut listed = location.store.list(prefix);
    let unlisted = |e: object_store::Error| {
        DataFusionError::Plan(format!("cannot list location '{}': {e}", location.display))
    };
    while let Some(object) = listed.try_next().await.map_err(unlisted)? {
        let name = object.location.filename().unwrap_or_default();
        if !name.starts_with(PROBE_PREFIX) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{S3Settings, resolve};

    #[tokio::test]
    async fn a_leftover_probe_does_not_make_a_location_look_used() {
        let dir = tempfile::tempdir().unwrap();
        let location = resolve(&dir.path().display().to_string(), &S3Settings::default()).unwrap();
        assert!(!holds_anything(&location).await.unwrap());
        std::fs::write(dir.path().join(format!("{PROBE_PREFIX}1234")), "probe").unwrap();
        assert!(!holds_anything(&location).await.unwrap());
        std::fs::write(dir.path().join("data.csv"), "1,2").unwrap();
        assert!(holds_anything(&location).await.unwrap());
        let url = table_url(&location).unwrap();
        assert!(
            url.as_str().starts_with("file:///") && url.as_str().ends_with('/'),
            "{url}"
        );
    }
}
