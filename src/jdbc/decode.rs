//! Rows read from a database, back to Arrow: each column's values arrive as text (or bytes,
//! for binary columns), one row at a time through the driver, into builders; a finished batch
//! casts the text to the declared types with arrow's vectorised parsers, and decodes JSON text
//! (lists, structs, maps) with arrow-json.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, RecordBatch,
    RecordBatchOptions, StringArray, StringBuilder,
};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};

use super::dialect::Kind;

enum Builder {
    Text(StringBuilder),
    Binary(BinaryBuilder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    /// JSON text, decoded when the batch is finished.
    Json(StringBuilder),
}

/// Builds record batches of `schema` from rows of text values.
pub struct RowDecoder {
    schema: SchemaRef,
    builders: Vec<Builder>,
    rows: usize,
    /// What the rows come from, for messages (`table orders in postgres://…`).
    source: String,
}

impl std::fmt::Debug for RowDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowDecoder")
            .field("schema", &self.schema)
            .field("rows", &self.rows)
            .finish()
    }
}

impl RowDecoder {
    /// A decoder of rows whose values are the columns of `schema`, in order.
    pub fn new(schema: SchemaRef, source: String) -> Result<Self> {
        let builders = schema
            .fields()
            .iter()
            .map(|f| {
                let kind = Kind::of(f.data_type()).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "column '{}' has the type {}, which a JDBC table cannot read",
                        f.name(),
                        f.data_type()
                    ))
                })?;
                Ok(match kind {
                    Kind::Binary => Builder::Binary(BinaryBuilder::new()),
                    Kind::Float32 => Builder::Float32(Float32Builder::new()),
                    Kind::Float64 => Builder::Float64(Float64Builder::new()),
                    Kind::Boolean => Builder::Boolean(BooleanBuilder::new()),
                    Kind::Json => Builder::Json(StringBuilder::new()),
                    _ => Builder::Text(StringBuilder::new()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            schema,
            builders,
            rows: 0,
            source,
        })
    }

    /// The schema of the batches it builds.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows pushed since the last [`RowDecoder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the value of `column` in the current row: its text (or bytes), or `None` for
    /// NULL. Call once per column, in order, then [`RowDecoder::end_row`].
    pub fn push(&mut self, column: usize, value: Option<&[u8]>) -> Result<()> {
        fn parsed<T: std::str::FromStr>(value: &[u8]) -> Option<T> {
            std::str::from_utf8(value).ok()?.trim().parse().ok()
        }
        match (&mut self.builders[column], value) {
            (Builder::Text(b) | Builder::Json(b), None) => b.append_null(),
            (Builder::Binary(b), None) => b.append_null(),
            (Builder::Float32(b), None) => b.append_null(),
            (Builder::Float64(b), None) => b.append_null(),
            (Builder::Boolean(b), None) => b.append_null(),
            (Builder::Binary(b), Some(v)) => b.append_value(v),
            (Builder::Text(b) | Builder::Json(b), Some(v)) => match std::str::from_utf8(v) {
                Ok(text) => b.append_value(text),
                Err(_) => return Err(self.bad_value(column, v, "UTF-8 text")),
            },
            (Builder::Float32(b), Some(v)) => match parsed::<f32>(v) {
                Some(x) => b.append_value(x),
                None => return Err(self.bad_value(column, v, "a number")),
            },
            (Builder::Float64(b), Some(v)) => match parsed::<f64>(v) {
                Some(x) => b.append_value(x),
                None => return Err(self.bad_value(column, v, "a number")),
            },
            (Builder::Boolean(b), Some(v)) => {
                match std::str::from_utf8(v).ok().and_then(parse_bool) {
                    Some(x) => b.append_value(x),
                    None => return Err(self.bad_value(column, v, "a boolean")),
                }
            }
        }
        Ok(())
    }

    fn bad_value(&self, column: usize, value: &[u8], expected: &str) -> DataFusionError {
        let shown = String::from_utf8_lossy(&value[..value.len().min(64)]).into_owned();
        DataFusionError::Execution(format!(
            "{}: column '{}' holds '{shown}', which is not {expected}",
            self.source,
            self.schema.field(column).name()
        ))
    }

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// The rows pushed so far as a record batch of the schema; the decoder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.builders.len());
        for (builder, field) in self.builders.iter_mut().zip(self.schema.fields()) {
            let array: ArrayRef = match builder {
                Builder::Binary(b) => Arc::new(b.finish()),
                Builder::Float32(b) => Arc::new(b.finish()),
                Builder::Float64(b) => Arc::new(b.finish()),
                Builder::Boolean(b) => Arc::new(b.finish()),
                Builder::Text(b) => Arc::new(b.finish()),
                Builder::Json(b) => {
                    let text = b.finish();
                    columns.push(decode_json(&text, field).map_err(|e| {
                        DataFusionError::Execution(format!(
                            "{}: column '{}' does not hold JSON of type {}: {e}",
                            self.source,
                            field.name(),
                            field.data_type()
                        ))
                    })?);
                    continue;
                }
            };
            columns.push(to_declared(&array, field).map_err(|e| {
                DataFusionError::Execution(format!(
                    "{}: column '{}' holds a value that is not a {}: {e}",
                    self.source,
                    field.name(),
                    field.data_type()
                ))
            })?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)
            .map_err(|e| DataFusionError::Execution(format!("{}: {e}", self.source)))
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "1" | "y" | "yes" | "on" => Some(true),
        "f" | "false" | "0" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Casts a column of text (or bytes, or parsed floats and booleans) to the declared type.
fn to_declared(array: &ArrayRef, field: &Field) -> arrow::error::Result<ArrayRef> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    match field.data_type() {
        // Text is read as UTC: naive text stays as it is, text with an offset is converted.
        DataType::Timestamp(unit, Some(tz)) => {
            let utc = cast_with_options(
                array,
                &DataType::Timestamp(*unit, Some(Arc::from("+00:00"))),
                &strict,
            )?;
            cast(&utc, &DataType::Timestamp(*unit, Some(Arc::clone(tz))))
        }
        other if other == array.data_type() => Ok(Arc::clone(array)),
        other => cast_with_options(array, other, &strict),
    }
}

