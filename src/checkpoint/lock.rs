//! Which running instance owns a query's checkpoint, so that two instances never both write.
//!
//! The owner holds `lock/<epoch>`, a JSON record of its host, process and heartbeat, created
//! put-if-absent and rewritten every [`HEARTBEAT`]: a lease of [`STALE_AFTER`]. A second instance
//! that finds a live owner is refused, naming it. An owner is dead when its record says it
//! released the lock, when it ran on this host and its process is gone (a crashed or killed
//! engine restarts at once), or when its record was last written longer than the lease ago (an
//! owner on another host). That age is measured with the store's own timestamps — the record's
//! last-modified time against that of a probe written now — never by comparing two hosts'
//! clocks. A new instance takes over from a dead owner by creating `lock/<epoch + 1>`; only one
//! can, and the old owner, should it still be running, sees the newer epoch at its next check
//! and stops: it was fenced. An owner that cannot renew its lease (the store refuses or throttles
//! its heartbeats) stops before its next write once its last renewal is older than
//! [`RENEW_WITHIN`], which leaves it time to stop before another host may take over.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, now_ms};
use crate::error::Result;

/// How long an owner's lease lasts, and how often it renews it.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// After how long without a heartbeat an owner on another host counts as dead.
    pub stale_after: Duration,
    /// How often the owner renews its lease.
    pub heartbeat: Duration,
    /// How old the owner's last renewal may be before it stops writing.
    pub renew_within: Duration,
}

/// How often the owner refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// After how long without a heartbeat an owner on another host counts as dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How old an owner's last successful renewal may be before it stops writing: two heartbeats
/// short of the lease.
pub const RENEW_WITHIN: Duration = Duration::from_secs(20);

impl Default for Lease {
    fn default() -> Self {
        Lease {
            stale_after: STALE_AFTER,
            heartbeat: HEARTBEAT,
            renew_within: RENEW_WITHIN,
        }
    }
}

/// Where the store's current time is read: a probe object written when an owner's age is
/// judged.
const CLOCK_PROBE: &str = "lease-clock";

/// The record in `lock/<epoch>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The lock's epoch: one more than the owner it took over from.
    pub epoch: u64,
    /// The query's name, as the owner ran it.
    pub query: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// When its process started (clock ticks after boot), to tell a reused pid apart.
    pub process_start: Option<u64>,
    /// Its pid namespace (`/proc/self/ns/pid`): pids are only comparable within one, as
    /// containers sharing a host name may not share it.
    #[serde(default)]
    pub pid_namespace: Option<String>,
    /// When it took the lock (ms since the epoch).
    pub acquired_ms: i64,
    /// Its latest heartbeat (ms since the epoch).
    pub heartbeat_ms: i64,
    /// True once it stopped and gave the lock up.
    pub released: bool,
}

impl Holder {
    fn for_this_process(epoch: u64, query: &str) -> Self {
        let now = now_ms();
        Holder {
            epoch,
            query: query.to_string(),
            host: host_name(),
            pid: std::process::id(),
            process_start: process_start(std::process::id()),
            pid_namespace: pid_namespace(),
            acquired_ms: now,
            heartbeat_ms: now,
            released: false,
        }
    }

    /// Whether the owner described here still runs, when this host can tell without its
    /// heartbeat: it released the lock, or it is a process of this host and pid namespace.
    fn known_alive(&self) -> Option<bool> {
        if self.released {
            return Some(false);
        }
        if self.host == host_name()
            && self.pid_namespace.is_some()
            && self.pid_namespace == pid_namespace()
        {
            return process_running(self.pid, self.process_start);
        }
        None
    }

    fn describe(&self) -> String {
        format!(
            "query '{}' in process {} on host {}, running since {} ms after the epoch",
            self.query, self.pid, self.host, self.acquired_ms
        )
    }
}

/// The lock on a checkpoint, held while a query runs.
#[derive(Debug)]
pub struct QueryLock {
    checkpoint: Checkpoint,
    holder: Arc<tokio::sync::Mutex<Holder>>,
    heartbeat: tokio::task::JoinHandle<()>,
    renewals: Arc<std::sync::Mutex<Renewals>>,
    lease: Lease,
    released: bool,
}

/// When the owner last renewed its lease, and why it could not since.
#[derive(Debug)]
struct Renewals {
    /// When the latest successful renewal started (this process's monotonic clock).
    last: std::time::Instant,
    /// The latest failure since then.
    failure: Option<String>,
}

fn lock_name(epoch: u64) -> String {
    format!("lock/{epoch}")
}

