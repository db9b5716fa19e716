//! The state flow checked against DataFusion itself: partial plans over disjoint slices of a
//! table, merged (also through saved and restored state), evaluate to exactly what the same
//! GROUP BY gives over the whole table.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;

const ROWS: usize = 600;
/// The slices the table is cut into, each read by its own partial plan.
const SLICES: [(usize, usize); 3] = [(0, 200), (200, 450), (450, 600)];

/// Rows (k, v): six keys including NULL, values with NULLs and negatives.
fn data() -> RecordBatch {
    let keys = ["a", "b", "c", "d", "e"];
    let k: StringArray = (0..ROWS).map(|i| keys.get(i % 6).copied()).collect();
    let v: Int64Array = (0..ROWS)
        .map(|i| (i % 11 != 0).then(|| (i * 37 % 101) as i64 - 20))
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    RecordBatch::try_new(schema, vec![Arc::new(k), Arc::new(v)]).unwrap()
}

/// A session with `t` (all rows) and `t0`, `t1`, `t2` (the slices), each in two partitions
/// (one when the session has one target partition, so that DataFusion plans a Single mode).
fn context(config: SessionConfig) -> SessionContext {
    let single = config.target_partitions() == 1;
    let ctx = SessionContext::new_with_config(config);
    let all = data();
    let register = |name: &str, batch: RecordBatch| {
        let half = batch.num_rows() / 2;
        let parts = if single {
            vec![vec![batch.clone()]]
        } else {
            vec![
                vec![batch.slice(0, half)],
                vec![batch.slice(half, batch.num_rows() - half)],
            ]
        };
        let table = MemTable::try_new(batch.schema(), parts).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    };
    register("t", all.clone());
    for (i, (from, to)) in SLICES.iter().enumerate() {
        register(&format!("t{i}"), all.slice(*from, to - from));
    }
    ctx
}

async fn plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// The spec of `query` (with `{}` for the table) over `t`, and the partial-state batches of
/// each slice.
async fn partials(ctx: &SessionContext, query: &str) -> (AggregateSpec, Vec<Vec<RecordBatch>>) {
    let whole = plan(ctx, &query.replace("{}", "t")).await;
    let spec = AggregateSpec::from_plan(find_final_aggregate(&whole).unwrap()).unwrap();
    let mut slices = vec![];
    for i in 0..SLICES.len() {
        let sliced = plan(ctx, &query.replace("{}", &format!("t{i}"))).await;
        let input = partial_input(find_final_aggregate(&sliced).unwrap()).unwrap();
        let partial = spec.partial_plan(input).unwrap();
        slices.push(collect(partial, ctx.task_ctx()).await.unwrap());
    }
    (spec, slices)
}

/// `batch` sorted by its first `keys` columns.
fn sorted(batch: &RecordBatch, keys: usize) -> RecordBatch {
    if keys == 0 {
        return batch.clone();
    }
    let columns: Vec<SortColumn> = batch.columns()[..keys]
        .iter()
        .map(|c| SortColumn {
            values: Arc::clone(c),
            options: None,
        })
        .collect();
    take_record_batch(batch, &lexsort_to_indices(&columns, None).unwrap()).unwrap()
}

