//! Record values ⇄ Arrow columns: vectorised decoding of a whole batch of Kafka values into the
//! declared columns of a table (JSON, CSV, raw, Avro, Protobuf), and JSON, Avro and Protobuf
//! encoding of rows for the Kafka sink.
//!
//! A batch decodes in one pass. Only when that pass fails, or yields a different number of rows
//! than there are records, is the batch decoded record by record to find the records at fault,
//! which then fail the query or are dropped or nulled, as the table's `mode` says.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, BooleanArray, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use datafusion::error::{DataFusionError, Result};

use crate::kafka::formats::{RecordPart, ValueFormat};
use crate::kafka::options::MalformedMode;

mod avro;
mod avro_encode;
mod columns;
mod protobuf;
mod protobuf_arrow;
mod protobuf_encode;
mod record;
pub mod registry;
mod schemas;

pub use record::{PartFormat, RecordDecoder};
pub use schemas::{RowEncoder, SchemaCodec};

/// The declared columns of a batch of records.
#[derive(Debug)]
pub struct Decoded {
    /// One row per kept record.
    pub batch: RecordBatch,
    /// Which records were kept, when some were dropped (DROPMALFORMED).
    pub kept: Option<BooleanArray>,
    /// How many records did not decode (dropped or nulled).
    pub malformed: usize,
}

/// Decodes record values (or keys) into a table's declared columns.
#[derive(Debug, Clone)]
pub struct ValueDecoder {
    format: ValueFormat,
    schema: SchemaRef,
    mode: MalformedMode,
    /// The codec of 'format' 'avro' and 'protobuf'.
    codec: Option<SchemaCodec>,
    /// Whether it decodes values or keys, for messages.
    part: RecordPart,
}

/// One row per record of one part (key or value), and which records did not decode.
#[derive(Debug)]
pub struct PartRows {
    /// One row per record; a record that did not decode has a null row.
    pub batch: RecordBatch,
    /// Which records did not decode; empty when all did.
    pub malformed: Vec<bool>,
}

impl ValueDecoder {
    /// A decoder of values in `format` into `schema` (the declared columns); `codec` is the
    /// codec of 'format' 'avro' and 'protobuf'.
    pub fn new(
        format: ValueFormat,
        schema: SchemaRef,
        mode: MalformedMode,
        codec: Option<SchemaCodec>,
    ) -> Result<Self> {
        Self::of_part(RecordPart::Value, format, schema, mode, codec)
    }

    /// A decoder of `part` (values or keys) in `format` into `schema`.
    pub fn of_part(
        part: RecordPart,
        format: ValueFormat,
        schema: SchemaRef,
        mode: MalformedMode,
        codec: Option<SchemaCodec>,
    ) -> Result<Self> {
        if format == ValueFormat::RawValue {
            let fields = schema.fields();
            let ok = fields.len() == 1
                && matches!(
                    fields[0].data_type(),
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                );
            if !ok {
                return Err(DataFusionError::Plan(format!(
                    "'{}' 'raw' needs exactly one declared column, of a string or binary type, \
                     to hold the {}",
                    part.option("format"),
                    part.name()
                )));
            }
        }
        if format.has_schema() {
            let codec = codec.as_ref().ok_or_else(|| {
                DataFusionError::Internal("a table without its schema's codec".to_string())
            })?;
            codec.check_declared(&schema).map_err(|e| match part {
                RecordPart::Value => DataFusionError::Plan(e),
                RecordPart::Key => DataFusionError::Plan(format!("the keys' schema: {e}")),
            })?;
        }
        Ok(Self {
            format,
            schema,
            mode,
            codec,
            part,
        })
    }

    /// The codec of 'format' 'avro' and 'protobuf'.
    pub fn codec(&self) -> Option<&SchemaCodec> {
        self.codec.as_ref()
    }

