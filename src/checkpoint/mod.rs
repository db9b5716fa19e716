//! The checkpoint of a streaming query, on any object store: `metadata` (which query it
//! belongs to), `offsets/N` (the exact slice of batch N, written before the batch runs) and
//! `commits/N` (written after the sink committed batch N); `sources` holds where the query's
//! sources started, resolved once before the first batch. Every file is JSON, written once
//! (put-if-absent), so two instances of a query cannot both write batch N. `sinks/N` holds what
//! a sink recorded before writing batch N (the Kafka sink's output offsets), and `lock/` says
//! which instance runs the query ([`lock`]). `state/N/<site>` holds a stateful operator's whole
//! state after batch N (a snapshot, Arrow IPC) and `state/N/<site>.delta` what batch N changed
//! in it; the state after batch N is the latest snapshot at or before N with the later changes
//! applied in order.

pub mod lock;

use std::collections::BTreeMap;
use std::ops::Range;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::{Location, S3Settings, resolve};
use crate::stream::watermark::EventTime;

/// Which query a checkpoint belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryMetadata {
    /// The query's id, fixed when the checkpoint is created.
    pub id: String,
    /// The query's name.
    pub name: String,
    /// When the checkpoint was created (ms since the epoch).
    pub created_ms: i64,
    /// What the query reads, one line per source table (its topics).
    pub sources: Vec<String>,
    /// Where it writes.
    pub sink: String,
}

/// The offsets of one partition in a batch: `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSlice {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset read.
    pub start: i64,
    /// First offset not read.
    pub end: i64,
}

/// `offsets/N`: the slice batch N reads, per source table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetsEntry {
    /// The batch id.
    pub batch_id: u64,
    /// When the batch was planned (ms since the epoch).
    pub trigger_time_ms: i64,
    /// Source table name → its partitions' ranges.
    pub sources: BTreeMap<String, Vec<PartitionSlice>>,
    /// The event time before the batch: the watermark it runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
}

/// Where a partition starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStart {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset to read.
    pub offset: i64,
}

/// `sources`: where each source table started, resolved once from its `startingOffsets` when
/// the query first started, before any data was read (Spark keeps the same in its offset log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartingOffsets {
    /// When the starts were resolved (ms since the epoch).
    pub resolved_ms: i64,
    /// Source table name → its partitions' starts.
    pub sources: BTreeMap<String, Vec<PartitionStart>>,
}

/// `commits/N`: batch N is in the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitEntry {
    /// The batch id.
    pub batch_id: u64,
    /// When the sink committed it (ms since the epoch).
    pub committed_ms: i64,
    /// Rows the sink received.
    pub rows: u64,
    /// The event time after the batch, for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
}

/// How a stateful operator's state after a batch is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// The whole state.
    Snapshot,
    /// What the batch changed.
    Changes,
}

impl StateFile {
    fn name(self, batch: u64, site: usize) -> String {
        match self {
            StateFile::Snapshot => format!("state/{batch}/{site}"),
            StateFile::Changes => format!("state/{batch}/{site}.delta"),
        }
    }

    fn other(self) -> StateFile {
        match self {
            StateFile::Snapshot => StateFile::Changes,
            StateFile::Changes => StateFile::Snapshot,
        }
    }
}

/// The saved state files that restore the stateful operators after a batch.
#[derive(Debug, Default)]
pub struct SavedStates {
    /// The oldest batch whose snapshot they start from (none without state).
    pub snapshot_id: Option<u64>,
    /// Per operator (site number), its files.
    pub sites: BTreeMap<usize, SiteFiles>,
}

/// One operator's saved state: a snapshot and the changes of later batches, oldest first.
#[derive(Debug)]
pub struct SiteFiles {
    /// The snapshot file's bytes.
    pub snapshot: Vec<u8>,
    /// The changes files' bytes, oldest first.
    pub changes: Vec<Vec<u8>>,
}

/// Where a query resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No batch was ever planned.
    Fresh,
    /// Batch `last.batch_id` is committed; the next batch continues from its ends.
    Resume {
        /// The last committed batch.
        last: OffsetsEntry,
    },
    /// Batch `entry.batch_id` was planned but not committed: run it again, with this slice.
    Replay {
        /// The uncommitted batch.
        entry: OffsetsEntry,
        /// The batch before it, if any.
        previous: Option<OffsetsEntry>,
    },
}

