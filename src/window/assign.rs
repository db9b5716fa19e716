//! Window arithmetic on whole Arrow arrays: the tumbling, hopping and session windows of a time
//! column, late-data selection against a watermark, and the conversions between a timestamp
//! column's unit and durations. Times are handled as `i64` counts of the column's unit, so
//! every timestamp unit and time zone works the same way, and times before 1970 fall into the
//! windows that contain them (windows are aligned with `div_euclid`, not truncation).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Int64Array, RecordBatch, Scalar,
    UInt32Array, make_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cmp::gt;
use arrow::compute::{
    SortColumn, SortOptions, cast, filter, is_not_null, lexsort_to_indices, partition,
    prep_null_mask_filter, take_arrays,
};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::error::ArrowError;
use datafusion::error::{DataFusionError, Result};

/// How many nanoseconds one step of `unit` is.
fn unit_nanos(unit: TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// The name of a unit, for messages.
pub(crate) fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "seconds",
        TimeUnit::Millisecond => "milliseconds",
        TimeUnit::Microsecond => "microseconds",
        TimeUnit::Nanosecond => "nanoseconds",
    }
}

/// `d` as a count of `unit`, or `None` when it is not a whole number of them or does not fit.
pub(crate) fn duration_in_unit(d: Duration, unit: TimeUnit) -> Option<i64> {
    let nanos = d.as_nanos() as i128;
    let per = unit_nanos(unit);
    if nanos % per != 0 {
        return None;
    }
    i64::try_from(nanos / per).ok()
}

/// A watermark in epoch milliseconds as a count of `unit`, such that a window end `e` (in
/// `unit`) is at or before the watermark exactly when `e <= watermark_in_unit(..)`.
pub(crate) fn watermark_in_unit(ms: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => ms.div_euclid(1000),
        TimeUnit::Millisecond => ms,
        TimeUnit::Microsecond => ms.saturating_mul(1_000),
        TimeUnit::Nanosecond => ms.saturating_mul(1_000_000),
    }
}

/// The unit of a timestamp type, or `None` for other types.
pub(crate) fn timestamp_unit(data_type: &DataType) -> Option<TimeUnit> {
    match data_type {
        DataType::Timestamp(unit, _) => Some(*unit),
        _ => None,
    }
}

/// The values of a timestamp column as counts of its unit (a zero-copy reinterpretation).
pub(crate) fn time_values(column: &dyn Array) -> Result<Int64Array> {
    if timestamp_unit(column.data_type()).is_none() {
        return Err(DataFusionError::Execution(format!(
            "window time column is {}, not a timestamp",
            column.data_type()
        )));
    }
    Ok(cast(column, &DataType::Int64)?
        .as_primitive::<Int64Type>()
        .clone())
}

/// `values` (counts of a unit) as an array of the timestamp type `data_type`.
pub(crate) fn to_time_array(values: Int64Array, data_type: &DataType) -> Result<ArrayRef> {
    let data = values
        .into_data()
        .into_builder()
        .data_type(data_type.clone())
        .build()?;
    Ok(make_array(data))
}

fn out_of_range(what: &str, t: i64) -> ArrowError {
    ArrowError::ComputeError(format!(
        "time {t} is too close to the limits of the timestamp range to compute its {what}"
    ))
}

/// Which input rows the output rows come from.
#[derive(Debug)]
pub(crate) enum Selection {
    /// Every input row, once, in order.
    All,
    /// The input rows where the mask is true, in order.
    Filter(BooleanArray),
    /// The input rows at these positions (repeated for rows in several windows).
    Take(UInt32Array),
}

/// The windows assigned to a batch's rows: output row `i` is input row `selection[i]` in the
/// window `[starts[i], ends[i])`.
#[derive(Debug)]
pub(crate) struct Assignment {
    pub(crate) selection: Selection,
    pub(crate) starts: Int64Array,
    pub(crate) ends: Int64Array,
    /// Input rows dropped because all their windows ended at or before the watermark.
    pub(crate) late: usize,
    /// Input rows dropped because their time was NULL.
    pub(crate) null_time: usize,
}