/// Decodes a column of JSON texts (nulls for SQL NULL) into `field`'s type.
fn decode_json(texts: &StringArray, field: &Field) -> arrow::error::Result<ArrayRef> {
    let schema = Arc::new(Schema::new(vec![
        field.clone().with_name("v").with_nullable(true),
    ]));
    let mut decoder = arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(texts.len().max(1))
        .build_decoder()?;
    let mut lines = Vec::with_capacity(texts.len() * 16);
    for row in 0..texts.len() {
        lines.extend_from_slice(b"{\"v\":");
        if texts.is_null(row) {
            lines.extend_from_slice(b"null");
        } else {
            lines.extend_from_slice(texts.value(row).as_bytes());
        }
        lines.extend_from_slice(b"}\n");
    }
    let mut read = 0;
    while read < lines.len() {
        let consumed = decoder.decode(&lines[read..])?;
        if consumed == 0 {
            break;
        }
        read += consumed;
    }
    let batch = decoder
        .flush()?
        .ok_or_else(|| arrow::error::ArrowError::JsonError("no rows were decoded".to_string()))?;
    if batch.num_rows() != texts.len() {
        return Err(arrow::error::ArrowError::JsonError(format!(
            "{} JSON values decoded into {} rows",
            texts.len(),
            batch.num_rows()
        )));
    }
    Ok(Arc::clone(batch.column(0)))
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{Int32Type, TimeUnit};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    use super::*;

    fn decode(data_type: DataType, values: &[Option<&str>]) -> Result<ArrayRef> {
        let schema = Arc::new(Schema::new(vec![Field::new("c", data_type, true)]));
        let mut decoder = RowDecoder::new(schema, "test".to_string())?;
        for value in values {
            decoder.push(0, value.map(str::as_bytes))?;
            decoder.end_row();
        }
        Ok(Arc::clone(decoder.finish()?.column(0)))
    }

    fn shown(array: &ArrayRef) -> Vec<String> {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).unwrap();
        (0..array.len())
            .map(|i| formatter.value(i).to_string())
            .collect()
    }

    #[test]
    fn text_of_each_database_parses() {
        type Case<'a> = (DataType, Vec<Option<&'a str>>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (DataType::Int64, vec![Some("-42"), None], vec!["-42", ""]),
            (
                DataType::UInt64,
                vec![Some("18446744073709551615")],
                vec!["18446744073709551615"],
            ),
            (
                DataType::Float64,
                vec![Some("Infinity"), Some("-inf"), Some("NaN"), Some("1e300")],
                vec!["inf", "-inf", "NaN", "1e300"],
            ),
            (DataType::Float32, vec![Some("3.14")], vec!["3.14"]),
            (
                DataType::Boolean,
                vec![Some("t"), Some("0"), Some("true")],
                vec!["true", "false", "true"],
            ),
            (
                DataType::Decimal128(10, 2),
                vec![Some("-0.05")],
                vec!["-0.05"],
            ),
            (
                DataType::Decimal256(50, 3),
                vec![Some("12345678901234567890123456789.123")],
                vec!["12345678901234567890123456789.123"],
            ),
            (
                DataType::Date32,
                vec![Some("2024-03-01")],
                vec!["2024-03-01"],
            ),
            (
                DataType::Time64(TimeUnit::Nanosecond),
                vec![Some("12:34:56.000001")],
                vec!["12:34:56.000001"],
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                vec![Some("2024-03-01 12:34:56.123456")],
                vec!["2024-03-01T12:34:56.123456"],
            ),
            (
                DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::from("+09:00"))),
                vec![
                    Some("2024-03-01 12:34:56.123456789Z"),
                    Some("2024-03-01 12:34:56"),
                ],
                vec![
                    "2024-03-01T21:34:56.123456789+09:00",
                    "2024-03-01T21:34:56+09:00",
                ],
            ),
            (
                DataType::Utf8View,
                vec![Some("héllo\ttab")],
                vec!["héllo\ttab"],
            ),
            (
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                vec![Some("[1, null, 3]"), None],
                vec!["[1, , 3]", ""],
            ),
        ];
        for (data_type, values, expected) in cases {
            let array =
                decode(data_type.clone(), &values).unwrap_or_else(|e| panic!("{data_type}: {e}"));
            assert_eq!(array.data_type(), &data_type);
            assert_eq!(shown(&array), expected, "{data_type}");
        }
        let list = decode(
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
            &[Some("[7]")],
        )
        .unwrap();
        let expected =
            arrow::array::ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![
                Some(7),
            ])]);
        assert_eq!(list.as_ref(), &expected as &dyn Array);
    }

    #[test]
    fn bad_values_name_the_column() {
        let e = decode(DataType::Int32, &[Some("x1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 'c'") && e.contains("Int32"), "{e}");
        let e = decode(DataType::Boolean, &[Some("maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 'c'") && e.contains("'maybe'"), "{e}");
    }

    #[test]
    fn no_columns_still_count_rows() {
        let mut decoder = RowDecoder::new(Arc::new(Schema::empty()), "t".to_string()).unwrap();
        decoder.end_row();
        decoder.end_row();
        assert_eq!(decoder.finish().unwrap().num_rows(), 2);
    }
}