    /// Decodes `values` (one per record; null for a tombstone, which decodes to null columns),
    /// dropping or nulling those that do not decode as the mode says. `locate(i)` names record
    /// `i` in error messages.
    pub fn decode(
        &self,
        values: &BinaryArray,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Decoded> {
        let rows = self.decode_rows(values, locate)?;
        keep_decoded(rows.batch, &rows.malformed, self.mode)
    }

    /// Decodes `values` into one row each; those that do not decode fail (FAILFAST) or become
    /// null rows, and are marked.
    pub fn decode_rows(
        &self,
        values: &BinaryArray,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<PartRows> {
        if let Some(codec) = &self.codec {
            codec.prepare(values, &self.schema, locate)?;
        }
        if let Ok(batch) = self.decode_all(values, None)
            && batch.num_rows() == values.len()
        {
            return Ok(PartRows {
                batch,
                malformed: vec![],
            });
        }
        self.decode_record_by_record(values, locate)
    }

    /// Decodes every value in one pass; `replace[i]` substitutes an all-null row.
    fn decode_all(
        &self,
        values: &BinaryArray,
        replace: Option<&[bool]>,
    ) -> Result<RecordBatch, ArrowError> {
        let nulled = |i: usize| values.is_null(i) || replace.is_some_and(|r| r[i]);
        match &self.format {
            ValueFormat::Json => {
                let mut decoder = arrow_json::ReaderBuilder::new(Arc::clone(&self.schema))
                    .with_batch_size(values.len() + 1)
                    .build_decoder()?;
                for i in 0..values.len() {
                    let value = if nulled(i) {
                        b"{}".as_slice()
                    } else {
                        values.value(i)
                    };
                    decode_fully(value, |b| decoder.decode(b))?;
                    decode_fully(b"\n", |b| decoder.decode(b))?;
                }
                Ok(decoder
                    .flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))))
            }
            ValueFormat::Csv { delimiter } => {
                let mut decoder = arrow_csv::ReaderBuilder::new(Arc::clone(&self.schema))
                    .with_delimiter(*delimiter)
                    .with_batch_size(values.len() + 1)
                    .build_decoder();
                let mut empty_row = b"\"\"".to_vec();
                empty_row.extend(std::iter::repeat_n(
                    *delimiter,
                    self.schema.fields().len().saturating_sub(1),
                ));
                for i in 0..values.len() {
                    let value = if nulled(i) {
                        empty_row.as_slice()
                    } else {
                        values.value(i)
                    };
                    decode_fully(value, |b| decoder.decode(b))?;
                    decode_fully(b"\n", |b| decoder.decode(b))?;
                }
                Ok(decoder
                    .flush()?
                    .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))))
            }
            ValueFormat::RawValue => {
                let values: ArrayRef = match replace {
                    None => Arc::new(values.clone()),
                    Some(r) => {
                        let nulls: Vec<Option<&[u8]>> = (0..values.len())
                            .map(|i| (!r[i] && values.is_valid(i)).then(|| values.value(i)))
                            .collect();
                        Arc::new(BinaryArray::from(nulls))
                    }
                };
                let strict = CastOptions {
                    safe: false,
                    ..Default::default()
                };
                let column = cast_with_options(&values, self.schema.field(0).data_type(), &strict)?;
                RecordBatch::try_new(Arc::clone(&self.schema), vec![column])
            }
            ValueFormat::Avro(_) | ValueFormat::Protobuf(_) => match &self.codec {
                Some(codec) => codec.decode(values, &nulled, &self.schema),
                None => Err(ArrowError::InvalidArgumentError(
                    "a table without its schema's codec".to_string(),
                )),
            },
            ValueFormat::RawRecord => Err(ArrowError::InvalidArgumentError(
                "a raw record table has no declared columns to decode".to_string(),
            )),
        }
    }

    /// Finds the records that do not decode alone, then decodes the rest (or nulls) in one pass.
    fn decode_record_by_record(
        &self,
        values: &BinaryArray,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<PartRows> {
        let mut bad = vec![false; values.len()];
        for (i, is_bad) in bad.iter_mut().enumerate() {
            if values.is_null(i) {
                continue;
            }
            let single = BinaryArray::from(vec![values.value(i)]);
            let problem = match self.decode_all(&single, None) {
                Ok(batch) if batch.num_rows() == 1 => None,
                Ok(batch) => Some(format!(
                    "the payload holds {} rows instead of one",
                    batch.num_rows()
                )),
                Err(e) => Some(e.to_string()),
            };
            if let Some(problem) = problem {
                if self.mode == MalformedMode::FailFast {
                    return Err(DataFusionError::Execution(format!(
                        "cannot decode the {} of {} as {}: {problem}; set the table option \
                         'mode' to DROPMALFORMED to skip such records or PERMISSIVE to keep them \
                         with null columns",
                        self.part.name(),
                        locate(i),
                        self.format_name(),
                    )));
                }
                *is_bad = true;
            }
        }
        let batch = self.decode_all(values, Some(&bad)).map_err(|e| {
            DataFusionError::Execution(format!(
                "{}s of {} decode alone but not together as {}: {e}",
                self.part.name(),
                locate(0),
                self.format_name()
            ))
        })?;
        if batch.num_rows() != values.len() {
            return Err(DataFusionError::Execution(format!(
                "{} {}s starting at {} decode into {} rows as {}",
                values.len(),
                self.part.name(),
                locate(0),
                batch.num_rows(),
                self.format_name()
            )));
        }
        Ok(PartRows {
            batch,
            malformed: bad,
        })
    }

    fn format_name(&self) -> &'static str {
        match self.format {
            ValueFormat::Json => "json",
            ValueFormat::Csv { .. } => "csv",
            ValueFormat::Avro(_) => "avro",
            ValueFormat::Protobuf(_) => "protobuf",
            ValueFormat::RawValue | ValueFormat::RawRecord => "raw",
        }
    }
}

