//! Which running instance owns a query's checkpoint, so that two instances never both write.
//!
//! The owner holds `lock/<epoch>`, a JSON record of its host, process and heartbeat, created
//! put-if-absent. A second instance that finds a live owner is refused, naming it. An owner is
//! dead when its record says it released the lock, when it ran on this host and its process is
//! gone (a crashed or killed engine restarts at once), or when its heartbeat is older than
//! [`STALE_AFTER`] (an owner on another host). A new instance takes over from a dead owner by
//! creating `lock/<epoch + 1>`; only one can, and the old owner, should it still be running,
//! sees the newer epoch at its next check and stops: it was fenced.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{Checkpoint, now_ms};
use crate::error::Result;

/// How often the owner refreshes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// After how long without a heartbeat an owner on another host counts as dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

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

    /// Whether the owner described here may still be running.
    fn is_live(&self, now_ms: i64) -> bool {
        if self.released {
            return false;
        }
        if self.host == host_name()
            && self.pid_namespace.is_some()
            && self.pid_namespace == pid_namespace()
            && let Some(running) = process_running(self.pid, self.process_start)
        {
            return running;
        }
        now_ms - self.heartbeat_ms < STALE_AFTER.as_millis() as i64
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
    released: bool,
}

fn lock_name(epoch: u64) -> String {
    format!("lock/{epoch}")
}

impl QueryLock {
    /// Takes the lock of `checkpoint` for query `query`, or fails naming the live owner.
    pub async fn acquire(checkpoint: &Checkpoint, query: &str) -> Result<QueryLock> {
        // A few rounds: a concurrent instance may create or take over between our reads.
        for _ in 0..3 {
            let epoch = match checkpoint.batch_ids("lock").await?.last() {
                None => 0,
                Some(&current) => {
                    match checkpoint.read_json::<Holder>(&lock_name(current)).await? {
                        None => continue,
                        Some(owner) if owner.is_live(now_ms()) => {
                            return Err(checkpoint.error(format!(
                                "{} is already running this query; stop it first (a killed \
                             instance on another host counts as stopped {} s after its last \
                             heartbeat)",
                                owner.describe(),
                                STALE_AFTER.as_secs()
                            )));
                        }
                        Some(_) => current + 1,
                    }
                }
            };
            let holder = Holder::for_this_process(epoch, query);
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
                let heartbeat = tokio::spawn(beat(checkpoint.clone(), Arc::clone(&holder)));
                return Ok(QueryLock {
                    checkpoint: checkpoint.clone(),
                    holder,
                    heartbeat,
                    released: false,
                });
            }
        }
        Err(checkpoint
            .error("another instance of this query is starting at the same time; only one may run"))
    }

    /// Fails when another instance has taken the checkpoint over since this one took it (any
    /// newer epoch: a later owner deletes the epochs before its own).
    pub async fn check_held(&self) -> Result<()> {
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

/// Refreshes the owner's heartbeat until the lock is released.
async fn beat(checkpoint: Checkpoint, holder: Arc<tokio::sync::Mutex<Holder>>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let current = {
            let mut holder = holder.lock().await;
            holder.heartbeat_ms = now_ms();
            holder.clone()
        };
        if let Err(e) = write_holder(&checkpoint, &current).await {
            log::warn!("{e}");
        }
    }
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
            released: true,
        };
        let taken = QueryLock::acquire(&cp, "job").await.expect("took over");
        assert_eq!(taken.holder.lock().await.epoch, 1);
        let fenced = zombie.check_held().await.expect_err("fenced").to_string();
        assert!(fenced.contains("took this query over"), "{fenced}");
        taken.check_held().await.expect("new owner holds it");
    }

    #[test]
    fn an_owner_in_another_pid_namespace_is_judged_by_its_heartbeat() {
        let mut other = Holder::for_this_process(1, "job");
        other.pid_namespace = Some("pid:[1]".into());
        // Its pid means nothing here: a pid that does not run in this namespace is no proof.
        other.pid = u32::MAX;
        let now = now_ms();
        assert!(other.is_live(now), "a fresh heartbeat keeps it live");
        other.heartbeat_ms = now - STALE_AFTER.as_millis() as i64 - 1;
        assert!(!other.is_live(now));
    }

    #[test]
    fn an_owner_on_another_host_is_live_until_its_heartbeat_is_stale() {
        let mut foreign = Holder::for_this_process(3, "job");
        foreign.host = "some-other-host".into();
        let now = now_ms();
        foreign.heartbeat_ms = now - 1_000;
        assert!(foreign.is_live(now));
        foreign.heartbeat_ms = now - STALE_AFTER.as_millis() as i64 - 1;
        assert!(!foreign.is_live(now));
        foreign.heartbeat_ms = now;
        foreign.released = true;
        assert!(!foreign.is_live(now));
    }
}