impl QueryLock {
    /// Takes the lock of `checkpoint` for query `query`, or fails naming the live owner.
    pub async fn acquire(checkpoint: &Checkpoint, query: &str) -> Result<QueryLock> {
        Self::acquire_with(checkpoint, query, Lease::default()).await
    }

    /// [`QueryLock::acquire`] with a lease of its own (tests shorten it).
    pub async fn acquire_with(
        checkpoint: &Checkpoint,
        query: &str,
        lease: Lease,
    ) -> Result<QueryLock> {
        // A few rounds: a concurrent instance may create or take over between our reads.
        for _ in 0..3 {
            let epoch = match checkpoint.batch_ids("lock").await?.last() {
                None => 0,
                Some(&current) => {
                    match checkpoint.read_json::<Holder>(&lock_name(current)).await? {
                        None => continue,
                        Some(owner) if owner_alive(checkpoint, current, &owner, lease).await? => {
                            return Err(checkpoint.error(format!(
                                "{} is already running this query; stop it first (a killed \
                                 instance on another host counts as stopped {} s after its last \
                                 heartbeat)",
                                owner.describe(),
                                lease.stale_after.as_secs()
                            )));
                        }
                        Some(_) => current + 1,
                    }
                }
            };
            let holder = Holder::for_this_process(epoch, query);
            let attempted = std::time::Instant::now();
            if checkpoint
                .try_create_json(&lock_name(epoch), &holder)
                .await?
            {
                for older in checkpoint.batch_ids("lock").await? {
                    if older < epoch {
                        let _ = checkpoint
                            .location
                            .store
                            .delete(&checkpoint.path(&lock_name(older)))
                            .await;
                    }
                }
                let holder = Arc::new(tokio::sync::Mutex::new(holder));
                let renewals = Arc::new(std::sync::Mutex::new(Renewals {
                    last: attempted,
                    failure: None,
                }));
                let heartbeat = tokio::spawn(beat(
                    checkpoint.clone(),
                    Arc::clone(&holder),
                    Arc::clone(&renewals),
                    lease.heartbeat,
                ));
                return Ok(QueryLock {
                    checkpoint: checkpoint.clone(),
                    holder,
                    heartbeat,
                    renewals,
                    lease,
                    released: false,
                });
            }
        }
        Err(checkpoint
            .error("another instance of this query is starting at the same time; only one may run"))
    }

    /// Fails when another instance has taken the checkpoint over since this one took it (any
    /// newer epoch: a later owner deletes the epochs before its own), or could have: this
    /// instance has not renewed its lease for too long.
    pub async fn check_held(&self) -> Result<()> {
        self.check_lease()?;
        let epoch = self.holder.lock().await.epoch;
        let Some(&newest) = self.checkpoint.batch_ids("lock").await?.last() else {
            return Err(self.checkpoint.error(
                "its lock/ directory was emptied while this instance ran; this instance stops \
                 without writing",
            ));
        };
        if newest <= epoch {
            return Ok(());
        }
        let newer = self
            .checkpoint
            .read_json::<Holder>(&lock_name(newest))
            .await?
            .map_or_else(|| format!("an instance (lock/{newest})"), |h| h.describe());
        Err(self.checkpoint.error(format!(
            "{newer} took this query over (this instance was presumed dead); this instance stops \
             without writing"
        )))
    }

    /// Fails when the last successful renewal of the lease is older than `renew_within`. No
    /// store access: between a [`QueryLock::check_held`] and the next, another instance can
    /// take the checkpoint over only after this one's lease went stale, which this catches
    /// first.
    pub fn check_lease(&self) -> Result<()> {
        let renewals = self
            .renewals
            .lock()
            .map_err(|_| self.checkpoint.error("the lease record is poisoned"))?;
        let age = renewals.last.elapsed();
        if age <= self.lease.renew_within {
            return Ok(());
        }
        let cause = renewals
            .failure
            .as_deref()
            .map_or_else(String::new, |f| format!(" (last failure: {f})"));
        Err(self.checkpoint.error(format!(
            "this instance could not renew its lease on the checkpoint for {} s{cause}; another \
             instance may take the query over after {} s, so this one stops without writing",
            age.as_secs(),
            self.lease.stale_after.as_secs()
        )))
    }

    /// Gives the lock up: a new instance may start at once.
    pub async fn release(mut self) -> Result<()> {
        self.heartbeat.abort();
        self.released = true;
        let mut holder = self.holder.lock().await.clone();
        holder.released = true;
        holder.heartbeat_ms = now_ms();
        write_holder(&self.checkpoint, &holder).await
    }
}