/// The decoded rows `batch` as `mode` keeps them: under DROPMALFORMED without the rows
/// `malformed` marks (empty: none), otherwise all of them.
pub fn keep_decoded(
    batch: RecordBatch,
    malformed: &[bool],
    mode: MalformedMode,
) -> Result<Decoded> {
    let count = malformed.iter().filter(|b| **b).count();
    if mode == MalformedMode::DropMalformed && count > 0 {
        let kept = BooleanArray::from(malformed.iter().map(|b| !b).collect::<Vec<_>>());
        let batch = filter_record_batch(&batch, &kept)?;
        return Ok(Decoded {
            batch,
            kept: Some(kept),
            malformed: count,
        });
    }
    Ok(Decoded {
        batch,
        kept: None,
        malformed: count,
    })
}

/// Feeds `buf` to an incremental decoder until it has taken all of it.
fn decode_fully(
    mut buf: &[u8],
    mut decode: impl FnMut(&[u8]) -> Result<usize, ArrowError>,
) -> Result<(), ArrowError> {
    while !buf.is_empty() {
        let taken = decode(buf)?;
        if taken == 0 {
            return Err(ArrowError::JsonError(
                "the decoder took no input".to_string(),
            ));
        }
        buf = &buf[taken..];
    }
    Ok(())
}

