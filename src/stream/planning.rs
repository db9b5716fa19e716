//! How a streaming query's INSERT becomes the plan of each batch: what it reads and where it
//! writes ([`analyse`]), the checks Spark makes when a query starts ([`check_plan`]), whether a
//! replayed batch computes the same rows ([`replays_identically`]), and the physical plan of one
//! batch, with every stream table bound to its slice ([`physical_plan`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::view::ViewTable;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, Volatility, WriteOp};
use datafusion::physical_plan::ExecutionPlan;

use super::ordered::keep_order as keep_order_in;
use super::stateful::{OutputMode, check_sites};
use crate::checkpoint::{OffsetsEntry, PartitionSlice};
use crate::error::{Error, Result};
use crate::kafka::offsets::PartitionRange;
use crate::kafka::{KafkaTable, TopicPartition};
use crate::sinks::{SinkKinds, StreamingSink};
use crate::window::table::WindowedTable;

/// What a query reads and where it writes, found in its INSERT statement.
pub(super) struct Plan {
    pub(super) sink: Arc<dyn StreamingSink>,
    pub(super) sources: BTreeMap<String, Arc<KafkaTable>>,
    /// Whether a replay of a batch computes the same rows (see [`BatchContext`]).
    pub(super) replay_deterministic: bool,
}

pub(super) fn plan_error(e: DataFusionError) -> Error {
    Error::DataFusion(e)
}

/// Finds the sink and the stream sources of `insert_sql`.
pub(super) async fn analyse(ctx: &SessionContext, insert_sql: &str) -> Result<Plan> {
    let plan = ctx
        .state()
        .create_logical_plan(insert_sql)
        .await
        .map_err(plan_error)?;
    let LogicalPlan::Dml(DmlStatement {
        table_name,
        op: WriteOp::Insert(_),
        input,
        ..
    }) = &plan
    else {
        return Err(Error::Streaming(
            "a streaming query is an INSERT INTO sink SELECT … statement".to_string(),
        ));
    };
    let provider: Arc<dyn TableProvider> = ctx
        .table_provider(table_name.clone())
        .await
        .map_err(plan_error)?;
    if let Some(kafka) = provider.downcast_ref::<KafkaTable>() {
        kafka.check_insert(input).map_err(plan_error)?;
    }
    let kinds = ctx
        .state()
        .config()
        .get_extension::<SinkKinds>()
        .unwrap_or_default();
    let sink = kinds.find(&provider, input).map_err(plan_error)?.ok_or_else(|| {
        Error::Streaming(format!(
            "table '{table_name}' cannot take a streaming query's output: streaming sinks are {}",
            kinds.describe()
        ))
    })?;
    refuse_streams_in_subqueries(input)?;
    let sources = stream_sources(input)?;
    if sources.is_empty() {
        return Err(Error::Streaming(
            "the query reads no Kafka stream (a Kafka table without endingOffsets); run it as a \
             plain INSERT instead"
                .to_string(),
        ));
    }
    Ok(Plan {
        sink,
        sources,
        replay_deterministic: replays_identically(input)?,
    })
}

