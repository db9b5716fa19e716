//! Data generators as table functions: `nexmark(events [, events_per_second [, seed]])` yields
//! the Nexmark event stream and `datagen(rows [, keys [, seed]])` simple keyed rows, both
//! deterministic from their seed, generated in parallel partitions, for
//! `INSERT INTO topic SELECT … FROM nexmark(…)` in demos and load tests.

pub mod datagen;
pub mod nexmark;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

/// A deterministic generator of numbered rows: row `i` depends only on the seed and `i`.
pub trait RowGenerator: std::fmt::Debug + Send + Sync + 'static {
    /// The rows' schema.
    fn schema(&self) -> SchemaRef;
    /// How many rows there are.
    fn rows(&self) -> u64;
    /// Rows `[start, end)`.
    fn batch(&self, start: u64, end: u64) -> Result<RecordBatch>;
}

/// A fast, well-mixed random stream (SplitMix64), seeded per row so any row can be made alone.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    /// The stream of row `row` under `seed`.
    pub fn for_row(seed: u64, row: u64) -> Self {
        let mut r = Random(seed ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, n)` (0 when `n` is 0).
    pub fn next_below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `len` random lower-case letters.
    pub fn letters(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'a' + self.next_below(26) as u8) as char)
            .collect()
    }
}

/// The batches of a generator, split into contiguous row ranges, one per partition.
#[derive(Debug)]
struct GeneratedPartition {
    generator: Arc<dyn RowGenerator>,
    start: u64,
    end: u64,
    schema: SchemaRef,
}

impl PartitionStream for GeneratedPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch_size = ctx.session_config().batch_size() as u64;
        let generator = Arc::clone(&self.generator);
        let (start, end) = (self.start, self.end);
        let batches = futures::stream::iter((start..end).step_by(batch_size.max(1) as usize))
            .map(move |from| generator.batch(from, (from + batch_size).min(end)));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// A table whose rows a [`RowGenerator`] makes on the fly.
#[derive(Debug)]
pub struct GeneratedTable {
    generator: Arc<dyn RowGenerator>,
}

#[async_trait]
impl TableProvider for GeneratedTable {
    fn schema(&self) -> SchemaRef {
        self.generator.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = self.generator.rows();
        let parts = (state.config().target_partitions() as u64).clamp(1, rows.max(1));
        let partitions: Vec<Arc<dyn PartitionStream>> = (0..parts)
            .map(|i| {
                Arc::new(GeneratedPartition {
                    generator: Arc::clone(&self.generator),
                    start: rows * i / parts,
                    end: rows * (i + 1) / parts,
                    schema: self.generator.schema(),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            self.generator.schema(),
            partitions,
            projection,
            vec![],
            false,
            limit,
        )?))
    }
}

use futures::StreamExt;

/// The integer arguments of a generator call: `name(a [, b [, c]])` with defaults.
fn integer_args(
    name: &str,
    exprs: &[Expr],
    names: &[&str],
    defaults: &[Option<i64>],
) -> Result<Vec<i64>> {
    let usage = || {
        let shown: Vec<String> = names
            .iter()
            .zip(defaults)
            .map(|(n, d)| match d {
                Some(d) => format!("{n} = {d}"),
                None => n.to_string(),
            })
            .collect();
        format!("{name}({})", shown.join(", "))
    };
    if exprs.len() > names.len() {
        return Err(DataFusionError::Plan(format!(
            "too many arguments: {}",
            usage()
        )));
    }
    let mut out = vec![];
    for (i, (arg, default)) in names.iter().zip(defaults).enumerate() {
        let value = match exprs.get(i) {
            Some(Expr::Literal(value, _)) => {
                match value.cast_to(&arrow::datatypes::DataType::Int64) {
                    Ok(ScalarValue::Int64(Some(v))) if v >= 0 => v,
                    _ => {
                        return Err(DataFusionError::Plan(format!(
                            "argument '{arg}' of {name} must be a whole number of 0 or more: {}",
                            usage()
                        )));
                    }
                }
            }
            Some(other) => {
                return Err(DataFusionError::Plan(format!(
                    "argument '{arg}' of {name} must be a constant, not {other}: {}",
                    usage()
                )));
            }
            None => default.ok_or_else(|| {
                DataFusionError::Plan(format!("argument '{arg}' is required: {}", usage()))
            })?,
        };
        out.push(value);
    }
    Ok(out)
}

/// `nexmark(events [, events_per_second [, seed]])`.
#[derive(Debug)]
pub struct NexmarkFunction;

impl TableFunctionImpl for NexmarkFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> Result<Arc<dyn TableProvider>> {
        let v = integer_args(
            "nexmark",
            args.exprs(),
            &["events", "events_per_second", "seed"],
            &[None, Some(10_000), Some(0)],
        )?;
        if v[1] == 0 {
            return Err(DataFusionError::Plan(
                "argument 'events_per_second' of nexmark must be positive".to_string(),
            ));
        }
        let generator = nexmark::Nexmark::new(v[0] as u64, v[1] as u64, v[2] as u64);
        Ok(Arc::new(GeneratedTable {
            generator: Arc::new(generator),
        }))
    }
}

/// `datagen(rows [, keys [, seed]])`.
#[derive(Debug)]
pub struct DatagenFunction;

impl TableFunctionImpl for DatagenFunction {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> Result<Arc<dyn TableProvider>> {
        let v = integer_args(
            "datagen",
            args.exprs(),
            &["rows", "keys", "seed"],
            &[None, Some(1000), Some(0)],
        )?;
        if v[1] == 0 {
            return Err(DataFusionError::Plan(
                "argument 'keys' of datagen must be positive".to_string(),
            ));
        }
        let generator = datagen::Datagen::new(v[0] as u64, v[1] as u64, v[2] as u64);
        Ok(Arc::new(GeneratedTable {
            generator: Arc::new(generator),
        }))
    }
}
