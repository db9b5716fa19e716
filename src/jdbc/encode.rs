//! Arrow columns as the values a database takes: each column of a record batch becomes one of a
//! few plain array kinds ([`Cells`]) — integers, floats, booleans, text, bytes — with decimals,
//! dates, times and timestamps formatted as the database's text, and lists and structs as JSON
//! text (arrow-json's encoder, a whole column at a time).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int64Array,
    PrimitiveArray, RecordBatch, StringArray, StringBuilder, UInt64Array,
};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Field, Time32MillisecondType,
    Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::temporal_conversions as tc;
use arrow_json::writer::{EncoderOptions, make_encoder};

use super::dialect::Kind;
use super::location::Database;

/// One column, ready to be written.
#[derive(Debug)]
pub enum Cells {
    /// Integers that fit in an i64.
    Int(Int64Array),
    /// UInt64.
    UInt(UInt64Array),
    /// Float32.
    F32(Float32Array),
    /// Float64.
    F64(Float64Array),
    /// Booleans.
    Bool(BooleanArray),
    /// Text: strings, and the formatted decimals, dates, times, timestamps and JSON.
    Text(StringArray),
    /// Bytes.
    Bytes(BinaryArray),
}

/// One value of a [`Cells`] column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// An unsigned 64-bit integer.
    UInt(u64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Bytes(&'a [u8]),
}

impl Cells {
    /// The value at `row`.
    pub fn get(&self, row: usize) -> Cell<'_> {
        macro_rules! value {
            ($array:expr, $variant:ident) => {
                if $array.is_null(row) {
                    Cell::Null
                } else {
                    Cell::$variant($array.value(row))
                }
            };
        }
        match self {
            Cells::Int(a) => value!(a, Int),
            Cells::UInt(a) => value!(a, UInt),
            Cells::F32(a) => value!(a, F32),
            Cells::F64(a) => value!(a, F64),
            Cells::Bool(a) => value!(a, Bool),
            Cells::Text(a) => value!(a, Text),
            Cells::Bytes(a) => value!(a, Bytes),
        }
    }
}

/// A value weir cannot hand to the database, at `row` of the record batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The row within the record batch.
    pub row: usize,
    /// What is wrong.
    pub message: String,
}

/// Formats a primitive column with an arrow temporal conversion (`tc::…`) and a chrono format.
macro_rules! temporal_text {
    ($array:expr, $type:ty, $convert:expr, $format:expr) => {
        format_each($array.as_primitive::<$type>(), |v, out| {
            write_date(($convert)(v).map(|t| t.format($format)), out)
        })
    };
}

/// Every column of `batch` as `database` takes it.
pub fn encode(batch: &RecordBatch, database: Database) -> Result<Vec<Cells>, RowError> {
    let schema = batch.schema();
    batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(array, field)| encode_column(array, field, database))
        .collect()
}

fn cast_error(field: &Field, e: impl std::fmt::Display) -> RowError {
    RowError {
        row: 0,
        message: format!("column '{}' cannot be converted: {e}", field.name()),
    }
}

fn encode_column(array: &ArrayRef, field: &Arc<Field>, db: Database) -> Result<Cells, RowError> {
    let kind = Kind::of(array.data_type()).ok_or_else(|| {
        cast_error(
            field,
            format!("a JDBC table cannot store {}", array.data_type()),
        )
    })?;
    let to = |t: &DataType| cast(array, t).map_err(|e| cast_error(field, e));
    Ok(match kind {
        Kind::Int => Cells::Int(to(&DataType::Int64)?.as_primitive().clone()),
        Kind::UInt64 => Cells::UInt(array.as_primitive().clone()),
        Kind::Float32 => Cells::F32(array.as_primitive().clone()),
        Kind::Float64 => Cells::F64(array.as_primitive().clone()),
        Kind::Boolean => Cells::Bool(array.as_boolean().clone()),
        Kind::Text | Kind::Decimal => Cells::Text(to(&DataType::Utf8)?.as_string().clone()),
        Kind::Binary => Cells::Bytes(to(&DataType::Binary)?.as_binary().clone()),
        Kind::Date => Cells::Text(match array.data_type() {
            DataType::Date64 => {
                temporal_text!(array, Date64Type, tc::date64_to_datetime, "%Y-%m-%d")?
            }
            _ => temporal_text!(array, Date32Type, tc::date32_to_datetime, "%Y-%m-%d")?,
        }),
        Kind::Time(unit) => Cells::Text(format_time(array, unit, db)?),
        Kind::Timestamp { unit, zoned } => Cells::Text(format_timestamp(array, unit, zoned, db)?),
        Kind::Json => Cells::Text(to_json(array, field)?),
    })
}

