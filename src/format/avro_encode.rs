//! Rows → Avro values for the Kafka sink: one value per row, encoded a whole batch at a time by
//! arrow-avro; plain Avro binary, or framed with the schema's registry id after registering it
//! under the table's subject.
//!
//! The schema is the table's `avroSchema` when given, else the subject's latest schema, else one
//! made from the declared columns: a record named after the table, nullable columns as unions
//! with null, and timestamps as `timestamp-micros` (what Spark writes and every Avro library
//! reads).

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

use super::avro::{AvroCodec, columns_of, full_name};
use super::columns::{find, is_text, is_uuid, uuid_bytes};
use super::registry::{RegistryError, SchemaType};
use crate::kafka::formats::RecordPart;

/// Encodes a table's declared columns as its Avro values.
#[derive(Debug)]
pub struct AvroWriter {
    codec: Arc<AvroCodec>,
    table: String,
    declared: SchemaRef,
    /// The schema and its id, once [`AvroWriter::ready`] has settled them.
    prepared: tokio::sync::OnceCell<Prepared>,
}

/// The schema values are written with.
#[derive(Debug)]
struct Prepared {
    /// The registry id values are framed with; `None` for plain values.
    id: Option<u32>,
    /// The Arrow columns the schema encodes, with the schema (Avro JSON) in their metadata.
    columns: SchemaRef,
}

impl AvroWriter {
    /// The writer of `table`'s `declared` columns; fails when a registry subject to write
    /// under is unknown.
    pub fn try_new(codec: Arc<AvroCodec>, table: &str, declared: &SchemaRef) -> Result<Self> {
        let writer = Self {
            codec,
            table: table.to_string(),
            declared: Arc::clone(declared),
            prepared: tokio::sync::OnceCell::new(),
        };
        if writer.codec.registry().is_some() && writer.subject().is_none() {
            let part = writer.codec.part();
            return Err(DataFusionError::Plan(format!(
                "cannot write Avro {}s to Kafka table '{table}': the registry subject to write \
                 under is unknown; {}",
                part.name(),
                writer.codec.subject_hint(),
            )));
        }
        Ok(writer)
    }

    /// The subject written to, named after the schema written: `avroSchema`, else one made
    /// from the declared columns (which the topic name strategy does not look at).
    fn subject(&self) -> Option<String> {
        let record = match self.codec.given_schema() {
            Some(given) => full_name(given),
            None => Some(record_name(&self.derived_name())),
        };
        self.codec.write_subject(record.as_deref())
    }

    /// Settles the schema, once: `avroSchema` (registered under the subject, with a registry);
    /// else, under the topic name strategy, the subject's latest schema, as Confluent's
    /// `use.latest.version` does; else one made from the declared columns, registered under
    /// the subject.
    pub async fn ready(&self) -> Result<()> {
        self.prepared.get_or_try_init(|| self.prepare()).await?;
        Ok(())
    }

    async fn prepare(&self) -> Result<Prepared> {
        let (Some(client), Some(subject)) = (self.codec.registry(), self.subject()) else {
            let schema = match self.codec.given_schema() {
                Some(given) => given.to_string(),
                None => schema_of(&self.derived_name(), &self.declared)?,
            };
            return self.prepared(None, &schema);
        };
        let failed = |e: RegistryError| {
            DataFusionError::Execution(format!(
                "cannot settle the Avro schema of Kafka table '{}' under subject '{subject}': {e}",
                self.table
            ))
        };
        let latest = match self.codec.given_schema() {
            Some(_) => None,
            None if self.codec.subject_names_records() => None,
            None => client
                .latest(&subject, SchemaType::Avro)
                .await
                .map_err(failed)?,
        };
        let (id, schema) = match (self.codec.given_schema(), latest) {
            (_, Some(latest)) => (latest.id, latest.schema),
            (Some(given), None) => {
                let id = client.register(&subject, SchemaType::Avro, given, &[]);
                (id.await.map_err(failed)?, given.to_string())
            }
            (None, None) => {
                let derived = schema_of(&self.derived_name(), &self.declared)?;
                let id = client.register(&subject, SchemaType::Avro, &derived, &[]);
                (id.await.map_err(failed)?, derived)
            }
        };
        log::info!(
            "Kafka table '{}' writes Avro with schema id {id} of subject '{subject}'",
            self.table
        );
        self.prepared(Some(id), &schema)
    }