/// What DataFusion computes for `query` over the whole table, sorted by group.
async fn direct(ctx: &SessionContext, query: &str, keys: usize) -> RecordBatch {
    let batches = ctx
        .sql(&query.replace("{}", "t"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let schema = batches[0].schema();
    sorted(
        &arrow::compute::concat_batches(&schema, &batches).unwrap(),
        keys,
    )
}

/// Checks that merging all slices' partial states evaluates to DataFusion's own result.
async fn merges_like_datafusion(config: SessionConfig, query: &str, keys: usize) {
    let ctx = context(config);
    let (spec, slices) = partials(&ctx, query).await;
    assert_eq!(spec.num_group_columns(), keys);
    let merged = spec.merge(&slices.concat()).unwrap();
    let got = sorted(&merged.evaluate().unwrap(), keys);
    let expected = direct(&ctx, query, keys).await;
    assert_eq!(got.num_rows(), merged.num_groups());
    assert_eq!(got.schema(), *spec.final_schema());
    let types = |b: &RecordBatch| -> Vec<DataType> {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect()
    };
    assert_eq!(types(&got), types(&expected), "{query}");
    assert_eq!(got.columns(), expected.columns(), "{query}");
}

const AGGREGATES: &str =
    "SELECT k, count(*), sum(v), avg(v), min(v), max(v), approx_distinct(v) FROM {} GROUP BY k";

#[tokio::test]
async fn merged_partials_evaluate_like_the_direct_query() {
    merges_like_datafusion(SessionConfig::new(), AGGREGATES, 1).await;
}

#[tokio::test]
async fn filter_clauses_apply_in_the_partial_stage() {
    let query = "SELECT k, count(*) FILTER (WHERE v > 50), sum(v) FILTER (WHERE v % 2 = 0), \
                 max(v) FROM {} GROUP BY k";
    merges_like_datafusion(SessionConfig::new(), query, 1).await;
}

#[tokio::test]
async fn aggregates_without_group_by_merge_into_one_group() {
    merges_like_datafusion(
        SessionConfig::new(),
        "SELECT count(*), sum(v), avg(v) FROM {}",
        0,
    )
    .await;
}

#[tokio::test]
async fn single_mode_aggregates_work_too() {
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = context(config.clone());
    let whole = plan(&ctx, &AGGREGATES.replace("{}", "t")).await;
    let agg = find_final_aggregate(&whole).unwrap();
    assert!(
        matches!(
            agg.mode(),
            AggregateMode::Single | AggregateMode::SinglePartitioned
        ),
        "{:?}",
        agg.mode()
    );
    merges_like_datafusion(config, AGGREGATES, 1).await;
}

#[tokio::test]
async fn restored_state_merges_like_merging_everything_at_once() {
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, AGGREGATES).await;
    let at_once = spec.merge(&slices.concat()).unwrap().evaluate().unwrap();

    // Batch 1: slices 0 and 1, saved as state; batch 2: restored state plus slice 2.
    let first = spec
        .merge(&[slices[0].clone(), slices[1].clone()].concat())
        .unwrap();
    let state = first.state().unwrap();
    assert_eq!(state.num_rows(), first.num_groups());
    assert!(state_bytes(std::slice::from_ref(&state)) > 0);
    let bytes = encode(spec.partial_schema(), &[state]).unwrap();
    let (schema, mut restored) = decode(&bytes).unwrap();
    assert_eq!(schema, *spec.partial_schema());
    restored.extend(slices[2].iter().cloned());
    let later = spec.merge(&restored).unwrap().evaluate().unwrap();
    assert_eq!(sorted(&later, 1), sorted(&at_once, 1));
}

#[tokio::test]
async fn split_state_evaluates_closed_and_open_groups_apart() {
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, AGGREGATES).await;
    let merged = spec.merge(&slices.concat()).unwrap();
    let state = merged.state().unwrap();
    let keys = state
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    // "Closed": keys before "c"; NULL keys go with the open ones.
    let mask: BooleanArray = keys.iter().map(|k| k.map(|k| k < "c")).collect();
    let (closed, open) = split_batch(&state, &mask).unwrap();
    assert_eq!((closed.num_rows(), open.num_rows()), (2, 4));
    let closed = spec.merge(&[closed]).unwrap().evaluate().unwrap();
    let open = spec.merge(&[open]).unwrap().evaluate().unwrap();
    let both = arrow::compute::concat_batches(&closed.schema(), &[closed, open]).unwrap();
    assert_eq!(sorted(&both, 1), sorted(&merged.evaluate().unwrap(), 1));
    let err = split_batch(&state, &BooleanArray::from(vec![true])).unwrap_err();
    assert!(err.to_string().contains("cannot split"), "{err}");
}