/// A stream table read inside a subquery (`WHERE id IN (SELECT id FROM stream)`) would be read
/// whole at every batch, not batch by batch: refused.
fn refuse_streams_in_subqueries(plan: &LogicalPlan) -> Result<()> {
    let mut subqueries: Vec<LogicalPlan> = vec![];
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Some(subquery) = subquery_of(e) {
                    subqueries.push(subquery.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(plan_error)?;
    let mut found = None;
    for subquery in &subqueries {
        if let Some(name) = stream_sources(subquery)?.keys().next() {
            found = Some(name.clone());
        }
    }
    match found {
        Some(name) => Err(Error::Streaming(format!(
            "stream table '{name}' is read inside a subquery, which would read the whole topic \
             again at every batch instead of one batch's records; join the stream instead (on \
             windows, for two streams), or read a bounded table (one with endingOffsets) in \
             the subquery"
        ))),
        None => Ok(()),
    }
}

fn subquery_of(expr: &datafusion::logical_expr::Expr) -> Option<&LogicalPlan> {
    use datafusion::logical_expr::Expr;
    match expr {
        Expr::ScalarSubquery(s) => Some(&s.subquery),
        Expr::InSubquery(s) => Some(&s.subquery.subquery),
        Expr::Exists(s) => Some(&s.subquery.subquery),
        _ => None,
    }
}

/// Whether a batch run again over the same slices computes the same rows: the plan reads
/// nothing but stream tables (also through windows and views) and calls only immutable
/// functions (`now()` is stable, not immutable: a replay would stamp other times).
pub(super) fn replays_identically(plan: &LogicalPlan) -> Result<bool> {
    let mut same = true;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && !replays_identically_from(&source_as_provider(&scan.source)?)?
        {
            same = false;
        }
        for expr in node.expressions() {
            expr.apply(|e| {
                if !is_immutable(e) {
                    same = false;
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(plan_error)?;
    Ok(same)
}

fn replays_identically_from(provider: &Arc<dyn TableProvider>) -> datafusion::error::Result<bool> {
    if let Some(kafka) = provider.downcast_ref::<KafkaTable>() {
        return Ok(kafka.is_stream());
    }
    if let Some(windowed) = provider.downcast_ref::<WindowedTable>() {
        return replays_identically_from(windowed.inner());
    }
    if let Some(view) = provider.downcast_ref::<ViewTable>() {
        return replays_identically(view.logical_plan())
            .map_err(|e| DataFusionError::External(Box::new(e)));
    }
    Ok(false)
}

/// Whether `expr` (not its children) gives the same value every time for the same input.
fn is_immutable(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarFunction(f) => f.func.signature().volatility == Volatility::Immutable,
        Expr::WindowFunction(_) => false,
        _ => true,
    }
}

/// The Kafka stream tables `plan` scans (also inside windows and views), by table name.
fn stream_sources(plan: &LogicalPlan) -> Result<BTreeMap<String, Arc<KafkaTable>>> {
    let mut sources = BTreeMap::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Ok(provider) = source_as_provider(&scan.source)
        {
            streams_in(&provider, &mut sources)?;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(plan_error)?;
    Ok(sources)
}

fn streams_in(
    provider: &Arc<dyn TableProvider>,
    sources: &mut BTreeMap<String, Arc<KafkaTable>>,
) -> datafusion::error::Result<()> {
    if let Some(kafka) = provider.downcast_ref::<KafkaTable>()
        && kafka.is_stream()
    {
        sources.insert(kafka.name().to_string(), Arc::new(kafka.clone()));
    } else if let Some(windowed) = provider.downcast_ref::<WindowedTable>() {
        streams_in(windowed.inner(), sources)?;
    } else if let Some(view) = provider.downcast_ref::<ViewTable>() {
        view.logical_plan().apply(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Ok(inner) = source_as_provider(&scan.source)
            {
                streams_in(&inner, sources)?;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    Ok(())
}

/// `provider` reading batch slices instead of its streams (`bound`, by table name), with
/// windows dropping rows later than `watermark_ms`; `None` when it reads no stream.
fn rebind(
    provider: &Arc<dyn TableProvider>,
    bound: &BTreeMap<&str, Arc<KafkaTable>>,
    watermark_ms: Option<i64>,
) -> datafusion::error::Result<Option<Arc<dyn TableProvider>>> {
    if let Some(kafka) = provider.downcast_ref::<KafkaTable>() {
        return Ok(bound
            .get(kafka.name())
            .map(|t| Arc::clone(t) as Arc<dyn TableProvider>));
    }
    if let Some(windowed) = provider.downcast_ref::<WindowedTable>() {
        return Ok(match rebind(windowed.inner(), bound, watermark_ms)? {
            Some(inner) => Some(Arc::new(
                windowed.with_inner(inner)?.with_watermark(watermark_ms),
            )),
            None => None,
        });
    }
    if let Some(view) = provider.downcast_ref::<ViewTable>() {
        let mut changed = false;
        let plan = view
            .logical_plan()
            .clone()
            .transform_up(|node| rebind_scan(node, bound, watermark_ms, &mut changed))?
            .data;
        return Ok(changed.then(|| {
            Arc::new(ViewTable::new(plan, view.definition().cloned())) as Arc<dyn TableProvider>
        }));
    }
    Ok(None)
}

/// A TableScan node rebound by [`rebind`].
fn rebind_scan(
    node: LogicalPlan,
    bound: &BTreeMap<&str, Arc<KafkaTable>>,
    watermark_ms: Option<i64>,
    changed: &mut bool,
) -> datafusion::error::Result<Transformed<LogicalPlan>> {
    let LogicalPlan::TableScan(mut scan) = node else {
        return Ok(Transformed::no(node));
    };
    let provider = source_as_provider(&scan.source)?;
    match rebind(&provider, bound, watermark_ms)? {
        Some(rebound) => {
            *changed = true;
            scan.source = provider_as_source(rebound);
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        }
        None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
    }
}

/// Each source table's ranges in a batch's slice.
pub(super) fn slices_of(entry: &OffsetsEntry) -> BTreeMap<String, Vec<PartitionRange>> {
    entry
        .sources
        .iter()
        .map(|(table, slices)| (table.clone(), ranges_of(slices)))
        .collect()
}

/// The INSERT's input as DataFusion plans it from the statement's SQL, before any slice is
/// bound to it: planned once when the query starts, as Spark plans a query once, and bound to
/// each batch's slice by [`physical_plan`].
pub(super) async fn statement_input(ctx: &SessionContext, insert_sql: &str) -> Result<LogicalPlan> {
    let plan = ctx
        .state()
        .create_logical_plan(insert_sql)
        .await
        .map_err(plan_error)?;
    let LogicalPlan::Dml(DmlStatement { input, .. }) = plan else {
        return Err(Error::Streaming(
            "the query is no longer an INSERT".to_string(),
        ));
    };
    Ok(Arc::unwrap_or_clone(input))
}

/// The physical plan of `input` (see [`statement_input`]) over one batch: each Kafka source
/// read with its slice, event-time filters at `watermark_ms`, and, with `keep_order`, joins
/// that keep the stream's order. A fresh session state each time, so that functions such as
/// `now()` are evaluated for this batch.
pub(super) async fn physical_plan(
    ctx: &SessionContext,
    input: &LogicalPlan,
    sources: &BTreeMap<String, Arc<KafkaTable>>,
    slices: &BTreeMap<String, Vec<PartitionRange>>,
    watermark_ms: Option<i64>,
    keep_order: bool,
) -> Result<(SessionState, Arc<dyn ExecutionPlan>)> {
    let bound: BTreeMap<&str, Arc<KafkaTable>> = sources
        .iter()
        .map(|(table, kafka)| {
            let ranges = slices.get(table).cloned().unwrap_or_default();
            (table.as_str(), Arc::new(kafka.bound_to(ranges)))
        })
        .collect();
    let state = if keep_order {
        keep_order_in(ctx.state())
    } else {
        ctx.state()
    };
    let mut rebound = false;
    let input = input
        .clone()
        .transform_up(|node| rebind_scan(node, &bound, watermark_ms, &mut rebound))
        .map_err(plan_error)?
        .data;
    let physical = DataFrame::new(state.clone(), input)
        .create_physical_plan()
        .await
        .map_err(plan_error)?;
    Ok((state, physical))
}

/// Checks, before the query starts, what Spark checks when a query starts: the plan's
/// aggregations and joins can run batch by batch in `mode`, and the sink takes `mode`.
pub(super) async fn check_plan(
    ctx: &SessionContext,
    input: &LogicalPlan,
    plan: &Plan,
    mode: OutputMode,
) -> Result<()> {
    let (_, physical) =
        physical_plan(ctx, input, &plan.sources, &BTreeMap::new(), None, false).await?;
    let streams: HashSet<String> = plan.sources.keys().cloned().collect();
    let stateful = check_sites(&physical, &streams, mode).map_err(plan_error)?;
    let capabilities = plan.sink.capabilities();
    if stateful && !capabilities.output_modes.contains(&mode) {
        return Err(Error::Streaming(format!(
            "'outputMode' '{}' is not supported by the sink: {}",
            mode.name(),
            capabilities.other_modes_hint
        )));
    }
    if !stateful && mode == OutputMode::Complete {
        return Err(Error::Streaming(
            "'outputMode' 'complete' needs an aggregation (it re-emits every group each batch); \
             this query has none: use append mode (the default)"
                .to_string(),
        ));
    }
    Ok(())
}

/// True when `insert_sql` reads a Kafka stream table.
pub async fn reads_stream(ctx: &SessionContext, insert_sql: &str) -> bool {
    match ctx.state().create_logical_plan(insert_sql).await {
        Ok(plan) => stream_sources(&plan).is_ok_and(|s| !s.is_empty()),
        Err(_) => false,
    }
}

pub(super) fn ranges_of(slices: &[PartitionSlice]) -> Vec<PartitionRange> {
    slices
        .iter()
        .map(|s| PartitionRange {
            tp: TopicPartition::new(&s.topic, s.partition),
            start: s.start,
            end: s.end,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use super::*;
    use crate::kafka::KafkaTableFactory;
    use crate::window::TumbleFunction;

    async fn session() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_udtf("tumble", Arc::new(TumbleFunction));
        {
            let state = ctx.state_ref();
            let mut state = state.write();
            state.table_factories_mut().insert(
                "KAFKA".to_string(),
                Arc::new(KafkaTableFactory::new(Arc::new(RwLock::new(Some(
                    "127.0.0.1:1".to_string(),
                ))))),
            );
        }
        for sql in [
            "CREATE EXTERNAL TABLE s (k VARCHAR, v BIGINT, ts TIMESTAMP) STORED AS KAFKA LOCATION 'kafka:' OPTIONS ('subscribe' 's', 'format' 'json')",
            "CREATE EXTERNAL TABLE lookup (k VARCHAR, name VARCHAR) STORED AS KAFKA LOCATION 'kafka:' OPTIONS ('subscribe' 'l', 'format' 'json', 'endingOffsets' 'latest')",
            "CREATE VIEW joined AS SELECT s.k, s.v, s.ts, l.name FROM s JOIN lookup l ON s.k = l.k",
            "CREATE VIEW plain AS SELECT k, v, ts FROM s WHERE v > 0",
        ] {
            ctx.sql(sql).await.expect(sql);
        }
        ctx
    }

    async fn same(ctx: &SessionContext, query: &str) -> bool {
        let plan = ctx.state().create_logical_plan(query).await.expect(query);
        replays_identically(&plan).expect(query)
    }

    #[tokio::test]
    async fn a_replay_computes_the_same_rows_only_from_streams_and_immutable_functions() {
        let ctx = session().await;
        assert!(same(&ctx, "SELECT k, v * 2 FROM s WHERE v > 1").await);
        assert!(
            same(
                &ctx,
                "SELECT k, count(*) FROM tumble(plain, ts, INTERVAL '1' SECOND) GROUP BY k"
            )
            .await
        );
        assert!(
            !same(&ctx, "SELECT k, now() FROM s").await,
            "now() is stable, not immutable"
        );
        assert!(!same(&ctx, "SELECT k, random() FROM s").await);
        assert!(!same(&ctx, "SELECT s.k, l.name FROM s JOIN lookup l ON s.k = l.k").await);
        assert!(
            !same(
                &ctx,
                "SELECT k, count(*) FROM tumble(joined, ts, INTERVAL '1' SECOND) GROUP BY k"
            )
            .await,
            "a window over a view that joins a lookup table"
        );
    }
}