    /// The name of a schema made from the declared columns: the table's, with `_key` for keys.
    fn derived_name(&self) -> String {
        match self.codec.part() {
            RecordPart::Key => format!("{}_key", self.table),
            RecordPart::Value => self.table.clone(),
        }
    }

    fn prepared(&self, id: Option<u32>, schema: &str) -> Result<Prepared> {
        let columns = columns_of(schema).map_err(|e| {
            DataFusionError::Plan(format!(
                "cannot write Avro {}s to Kafka table '{}': {e}",
                self.codec.part().name(),
                self.table
            ))
        })?;
        let mut metadata = HashMap::new();
        metadata.insert(SCHEMA_METADATA_KEY.to_string(), schema.to_string());
        let columns = Arc::new(Schema::new_with_metadata(
            columns.fields().clone(),
            metadata,
        ));
        Ok(Prepared { id, columns })
    }

    /// One value per row of `batch` (the declared columns, by name).
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray> {
        let prepared = self.prepared.get().ok_or_else(|| {
            DataFusionError::Internal(
                "Avro values encoded before their schema was settled".to_string(),
            )
        })?;
        let fitted = self.fit(batch, &prepared.columns)?;
        let mut encoder = self.encoder(prepared)?;
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

    fn encoder(&self, prepared: &Prepared) -> Result<Encoder> {
        let builder = WriterBuilder::new(prepared.columns.as_ref().clone());
        let built = match prepared.id {
            Some(id) => builder
                .with_fingerprint_strategy(FingerprintStrategy::Id(id))
                .build_encoder::<AvroSoeFormat>(),
            None => builder.build_encoder::<AvroBinaryFormat>(),
        };
        built.map_err(|e| self.failed(e))
    }

    /// `batch`'s columns cast to the schema's, by name; a nullable field the rows lack is null.
    fn fit(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = match find(batch.schema().fields(), field.name()) {
                Some(i) => match field.metadata().get(AVRO_ENUM_SYMBOLS_METADATA_KEY) {
                    Some(symbols) => self.enum_column(batch.column(i), field.name(), symbols)?,
                    None if is_uuid(field) && is_text(batch.column(i).data_type()) => {
                        uuid_bytes(batch.column(i)).map_err(|e| {
                            DataFusionError::Execution(format!(
                                "column '{}' of Kafka table '{}' cannot be written as an Avro \
                                 uuid: {e}",
                                field.name(),
                                self.table
                            ))
                        })?
                    }
                    None => cast_with_options(batch.column(i), field.data_type(), &strict)
                        .map_err(|e| {
                            DataFusionError::Execution(format!(
                                "column '{}' of Kafka table '{}' cannot be written as the Avro \
                                 schema's {}: {e}",
                                field.name(),
                                self.table,
                                field.data_type()
                            ))
                        })?,
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
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_made_from_columns_names_the_table_defaults_nulls_and_writes_microseconds() {
        let declared = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8View, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]));
        let schema: serde_json::Value =
            serde_json::from_str(&schema_of("2024 orders-out", &declared).unwrap()).unwrap();
        assert_eq!(schema["name"], "_2024_orders_out");
        assert_eq!(schema["fields"][0]["type"], "long");
        assert!(schema["fields"][0].get("default").is_none());
        assert_eq!(
            schema["fields"][1]["type"],
            serde_json::json!(["null", "string"])
        );
        assert_eq!(schema["fields"][1]["default"], serde_json::Value::Null);
        assert_eq!(
            schema["fields"][2]["type"][1]["logicalType"],
            "timestamp-micros"
        );
    }
}
