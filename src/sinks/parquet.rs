//! Parquet tables written exactly once by streaming queries.
//!
//! Batch N of query Q writes its rows to files named from Q, N and the attempt
//! (`part-<Q>-<N>-<attempt>-<seq>.parquet`), then commits them with a manifest
//! `_weir/batches/<Q>-<N>.json` listing them, created only if it does not exist yet. A replay of
//! N finds the manifest and writes nothing; an attempt that loses the race to create it removes
//! its own files. Readers — `SELECT` in weir — read only the files that manifests list, so they
//! see whole batches of one attempt or nothing, and two queries (or one query restarted with a
//! new checkpoint) writing to one location never touch each other's files. A directory without
//! `_weir/` is read like any Parquet directory.
//!
//! Other readers (Spark, DuckDB, pyarrow) pointed at the directory see every file, also those of
//! an attempt that was abandoned and not yet removed: only weir's readers see exactly once.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::listing_table_factory::ListingTableFactory;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateExternalTable, Expr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::{BatchContext, Capabilities, SinkKind, StreamingSink};
use crate::storage::{Location, S3Settings, resolve};

/// The manifest of one committed write.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// Batch id (streaming) or insert id (INSERT).
    batch: String,
    /// File names, relative to the table's location.
    files: Vec<String>,
    /// Rows in them.
    rows: u64,
}

#[derive(Debug)]
struct ParquetSink {
    name: String,
    location: Location,
    schema: SchemaRef,
    compression: Compression,
    target_file_bytes: usize,
}

/// A Parquet table weir writes exactly once and reads committed batches of.
#[derive(Debug)]
pub struct ParquetTable {
    sink: Arc<ParquetSink>,
}

impl ParquetTable {
    /// The table's streaming sink.
    pub fn sink(&self) -> Arc<dyn StreamingSink> {
        Arc::clone(&self.sink) as Arc<dyn StreamingSink>
    }
}

/// Parquet tables as streaming sinks.
pub const SINK_KIND: SinkKind = SinkKind {
    tables: "Parquet tables with declared columns",
    find: |provider, _| {
        Ok(provider
            .downcast_ref::<ParquetTable>()
            .map(ParquetTable::sink))
    },
};

const MANIFESTS: &str = "_weir/batches";