/// Keeps the rows whose (row-aligned, NULL for no window) window ends after the watermark.
pub(crate) fn keep_open(
    starts: Int64Array,
    ends: Int64Array,
    watermark: Option<i64>,
) -> Result<Assignment> {
    let null_time = ends.null_count();
    let (mask, late) = match watermark {
        None if null_time == 0 => {
            return Ok(Assignment {
                selection: Selection::All,
                starts,
                ends,
                late: 0,
                null_time,
            });
        }
        None => (is_not_null(&ends)?, 0),
        Some(w) => {
            let open = gt(&ends, &Scalar::new(Int64Array::from(vec![w])))?;
            // NULL (no window) is not open.
            let open = if open.null_count() > 0 {
                prep_null_mask_filter(&open)
            } else {
                open
            };
            let kept = open.true_count();
            (open, ends.len() - null_time - kept)
        }
    };
    if mask.true_count() == mask.len() {
        return Ok(Assignment {
            selection: Selection::All,
            starts,
            ends,
            late,
            null_time,
        });
    }
    let starts = filter(&starts, &mask)?.as_primitive::<Int64Type>().clone();
    let ends = filter(&ends, &mask)?.as_primitive::<Int64Type>().clone();
    Ok(Assignment {
        starts,
        ends,
        selection: Selection::Filter(mask),
        late,
        null_time,
    })
}

/// Tumbling windows of `size` (> 0, in the times' unit), dropping windows that end at or before
/// `watermark`.
pub(crate) fn assign_tumble(
    times: &Int64Array,
    size: i64,
    watermark: Option<i64>,
) -> Result<Assignment> {
    let starts: Int64Array = times.try_unary(|t| {
        t.checked_sub(t.rem_euclid(size))
            .ok_or_else(|| out_of_range("window start", t))
    })?;
    let ends: Int64Array = starts.try_unary(|s| {
        s.checked_add(size)
            .ok_or_else(|| out_of_range("window end", s))
    })?;
    keep_open(starts, ends, watermark)
}

/// Hopping windows of `size` every `slide` (both > 0, `size` a multiple of `slide`, in the
/// times' unit): each row is repeated once per window that contains it and ends after
/// `watermark`, earliest window first.
pub(crate) fn assign_hop(
    times: &Int64Array,
    slide: i64,
    size: i64,
    watermark: Option<i64>,
) -> Result<Assignment> {
    let per_row = (size / slide) as usize;
    let valid = times.len() - times.null_count();
    let mut rows: Vec<u32> = Vec::with_capacity(valid * per_row);
    let mut starts: Vec<i64> = Vec::with_capacity(valid * per_row);
    let mut ends: Vec<i64> = Vec::with_capacity(valid * per_row);
    let (mut late, mut null_time) = (0, 0);
    for (row, t) in times.iter().enumerate() {
        let Some(t) = t else {
            null_time += 1;
            continue;
        };
        // The last window containing t starts at `last`; the first `size - slide` earlier.
        // Checking the extremes once makes every step in between safe.
        let last = t
            .checked_sub(t.rem_euclid(slide))
            .ok_or_else(|| out_of_range("window start", t))?;
        let first = last
            .checked_sub(size - slide)
            .ok_or_else(|| out_of_range("window start", t))?;
        last.checked_add(size)
            .ok_or_else(|| out_of_range("window end", t))?;
        let before = rows.len();
        for j in 0..per_row as i64 {
            let start = first + j * slide;
            let end = start + size;
            if watermark.is_some_and(|w| end <= w) {
                continue;
            }
            rows.push(row as u32);
            starts.push(start);
            ends.push(end);
        }
        if rows.len() == before {
            late += 1;
        }
    }
    Ok(Assignment {
        selection: Selection::Take(UInt32Array::from(rows)),
        starts: Int64Array::from(starts),
        ends: Int64Array::from(ends),
        late,
        null_time,
    })
}