#[tokio::test]
async fn merging_nothing_gives_no_groups() {
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, AGGREGATES).await;
    for batches in [vec![], vec![slices[0][0].slice(0, 0)]] {
        let merged = spec.merge(&batches).unwrap();
        assert_eq!(merged.num_groups(), 0);
        assert_eq!(merged.state().unwrap().num_rows(), 0);
        let evaluated = merged.evaluate().unwrap();
        assert_eq!(evaluated.num_rows(), 0);
        assert_eq!(evaluated.schema(), *spec.final_schema());
    }
}

#[tokio::test]
async fn misuse_is_refused_with_a_reason() {
    let ctx = context(SessionConfig::new());
    let (spec, _) = partials(&ctx, AGGREGATES).await;
    let err = spec.merge(&[data()]).unwrap_err();
    assert!(
        err.to_string().contains("batch 0 to merge has columns"),
        "{err}"
    );

    let other = plan(&ctx, "SELECT v, k FROM t").await;
    let err = spec.partial_plan(other).unwrap_err();
    assert!(
        err.to_string().contains("input must have the columns"),
        "{err}"
    );

    let whole = plan(&ctx, &AGGREGATES.replace("{}", "t")).await;
    let partial = spec.partial_plan(partial_input(find_final_aggregate(&whole).unwrap()).unwrap());
    let partial = partial.unwrap();
    let partial = partial
        .downcast_ref::<datafusion::physical_plan::aggregates::AggregateExec>()
        .unwrap();
    let err = AggregateSpec::from_plan(partial).unwrap_err();
    assert!(err.to_string().contains("not a Partial one"), "{err}");

    let grouping_sets = plan(&ctx, "SELECT k, v, count(*) FROM t GROUP BY CUBE (k, v)").await;
    let err = AggregateSpec::from_plan(find_final_aggregate(&grouping_sets).unwrap()).unwrap_err();
    assert!(err.to_string().contains("GROUPING SETS"), "{err}");
}

/// What merging `batches` all at once (the whole-state path) evaluates to, sorted by group.
fn merged_at_once(spec: &AggregateSpec, batches: &[RecordBatch], keys: usize) -> RecordBatch {
    sorted(&spec.merge(batches).unwrap().evaluate().unwrap(), keys)
}

#[tokio::test]
async fn a_group_table_merges_batch_by_batch_like_all_at_once() {
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, AGGREGATES).await;
    for parts in [1, 3] {
        let mut table = GroupTable::new(spec.clone(), None, parts).unwrap();
        let mut applied = vec![];
        for slice in &slices {
            let changed = table.apply(slice).unwrap();
            applied.extend(slice.iter().cloned());
            // The changes are the touched groups' states: as merging everything so far, for
            // those groups.
            let touched = sorted(&spec.evaluate_groups(&changed).unwrap(), 1);
            let everything = merged_at_once(&spec, &applied, 1);
            let keys = touched
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let all_keys = everything
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let mask: BooleanArray = all_keys
                .iter()
                .map(|k| Some(keys.iter().any(|t| t == k)))
                .collect();
            assert_eq!(touched, split_batch(&everything, &mask).unwrap().0);
        }
        let whole = spec.evaluate_groups(&table.snapshot().unwrap()).unwrap();
        assert_eq!(
            sorted(&whole, 1).columns(),
            direct(&ctx, AGGREGATES, 1).await.columns()
        );
        assert_eq!(table.groups(), 6);
    }
}