impl ParquetSink {
    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.location.root).trim_start_matches('/'))
    }

    fn fail(&self, what: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "Parquet table '{}' at {}: {what}",
            self.name, self.location.display
        ))
    }

    /// The files of every committed write, in manifest order.
    async fn committed_files(&self) -> Result<Vec<String>> {
        let prefix = self.path(MANIFESTS);
        let manifests: Vec<_> = self
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.fail(format!("cannot list its manifests: {e}")))?;
        let mut names: Vec<Path> = manifests.into_iter().map(|m| m.location).collect();
        names.sort();
        let mut files = vec![];
        for path in names {
            let read_failed =
                |e: object_store::Error| self.fail(format!("cannot read manifest {path}: {e}"));
            let found = self.location.store.get(&path).await.map_err(read_failed)?;
            let bytes = found.bytes().await.map_err(read_failed)?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| self.fail(format!("manifest {path} is not valid: {e}")))?;
            files.extend(manifest.files);
        }
        Ok(files)
    }

    fn manifest_path(&self, key: &str) -> Path {
        self.path(&format!("{MANIFESTS}/{key}.json"))
    }

    /// The manifest of write `key`, when it is committed.
    async fn read_manifest(&self, key: &str) -> Result<Option<Manifest>> {
        let path = self.manifest_path(key);
        let read_failed =
            |e: object_store::Error| self.fail(format!("cannot read manifest {path}: {e}"));
        let found = match self.location.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(read_failed(e)),
        };
        let bytes = found.bytes().await.map_err(read_failed)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.fail(format!("manifest {path} is not valid: {e}")))
    }

    /// Writes `data` as the files of write `key` (named with a new attempt id), then creates
    /// its manifest unless an earlier attempt did. A replay (`may_have_leftovers`) then removes
    /// the files of `key`'s attempts that the manifest does not list: this writer's own, as
    /// `key` names the writer.
    async fn write(
        &self,
        key: &str,
        mut data: SendableRecordBatchStream,
        may_have_leftovers: bool,
    ) -> Result<u64> {
        if let Some(committed) = self.read_manifest(key).await? {
            return Ok(committed.rows);
        }
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let file_key = format!("{key}-{}", &attempt[..12]);
        let properties = WriterProperties::builder()
            .set_compression(self.compression)
            .build();
        let mut files: Vec<String> = vec![];
        let mut rows = 0u64;
        let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
        while let Some(batch) = data.next().await {
            let batch: RecordBatch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            rows += batch.num_rows() as u64;
            let current = match &mut writer {
                Some(w) => w,
                None => writer.insert(ArrowWriter::try_new(
                    Vec::new(),
                    Arc::clone(&self.schema),
                    Some(properties.clone()),
                )?),
            };
            current.write(&batch)?;
            if current.bytes_written() + current.in_progress_size() >= self.target_file_bytes
                && let Some(full) = writer.take()
            {
                self.put_file(&file_key, &mut files, full).await?;
            }
        }
        if let Some(last) = writer.take() {
            self.put_file(&file_key, &mut files, last).await?;
        }
        let manifest = Manifest {
            batch: key.to_string(),
            files,
            rows,
        };
        let created = self.create_manifest(key, &manifest).await?;
        let committed = if created {
            manifest
        } else {
            self.read_manifest(key).await?.ok_or_else(|| {
                self.fail(format!(
                    "the manifest of {key} vanished after it was written"
                ))
            })?
        };
        if may_have_leftovers || !created {
            self.remove_leftovers(key, &committed.files).await?;
        }
        Ok(committed.rows)
    }

    /// Creates the manifest of `key`; false when an earlier attempt created it.
    async fn create_manifest(&self, key: &str, manifest: &Manifest) -> Result<bool> {
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| self.fail(e))?;
        match self
            .location
            .store
            .put_opts(
                &self.manifest_path(key),
                PutPayload::from(bytes),
                PutMode::Create.into(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.fail(format!("cannot write the manifest of {key}: {e}"))),
        }
    }

    async fn put_file(
        &self,
        key: &str,
        files: &mut Vec<String>,
        writer: ArrowWriter<Vec<u8>>,
    ) -> Result<()> {
        let bytes = writer.into_inner()?;
        let name = format!("part-{key}-{:04}.parquet", files.len());
        self.location
            .store
            .put(&self.path(&name), PutPayload::from(bytes))
            .await
            .map_err(|e| self.fail(format!("cannot write {name}: {e}")))?;
        files.push(name);
        Ok(())
    }

    async fn remove_leftovers(&self, key: &str, kept: &[String]) -> Result<()> {
        let kept: BTreeSet<&str> = kept.iter().map(String::as_str).collect();
        let prefix = format!("part-{key}-");
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&self.location.root))
            .try_collect()
            .await
            .map_err(|e| self.fail(format!("cannot list its files: {e}")))?;
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default().to_string();
            if name.starts_with(&prefix) && !kept.contains(name.as_str()) {
                self.location
                    .store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| self.fail(format!("cannot remove the stale file {name}: {e}")))?;
            }
        }
        Ok(())
    }
}

/// The name weir gave batch `id`'s manifest before names carried the query's id: a batch
/// committed under it before an upgrade is not written again.
fn legacy_batch_key(id: u64) -> String {
    format!("{id:012}")
}

/// The name of batch `id` of query `query_id`, for its files and manifest: the batch id
/// zero-padded, so that one query's names sort by batch.
fn batch_key(query_id: &str, id: u64) -> String {
    format!("{query_id}-{id:012}")
}

#[async_trait]
impl StreamingSink for ParquetSink {
    async fn write_batch(
        &self,
        batch: &BatchContext,
        data: SendableRecordBatchStream,
    ) -> Result<u64> {
        if batch.replayed
            && let Some(legacy) = self
                .read_manifest(&legacy_batch_key(batch.batch_id))
                .await?
        {
            return Ok(legacy.rows);
        }
        let key = batch_key(&batch.query_id, batch.batch_id);
        self.write(&key, data, batch.replayed).await
    }

    fn describe(&self) -> String {
        format!("parquet {}", self.location.display)
    }

    async fn has_batch(&self, batch: &BatchContext) -> Result<bool> {
        let batch_id = batch.batch_id;
        for key in [
            batch_key(&batch.query_id, batch_id),
            legacy_batch_key(batch_id),
        ] {
            match self.location.store.head(&self.manifest_path(&key)).await {
                Ok(_) => return Ok(true),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(self.fail(format!(
                        "cannot look for the manifest of batch {batch_id}: {e}"
                    )));
                }
            }
        }
        Ok(false)
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::append_only(
            &format!(
                "Parquet table '{}' only appends files (as Spark's file sink, it refuses update \
                 and complete modes); write aggregations in append mode, or into a JDBC table \
                 with 'mode' 'upsert'",
                self.name
            ),
            "a batch's files are listed by one manifest, written after them; a batch whose \
             manifest exists is skipped",
            "weir's own readers (SELECT), which read only the files manifests list",
        )
    }
}