/// A query's checkpoint directory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    location: Location,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Checkpoint {
    /// The checkpoint at `location` (`file://`, a path, `memory://`, `s3://`).
    pub fn open(location: &str, s3: &S3Settings) -> Result<Self> {
        Ok(Self {
            location: resolve(location, s3)?,
        })
    }

    /// A checkpoint at the root of `store` (tests wrap stores to make them fail).
    #[cfg(test)]
    pub(crate) fn in_store(store: std::sync::Arc<dyn object_store::ObjectStore>) -> Self {
        let location = crate::storage::Location {
            store,
            root: Path::from("cp"),
            store_url: url::Url::parse("memory://test").expect("a valid URL"),
            display: "memory://test/cp".to_string(),
        };
        Self { location }
    }

    /// Where it is, as the user gave it.
    pub fn display(&self) -> &str {
        &self.location.display
    }

    fn path(&self, name: &str) -> Path {
        Path::from(format!("{}/{name}", self.location.root).trim_start_matches('/'))
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::Checkpoint(format!("checkpoint {}: {what}", self.location.display))
    }

    async fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let path = self.path(name);
        let bytes = match self.location.store.get(&path).await {
            Ok(found) => found
                .bytes()
                .await
                .map_err(|e| self.error(format!("cannot read {name}: {e}")))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(format!("cannot read {name}: {e}"))),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            self.error(format!(
                "{name} is not a valid weir checkpoint file ({e}); it may be truncated or \
                 written by another program"
            ))
        })
    }

    async fn create_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        if self.try_create_json(name, value).await? {
            Ok(())
        } else {
            Err(self.error(format!(
                "{name} already exists: another instance of this query is running on the same \
                 checkpoint"
            )))
        }
    }

    /// Writes `name` unless it exists; false when it does.
    async fn try_create_json<T: Serialize>(&self, name: &str, value: &T) -> Result<bool> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| self.error(e))?;
        let path = self.path(name);
        match self
            .location
            .store
            .put_opts(&path, PutPayload::from(bytes), PutMode::Create.into())
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.error(format!("cannot write {name}: {e}"))),
        }
    }

    /// Creates the metadata of a new checkpoint, or checks that an existing one belongs to a
    /// query over the same sources and sink; returns the metadata in force.
    pub async fn start(&self, wanted: &QueryMetadata) -> Result<QueryMetadata> {
        self.location.check_create_only_once().await?;
        let found = match self.read_json::<QueryMetadata>("metadata").await? {
            None if self.try_create_json("metadata", wanted).await? => return Ok(wanted.clone()),
            // Another instance created it just now: check it like any existing checkpoint.
            None => self.read_json::<QueryMetadata>("metadata").await?,
            found => found,
        };
        match found {
            None => Err(self.error("metadata vanished while the query started")),
            Some(found) if found.sources == wanted.sources && found.sink == wanted.sink => {
                Ok(found)
            }
            Some(found) => Err(self.error(format!(
                "it belongs to query '{}' over {} into {}, not to a query over {} into {}; give \
                 this query another checkpoint location",
                found.name,
                found.sources.join("; "),
                found.sink,
                wanted.sources.join("; "),
                wanted.sink
            ))),
        }
    }

    async fn batch_ids(&self, dir: &str) -> Result<Vec<u64>> {
        let prefix = self.path(dir);
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.error(format!("cannot list {dir}/: {e}")))?;
        let mut ids = vec![];
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default().to_string();
            match name.parse::<u64>() {
                Ok(id) => ids.push(id),
                Err(_) => return Err(self.error(format!("{dir}/{name} is not a batch file"))),
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    async fn offsets(&self, id: u64) -> Result<OffsetsEntry> {
        let entry: OffsetsEntry = self
            .read_json(&format!("offsets/{id}"))
            .await?
            .ok_or_else(|| self.error(format!("offsets/{id} is missing")))?;
        if entry.batch_id != id {
            return Err(self.error(format!("offsets/{id} names batch {}", entry.batch_id)));
        }
        Ok(entry)
    }

    /// Where the query resumes, from the latest offsets and commits.
    pub async fn recover(&self) -> Result<Recovery> {
        let planned = self.batch_ids("offsets").await?;
        let committed = self.batch_ids("commits").await?;
        let (Some(&last_planned), last_committed) = (planned.last(), committed.last().copied())
        else {
            return match committed.last() {
                None => Ok(Recovery::Fresh),
                Some(id) => Err(self.error(format!("commits/{id} exists without offsets/{id}"))),
            };
        };
        match last_committed {
            Some(c) if c == last_planned => Ok(Recovery::Resume {
                last: self.offsets(c).await?,
            }),
            Some(c) if c + 1 == last_planned => Ok(Recovery::Replay {
                entry: self.offsets(last_planned).await?,
                previous: Some(self.offsets(c).await?),
            }),
            None if planned.len() == 1 => Ok(Recovery::Replay {
                entry: self.offsets(last_planned).await?,
                previous: None,
            }),
            other => Err(self.error(format!(
                "the latest planned batch is {last_planned} but the latest committed one is {}; \
                 the checkpoint is inconsistent",
                other.map_or("none".to_string(), |c| c.to_string())
            ))),
        }
    }

    /// The starts recorded in `sources` when the query first started, if it got that far.
    pub async fn starting_offsets(&self) -> Result<Option<StartingOffsets>> {
        self.read_json("sources").await
    }

    /// Records where the sources start (once); returns the record in force, which is an
    /// earlier one if another instance recorded it first.
    pub async fn record_starting_offsets(
        &self,
        starts: &StartingOffsets,
    ) -> Result<StartingOffsets> {
        if self.try_create_json("sources", starts).await? {
            return Ok(starts.clone());
        }
        self.starting_offsets()
            .await?
            .ok_or_else(|| self.error("sources vanished while the query started"))
    }

    /// Writes `offsets/N` before batch N runs.
    pub async fn write_offsets(&self, entry: &OffsetsEntry) -> Result<()> {
        self.create_json(&format!("offsets/{}", entry.batch_id), entry)
            .await
    }

    /// Writes `commits/N` after the sink committed batch N.
    pub async fn write_commit(&self, entry: &CommitEntry) -> Result<()> {
        self.create_json(&format!("commits/{}", entry.batch_id), entry)
            .await
    }

    /// `commits/N`.
    pub async fn commit(&self, id: u64) -> Result<CommitEntry> {
        self.read_json(&format!("commits/{id}"))
            .await?
            .ok_or_else(|| self.error(format!("commits/{id} is missing")))
    }

    /// Writes the state of stateful site `site` after batch `id`: `state/N/<site>` for a
    /// snapshot, `state/N/<site>.delta` for changes. A replay of batch N writes its state again,
    /// so it overwrites, and removes a file of the other kind an earlier attempt left.
    pub async fn write_state(
        &self,
        id: u64,
        site: usize,
        file: StateFile,
        bytes: Vec<u8>,
        replayed: bool,
    ) -> Result<()> {
        if replayed {
            self.delete_if_there(&file.other().name(id, site)).await?;
        }
        let name = file.name(id, site);
        self.location
            .store
            .put(&self.path(&name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(format!("cannot write {name}: {e}")))
    }

    /// What restores the state of every site after batch `id`: per site, the latest snapshot
    /// at or before `id` and the changes saved after it, found by walking back from `id`.
    pub async fn read_state(&self, id: u64) -> Result<SavedStates> {
        let mut files = self.read_state_files(id).await?;
        let mut pending: BTreeMap<usize, Vec<u64>> =
            files.keys().map(|site| (*site, vec![])).collect();
        let mut found: BTreeMap<usize, (u64, Vec<u64>)> = BTreeMap::new();
        let mut batch = id;
        loop {
            for (site, changes) in &mut pending {
                match files.get(site) {
                    Some(StateFile::Snapshot) => {
                        found.insert(*site, (batch, std::mem::take(changes)));
                    }
                    Some(StateFile::Changes) => changes.push(batch),
                    None => {
                        return Err(self.error(format!(
                            "the state of operator {site} after batch {id} builds on state/{batch}/, \
                             which has none of it; the checkpoint is incomplete"
                        )));
                    }
                }
            }
            pending.retain(|site, _| !found.contains_key(site));
            if pending.is_empty() {
                break;
            }
            batch = batch.checked_sub(1).ok_or_else(|| {
                self.error(format!(
                    "the state after batch {id} has changes but no snapshot before them; the \
                     checkpoint is incomplete"
                ))
            })?;
            files = self.read_state_files(batch).await?;
        }
        let mut saved = SavedStates {
            snapshot_id: found.values().map(|(s, _)| *s).min(),
            sites: BTreeMap::new(),
        };
        for (site, (snapshot, mut changes)) in found {
            changes.reverse();
            let mut files = SiteFiles {
                snapshot: self
                    .read_bytes(&StateFile::Snapshot.name(snapshot, site))
                    .await?,
                changes: vec![],
            };
            for batch in changes {
                files.changes.push(
                    self.read_bytes(&StateFile::Changes.name(batch, site))
                        .await?,
                );
            }
            saved.sites.insert(site, files);
        }
        Ok(saved)
    }

    async fn read_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let read_error = |e: object_store::Error| self.error(format!("cannot read {name}: {e}"));
        Ok(self
            .location
            .store
            .get(&self.path(name))
            .await
            .map_err(read_error)?
            .bytes()
            .await
            .map_err(read_error)?
            .to_vec())
    }

    /// Whether batch `id` is committed.
    pub async fn is_committed(&self, id: u64) -> Result<bool> {
        Ok(self
            .read_json::<CommitEntry>(&format!("commits/{id}"))
            .await?
            .is_some())
    }

    /// The record a sink kept in `sinks/N` for batch `id`, if it wrote one.
    pub async fn sink_record<T: DeserializeOwned>(&self, id: u64) -> Result<Option<T>> {
        self.read_json(&format!("sinks/{id}")).await
    }

    /// Writes `sinks/N`: what a sink must know to replay batch `id` (written before the sink
    /// writes anything of that batch, once).
    pub async fn create_sink_record<T: Serialize>(&self, id: u64, record: &T) -> Result<()> {
        self.create_json(&format!("sinks/{id}"), record).await
    }

    /// The output a sink kept of batch `id` (`outputs/N`, Arrow IPC), if any.
    pub async fn batch_output(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let name = format!("outputs/{id}");
        match self.location.store.get(&self.path(&name)).await {
            Ok(found) => Ok(Some(
                found
                    .bytes()
                    .await
                    .map_err(|e| self.error(format!("cannot read {name}: {e}")))?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(format!("cannot read {name}: {e}"))),
        }
    }

    /// Keeps batch `id`'s output (`outputs/N`) unless one is kept already; false then.
    pub async fn create_batch_output(&self, id: u64, bytes: Vec<u8>) -> Result<bool> {
        let name = format!("outputs/{id}");
        match self
            .location
            .store
            .put_opts(
                &self.path(&name),
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
            Err(e) => Err(self.error(format!("cannot write {name}: {e}"))),
        }
    }

    /// Deletes the entries of batches older than the newest `keep` after batch `latest`: the one
    /// batch that just fell out of the window, by name, and, when `list_all` is set (the first
    /// purge after a start) or every `FULL_PURGE_EVERY` batches, anything older that a failed
    /// purge, an earlier run or a smaller retention left, by listing.
    /// Saved state goes only through [`Checkpoint::purge_state`], and in the listing purge
    /// below `state_floor` (the oldest snapshot still needed), if any.
    pub async fn purge(
        &self,
        keep: u64,
        latest: u64,
        state_floor: Option<u64>,
        list_all: bool,
    ) -> Result<()> {
        let Some(oldest_kept) = latest.checked_sub(keep.saturating_sub(1)) else {
            return Ok(());
        };
        if list_all || latest.is_multiple_of(FULL_PURGE_EVERY) {
            return self.purge_listed(oldest_kept, state_floor).await;
        }
        let Some(expired) = oldest_kept.checked_sub(1) else {
            return Ok(());
        };
        for dir in ["commits", "sinks", "outputs", "offsets"] {
            self.delete_if_there(&format!("{dir}/{expired}")).await?;
        }
        Ok(())
    }

    /// Deletes the state saved after the batches in `batches`.
    pub async fn purge_state(&self, batches: Range<u64>) -> Result<()> {
        for batch in batches {
            self.delete_listed(&format!("state/{batch}"), |_| true)
                .await?;
        }
        Ok(())
    }

    /// Deletes the objects under `dir` that `expired` picks.
    async fn delete_listed(
        &self,
        dir: &str,
        expired: impl Fn(&object_store::path::Path) -> bool,
    ) -> Result<()> {
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&self.path(dir)))
            .try_collect()
            .await
            .map_err(|e| self.error(format!("cannot list {dir}/: {e}")))?;
        for meta in listed.iter().filter(|meta| expired(&meta.location)) {
            match self.location.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(format!("cannot delete {}: {e}", meta.location))),
            }
        }
        Ok(())
    }

    async fn delete_if_there(&self, name: &str) -> Result<()> {
        match self.location.store.delete(&self.path(name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(format!("cannot delete {name}: {e}"))),
        }
    }

    /// The state files saved after batch `id`: per site, a snapshot (preferred when an earlier
    /// attempt left both) or changes.
    async fn read_state_files(&self, id: u64) -> Result<BTreeMap<usize, StateFile>> {
        let dir = format!("state/{id}");
        let listed: Vec<_> = self
            .location
            .store
            .list(Some(&self.path(&dir)))
            .try_collect()
            .await
            .map_err(|e| self.error(format!("cannot list {dir}/: {e}")))?;
        let mut files = BTreeMap::new();
        for name in listed.iter().filter_map(|m| m.location.filename()) {
            let (site, file) = match name.strip_suffix(".delta") {
                Some(site) => (site, StateFile::Changes),
                None => (name, StateFile::Snapshot),
            };
            let site: usize = site
                .parse()
                .map_err(|_| self.error(format!("{dir}/{name} is not a state file")))?;
            let kept = files.entry(site).or_insert(file);
            if file == StateFile::Snapshot {
                *kept = file;
            }
        }
        Ok(files)
    }

    /// Deletes every entry of batches before `oldest_kept`, and state before `state_floor`,
    /// found by listing.
    async fn purge_listed(&self, oldest_kept: u64, state_floor: Option<u64>) -> Result<()> {
        for dir in ["commits", "sinks", "outputs", "offsets"] {
            for id in self
                .batch_ids(dir)
                .await?
                .into_iter()
                .filter(|id| *id < oldest_kept)
            {
                self.delete_if_there(&format!("{dir}/{id}")).await?;
            }
        }
        let Some(floor) = state_floor else {
            return Ok(());
        };
        // state/<batch>/<site>: the batch is the second part from the end.
        self.delete_listed("state", |path| {
            path.parts()
                .rev()
                .nth(1)
                .and_then(|p| p.as_ref().parse::<u64>().ok())
                .is_some_and(|batch| batch < floor)
        })
        .await
    }
}