impl Drop for QueryLock {
    /// A lock dropped without [`QueryLock::release`] (a failed start, a panicking query) is
    /// released in the background, so that the same process may start the query again.
    fn drop(&mut self) {
        self.heartbeat.abort();
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let checkpoint = self.checkpoint.clone();
            let holder = Arc::clone(&self.holder);
            runtime.spawn(async move {
                let mut holder = holder.lock().await.clone();
                holder.released = true;
                holder.heartbeat_ms = now_ms();
                if let Err(e) = write_holder(&checkpoint, &holder).await {
                    log::warn!("{e}");
                }
            });
        }
    }
}

async fn write_holder(checkpoint: &Checkpoint, holder: &Holder) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(holder).map_err(|e| checkpoint.error(e))?;
    checkpoint
        .location
        .store
        .put(
            &checkpoint.path(&lock_name(holder.epoch)),
            PutPayload::from(bytes),
        )
        .await
        .map(|_| ())
        .map_err(|e| checkpoint.error(format!("cannot refresh {}: {e}", lock_name(holder.epoch))))
}

/// Refreshes the owner's heartbeat until the lock is released, noting each renewal.
async fn beat(
    checkpoint: Checkpoint,
    holder: Arc<tokio::sync::Mutex<Holder>>,
    renewals: Arc<std::sync::Mutex<Renewals>>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let started = std::time::Instant::now();
        let current = {
            let mut holder = holder.lock().await;
            holder.heartbeat_ms = now_ms();
            holder.clone()
        };
        let outcome = write_holder(&checkpoint, &current).await;
        if let Ok(mut renewals) = renewals.lock() {
            match &outcome {
                Ok(()) => {
                    renewals.last = started;
                    renewals.failure = None;
                }
                Err(e) => renewals.failure = Some(e.to_string()),
            }
        }
        if let Err(e) = outcome {
            log::warn!("{e}");
        }
    }
}

/// Whether the owner of `lock/<epoch>` may still be running: what this host knows of it, else
/// whether the store wrote its record less than the lease ago.
async fn owner_alive(
    checkpoint: &Checkpoint,
    epoch: u64,
    owner: &Holder,
    lease: Lease,
) -> Result<bool> {
    if let Some(alive) = owner.known_alive() {
        return Ok(alive);
    }
    let age = store_age(checkpoint, &lock_name(epoch)).await?;
    Ok(age < lease.stale_after)
}

/// How long ago the store last wrote `name`, by the store's own clock: its last-modified time
/// against that of a probe written now.
async fn store_age(checkpoint: &Checkpoint, name: &str) -> Result<Duration> {
    let store = &checkpoint.location.store;
    let head = |path: object_store::path::Path| async move {
        store
            .head(&path)
            .await
            .map_err(|e| checkpoint.error(format!("cannot read the time of {path}: {e}")))
    };
    // The probe first: a delay between the two calls then makes the owner look younger, not
    // older, so a live owner is never taken for dead.
    let probe = checkpoint.path(CLOCK_PROBE);
    store
        .put(&probe, PutPayload::from(now_ms().to_string().into_bytes()))
        .await
        .map_err(|e| checkpoint.error(format!("cannot write {CLOCK_PROBE}: {e}")))?;
    let now = head(probe).await?.last_modified;
    let written = head(checkpoint.path(name)).await?.last_modified;
    Ok((now - written).to_std().unwrap_or_default())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// This process's pid namespace, as Linux names it (`pid:[4026531836]`).
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|link| link.display().to_string())
}

