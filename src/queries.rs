//! The streaming queries of a session: starting them from SQL (`CREATE STREAMING QUERY`, or an
//! `INSERT` that reads a stream), listing (`SHOW QUERIES`), describing and stopping them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::stream::Trigger;
use crate::stream::query::{ProgressListener, QueryHandle, QueryOptions, QueryStatus};
use crate::stream::snapshots::DEFAULT_DELTAS_PER_SNAPSHOT;
use crate::stream::stateful::OutputMode;

/// Session settings of streaming queries (`SET weir.checkpoint_root`, `SET weir.trigger`).
#[derive(Debug, Clone, Default)]
pub struct StreamingSettings {
    /// Checkpoints of queries without their own go to `<root>/<query name>`.
    pub checkpoint_root: Option<String>,
    /// The trigger of queries without their own.
    pub trigger: Option<String>,
    /// `spark.sql.streaming.stateStore.minDeltasForSnapshot`, when set.
    pub deltas_per_snapshot: Option<u64>,
}

/// The options a `WITH (…)` clause of CREATE STREAMING QUERY accepts.
pub const QUERY_OPTIONS: [&str; 5] = [
    "trigger",
    "checkpoint",
    "commitOffsetsToGroup",
    "checkpointRetention",
    "outputMode",
];

impl StreamingSettings {
    /// The options of query `name` from its WITH clause and the session's defaults.
    pub fn query_options(&self, name: &str, given: &[(String, String)]) -> Result<QueryOptions> {
        let mut trigger = self.trigger.clone();
        let mut checkpoint = self
            .checkpoint_root
            .as_ref()
            .map(|root| format!("{}/{name}", root.trim_end_matches('/')));
        let mut commit_offsets_to_group = false;
        let mut retention = 100;
        let mut output_mode = OutputMode::Append;
        for (key, value) in given {
            match key.to_ascii_lowercase().as_str() {
                "trigger" => trigger = Some(value.clone()),
                "checkpoint" => checkpoint = Some(value.clone()),
                "commitoffsetstogroup" => {
                    commit_offsets_to_group = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(Error::Streaming(format!(
                                "option 'commitOffsetsToGroup' has the value '{value}'; expected true or false"
                            )));
                        }
                    }
                }
                "checkpointretention" => {
                    retention = value.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                        Error::Streaming(format!("option 'checkpointRetention' has the value '{value}'; expected a positive number of batches"))
                    })?;
                }
                "outputmode" => {
                    output_mode = OutputMode::parse(value).ok_or_else(|| {
                        Error::Streaming(format!(
                            "option 'outputMode' has the value '{value}'; expected append, \
                             update or complete"
                        ))
                    })?;
                }
                _ => {
                    return Err(Error::Streaming(format!(
                        "unknown streaming query option '{key}'; the options are {}",
                        QUERY_OPTIONS.join(", ")
                    )));
                }
            }
        }
        let checkpoint = checkpoint.ok_or_else(|| {
            Error::Streaming(format!(
                "streaming query '{name}' needs a checkpoint location: WITH ('checkpoint' '…'), or \
                 SET weir.checkpoint_root = '…' for every query"
            ))
        })?;
        let trigger = Trigger::parse(trigger.as_deref().unwrap_or("default"))?;
        Ok(QueryOptions {
            trigger,
            checkpoint,
            commit_offsets_to_group,
            retention,
            output_mode,
            deltas_per_snapshot: self
                .deltas_per_snapshot
                .unwrap_or(DEFAULT_DELTAS_PER_SNAPSHOT),
        })
    }
}

/// The queries started in a session, by name.
#[derive(Default)]
pub struct QueryRegistry {
    queries: Mutex<BTreeMap<String, Arc<QueryHandle>>>,
    /// Told about every batch of every query.
    pub listener: Option<ProgressListener>,
}

impl std::fmt::Debug for QueryRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRegistry")
            .field("queries", &self.names())
            .finish()
    }
}

impl QueryRegistry {
    /// A registry telling `listener` about every batch.
    pub fn new(listener: Option<ProgressListener>) -> Self {
        Self {
            queries: Mutex::default(),
            listener,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Arc<QueryHandle>>>> {
        self.queries
            .lock()
            .map_err(|_| Error::Streaming("query registry lock poisoned".to_string()))
    }

    /// Names of the queries.
    pub fn names(&self) -> Vec<String> {
        self.queries
            .lock()
            .map(|q| q.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Fails when a running query has `name`.
    pub fn check_free(&self, name: &str) -> Result<()> {
        match self.lock()?.get(name) {
            Some(q) if q.status() == QueryStatus::Running => Err(Error::Streaming(format!(
                "a streaming query named '{name}' is already running; STOP QUERY {name} first, or \
                 choose another name with CREATE STREAMING QUERY"
            ))),
            _ => Ok(()),
        }
    }

    /// Adds a started query.
    pub fn add(&self, handle: Arc<QueryHandle>) -> Result<()> {
        self.lock()?.insert(handle.name().to_string(), handle);
        Ok(())
    }

    /// The query named `name`.
    pub fn get(&self, name: &str) -> Result<Arc<QueryHandle>> {
        self.lock()?.get(name).cloned().ok_or_else(|| {
            Error::Streaming(format!(
                "no streaming query named '{name}'; SHOW QUERIES lists them"
            ))
        })
    }

    /// Every query.
    pub fn all(&self) -> Vec<Arc<QueryHandle>> {
        self.queries
            .lock()
            .map(|q| q.values().cloned().collect())
            .unwrap_or_default()
    }

    /// `SHOW QUERIES`: one row per query with its latest progress.
    pub fn show(&self) -> Result<RecordBatch> {
        let queries = self.all();
        let progress: Vec<_> = queries.iter().map(|q| q.progress()).collect();
        let status = |q: &QueryHandle| match q.status() {
            QueryStatus::Failed(m) => format!("failed: {m}"),
            other => other.label().to_string(),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("batch", DataType::UInt64, true),
            Field::new("input_rows", DataType::UInt64, true),
            Field::new("rows_per_second", DataType::Float64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("sink", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| q.name().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| status(q)),
            )),
            Arc::new(UInt64Array::from_iter(
                progress.iter().map(|p| p.as_ref().map(|p| p.batch_id)),
            )),
            Arc::new(UInt64Array::from_iter(
                progress
                    .iter()
                    .map(|p| p.as_ref().map(|p| p.num_input_rows)),
            )),
            Arc::new(Float64Array::from_iter(progress.iter().map(|p| {
                p.as_ref().map(|p| p.processed_rows_per_second.round())
            }))),
            Arc::new(Int64Array::from_iter(
                progress.iter().map(|p| p.as_ref().map(|p| p.total_lag())),
            )),
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| q.sink().to_string()),
            )),
            Arc::new(StringArray::from_iter_values(
                queries.iter().map(|q| q.id().to_string()),
            )),
        ];
        RecordBatch::try_new(schema, columns).map_err(|e| Error::DataFusion(e.into()))
    }
}
