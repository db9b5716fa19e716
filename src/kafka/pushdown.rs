//! Predicates a Kafka scan can answer by reading less: bounds on `partition`, `offset` and
//! `timestamp` (or `_partition`, `_offset`, `_timestamp`) become a [`Narrowing`] of the ranges.
//! The predicates stay in the plan as well (pushdown is inexact), so narrowing only has to be
//! safe, never exact.

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};

use super::layout::{Column, TableLayout};
use super::offsets::Narrowing;

/// The narrowing `expr` allows, or `None` when it allows none.
pub fn narrowing_of(expr: &Expr, layout: &TableLayout) -> Option<Narrowing> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => match (narrowing_of(left, layout), narrowing_of(right, layout)) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        },
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => Some(narrowing_of(left, layout)?.or(narrowing_of(right, layout)?)),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if let (Some(column), Some(value)) = (column_of(left, layout), literal_of(right)) {
                comparison(column, *op, &value)
            } else if let (Some(value), Some(column)) = (literal_of(left), column_of(right, layout))
            {
                comparison(column, op.swap()?, &value)
            } else {
                None
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let column = column_of(expr, layout)?;
            let low = comparison(column, Operator::GtEq, &literal_of(low)?);
            let high = comparison(column, Operator::LtEq, &literal_of(high)?);
            match (low, high) {
                (Some(a), Some(b)) => Some(a.and(b)),
                (a, b) => a.or(b),
            }
        }
        Expr::InList(list) if !list.negated => {
            let column = column_of(&list.expr, layout)?;
            let values: Option<Vec<i64>> =
                list.list.iter().map(|e| integer(&literal_of(e)?)).collect();
            let values = values?;
            match column {
                Column::Partition => Some(Narrowing {
                    partitions: Some(
                        values
                            .iter()
                            .filter_map(|v| i32::try_from(*v).ok())
                            .collect(),
                    ),
                    ..Default::default()
                }),
                Column::Offset => Some(Narrowing {
                    min_offset: values.iter().min().copied(),
                    end_offset: values.iter().max().map(|v| v.saturating_add(1)),
                    ..Default::default()
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// True when the scan can use `expr` to read less.
pub fn can_narrow(expr: &Expr, layout: &TableLayout) -> bool {
    narrowing_of(expr, layout).is_some_and(|n| !n.is_empty())
}

fn comparison(column: Column, op: Operator, value: &ScalarValue) -> Option<Narrowing> {
    let mut n = Narrowing::default();
    match column {
        Column::Partition => {
            let v = i32::try_from(integer(value)?).ok()?;
            if op != Operator::Eq {
                return None;
            }
            n.partitions = Some([v].into());
        }
        Column::Offset => {
            let v = integer(value)?;
            match op {
                Operator::Eq => {
                    n.min_offset = Some(v);
                    n.end_offset = Some(v.saturating_add(1));
                }
                Operator::Gt => n.min_offset = Some(v.saturating_add(1)),
                Operator::GtEq => n.min_offset = Some(v),
                Operator::Lt => n.end_offset = Some(v),
                Operator::LtEq => n.end_offset = Some(v.saturating_add(1)),
                _ => return None,
            }
        }
        Column::Timestamp => {
            let ms = millis(value)?;
            match op {
                Operator::Gt => n.min_timestamp = Some(ms.saturating_add(1)),
                Operator::GtEq | Operator::Eq => n.min_timestamp = Some(ms),
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(n)
}

/// The table column `expr` names, looking through casts.
fn column_of(expr: &Expr, layout: &TableLayout) -> Option<Column> {
    match expr {
        Expr::Column(c) => layout.column_named(&c.name),
        Expr::Cast(cast) => column_of(&cast.expr, layout),
        Expr::TryCast(cast) => column_of(&cast.expr, layout),
        _ => None,
    }
}

fn literal_of(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Literal(value, _) if !value.is_null() => Some(value.clone()),
        Expr::Cast(cast) => literal_of(&cast.expr)?.cast_to(cast.field.data_type()).ok(),
        _ => None,
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    if !value.data_type().is_integer() {
        return None;
    }
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

/// A timestamp literal in milliseconds since the epoch, rounded down.
fn millis(value: &ScalarValue) -> Option<i64> {
    let (v, per_ms): (i64, i64) = match value {
        ScalarValue::TimestampSecond(Some(v), _) => return v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => (*v, 1),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (*v, 1000),
        ScalarValue::TimestampNanosecond(Some(v), _) => (*v, 1_000_000),
        ScalarValue::Date32(_) | ScalarValue::Date64(_) | ScalarValue::Utf8(_) => {
            return millis(
                &value
                    .cast_to(&DataType::Timestamp(TimeUnit::Millisecond, None))
                    .ok()?,
            );
        }
        _ => return None,
    };
    Some(v.div_euclid(per_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn layout() -> TableLayout {
        TableLayout::new(None, false).unwrap()
    }

    #[test]
    fn partition_and_offset_bounds() {
        let l = layout();
        let n = narrowing_of(&col("partition").eq(lit(2)), &l).unwrap();
        assert_eq!(n.partitions, Some([2].into()));
        let n = narrowing_of(
            &col("offset")
                .gt(lit(10i64))
                .and(col("offset").lt_eq(lit(20i64))),
            &l,
        )
        .unwrap();
        assert_eq!((n.min_offset, n.end_offset), (Some(11), Some(21)));
        let n = narrowing_of(&lit(5i64).lt(col("offset")), &l).unwrap();
        assert_eq!(n.min_offset, Some(6));
        let n = narrowing_of(&col("offset").between(lit(3i64), lit(4i64)), &l).unwrap();
        assert_eq!((n.min_offset, n.end_offset), (Some(3), Some(5)));
        let n = narrowing_of(&col("partition").in_list(vec![lit(0), lit(3)], false), &l).unwrap();
        assert_eq!(n.partitions, Some([0, 3].into()));
    }

    #[test]
    fn timestamp_lower_bounds_only() {
        let l = layout();
        let ts = lit(ScalarValue::TimestampMillisecond(
            Some(1_000),
            Some("UTC".into()),
        ));
        assert_eq!(
            narrowing_of(&col("timestamp").gt_eq(ts.clone()), &l)
                .unwrap()
                .min_timestamp,
            Some(1_000)
        );
        assert_eq!(
            narrowing_of(&col("timestamp").gt(ts.clone()), &l)
                .unwrap()
                .min_timestamp,
            Some(1_001)
        );
        assert!(narrowing_of(&col("timestamp").lt(ts), &l).is_none());
        let ns = lit(ScalarValue::TimestampNanosecond(Some(1_500_000), None));
        assert_eq!(
            narrowing_of(&col("timestamp").gt_eq(ns), &l)
                .unwrap()
                .min_timestamp,
            Some(1)
        );
    }

    #[test]
    fn other_predicates_do_not_narrow() {
        let l = layout();
        assert!(!can_narrow(&col("key").eq(lit("a")), &l));
        assert!(!can_narrow(&col("partition").gt(lit(1)), &l));
        assert!(!can_narrow(
            &col("offset").lt(lit(1)).or(col("offset").gt(lit(5))),
            &l
        ));
        assert!(!can_narrow(
            &col("partition").eq(lit(1)).or(col("key").eq(lit("a"))),
            &l
        ));
        let n = narrowing_of(
            &col("partition").eq(lit(1)).or(col("partition").eq(lit(3))),
            &l,
        )
        .unwrap();
        assert_eq!(n.partitions, Some([1, 3].into()));
        assert!(can_narrow(
            &col("offset").eq(lit(1)).and(col("key").eq(lit("a"))),
            &l
        ));
    }
}
