//! A batch of records decoded into a table's declared columns: by the value's format alone, or,
//! with `key.format`, the key's columns from the keys and the other columns from the values. A
//! record is malformed when its key or its value does not decode; under PERMISSIVE it keeps
//! null columns for the part that did not.

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};

use super::{Decoded, SchemaCodec, ValueDecoder, keep_decoded};
use crate::kafka::formats::{RecordPart, ValueFormat};
use crate::kafka::options::MalformedMode;

/// How one part of a record (the key or the value) is encoded.
#[derive(Debug, Clone)]
pub struct PartFormat {
    /// The part's format.
    pub format: ValueFormat,
    /// The codec of avro and protobuf.
    pub codec: Option<SchemaCodec>,
}

/// Decodes records into a table's declared columns.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    /// The decoder of the columns read from the values; `None` when the key holds every column.
    value: Option<ValueDecoder>,
    /// The values' codec (avro, protobuf), kept for writing also when no column is read from
    /// the values.
    value_codec: Option<SchemaCodec>,
    /// The key's decoder and where each column comes from, with `key.format`.
    key: Option<KeyDecoder>,
    declared: SchemaRef,
    mode: MalformedMode,
}

#[derive(Debug, Clone)]
struct KeyDecoder {
    decoder: ValueDecoder,
    /// Where each declared column comes from, in order.
    sources: Vec<Source>,
}

/// Where one declared column comes from: a column of the decoded keys or values.
#[derive(Debug, Clone, Copy)]
enum Source {
    Key(usize),
    Value(usize),
}

impl RecordDecoder {
    /// A decoder of values in `value` into the `declared` columns.
    pub fn of_values(declared: SchemaRef, mode: MalformedMode, value: PartFormat) -> Result<Self> {
        let value_codec = value.codec.clone();
        let schema = SchemaRef::clone(&declared);
        let decoder = ValueDecoder::new(value.format, schema, mode, value.codec)?;
        Ok(Self {
            value: Some(decoder),
            value_codec,
            key: None,
            declared,
            mode,
        })
    }

    /// A decoder of the `key_fields` columns from keys in `key`, and of the other `declared`
    /// columns from values in `value`; `value_includes_key` when the values hold the key's
    /// columns too (which matters to csv, read by position).
    pub fn of_keys_and_values(
        declared: SchemaRef,
        mode: MalformedMode,
        value: PartFormat,
        key: PartFormat,
        key_fields: &[String],
        value_includes_key: bool,
    ) -> Result<Self> {
        let mut key_indices = Vec::with_capacity(key_fields.len());
        for name in key_fields {
            let index = declared.index_of(name).map_err(|_| {
                DataFusionError::Plan(format!(
                    "option 'key.fields' names column '{name}', which the table does not have; \
                     its columns are {}",
                    column_names(&declared)
                ))
            })?;
            key_indices.push(index);
        }
        let positional = matches!(value.format, ValueFormat::Csv { .. }) && value_includes_key;
        let value_indices: Vec<usize> = (0..declared.fields().len())
            .filter(|i| positional || !key_indices.contains(i))
            .collect();
        if value.format == ValueFormat::RawValue && value_indices.is_empty() {
            return Err(DataFusionError::Plan(
                "'format' 'raw' needs one declared column besides the key's ('key.fields') to \
                 hold the value"
                    .to_string(),
            ));
        }
        let sources = (0..declared.fields().len())
            .map(|i| match key_indices.iter().position(|k| *k == i) {
                Some(k) => Ok(Source::Key(k)),
                None => value_indices
                    .iter()
                    .position(|v| *v == i)
                    .map(Source::Value)
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!("declared column {i} has no source"))
                    }),
            })
            .collect::<Result<Vec<_>>>()?;
        let key_schema = SchemaRef::new(declared.project(&key_indices)?);
        let decoder =
            ValueDecoder::of_part(RecordPart::Key, key.format, key_schema, mode, key.codec)?;
        let value_codec = value.codec.clone();
        let value = match value_indices.is_empty() {
            true => None,
            false => {
                let schema = SchemaRef::new(declared.project(&value_indices)?);
                Some(ValueDecoder::new(value.format, schema, mode, value.codec)?)
            }
        };
        Ok(Self {
            value,
            value_codec,
            key: Some(KeyDecoder { decoder, sources }),
            declared,
            mode,
        })
    }

    /// The codec of the values, when they are avro or protobuf.
    pub fn codec(&self) -> Option<&SchemaCodec> {
        self.value_codec.as_ref()
    }

    /// The codec of the keys, when they are avro or protobuf.
    pub fn key_codec(&self) -> Option<&SchemaCodec> {
        self.key.as_ref().and_then(|k| k.decoder.codec())
    }

    /// Whether decoding needs the records' keys.
    pub fn needs_keys(&self) -> bool {
        self.key.is_some()
    }

    /// Decodes a batch of records, given their `keys` (when [`Self::needs_keys`]) and `values`;
    /// `locate(i)` names record `i` in error messages.
    pub fn decode(
        &self,
        keys: Option<&BinaryArray>,
        values: &BinaryArray,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<Decoded> {
        let Some(key) = &self.key else {
            return match &self.value {
                Some(value) => value.decode(values, locate),
                None => Err(DataFusionError::Internal(
                    "a decoder of nothing".to_string(),
                )),
            };
        };
        let keys = keys
            .ok_or_else(|| DataFusionError::Internal("keys to decode were not read".to_string()))?;
        let key_rows = key.decoder.decode_rows(keys, locate)?;
        let value_rows = match &self.value {
            Some(value) => Some(value.decode_rows(values, locate)?),
            None => None,
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(key.sources.len());
        for source in &key.sources {
            columns.push(match (source, &value_rows) {
                (Source::Key(i), _) => ArrayRef::clone(key_rows.batch.column(*i)),
                (Source::Value(i), Some(rows)) => ArrayRef::clone(rows.batch.column(*i)),
                (Source::Value(_), None) => {
                    return Err(DataFusionError::Internal(
                        "a value column without a value decoder".to_string(),
                    ));
                }
            });
        }
        let batch = RecordBatch::try_new_with_options(
            SchemaRef::clone(&self.declared),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(values.len())),
        )?;
        let value_malformed = value_rows.map(|r| r.malformed).unwrap_or_default();
        let malformed = either(&key_rows.malformed, &value_malformed, values.len());
        keep_decoded(batch, &malformed, self.mode)
    }
}

/// The marks of records whose key or value is marked (empty when neither is).
fn either(key: &[bool], value: &[bool], rows: usize) -> Vec<bool> {
    if key.is_empty() && value.is_empty() {
        return vec![];
    }
    (0..rows)
        .map(|i| key.get(i).copied().unwrap_or(false) || value.get(i).copied().unwrap_or(false))
        .collect()
}

fn column_names(schema: &SchemaRef) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    names.join(", ")
}