/// Writes `value` (a chrono `DelayedFormat`, when the value is in range) into `out`.
fn write_date(value: Option<impl std::fmt::Display>, out: &mut String) -> bool {
    match value {
        Some(v) => write!(out, "{v}").is_ok(),
        None => false,
    }
}

/// Formats every non-null value with `format`, which returns false for a value out of range.
fn format_each<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    format: impl Fn(T::Native, &mut String) -> bool,
) -> Result<StringArray, RowError> {
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 26);
    let mut text = String::new();
    for row in 0..array.len() {
        if array.is_null(row) {
            builder.append_null();
            continue;
        }
        text.clear();
        if !format(array.value(row), &mut text) {
            return Err(RowError {
                row,
                message: format!(
                    "the {} value {:?} is out of the range weir can write",
                    array.data_type(),
                    array.value(row)
                ),
            });
        }
        builder.append_value(&text);
    }
    Ok(builder.finish())
}

/// `%H:%M:%S` with the unit's fraction: PostgreSQL and MySQL keep microseconds, SQLite text keeps
/// nanoseconds.
fn clock_format(unit: TimeUnit, db: Database) -> &'static str {
    match (unit, db) {
        (TimeUnit::Second, _) => "%H:%M:%S",
        (TimeUnit::Millisecond, _) => "%H:%M:%S%.3f",
        (TimeUnit::Nanosecond, Database::Sqlite) => "%H:%M:%S%.9f",
        _ => "%H:%M:%S%.6f",
    }
}

fn format_time(array: &ArrayRef, unit: TimeUnit, db: Database) -> Result<StringArray, RowError> {
    let clock = clock_format(unit, db);
    match array.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            temporal_text!(array, Time32SecondType, tc::time32s_to_time, clock)
        }
        DataType::Time32(_) => {
            temporal_text!(array, Time32MillisecondType, tc::time32ms_to_time, clock)
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            temporal_text!(array, Time64MicrosecondType, tc::time64us_to_time, clock)
        }
        _ => temporal_text!(array, Time64NanosecondType, tc::time64ns_to_time, clock),
    }
}

/// The text of a timestamp: `YYYY-MM-DD HH:MM:SS[.fff…]`, in UTC, with `+00` (PostgreSQL) or `Z`
/// (SQLite) when the Arrow type has a time zone; MySQL's DATETIME takes no zone.
fn timestamp_format(unit: TimeUnit, zoned: bool, db: Database) -> String {
    let suffix = match (zoned, db) {
        (true, Database::Postgres) => "+00",
        (true, Database::Sqlite) => "Z",
        _ => "",
    };
    format!("%Y-%m-%d {}{suffix}", clock_format(unit, db))
}

fn format_timestamp(
    array: &ArrayRef,
    unit: TimeUnit,
    zoned: bool,
    db: Database,
) -> Result<StringArray, RowError> {
    let format = timestamp_format(unit, zoned, db);
    let format = format.as_str();
    match unit {
        TimeUnit::Second => temporal_text!(
            array,
            TimestampSecondType,
            tc::timestamp_s_to_datetime,
            format
        ),
        TimeUnit::Millisecond => temporal_text!(
            array,
            TimestampMillisecondType,
            tc::timestamp_ms_to_datetime,
            format
        ),
        TimeUnit::Microsecond => temporal_text!(
            array,
            TimestampMicrosecondType,
            tc::timestamp_us_to_datetime,
            format
        ),
        // PostgreSQL and MySQL keep microseconds: the nanoseconds are cut (towards the past).
        TimeUnit::Nanosecond if db != Database::Sqlite => temporal_text!(
            array,
            TimestampNanosecondType,
            |v: i64| tc::timestamp_us_to_datetime(v.div_euclid(1000)),
            format
        ),
        TimeUnit::Nanosecond => temporal_text!(
            array,
            TimestampNanosecondType,
            tc::timestamp_ns_to_datetime,
            format
        ),
    }
}

