//! Rows → Avro values for the Kafka sink: one value per row, encoded a whole batch at a time by
//! arrow-avro; plain Avro binary, or framed with the schema's registry id after registering it
//! under the table's subject.
//!
//! The schema is the table's `avroSchema` when given, else one made from the declared columns:
//! a record named after the table, nullable columns as unions with null, and timestamps as
//! `timestamp-micros` (what Spark writes and every Avro library reads).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BinaryArray, DictionaryArray, Int32Array, RecordBatch, StringArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow_avro::schema::{
    AVRO_ENUM_SYMBOLS_METADATA_KEY, AvroSchema, FingerprintStrategy, SCHEMA_METADATA_KEY,
};
use arrow_avro::writer::format::{AvroBinaryFormat, AvroSoeFormat};
use arrow_avro::writer::{Encoder, WriterBuilder};
use datafusion::error::{DataFusionError, Result};

use super::avro::{AvroCodec, columns_of};

/// Encodes a table's declared columns as its Avro values.
#[derive(Debug)]
pub struct AvroWriter {
    codec: Arc<AvroCodec>,
    table: String,
    /// The schema as Avro JSON.
    schema: String,
    /// The Arrow columns the schema encodes, with the schema in their metadata.
    columns: SchemaRef,
    /// The schema's registry id, once registered.
    registered: tokio::sync::OnceCell<u32>,
}

impl AvroWriter {
    /// The writer of `table`'s `declared` columns.
    pub fn try_new(codec: Arc<AvroCodec>, table: &str, declared: &SchemaRef) -> Result<Self> {
        let schema = match codec.writer_schema() {
            Some(given) => given.to_string(),
            None => schema_of(table, declared)?,
        };
        let plan = |e: String| {
            DataFusionError::Plan(format!(
                "cannot write Avro values to Kafka table '{table}': {e}"
            ))
        };
        let mut metadata = HashMap::new();
        metadata.insert(SCHEMA_METADATA_KEY.to_string(), schema.clone());
        let columns = columns_of(&schema).map_err(plan)?;
        let columns = Arc::new(Schema::new_with_metadata(
            columns.fields().clone(),
            metadata,
        ));
        if let Some((_, None)) = codec.registry() {
            return Err(plan(
                "the registry subject to register the schema under is unknown: set the table \
                 option 'subject' (or 'topic', for the default <topic>-value)"
                    .to_string(),
            ));
        }
        Ok(Self {
            codec,
            table: table.to_string(),
            schema,
            columns,
            registered: tokio::sync::OnceCell::new(),
        })
    }

    /// Registers the schema under the table's subject, once, when the values are framed.
    pub async fn ready(&self) -> Result<()> {
        let Some((client, Some(subject))) = self.codec.registry() else {
            return Ok(());
        };
        self.registered
            .get_or_try_init(|| async {
                client.register(subject, &self.schema).await.map_err(|e| {
                    DataFusionError::Execution(format!(
                        "cannot register the Avro schema of Kafka table '{}' under subject \
                         '{subject}': {e}",
                        self.table
                    ))
                })
            })
            .await?;
        Ok(())
    }