#[tokio::test]
async fn a_group_table_restores_from_a_snapshot_and_later_changes() {
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, AGGREGATES).await;
    let mut running = GroupTable::new(spec.clone(), None, 2).unwrap();
    running.apply(&slices[0]).unwrap();
    let snapshot = running.snapshot().unwrap();
    let first_changes = running.apply(&slices[1]).unwrap();
    let second_changes = running.apply(&slices[2]).unwrap();

    let mut restored = GroupTable::new(spec.clone(), None, 3).unwrap();
    let saved = [snapshot, first_changes, second_changes];
    let saved: Vec<RecordBatch> = saved
        .iter()
        .map(|b| {
            let (_, batches) =
                decode(&encode(spec.partial_schema(), std::slice::from_ref(b)).unwrap()).unwrap();
            arrow::compute::concat_batches(spec.partial_schema(), &batches).unwrap()
        })
        .collect();
    restored.restore(&saved).unwrap();
    let evaluate =
        |t: &GroupTable| sorted(&spec.evaluate_groups(&t.snapshot().unwrap()).unwrap(), 1);
    assert_eq!(evaluate(&restored), evaluate(&running));
    assert_eq!(
        evaluate(&restored).columns(),
        direct(&ctx, AGGREGATES, 1).await.columns()
    );
    let err = restored.restore(&[data()]).unwrap_err();
    assert!(
        err.to_string().contains("batch 0 to merge has columns"),
        "{err}"
    );
}

#[tokio::test]
async fn a_group_table_closes_windows_and_stays_exact_when_compacted() {
    // `v` stands for the window end (epoch milliseconds); NULL ends never close.
    let query = "SELECT k, v, count(*), sum(v), max(v) FROM {} GROUP BY k, v";
    let ctx = context(SessionConfig::new());
    let (spec, slices) = partials(&ctx, query).await;
    let mut table = GroupTable::new(spec.clone(), Some(WindowEnd::Column(1)), 2).unwrap();
    let mut open: Vec<RecordBatch> = vec![];
    let mut closed_rows = 0;
    // Every slice again and again, closing a little more each round: the table outgrows its
    // compaction slack many times over.
    for round in 0..40 {
        for slice in &slices {
            table.apply(slice).unwrap();
            open.extend(slice.iter().cloned());
        }
        let watermark = round - 20;
        let closed = table.close(watermark).unwrap();
        let expected = spec.merge(&open).unwrap().state().unwrap();
        let ends = WindowEnd::Column(1).ends_ms(&expected).unwrap();
        let mask: BooleanArray = ends
            .iter()
            .map(|e| Some(e.is_some_and(|e| e <= watermark)))
            .collect();
        let (expected_closed, expected_open) = split_batch(&expected, &mask).unwrap();
        assert_eq!(
            sorted(&spec.evaluate_groups(&closed).unwrap(), 2),
            sorted(&spec.evaluate_groups(&expected_closed).unwrap(), 2),
            "round {round}"
        );
        assert_closed_in_end_then_key_order(&closed);
        closed_rows += closed.num_rows();
        open = vec![expected_open];
        let kept = spec.evaluate_groups(&table.snapshot().unwrap()).unwrap();
        assert_eq!(
            sorted(&kept, 2),
            merged_at_once(&spec, &open, 2),
            "round {round}"
        );
        assert_eq!(table.groups(), open[0].num_rows());
    }
    assert!(closed_rows > 0);
}

/// Closed groups (keyed by `k, v`, `v` the window end) come by window end, then by key, so a
/// key's windows reach a sink in time order whichever part kept them.
fn assert_closed_in_end_then_key_order(closed: &RecordBatch) {
    let ends = WindowEnd::Column(1).ends_ms(closed).unwrap();
    let order: Vec<SortColumn> = [Arc::new(ends) as ArrayRef, Arc::clone(closed.column(0))]
        .into_iter()
        .map(|values| SortColumn {
            values,
            options: None,
        })
        .collect();
    let indices = lexsort_to_indices(&order, None).unwrap();
    let in_order: Vec<u32> = (0..closed.num_rows() as u32).collect();
    assert_eq!(indices.values().to_vec(), in_order);
}

/// The topmost aggregate in `plan` that produces final values (the one a GROUP BY query's
/// result comes from), if any.
fn find_final_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    if let Some(agg) = plan.downcast_ref::<AggregateExec>()
        && matches!(
            agg.mode(),
            AggregateMode::Final
                | AggregateMode::FinalPartitioned
                | AggregateMode::Single
                | AggregateMode::SinglePartitioned
        )
    {
        return Some(agg);
    }
    plan.children().into_iter().find_map(find_final_aggregate)
}