/// How often [`Checkpoint::purge`] lists everything rather than deleting one batch by name.
const FULL_PURGE_EVERY: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(sources: &[&str]) -> QueryMetadata {
        QueryMetadata {
            id: "q1".into(),
            name: "job".into(),
            created_ms: 1,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            sink: "parquet out".into(),
        }
    }

    fn entry(id: u64, end: i64) -> OffsetsEntry {
        let slice = PartitionSlice {
            topic: "t".into(),
            partition: 0,
            start: end - 10,
            end,
        };
        OffsetsEntry {
            batch_id: id,
            trigger_time_ms: 5,
            sources: [("orders".to_string(), vec![slice])].into(),
            event_time: None,
        }
    }

    fn commit(id: u64) -> CommitEntry {
        CommitEntry {
            batch_id: id,
            committed_ms: 6,
            rows: 10,
            event_time: None,
        }
    }

    /// The same rules on every store.
    async fn conformance(location: &str) {
        let c = Checkpoint::open(location, &S3Settings::default()).unwrap();
        assert_eq!(c.recover().await.unwrap(), Recovery::Fresh);
        assert_eq!(
            c.start(&metadata(&["orders: subscribe t"]))
                .await
                .unwrap()
                .id,
            "q1"
        );
        let e = c
            .start(&metadata(&["other: subscribe u"]))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("belongs to query 'job' over orders: subscribe t"),
            "{e}"
        );

        c.write_offsets(&entry(0, 10)).await.unwrap();
        assert_eq!(
            c.recover().await.unwrap(),
            Recovery::Replay {
                entry: entry(0, 10),
                previous: None
            }
        );
        c.write_commit(&commit(0)).await.unwrap();
        assert_eq!(
            c.recover().await.unwrap(),
            Recovery::Resume { last: entry(0, 10) }
        );
        c.write_offsets(&entry(1, 20)).await.unwrap();
        assert_eq!(
            c.recover().await.unwrap(),
            Recovery::Replay {
                entry: entry(1, 20),
                previous: Some(entry(0, 10))
            }
        );
        let e = c
            .write_offsets(&entry(1, 30))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("offsets/1 already exists: another instance"),
            "{e}"
        );
        c.write_commit(&commit(1)).await.unwrap();
        for id in 2..6 {
            c.write_offsets(&entry(id, 10 * (id as i64 + 1)))
                .await
                .unwrap();
            c.write_commit(&commit(id)).await.unwrap();
            // After each batch, as the streaming loop does: the batch that fell out goes.
            c.purge(2, id, None, false).await.unwrap();
        }
        assert_eq!(c.batch_ids("offsets").await.unwrap(), vec![4, 5]);
        assert_eq!(c.batch_ids("commits").await.unwrap(), vec![4, 5]);
        assert_eq!(
            c.recover().await.unwrap(),
            Recovery::Resume { last: entry(5, 60) }
        );
        // An entry that a failed purge left behind goes at the next listing purge.
        c.write_offsets(&entry(0, 10)).await.unwrap();
        c.purge(97, 100, None, false).await.unwrap();
        assert_eq!(c.batch_ids("offsets").await.unwrap(), vec![4, 5]);
        // So does one that an earlier run left, at the first purge after a start.
        c.write_offsets(&entry(1, 20)).await.unwrap();
        c.purge(2, 5, None, true).await.unwrap();
        assert_eq!(c.batch_ids("offsets").await.unwrap(), vec![4, 5]);
    }

    #[tokio::test]
    async fn rules_hold_in_memory_and_on_local_files() {
        conformance("memory://checkpoint-conformance/q").await;
        let dir = tempfile::tempdir().unwrap();
        conformance(dir.path().to_str().unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        conformance(&format!("file://{}/nested/cp", dir.path().display())).await;
    }

    #[tokio::test]
    async fn state_is_a_snapshot_and_the_changes_after_it() {
        let c = Checkpoint::open("memory://checkpoint-state/q", &S3Settings::default()).unwrap();
        let save = |batch: u64, file: StateFile| {
            let c = c.clone();
            async move {
                let bytes = format!("{batch}{file:?}").into_bytes();
                c.write_state(batch, 0, file, bytes, false).await.unwrap();
            }
        };
        save(0, StateFile::Snapshot).await;
        save(1, StateFile::Changes).await;
        save(2, StateFile::Changes).await;
        save(3, StateFile::Changes).await;
        save(3, StateFile::Snapshot).await;
        save(4, StateFile::Changes).await;
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).unwrap();
        let after_2 = c.read_state(2).await.unwrap();
        assert_eq!(after_2.snapshot_id, Some(0));
        let site = &after_2.sites[&0];
        assert_eq!(text(&site.snapshot), "0Snapshot");
        let changes: Vec<String> = site.changes.iter().map(|b| text(b)).collect();
        assert_eq!(changes, ["1Changes", "2Changes"]);
        // Batch 3 has both (an earlier attempt's changes): the snapshot wins.
        let after_4 = c.read_state(4).await.unwrap();
        assert_eq!(after_4.snapshot_id, Some(3));
        assert_eq!(text(&after_4.sites[&0].snapshot), "3Snapshot");
        assert_eq!(after_4.sites[&0].changes.len(), 1);
        // A replay that saves changes removes the snapshot an earlier attempt left.
        c.write_state(3, 0, StateFile::Changes, b"3again".to_vec(), true)
            .await
            .unwrap();
        assert_eq!(c.read_state(4).await.unwrap().snapshot_id, Some(0));
        c.purge_state(0..1).await.unwrap();
        let e = c.read_state(4).await.unwrap_err().to_string();
        assert!(
            e.contains("state of operator 0 after batch 4 builds on state/0/, which has none"),
            "{e}"
        );
        assert!(c.read_state(7).await.unwrap().sites.is_empty());
    }

    #[tokio::test]
    async fn corrupt_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoint::open(dir.path().to_str().unwrap(), &S3Settings::default()).unwrap();
        c.write_offsets(&entry(0, 10)).await.unwrap();
        std::fs::write(dir.path().join("offsets/0"), b"{\"batchId\": 0, \"trig").unwrap();
        let e = c.recover().await.unwrap_err().to_string();
        assert!(
            e.contains("offsets/0 is not a valid weir checkpoint file") && e.contains("truncated"),
            "{e}"
        );
        std::fs::write(dir.path().join("offsets/notes.txt"), b"hello").unwrap();
        let e = c.recover().await.unwrap_err().to_string();
        assert!(e.contains("offsets/notes.txt is not a batch file"), "{e}");
        std::fs::write(dir.path().join("metadata"), b"<html>").unwrap();
        let e = c.start(&metadata(&["x"])).await.unwrap_err().to_string();
        assert!(
            e.contains("metadata is not a valid weir checkpoint file"),
            "{e}"
        );
    }
}