/// The session windows of each row (NULL where the time is NULL), row-aligned: per value of
/// `keys`, rows sorted by time and less than `gap` apart share the window
/// `[first time, last time + gap)`. NULL keys form a key of their own.
pub(crate) fn session_bounds(
    keys: &[ArrayRef],
    times: &Int64Array,
    gap: i64,
) -> Result<(Int64Array, Int64Array)> {
    let n = times.len();
    let mut sort: Vec<SortColumn> = keys
        .iter()
        .map(|k| SortColumn {
            values: Arc::clone(k),
            options: None,
        })
        .collect();
    sort.push(SortColumn {
        values: Arc::new(times.clone()),
        options: Some(SortOptions {
            descending: false,
            nulls_first: false,
        }),
    });
    let order = lexsort_to_indices(&sort, None)?;
    let key_ranges: Vec<Range<usize>> = if keys.is_empty() {
        std::iter::once(0..n).collect()
    } else {
        partition(&take_arrays(keys, &order, None)?)?.ranges()
    };
    let mut starts = vec![0i64; n];
    let mut ends = vec![0i64; n];
    let mut valid = BooleanBufferBuilder::new(n);
    valid.append_n(n, false);
    // Gives sorted positions `positions` the window [first, last + gap).
    let mut close = |positions: Range<usize>, first: i64, last: i64| -> Result<()> {
        let end = last
            .checked_add(gap)
            .ok_or_else(|| out_of_range("session end", last))?;
        for p in positions {
            let row = order.value(p) as usize;
            starts[row] = first;
            ends[row] = end;
            valid.set_bit(row, true);
        }
        Ok(())
    };
    for range in key_ranges {
        // The open session: its first sorted position, first time and last time.
        let mut open: Option<(usize, i64, i64)> = None;
        let mut stop = range.end;
        for p in range.clone() {
            let row = order.value(p) as usize;
            if times.is_null(row) {
                // NULL times sort last within a key: they belong to no session.
                stop = p;
                break;
            }
            let t = times.value(row);
            open = match open {
                Some((from, first, last)) if t.saturating_sub(last) < gap => Some((from, first, t)),
                Some((from, first, last)) => {
                    close(from..p, first, last)?;
                    Some((p, t, t))
                }
                None => Some((p, t, t)),
            };
        }
        if let Some((from, first, last)) = open {
            close(from..stop, first, last)?;
        }
    }
    let nulls = NullBuffer::new(valid.finish());
    Ok((
        Int64Array::new(starts.into(), Some(nulls.clone())),
        Int64Array::new(ends.into(), Some(nulls)),
    ))
}

/// The session windows of `batch`'s rows, keyed by the columns at `keys`, over the timestamp
/// column at `time`: `(window_start, window_end)` arrays aligned with the batch's rows, of the
/// time column's type (same unit and time zone), NULL where the time is NULL. Rows of one key
/// less than `gap` apart form one session `[first time, last time + gap)`; rows exactly `gap`
/// apart start a new one. The batch is one whole bounded input: sessions do not continue
/// beyond it.
pub fn assign_sessions(
    batch: &RecordBatch,
    keys: &[usize],
    time: usize,
    gap: Duration,
) -> Result<(ArrayRef, ArrayRef)> {
    let column = |i: usize| -> Result<&ArrayRef> {
        if i < batch.num_columns() {
            Ok(batch.column(i))
        } else {
            Err(DataFusionError::Plan(format!(
                "assign_sessions: column {i} does not exist; the batch has {} columns",
                batch.num_columns()
            )))
        }
    };
    let time_column = column(time)?;
    let data_type = time_column.data_type().clone();
    let unit = timestamp_unit(&data_type).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "assign_sessions: the time column {} is {data_type}, not a timestamp",
            batch.schema().field(time).name()
        ))
    })?;
    let gap_units = duration_in_unit(gap, unit)
        .filter(|g| *g > 0)
        .ok_or_else(|| {
            DataFusionError::Plan(format!(
                "assign_sessions: the gap {gap:?} must be positive and a whole number of {}",
                unit_name(unit)
            ))
        })?;
    let key_columns = keys
        .iter()
        .map(|k| column(*k).cloned())
        .collect::<Result<Vec<_>>>()?;
    let (starts, ends) = session_bounds(&key_columns, &time_values(time_column)?, gap_units)?;
    Ok((
        to_time_array(starts, &data_type)?,
        to_time_array(ends, &data_type)?,
    ))
}

