//! The SQL table functions `tumble`, `hop` and `session`: reading their arguments (a table
//! name, column names, interval literals) and resolving the table in the session's catalog into
//! a [`WindowedTable`].

use std::sync::Arc;
use std::time::Duration;

use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use futures::FutureExt;

use super::{WindowKind, WindowedTable};

/// `tumble(table, time_column, size)`.
#[derive(Debug)]
pub struct TumbleFunction;

/// `hop(table, time_column, slide, size)`.
#[derive(Debug)]
pub struct HopFunction;

/// `session(table, time_column, gap, key_column [, key_column …])`.
#[derive(Debug)]
pub struct SessionFunction;

impl TableFunctionImpl for TumbleFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let call = Call::new(
            &args,
            "tumble",
            "tumble(table, time_column, size)",
            3,
            false,
        )?;
        let kind = WindowKind::Tumble {
            size: call.interval(2, "size")?,
        };
        call.windowed(kind)
    }
}

impl TableFunctionImpl for HopFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let call = Call::new(
            &args,
            "hop",
            "hop(table, time_column, slide, size)",
            4,
            false,
        )?;
        let kind = WindowKind::Hop {
            slide: call.interval(2, "slide")?,
            size: call.interval(3, "size")?,
        };
        call.windowed(kind)
    }
}

impl TableFunctionImpl for SessionFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let usage = "session(table, time_column, gap, key_column [, key_column …])";
        let call = Call::new(&args, "session", usage, 4, true)?;
        let keys = (3..call.exprs.len())
            .map(|i| call.column(i, "key_column"))
            .collect::<Result<Vec<_>>>()?;
        let kind = WindowKind::Session {
            gap: call.interval(2, "gap")?,
            keys,
        };
        call.windowed(kind)
    }
}

/// One call of a window function: its arguments and the table they name.
struct Call<'a> {
    function: &'static str,
    usage: &'static str,
    exprs: &'a [Expr],
    table: Arc<dyn TableProvider>,
    table_name: String,
}

impl<'a> Call<'a> {
    /// Checks the argument count (`count`, or at least `count` when `more`) and resolves the
    /// table named by the first argument.
    fn new(
        args: &TableFunctionArgs<'a, '_>,
        function: &'static str,
        usage: &'static str,
        count: usize,
        more: bool,
    ) -> Result<Self> {
        let exprs = args.exprs();
        if exprs.len() < count || (!more && exprs.len() > count) {
            return Err(DataFusionError::Plan(format!(
                "{function} takes {}{count} arguments, not {}: {usage}",
                if more { "at least " } else { "" },
                exprs.len()
            )));
        }
        let reference = table_reference(&exprs[0]).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{function}: argument 'table' must be the name of a table, not {}: {usage}",
                exprs[0]
            ))
        })?;
        let table = resolve_table(args.session(), &reference).map_err(|problem| {
            DataFusionError::Plan(format!("{function}: argument 'table': {problem}"))
        })?;
        Ok(Self {
            function,
            usage,
            exprs,
            table,
            table_name: reference.to_string(),
        })
    }

    /// The column named by argument `i`, which must exist in the table.
    fn column(&self, i: usize, argument: &str) -> Result<String> {
        let name = match &self.exprs[i] {
            Expr::Column(c) if c.relation.is_none() => c.name.clone(),
            Expr::Literal(value, _) => match string_literal(value) {
                Some(s) => s,
                None => return Err(self.not_a_column(i, argument)),
            },
            _ => return Err(self.not_a_column(i, argument)),
        };
        let schema = self.table.schema();
        if schema.index_of(&name).is_err() {
            let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(DataFusionError::Plan(format!(
                "{}: argument '{argument}': table '{}' has no column '{name}'; its columns are: {}",
                self.function,
                self.table_name,
                columns.join(", ")
            )));
        }
        Ok(name)
    }

    fn not_a_column(&self, i: usize, argument: &str) -> DataFusionError {
        DataFusionError::Plan(format!(
            "{}: argument '{argument}' must be a column name, not {}: {}",
            self.function, self.exprs[i], self.usage
        ))
    }

    /// The positive duration given by argument `i`, an interval without months.
    fn interval(&self, i: usize, argument: &str) -> Result<Duration> {
        let problem = |what: String| {
            DataFusionError::Plan(format!(
                "{}: argument '{argument}' {what}: {}",
                self.function, self.usage
            ))
        };
        let Expr::Literal(value, _) = &self.exprs[i] else {
            return Err(problem(format!(
                "must be a constant interval like INTERVAL '10' SECOND, not {}",
                self.exprs[i]
            )));
        };
        let nanos = interval_nanos(value).map_err(problem)?;
        if nanos <= 0 {
            return Err(problem(format!("must be positive, not {value}")));
        }
        u64::try_from(nanos)
            .map(Duration::from_nanos)
            .map_err(|_| problem(format!("is too long: {value}")))
    }

    /// The windowed table of this call.
    fn windowed(self, kind: WindowKind) -> Result<Arc<dyn TableProvider>> {
        let time_column = self.column(1, "time_column")?;
        Ok(Arc::new(WindowedTable::try_new(
            self.table,
            kind,
            &time_column,
        )?))
    }
}