    /// One value per row of `batch` (the declared columns, by name).
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray> {
        let fitted = self.fit(batch)?;
        let mut encoder = self.encoder()?;
        encoder.encode(&fitted).map_err(|e| self.failed(e))?;
        let rows = encoder.flush();
        let offsets = rows
            .offsets()
            .iter()
            .map(|o| i32::try_from(*o))
            .collect::<Result<Vec<i32>, _>>()
            .map_err(|_| {
                DataFusionError::Execution(format!(
                    "a batch of Avro values for Kafka table '{}' exceeds 2 GiB",
                    self.table
                ))
            })?;
        Ok(BinaryArray::new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(rows.bytes().to_vec()),
            None,
        ))
    }

    fn encoder(&self) -> Result<Encoder> {
        let builder = WriterBuilder::new(self.columns.as_ref().clone());
        let built = match self.registered.get() {
            Some(id) => builder
                .with_fingerprint_strategy(FingerprintStrategy::Id(*id))
                .build_encoder::<AvroSoeFormat>(),
            None if self.codec.registry().is_some() => {
                return Err(DataFusionError::Internal(
                    "Avro values encoded before their schema was registered".to_string(),
                ));
            }
            None => builder.build_encoder::<AvroBinaryFormat>(),
        };
        built.map_err(|e| self.failed(e))
    }

    /// `batch`'s columns cast to the schema's, by name; a nullable field the rows lack is null.
    fn fit(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut columns = Vec::with_capacity(self.columns.fields().len());
        for field in self.columns.fields() {
            let found = batch
                .schema()
                .fields()
                .iter()
                .position(|f| f.name().eq_ignore_ascii_case(field.name()));
            let column = match found {
                Some(i) => match field.metadata().get(AVRO_ENUM_SYMBOLS_METADATA_KEY) {
                    Some(symbols) => self.enum_column(batch.column(i), field.name(), symbols)?,
                    None => cast_with_options(batch.column(i), field.data_type(), &strict)?,
                },
                None if field.is_nullable() => {
                    arrow::array::new_null_array(field.data_type(), batch.num_rows())
                }
                None => {
                    return Err(DataFusionError::Execution(format!(
                        "the Avro schema of Kafka table '{}' needs field '{}', which its \
                         columns lack",
                        self.table,
                        field.name()
                    )));
                }
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(DataFusionError::Execution(format!(
                    "a row written to Kafka table '{}' has a NULL '{}', which its Avro schema \
                     does not allow",
                    self.table,
                    field.name()
                )));
            }
            columns.push(column);
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.columns), columns)?)
    }

    /// `column` as the Avro enum `name` with `symbols` (a JSON list): the dictionary of all
    /// symbols, in order, that arrow-avro encodes; a value that is not a symbol fails.
    fn enum_column(&self, column: &ArrayRef, name: &str, symbols: &str) -> Result<ArrayRef> {
        let symbols: Vec<String> = serde_json::from_str(symbols)
            .map_err(|e| DataFusionError::Internal(format!("Avro enum symbols: {e}")))?;
        let text = cast(column, &DataType::Utf8)?;
        let mut keys = Vec::with_capacity(text.len());
        for value in text.as_string::<i32>() {
            keys.push(match value {
                None => None,
                Some(v) => Some(symbols.iter().position(|s| s == v).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "a row written to Kafka table '{}' has '{v}' in '{name}', which is not \
                         one of its Avro enum's symbols ({})",
                        self.table,
                        symbols.join(", ")
                    ))
                })? as i32),
            });
        }
        let dictionary = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(keys),
            Arc::new(StringArray::from(symbols)),
        )?;
        Ok(Arc::new(dictionary))
    }

    fn failed(&self, error: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Execution(format!(
            "cannot encode rows as Avro for Kafka table '{}': {error}",
            self.table
        ))
    }
}

/// The Avro schema of `declared` columns: a record named after `table`.
fn schema_of(table: &str, declared: &SchemaRef) -> Result<String> {
    let fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(writable(f.data_type())))
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("avro.name".to_string(), record_name(table));
    let schema = Schema::new_with_metadata(fields, metadata);
    let json = AvroSchema::try_from(&schema).map_err(|e| {
        DataFusionError::Plan(format!(
            "the columns of Kafka table '{table}' have no Avro schema: {e}"
        ))
    })?;
    with_null_defaults(&json.json_string)
}

/// `schema` with `"default": null` on every nullable field, so that a reader of a later
/// version of the schema without it can still read values written with it.
fn with_null_defaults(schema: &str) -> Result<String> {
    let mut parsed: serde_json::Value = serde_json::from_str(schema)
        .map_err(|e| DataFusionError::Internal(format!("a derived Avro schema: {e}")))?;
    if let Some(fields) = parsed.get_mut("fields").and_then(|f| f.as_array_mut()) {
        for field in fields {
            let nullable = field
                .get("type")
                .and_then(|t| t.as_array())
                .is_some_and(|branches| branches.first() == Some(&serde_json::json!("null")));
            if nullable && let Some(field) = field.as_object_mut() {
                field.insert("default".to_string(), serde_json::Value::Null);
            }
        }
    }
    Ok(parsed.to_string())
}

/// The type a column is written as: timestamps in microseconds, strings and bytes plain.
fn writable(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Timestamp(_, tz) => DataType::Timestamp(
            TimeUnit::Microsecond,
            Some(tz.clone().unwrap_or_else(|| "+00:00".into())),
        ),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}

/// An Avro name made of `table`: letters, digits and `_`, not starting with a digit.
fn record_name(table: &str) -> String {
    let name: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) || name.is_empty() {
        format!("_{name}")
    } else {
        name
    }
}