/// When process `pid` started, in clock ticks after boot (Linux's `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` (which started at `start`) still runs; `None` when this system cannot
/// tell (no `/proc`).
fn process_running(pid: u32, start: Option<u64>) -> Option<bool> {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    match (process_start(pid), start) {
        (None, _) => Some(false),
        (Some(now), Some(then)) => Some(now == then),
        (Some(_), None) => Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::S3Settings;

    fn checkpoint(name: &str) -> Checkpoint {
        Checkpoint::open(
            &format!("memory://lock-tests/{name}"),
            &S3Settings::default(),
        )
        .expect("memory checkpoint")
    }

    #[tokio::test]
    async fn a_second_instance_is_refused_while_the_first_runs() {
        let cp = checkpoint("second");
        let first = QueryLock::acquire(&cp, "job")
            .await
            .expect("first takes it");
        let refused = QueryLock::acquire(&cp, "job")
            .await
            .expect_err("second refused");
        let message = refused.to_string();
        assert!(message.contains("already running"), "{message}");
        assert!(
            message.contains(&format!("process {}", std::process::id())),
            "{message}"
        );
        first.check_held().await.expect("still held");
        first.release().await.expect("released");
        let again = QueryLock::acquire(&cp, "job")
            .await
            .expect("free after release");
        assert_eq!(again.holder.lock().await.epoch, 1);
    }

    /// An in-memory store whose writes under `lock/` fail while `failing` is set.
    #[derive(Debug, Default)]
    struct FlakyStore {
        inner: object_store::memory::InMemory,
        failing: std::sync::atomic::AtomicBool,
    }

    impl std::fmt::Display for FlakyStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FlakyStore")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for FlakyStore {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst)
                && location.as_ref().contains("/lock/")
            {
                return Err(object_store::Error::Generic {
                    store: "FlakyStore",
                    source: "503 Slow Down (throttled)".into(),
                });
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }

        async fn rename_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::RenameOptions,
        ) -> object_store::Result<()> {
            self.inner.rename_opts(from, to, options).await
        }
    }

    fn short_lease() -> Lease {
        Lease {
            stale_after: Duration::from_millis(600),
            heartbeat: Duration::from_millis(50),
            renew_within: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn an_owner_that_cannot_renew_its_lease_stops_before_its_next_write() {
        let store = Arc::new(FlakyStore::default());
        let cp = Checkpoint::in_store(Arc::clone(&store) as Arc<dyn object_store::ObjectStore>);
        let owner = QueryLock::acquire_with(&cp, "job", short_lease())
            .await
            .expect("taken");
        tokio::time::sleep(Duration::from_millis(400)).await;
        owner
            .check_held()
            .await
            .expect("renewed while the store takes writes");
        store
            .failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stopped = owner
            .check_held()
            .await
            .expect_err("lease lapsed")
            .to_string();
        assert!(stopped.contains("could not renew its lease"), "{stopped}");
        assert!(
            stopped.contains("503 Slow Down"),
            "the cause is named: {stopped}"
        );
        assert!(stopped.contains("stops without writing"), "{stopped}");
    }

    #[tokio::test]
    async fn an_owner_on_another_host_is_judged_by_the_stores_clock_not_its_own() {
        let cp = checkpoint("store-clock");
        let mut foreign = Holder::for_this_process(0, "job");
        foreign.host = "some-other-host".into();
        // Its clock is an hour behind ours: by its own heartbeat it looks long dead.
        foreign.heartbeat_ms -= 3_600_000;
        assert!(
            cp.try_create_json(&lock_name(0), &foreign)
                .await
                .expect("written")
        );
        let refused = QueryLock::acquire_with(&cp, "job", short_lease())
            .await
            .expect_err("the store wrote its record just now")
            .to_string();
        assert!(refused.contains("already running"), "{refused}");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let taken = QueryLock::acquire_with(&cp, "job", short_lease())
            .await
            .expect("stale by the store's clock");
        assert_eq!(taken.holder.lock().await.epoch, 1);
    }

    #[tokio::test]
    async fn a_dead_owner_is_taken_over_and_fenced() {
        let cp = checkpoint("dead");
        let mut dead = Holder::for_this_process(0, "job");
        // A process of this host that no longer runs: the pid exists but started at another time.
        dead.process_start = dead.process_start.map(|s| s + 1);
        assert!(
            cp.try_create_json(&lock_name(0), &dead)
                .await
                .expect("written")
        );
        let zombie = QueryLock {
            checkpoint: cp.clone(),
            holder: Arc::new(tokio::sync::Mutex::new(dead)),
            heartbeat: tokio::spawn(async {}),
            renewals: Arc::new(std::sync::Mutex::new(Renewals {
                last: std::time::Instant::now(),
                failure: None,
            })),
            lease: Lease::default(),
            released: true,
        };
        let taken = QueryLock::acquire(&cp, "job").await.expect("took over");
        assert_eq!(taken.holder.lock().await.epoch, 1);
        let fenced = zombie.check_held().await.expect_err("fenced").to_string();
        assert!(fenced.contains("took this query over"), "{fenced}");
        taken.check_held().await.expect("new owner holds it");
    }

    #[test]
    fn an_owner_in_another_pid_namespace_or_host_is_not_judged_by_pid() {
        let mut other = Holder::for_this_process(1, "job");
        other.pid_namespace = Some("pid:[1]".into());
        // Its pid means nothing here: a pid that does not run in this namespace is no proof.
        other.pid = u32::MAX;
        assert_eq!(other.known_alive(), None);
        let mut foreign = Holder::for_this_process(3, "job");
        foreign.host = "some-other-host".into();
        assert_eq!(foreign.known_alive(), None);
        foreign.released = true;
        assert_eq!(foreign.known_alive(), Some(false));
        let mut mine = Holder::for_this_process(4, "job");
        assert_eq!(mine.known_alive(), Some(true));
        mine.process_start = mine.process_start.map(|s| s + 1);
        assert_eq!(
            mine.known_alive(),
            Some(false),
            "a reused pid is another process"
        );
    }
}