/// The table an argument names: an identifier (`bids`, `public.bids`) or a string (`'bids'`).
fn table_reference(expr: &Expr) -> Option<TableReference> {
    match expr {
        Expr::Column(c) => match &c.relation {
            None => Some(TableReference::bare(c.name.as_str())),
            Some(TableReference::Bare { table }) => {
                Some(TableReference::partial(Arc::clone(table), c.name.as_str()))
            }
            Some(TableReference::Partial { schema, table }) => Some(TableReference::full(
                Arc::clone(schema),
                Arc::clone(table),
                c.name.as_str(),
            )),
            Some(TableReference::Full { .. }) => None,
        },
        Expr::Literal(value, _) => string_literal(value).map(TableReference::from),
        _ => None,
    }
}

fn string_literal(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Finds a table in the session's catalogs (the default catalog and schema unless qualified),
/// or says why it cannot.
fn resolve_table(
    session: &dyn Session,
    reference: &TableReference,
) -> std::result::Result<Arc<dyn TableProvider>, String> {
    let defaults = &session.config_options().catalog;
    let resolved = reference
        .clone()
        .resolve(&defaults.default_catalog, &defaults.default_schema);
    let catalog = session
        .catalog_list()
        .catalog(&resolved.catalog)
        .ok_or_else(|| format!("there is no catalog '{}'", resolved.catalog))?;
    let schema = catalog.schema(&resolved.schema).ok_or_else(|| {
        format!(
            "there is no schema '{}' in catalog '{}'",
            resolved.schema, resolved.catalog
        )
    })?;
    // Planning is synchronous; the in-memory catalog answers at once. A catalog that must wait
    // (a remote one) is refused rather than blocking the planner's thread.
    let table = schema
        .table(&resolved.table)
        .now_or_never()
        .ok_or_else(|| {
            format!(
                "schema '{}' looks tables up asynchronously, which window functions cannot wait \
                 for; register the table in the session's default catalog",
                resolved.schema
            )
        })?
        .map_err(|e| format!("looking up table '{reference}' failed: {e}"))?;
    table.ok_or_else(|| {
        let mut names = schema.table_names();
        names.sort();
        format!(
            "there is no table '{reference}'; the tables are: {}",
            names.join(", ")
        )
    })
}

/// The length of an interval literal in nanoseconds; months are refused (they have no fixed
/// length).
fn interval_nanos(value: &ScalarValue) -> std::result::Result<i128, String> {
    const DAY: i128 = 86_400_000_000_000;
    let months = || format!("cannot be in months or years ({value}): use days or smaller units");
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            if v.months != 0 {
                return Err(months());
            }
            Ok(v.days as i128 * DAY + v.nanoseconds as i128)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Ok(v.days as i128 * DAY + v.milliseconds as i128 * 1_000_000)
        }
        ScalarValue::IntervalYearMonth(Some(_)) => Err(months()),
        ScalarValue::DurationSecond(Some(v)) => Ok(*v as i128 * 1_000_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => Ok(*v as i128 * 1_000_000),
        ScalarValue::DurationMicrosecond(Some(v)) => Ok(*v as i128 * 1_000),
        ScalarValue::DurationNanosecond(Some(v)) => Ok(*v as i128),
        other => match string_literal(other) {
            // '10 seconds'
            Some(_) => match other.cast_to(&arrow::datatypes::DataType::Interval(
                arrow::datatypes::IntervalUnit::MonthDayNano,
            )) {
                Ok(interval @ ScalarValue::IntervalMonthDayNano(Some(_))) => {
                    interval_nanos(&interval)
                }
                _ => Err(format!("is not an interval: {other}")),
            },
            None => Err(format!(
                "must be an interval like INTERVAL '10' SECOND, not {other} ({})",
                other.data_type()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::window::{metric, sum_metric};

    /// A session with the window functions and a table `bids(ts, auction, price)`.
    fn context(rows: &[(i64, i64, i64)]) -> SessionContext {
        let ctx = SessionContext::new();
        ctx.register_udtf("tumble", Arc::new(TumbleFunction));
        ctx.register_udtf("hop", Arc::new(HopFunction));
        ctx.register_udtf("session", Arc::new(SessionFunction));
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("auction", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        // Two partitions, so that sessions must be coalesced.
        let (a, b) = (
            batch.slice(0, rows.len() / 2),
            batch.slice(rows.len() / 2, rows.len() - rows.len() / 2),
        );
        let table = MemTable::try_new(schema, vec![vec![a], vec![b]]).unwrap();
        ctx.register_table("bids", Arc::new(table)).unwrap();
        ctx
    }

    async fn query(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?.to_string())
    }

    const BIDS: &[(i64, i64, i64)] = &[
        (1_000, 1, 10),
        (2_000, 2, 20),
        (9_999, 1, 30),
        (10_000, 1, 40),
        (-1, 2, 50),
        (25_000, 2, 60),
    ];

    #[tokio::test]
    async fn tumble_groups_by_window() {
        let ctx = context(BIDS);
        let got = query(
            &ctx,
            "SELECT window_start, window_end, auction, count(*) AS bids, sum(price) AS total \
             FROM tumble(bids, ts, INTERVAL '10' SECOND) \
             GROUP BY window_start, window_end, auction ORDER BY window_start, auction",
        )
        .await
        .unwrap();
        let expected = "\
+---------------------+---------------------+---------+------+-------+
| window_start        | window_end          | auction | bids | total |
+---------------------+---------------------+---------+------+-------+
| 1969-12-31T23:59:50 | 1970-01-01T00:00:00 | 2       | 1    | 50    |
| 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 1       | 2    | 40    |
| 1970-01-01T00:00:00 | 1970-01-01T00:00:10 | 2       | 1    | 20    |
| 1970-01-01T00:00:10 | 1970-01-01T00:00:20 | 1       | 1    | 40    |
| 1970-01-01T00:00:20 | 1970-01-01T00:00:30 | 2       | 1    | 60    |
+---------------------+---------------------+---------+------+-------+";
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn hop_counts_each_row_in_every_window() {
        let ctx = context(BIDS);
        let got = query(
            &ctx,
            "SELECT count(*) AS n, count(DISTINCT window_start) AS windows \
             FROM hop(bids, ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
        )
        .await
        .unwrap();
        assert!(got.contains("| 12 | 7       |"), "{got}");
    }

    #[tokio::test]
    async fn session_windows_per_key_from_sql() {
        let ctx = context(BIDS);
        let got = query(
            &ctx,
            "SELECT auction, window_start, window_end, count(*) AS n \
             FROM session(bids, ts, INTERVAL '5' SECOND, auction) \
             GROUP BY auction, window_start, window_end ORDER BY auction, window_start",
        )
        .await
        .unwrap();
        let expected = "\
+---------+-------------------------+---------------------+---+
| auction | window_start            | window_end          | n |
+---------+-------------------------+---------------------+---+
| 1       | 1970-01-01T00:00:01     | 1970-01-01T00:00:06 | 1 |
| 1       | 1970-01-01T00:00:09.999 | 1970-01-01T00:00:15 | 2 |
| 2       | 1969-12-31T23:59:59.999 | 1970-01-01T00:00:07 | 2 |
| 2       | 1970-01-01T00:00:25     | 1970-01-01T00:00:30 | 1 |
+---------+-------------------------+---------------------+---+";
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn string_arguments_and_late_metric_through_a_plan() {
        let ctx = context(BIDS);
        let df = ctx
            .sql("SELECT * FROM tumble('bids', 'ts', '10 seconds')")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx())
            .await
            .unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 6);
        assert_eq!(sum_metric(&plan, metric::LATE_RECORDS), 0);
    }

    #[tokio::test]
    async fn the_engine_registers_the_window_functions() {
        let engine = crate::Engine::builder().build().unwrap();
        let bids = context(BIDS).table_provider("bids").await.unwrap();
        engine.session().register_table("bids", bids).unwrap();
        for call in [
            "tumble(bids, ts, INTERVAL '10' SECOND)",
            "hop(bids, ts, INTERVAL '5' SECOND, INTERVAL '10' SECOND)",
            "session(bids, ts, INTERVAL '5' SECOND, auction)",
        ] {
            let batches = engine
                .sql(&format!("SELECT count(*) AS n FROM {call}"))
                .await
                .unwrap();
            assert_eq!(
                batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
                1,
                "{call}"
            );
        }
    }

    #[tokio::test]
    async fn arguments_are_checked_and_named() {
        let ctx = context(BIDS);
        let cases = [
            (
                "tumble(nope, ts, INTERVAL '1' SECOND)",
                "tumble: argument 'table': there is no table 'nope'; the tables are: bids",
            ),
            (
                "tumble(bids, nope, INTERVAL '1' SECOND)",
                "tumble: argument 'time_column': table 'bids' has no column 'nope'",
            ),
            (
                "tumble(bids, price, INTERVAL '1' SECOND)",
                "not a timestamp",
            ),
            (
                "tumble(bids, ts, INTERVAL '1' MONTH)",
                "tumble: argument 'size' cannot be in months",
            ),
            (
                "tumble(bids, ts, INTERVAL '-1' SECOND)",
                "tumble: argument 'size' must be positive",
            ),
            (
                "tumble(bids, ts, 10)",
                "tumble: argument 'size' must be an interval",
            ),
            ("tumble(bids, ts)", "tumble takes 3 arguments, not 2"),
            (
                "hop(bids, ts, INTERVAL '3' SECOND, INTERVAL '10' SECOND)",
                "hop: argument 'size' (10s) must be a multiple of argument 'slide' (3s)",
            ),
            (
                "session(bids, ts, INTERVAL '1' SECOND)",
                "session takes at least 4 arguments",
            ),
            (
                "session(bids, ts, INTERVAL '1' SECOND, bidder)",
                "session: argument 'key_column': table 'bids' has no column 'bidder'",
            ),
            (
                "tumble(bids, 42, INTERVAL '1' SECOND)",
                "tumble: argument 'time_column' must be a column name, not Int64(42)",
            ),
        ];
        for (call, message) in cases {
            let err = query(&ctx, &format!("SELECT * FROM {call}"))
                .await
                .expect_err(call)
                .to_string();
            assert!(err.contains(message), "{call}: {err}");
        }
    }
}