/// Lists, structs and maps as JSON text, nulls inside them written out.
fn to_json(array: &ArrayRef, field: &Arc<Field>) -> Result<StringArray, RowError> {
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder =
        make_encoder(field, array.as_ref(), &options).map_err(|e| cast_error(field, e))?;
    let mut builder = StringBuilder::with_capacity(array.len(), array.len() * 32);
    let mut buffer = Vec::with_capacity(256);
    for row in 0..array.len() {
        if array.is_null(row) {
            builder.append_null();
            continue;
        }
        buffer.clear();
        encoder.encode(row, &mut buffer);
        let text = std::str::from_utf8(&buffer).map_err(|e| RowError {
            row,
            message: format!(
                "column '{}' did not encode as UTF-8 JSON: {e}",
                field.name()
            ),
        })?;
        builder.append_value(text);
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Date32Array, Decimal128Array, Int8Array, ListArray, Time64MicrosecondArray,
        TimestampNanosecondArray,
    };
    use arrow::datatypes::{Int32Type, Schema};

    use super::*;

    fn one_column(array: ArrayRef) -> RecordBatch {
        let field = Field::new("c", array.data_type().clone(), true);
        RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![array]).unwrap()
    }

    fn texts(array: ArrayRef, db: Database) -> Vec<Option<String>> {
        let cells = encode(&one_column(array), db).unwrap();
        (0..cells[0].get_len())
            .map(|row| match cells[0].get(row) {
                Cell::Text(t) => Some(t.to_string()),
                Cell::Null => None,
                other => panic!("not text: {other:?}"),
            })
            .collect()
    }

    impl Cells {
        fn get_len(&self) -> usize {
            match self {
                Cells::Int(a) => a.len(),
                Cells::UInt(a) => a.len(),
                Cells::F32(a) => a.len(),
                Cells::F64(a) => a.len(),
                Cells::Bool(a) => a.len(),
                Cells::Text(a) => a.len(),
                Cells::Bytes(a) => a.len(),
            }
        }
    }

    #[test]
    fn timestamps_per_database() {
        // 2024-03-01 12:34:56.123456789 UTC
        let ns = 1_709_296_496_123_456_789i64;
        let naive: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![Some(ns), None]));
        let zoned: ArrayRef =
            Arc::new(TimestampNanosecondArray::from(vec![Some(ns)]).with_timezone("Asia/Tokyo"));
        assert_eq!(
            texts(Arc::clone(&naive), Database::Postgres),
            vec![Some("2024-03-01 12:34:56.123456".to_string()), None]
        );
        assert_eq!(
            texts(Arc::clone(&zoned), Database::Postgres),
            vec![Some("2024-03-01 12:34:56.123456+00".to_string())]
        );
        assert_eq!(
            texts(Arc::clone(&zoned), Database::Mysql),
            vec![Some("2024-03-01 12:34:56.123456".to_string())]
        );
        assert_eq!(
            texts(zoned, Database::Sqlite),
            vec![Some("2024-03-01 12:34:56.123456789Z".to_string())]
        );
        // Before 1970, nanoseconds are cut towards the past.
        let before: ArrayRef = Arc::new(TimestampNanosecondArray::from(vec![-1i64]));
        assert_eq!(
            texts(before, Database::Mysql),
            vec![Some("1969-12-31 23:59:59.999999".to_string())]
        );
    }

    #[test]
    fn dates_times_decimals_and_json() {
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![19_783]));
        assert_eq!(
            texts(dates, Database::Sqlite),
            vec![Some("2024-03-01".to_string())]
        );
        let times: ArrayRef = Arc::new(Time64MicrosecondArray::from(vec![45_296_000_001]));
        assert_eq!(
            texts(times, Database::Postgres),
            vec![Some("12:34:56.000001".to_string())]
        );
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(-5), Some(123_456)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        assert_eq!(
            texts(decimals, Database::Mysql),
            vec![Some("-0.05".to_string()), Some("1234.56".to_string())]
        );
        let lists: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
        ]));
        assert_eq!(
            texts(lists, Database::Postgres),
            vec![Some("[1,null,3]".to_string()), None]
        );
    }

    #[test]
    fn small_integers_widen() {
        let small: ArrayRef = Arc::new(Int8Array::from(vec![Some(-7), None]));
        let cells = encode(&one_column(small), Database::Mysql).unwrap();
        assert_eq!(cells[0].get(0), Cell::Int(-7));
        assert_eq!(cells[0].get(1), Cell::Null);
    }
}
