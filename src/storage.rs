//! Object stores for checkpoints and file sinks: `file://` URLs and plain paths, `memory://NAME`
//! (shared within the process, for tests), and `s3://bucket/prefix` configured from the session's
//! `weir.s3.*` settings and the usual `AWS_*` environment variables.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use url::Url;

use crate::error::{Error, Result};
use crate::redact;

/// S3 settings given in the session (`SET weir.s3.endpoint = …`); unset ones come from `AWS_*`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `weir.s3.endpoint`: an S3-compatible endpoint URL.
    pub endpoint: Option<String>,
    /// `weir.s3.region`.
    pub region: Option<String>,
    /// `weir.s3.access_key_id`.
    pub access_key_id: Option<String>,
    /// `weir.s3.secret_access_key` (never shown).
    pub secret_access_key: Option<String>,
    /// `weir.s3.allow_http`: allow a plain-HTTP endpoint.
    pub allow_http: Option<bool>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| redact::REDACTED),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Settings {
    /// Applies `weir.s3.<key>`; false when `key` is not an S3 setting.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let value = Some(value.to_string());
        match key {
            "endpoint" => self.endpoint = value,
            "region" => self.region = value,
            "access_key_id" => self.access_key_id = value,
            "secret_access_key" => self.secret_access_key = value,
            "allow_http" => {
                self.allow_http = Some(
                    match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        Some("true") => true,
                        Some("false") => false,
                        _ => {
                            return Err(Error::Sql(
                                "weir.s3.allow_http must be true or false".to_string(),
                            ));
                        }
                    },
                )
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The name with which `Location::check_create_only_once`'s probe objects start.
pub const PROBE_PREFIX: &str = "_weir_probe_";

impl Location {
    /// Checks that the store refuses to create an object that exists (a conditional put), on
    /// which checkpoints and sink manifests rely: S3-compatible stores that ignore
    /// `If-None-Match` would let two writers both win. Writes and removes a probe object.
    pub async fn check_create_only_once(&self) -> Result<()> {
        let probe = Path::from(
            format!(
                "{}/{PROBE_PREFIX}{}",
                self.root,
                uuid::Uuid::new_v4().simple()
            )
            .trim_start_matches('/'),
        );
        let create = || {
            self.store.put_opts(
                &probe,
                PutPayload::from_static(b"probe"),
                PutMode::Create.into(),
            )
        };
        let failed = |e: object_store::Error| {
            Error::Checkpoint(format!(
                "location {}: cannot write a probe object: {e}",
                self.display
            ))
        };
        create().await.map_err(failed)?;
        let second = create().await;
        let _ = self.store.delete(&probe).await;
        match second {
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(()),
            Ok(_) => Err(Error::Checkpoint(format!(
                "location {}: the store overwrote an object that already existed where it was \
                 asked to create it only if absent; weir needs conditional writes (S3's \
                 If-None-Match) to keep two writers apart, and this store does not honour them",
                self.display
            ))),
            Err(e) => Err(failed(e)),
        }
    }
}

/// A location resolved to a store and a path within it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The location's root within the store.
    pub root: Path,
    /// The store's URL as DataFusion registers it (`file:///`, `memory://name`, `s3://bucket`).
    pub store_url: Url,
    /// The location as the user gave it, for messages.
    pub display: String,
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// Resolves `location` (a URL or a local path) to an object store.
pub fn resolve(location: &str, s3: &S3Settings) -> Result<Location> {
    let bad = |why: String| Error::Sql(format!("location '{location}': {why}"));
    if let Some(name) = location.strip_prefix("memory://") {
        let (name, rest) = name.split_once('/').unwrap_or((name, ""));
        let store = {
            let mut stores = memory_stores()
                .lock()
                .map_err(|_| bad("store registry poisoned".into()))?;
            Arc::clone(stores.entry(name.to_string()).or_default())
        };
        let store_url = Url::parse(&format!("memory://{name}")).map_err(|e| bad(e.to_string()))?;
        return Ok(Location {
            store,
            root: Path::from(rest),
            store_url,
            display: location.to_string(),
        });
    }
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("an s3:// location needs a bucket".to_string()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(allow) = s3.allow_http {
            builder = builder.with_allow_http(allow);
        }
        let store = builder
            .build()
            .map_err(|e| bad(format!("cannot configure S3: {e}")))?;
        let store_url = Url::parse(&format!("s3://{bucket}")).map_err(|e| bad(e.to_string()))?;
        return Ok(Location {
            store: Arc::new(store),
            root: Path::from(prefix),
            store_url,
            display: location.to_string(),
        });
    }
    let path = match location.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None if location.contains("://") => {
            return Err(bad(
                "weir reads and writes file://, s3:// and memory:// locations".to_string(),
            ));
        }
        None => PathBuf::from(location),
    };
    std::fs::create_dir_all(&path).map_err(|e| bad(format!("cannot create the directory: {e}")))?;
    let absolute = path.canonicalize().map_err(|e| bad(e.to_string()))?;
    let root = Path::from_filesystem_path(&absolute).map_err(|e| bad(e.to_string()))?;
    let store_url = Url::parse("file:///").map_err(|e| bad(e.to_string()))?;
    Ok(Location {
        store: Arc::new(LocalFileSystem::new()),
        root,
        store_url,
        display: location.to_string(),
    })
}

impl Location {
    /// The URL of `name` below the root, as DataFusion's listing tables take it.
    pub fn url_of(&self, name: &str) -> String {
        let path = self.root.clone().join(name);
        match self.store_url.scheme() {
            "file" => format!("file:///{path}"),
            _ => format!("{}/{path}", self.store_url.as_str().trim_end_matches('/')),
        }
    }
}