/// Encodes each row of `batch` as one JSON object (null fields left out).
pub fn encode_json_rows(batch: &RecordBatch) -> Result<Vec<Vec<u8>>> {
    let mut buffer = Vec::with_capacity(batch.num_rows() * 64);
    {
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut buffer);
        writer.write(batch)?;
        writer.finish()?;
    }
    let rows: Vec<Vec<u8>> = buffer
        .split(|b| *b == b'\n')
        .take(batch.num_rows())
        .map(<[u8]>::to_vec)
        .collect();
    if rows.len() != batch.num_rows() {
        return Err(DataFusionError::Internal(format!(
            "JSON encoding gave {} rows for {}",
            rows.len(),
            batch.num_rows()
        )));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn values(v: &[Option<&str>]) -> BinaryArray {
        BinaryArray::from(v.iter().map(|s| s.map(str::as_bytes)).collect::<Vec<_>>())
    }

    fn locate(i: usize) -> String {
        format!("topic 't' partition 0 offset {}", 100 + i)
    }

    fn ids(batch: &RecordBatch) -> Vec<Option<i64>> {
        batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .iter()
            .collect()
    }

    #[test]
    fn json_batch_decodes_in_one_pass() {
        let d =
            ValueDecoder::new(ValueFormat::Json, schema(), MalformedMode::FailFast, None).unwrap();
        let v = values(&[
            Some(r#"{"id":1,"name":"a"}"#),
            None,
            Some(r#"{"id":3,"extra":true}"#),
        ]);
        let out = d.decode(&v, &locate).unwrap();
        assert_eq!(ids(&out.batch), vec![Some(1), None, Some(3)]);
        let names = out
            .batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "a");
        assert!(names.is_null(2));
        assert_eq!(out.malformed, 0);
    }

    #[test]
    fn bad_json_names_the_record() {
        let d =
            ValueDecoder::new(ValueFormat::Json, schema(), MalformedMode::FailFast, None).unwrap();
        for bad in [
            r#"{"id":"x"}"#,
            r#"{"id":1"#,
            "not json",
            r#"{"id":1}{"id":2}"#,
            "",
        ] {
            let v = values(&[Some(r#"{"id":1}"#), Some(bad), Some(r#"{"id":3}"#)]);
            let e = d.decode(&v, &locate).unwrap_err().to_string();
            assert!(e.contains("offset 101"), "{bad}: {e}");
            assert!(e.contains("DROPMALFORMED"), "{e}");
        }
    }

    #[test]
    fn dropmalformed_and_permissive() {
        let v = values(&[Some(r#"{"id":1}"#), Some("garbage"), Some(r#"{"id":3}"#)]);
        let d = ValueDecoder::new(
            ValueFormat::Json,
            schema(),
            MalformedMode::DropMalformed,
            None,
        )
        .unwrap();
        let out = d.decode(&v, &locate).unwrap();
        assert_eq!(ids(&out.batch), vec![Some(1), Some(3)]);
        assert_eq!(out.malformed, 1);
        assert_eq!(
            out.kept.unwrap().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), Some(true)]
        );
        let d = ValueDecoder::new(ValueFormat::Json, schema(), MalformedMode::Permissive, None)
            .unwrap();
        let out = d.decode(&v, &locate).unwrap();
        assert_eq!(ids(&out.batch), vec![Some(1), None, Some(3)]);
        assert_eq!(out.malformed, 1);
        assert!(out.kept.is_none());
    }

    #[test]
    fn csv_values() {
        let d = ValueDecoder::new(
            ValueFormat::Csv { delimiter: b'|' },
            schema(),
            MalformedMode::FailFast,
            None,
        )
        .unwrap();
        let out = d
            .decode(&values(&[Some("1|a"), Some("2|b"), None]), &locate)
            .unwrap();
        assert_eq!(ids(&out.batch), vec![Some(1), Some(2), None]);
        let e = d
            .decode(&values(&[Some("1|a"), Some("x|b")]), &locate)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset 101") && e.contains("csv"), "{e}");
        let e = d
            .decode(&values(&[Some("1|a\n2|b")]), &locate)
            .unwrap_err()
            .to_string();
        assert!(e.contains("offset 100"), "{e}");
    }

    #[test]
    fn raw_values() {
        let s = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let d = ValueDecoder::new(ValueFormat::RawValue, s, MalformedMode::FailFast, None).unwrap();
        let v = BinaryArray::from(vec![Some(b"ok".as_slice()), None, Some(&[0xff, 0xfe])]);
        let e = d.decode(&v, &locate).unwrap_err().to_string();
        assert!(e.contains("offset 102"), "{e}");
        assert!(
            ValueDecoder::new(
                ValueFormat::RawValue,
                schema(),
                MalformedMode::FailFast,
                None
            )
            .is_err()
        );
    }

    #[test]
    fn json_encoding_one_object_per_row() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\nb"), Some("c")])),
            ],
        )
        .unwrap();
        let rows = encode_json_rows(&batch).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            String::from_utf8(rows[0].clone()).unwrap(),
            r#"{"id":1,"name":"a\nb"}"#
        );
        assert_eq!(
            String::from_utf8(rows[1].clone()).unwrap(),
            r#"{"name":"c"}"#
        );
    }
}