impl DisplayAs for ParquetSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "ParquetSink: {}", self.location.display)
    }
}

#[async_trait]
impl DataSink for ParquetSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let key = format!(
            "insert-{}-{}",
            crate::checkpoint::now_ms(),
            uuid::Uuid::new_v4().simple()
        );
        self.write(&key, data, false).await
    }
}

#[async_trait]
impl TableProvider for ParquetTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.sink.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let files = self.sink.committed_files().await?;
        if files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.sink.schema.project(p)?),
                None => Arc::clone(&self.sink.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        state.runtime_env().register_object_store(
            &self.sink.location.store_url,
            Arc::clone(&self.sink.location.store),
        );
        let urls = files
            .iter()
            .map(|f| ListingTableUrl::parse(self.sink.location.url_of(f)))
            .collect::<Result<Vec<_>>>()?;
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(Arc::clone(&self.sink.schema));
        ListingTable::try_new(config)?
            .scan(state, projection, filters, limit)
            .await
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::Plan(format!(
                "Parquet table '{}' supports INSERT INTO (append) only, not {insert_op}",
                self.sink.name
            )));
        }
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::clone(&self.sink) as Arc<dyn DataSink>,
            None,
        )))
    }
}

/// Builds Parquet tables: weir's exactly-once table when columns are declared, DataFusion's
/// listing table (schema read from the files) otherwise.
#[derive(Debug)]
pub struct ParquetTableFactory {
    s3: Arc<RwLock<S3Settings>>,
}

impl ParquetTableFactory {
    /// A factory resolving `s3://` locations with the session's S3 settings.
    pub fn new(s3: Arc<RwLock<S3Settings>>) -> Self {
        Self { s3 }
    }
}

/// Parquet's compression codec named `value` (option `parquet.compression`).
pub fn parse_compression(value: &str) -> Result<Compression> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "snappy" => Compression::SNAPPY,
        "zstd" => Compression::ZSTD(ZstdLevel::default()),
        "gzip" => Compression::GZIP(GzipLevel::default()),
        "lz4" => Compression::LZ4_RAW,
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        other => {
            return Err(DataFusionError::Plan(format!(
                "option 'parquet.compression' has the value '{other}'; expected snappy, zstd, gzip, lz4 or none"
            )));
        }
    })
}

#[async_trait]
impl TableProviderFactory for ParquetTableFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> Result<Arc<dyn TableProvider>> {
        if cmd.schema.fields().is_empty() {
            return ListingTableFactory::new().create(state, cmd).await;
        }
        let mut compression = Compression::SNAPPY;
        let mut target_file_bytes = 128 * 1024 * 1024;
        for (key, value) in &cmd.options {
            match key.strip_prefix("format.").unwrap_or(key) {
                "parquet.compression" => compression = parse_compression(value)?,
                "targetfilesizebytes" => {
                    target_file_bytes = value.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        DataFusionError::Plan(format!(
                            "option 'targetFileSizeBytes' has the value '{value}'; expected a positive number of bytes"
                        ))
                    })?;
                }
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "unknown option '{other}' for a Parquet table with declared columns; the options are parquet.compression and targetFileSizeBytes"
                    )));
                }
            }
        }
        let s3 = self.s3.read().map(|s| s.clone()).unwrap_or_default();
        let Some(location) = cmd.locations.first() else {
            return Err(DataFusionError::Plan(
                "a Parquet table needs a LOCATION".to_string(),
            ));
        };
        let location = resolve(location, &s3).map_err(|e| DataFusionError::Plan(e.to_string()))?;
        location
            .check_create_only_once()
            .await
            .map_err(|e| DataFusionError::Plan(e.to_string()))?;
        state
            .runtime_env()
            .register_object_store(&location.store_url, Arc::clone(&location.store));
        Ok(Arc::new(ParquetTable {
            sink: Arc::new(ParquetSink {
                name: cmd.name.to_string(),
                location,
                schema: Arc::clone(cmd.schema.inner()),
                compression,
                target_file_bytes,
            }),
        }))
    }
}