#[cfg(test)]
mod tests {
    use arrow::array::{StringArray, TimestampMillisecondArray, TimestampSecondArray};
    use arrow::datatypes::{Field, Schema, TimestampMillisecondType};

    use super::*;

    fn times(values: &[Option<i64>]) -> Int64Array {
        Int64Array::from(values.to_vec())
    }

    fn rows(selection: &Selection) -> Vec<u32> {
        match selection {
            Selection::Take(rows) => rows.values().to_vec(),
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn tumble_aligns_windows_before_and_after_1970_and_at_boundaries() {
        let t = times(&[
            Some(-1),
            Some(0),
            Some(9_999),
            Some(10_000),
            Some(-10_000),
            Some(-10_001),
            None,
        ]);
        let a = assign_tumble(&t, 10_000, None).unwrap();
        assert_eq!(
            a.starts.values().to_vec(),
            vec![-10_000, 0, 0, 10_000, -10_000, -20_000]
        );
        assert_eq!(
            a.ends.values().to_vec(),
            vec![0, 10_000, 10_000, 20_000, 0, -10_000]
        );
        assert_eq!((a.late, a.null_time), (0, 1));
        match a.selection {
            Selection::Filter(mask) => assert_eq!(mask.true_count(), 6),
            other => panic!("expected a filter, got {other:?}"),
        }
    }

    #[test]
    fn tumble_keeps_all_rows_without_nulls_or_watermark() {
        let a = assign_tumble(&times(&[Some(5), Some(15)]), 10, None).unwrap();
        assert!(matches!(a.selection, Selection::All));
        assert_eq!(a.starts.values().to_vec(), vec![0, 10]);
    }

    #[test]
    fn tumble_drops_windows_ending_at_or_before_the_watermark() {
        let t = times(&[Some(0), Some(9_999), Some(10_000), Some(25_000), None]);
        let a = assign_tumble(&t, 10_000, Some(10_000)).unwrap();
        assert_eq!(a.starts.values().to_vec(), vec![10_000, 20_000]);
        assert_eq!((a.late, a.null_time), (2, 1));
    }

    #[test]
    fn tumble_reports_overflow_instead_of_wrapping() {
        let err = assign_tumble(&times(&[Some(i64::MAX)]), 10, None).unwrap_err();
        assert!(err.to_string().contains("window end"), "{err}");
    }

    #[test]
    fn hop_repeats_each_row_once_per_window() {
        // slide 5, size 15: three windows per row.
        let t = times(&[Some(0), Some(4), Some(-1), None, Some(5)]);
        let a = assign_hop(&t, 5, 15, None).unwrap();
        assert_eq!(rows(&a.selection), vec![0, 0, 0, 1, 1, 1, 2, 2, 2, 4, 4, 4]);
        assert_eq!(
            a.starts.values().to_vec(),
            vec![-10, -5, 0, -10, -5, 0, -15, -10, -5, -5, 0, 5]
        );
        let sizes: Vec<i64> = a
            .starts
            .values()
            .iter()
            .zip(a.ends.values())
            .map(|(s, e)| e - s)
            .collect();
        assert!(sizes.iter().all(|s| *s == 15));
        assert_eq!((a.late, a.null_time), (0, 1));
    }

    #[test]
    fn hop_with_equal_slide_and_size_is_a_tumble() {
        let t = times(&[Some(-7), Some(3), Some(10)]);
        let hop = assign_hop(&t, 10, 10, None).unwrap();
        let tumble = assign_tumble(&t, 10, None).unwrap();
        assert_eq!(hop.starts, tumble.starts);
        assert_eq!(rows(&hop.selection), vec![0, 1, 2]);
    }

    #[test]
    fn hop_drops_late_windows_and_counts_rows_with_none_left() {
        // Windows of 12 containing the rows: 0 -> [-8,4) [-4,8) [0,12); 7 -> [-4,8) [0,12) [4,16)
        // With watermark 8: row 0 keeps [0,12), row 7 keeps [0,12) [4,16); row 1 too, row -9
        // (windows up to [-12,0)) is dropped entirely.
        let t = times(&[Some(0), Some(7), Some(-9)]);
        let a = assign_hop(&t, 4, 12, Some(8)).unwrap();
        assert_eq!(rows(&a.selection), vec![0, 1, 1]);
        assert_eq!(a.starts.values().to_vec(), vec![0, 0, 4]);
        assert_eq!(a.ends.values().to_vec(), vec![12, 12, 16]);
        assert_eq!(a.late, 1);
    }

    #[test]
    fn sessions_split_by_gap_per_key() {
        let keys: Vec<ArrayRef> = vec![Arc::new(StringArray::from(vec![
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("a"),
            None,
            Some("a"),
            None,
        ]))];
        // a: 0 5 9 | 19 (exactly gap after 9: new session) ; b: 3 ; NULL key: -30 ; a: NULL time
        let t = times(&[
            Some(0),
            Some(5),
            Some(19),
            Some(3),
            Some(9),
            Some(-30),
            None,
            Some(-25),
        ]);
        let (starts, ends) = session_bounds(&keys, &t, 10).unwrap();
        let got: Vec<Option<(i64, i64)>> = (0..t.len())
            .map(|i| starts.is_valid(i).then(|| (starts.value(i), ends.value(i))))
            .collect();
        assert_eq!(
            got,
            vec![
                Some((0, 19)),
                Some((0, 19)),
                Some((19, 29)),
                Some((3, 13)),
                Some((0, 19)),
                Some((-30, -15)),
                None,
                Some((-30, -15)),
            ]
        );
    }

    #[test]
    fn assign_sessions_keeps_the_time_type_and_zone() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 2])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![-2_000, -1_500, 100])
                        .with_timezone("+02:00"),
                ),
            ],
        )
        .unwrap();
        let (starts, ends) = assign_sessions(&batch, &[0], 1, Duration::from_secs(1)).unwrap();
        assert_eq!(starts.data_type(), batch.column(1).data_type());
        let starts = starts.as_primitive::<TimestampMillisecondType>();
        let ends = ends.as_primitive::<TimestampMillisecondType>();
        assert_eq!(starts.values().to_vec(), vec![-2_000, -2_000, 100]);
        assert_eq!(ends.values().to_vec(), vec![-500, -500, 1_100]);
    }

    #[test]
    fn assign_sessions_refuses_bad_arguments() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Second, None), false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(TimestampSecondArray::from(vec![1])),
            ],
        )
        .unwrap();
        let gap = Duration::from_millis(1500);
        let err = assign_sessions(&batch, &[0], 1, gap).unwrap_err();
        assert!(err.to_string().contains("whole number of seconds"), "{err}");
        let err = assign_sessions(&batch, &[1], 0, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("not a timestamp"), "{err}");
        let err = assign_sessions(&batch, &[5], 1, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("column 5 does not exist"), "{err}");
    }

    #[test]
    fn durations_and_watermarks_convert_to_column_units() {
        let d = Duration::from_millis(1500);
        assert_eq!(duration_in_unit(d, TimeUnit::Second), None);
        assert_eq!(duration_in_unit(d, TimeUnit::Millisecond), Some(1500));
        assert_eq!(
            duration_in_unit(d, TimeUnit::Nanosecond),
            Some(1_500_000_000)
        );
        assert_eq!(watermark_in_unit(-1, TimeUnit::Second), -1);
        assert_eq!(watermark_in_unit(1999, TimeUnit::Second), 1);
        assert_eq!(watermark_in_unit(2, TimeUnit::Microsecond), 2000);
    }
}
