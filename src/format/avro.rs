//! Avro values: plain Avro binary written with a known schema (the table's `avroSchema`,
//! Spark's `jsonFormatSchema`), or framed for a Confluent-compatible schema registry (magic byte
//! 0, a 4-byte schema id, the Avro binary). [`AvroCodec`] knows where each value's writer schema
//! comes from and the reader schema it is resolved against (Avro's rules: defaults for added
//! fields, removed fields skipped, promoted types); it decodes a whole batch of values with
//! arrow-avro, one pass per writer schema, and fits the columns to the table's declared ones by
//! name. Writing is in [`super::avro_encode`].
//!
//! arrow-avro reads framed values only, so each value is fed after a frame naming schema 0, the
//! one decoder's only schema, without copying the value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::array::{BinaryArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::error::DataFusionError;

use super::columns::{Members, check_fields, conform, decode_in_groups, is_uuid};
use super::registry::{
    RegisteredSchema, RegistryClient, RegistryError, SchemaType, block_on, lookup_outcome,
    split_frame, unknown_ids,
};
use crate::kafka::formats::{AvroOptions, RecordPart, SubjectNaming};

/// The frame arrow-avro reads before each value: Confluent's, naming schema id 0.
const ID_ZERO_FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// Where the writer schema of each value comes from.
#[derive(Debug)]
enum Framing {
    /// Plain Avro binary, all written with the reader schema (`avroSchema`).
    Plain,
    /// Registry framing: each value names its schema's id.
    Registry(Arc<RegistryClient>),
}

/// Writer schemas by registry id, each checked against the reader schema; `Err` says why an id
/// has none (the registry lacks it), for this batch only.
type WriterSchemas = HashMap<u32, Result<Arc<str>, String>>;

/// How a table's Avro values are read (and written): their framing, the reader schema, and
/// the registry's schemas seen so far.
#[derive(Debug)]
pub struct AvroCodec {
    framing: Framing,
    /// The schema writer schemas are resolved against, when there is one.
    reader: Option<String>,
    /// Where the reader schema came from, for errors.
    reader_origin: String,
    /// The `avroSchema` option.
    given_schema: Option<String>,
    /// The registry subject read from: `subject`, else named by the strategy from the one
    /// topic read (and `avroSchema`'s name).
    subject: Option<String>,
    /// How the subject written to is named.
    naming: SubjectNaming,
    /// The one topic the table writes, when there is one.
    write_topic: Option<String>,
    writers: Mutex<WriterSchemas>,
}

impl AvroCodec {
    /// The codec of a table with these options; `read_topic` is the one topic the table reads
    /// and `write_topic` the one it writes, when there is one. With a registry, this asks it for
    /// the read subject's latest schema (so an unreachable registry fails here, naming it).
    pub async fn open(
        options: &AvroOptions,
        read_topic: Option<&str>,
        write_topic: Option<&str>,
    ) -> Result<Self, DataFusionError> {
        let plan = |e: String| DataFusionError::Plan(e);
        let given = options.part().option("avroSchema");
        let record = options.schema.as_deref().and_then(full_name);
        let subject = options.subject.subject(read_topic, record.as_deref());
        let Some(registry) = &options.registry else {
            let schema = options.schema.clone().ok_or_else(|| {
                plan(format!(
                    "'{}' 'avro' needs '{given}' or 'schema.registry.url'",
                    options.part().option("format")
                ))
            })?;
            return Ok(Self {
                framing: Framing::Plain,
                reader: Some(schema),
                reader_origin: format!("option '{given}'"),
                given_schema: options.schema.clone(),
                subject: None,
                naming: options.subject.clone(),
                write_topic: None,
                writers: Mutex::default(),
            });
        };
        let client = Arc::new(RegistryClient::new(registry).map_err(plan)?);
        let latest = latest_of(&client, subject.as_deref())
            .await
            .map_err(|e| plan(format!("cannot use the schema registry: {e}")))?;
        let (reader, reader_origin) = match (&options.schema, latest, &subject) {
            (Some(schema), _, _) => (Some(schema.clone()), format!("option '{given}'")),
            (None, Some(latest), Some(subject)) => (
                Some(latest.schema),
                format!(
                    "the latest schema of subject '{subject}' (id {})",
                    latest.id
                ),
            ),
            _ => (None, String::new()),
        };
        Ok(Self {
            framing: Framing::Registry(client),
            reader,
            reader_origin,
            given_schema: options.schema.clone(),
            subject,
            naming: options.subject.clone(),
            write_topic: write_topic.map(str::to_string),
            writers: Mutex::default(),
        })
    }

    /// Whether the codec reads and writes the table's values or its keys.
    pub fn part(&self) -> RecordPart {
        self.naming.part
    }

    /// The columns the reader schema gives a table that declares none: its top-level fields,
    /// all nullable (a tombstone is a row of nulls), enums and uuids as strings.
    pub fn columns(&self) -> Result<SchemaRef, String> {
        let Some(reader) = &self.reader else {
            return Err(match &self.subject {
                Some(subject) => format!(
                    "the subject '{subject}' has no schema in the registry to take the \
                     table's columns from; declare the columns, or give '{}'",
                    self.part().option("avroSchema")
                ),
                None => format!(
                    "there is no subject to take the table's columns from: declare the \
                     columns, give '{}', or {}",
                    self.part().option("avroSchema"),
                    self.naming.hint("avroSchema")
                ),
            });
        };
        let written = columns_of(reader)?;
        let fields: Vec<Field> = written
            .fields()
            .iter()
            .map(|f| {
                let data_type = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
                    _ if is_uuid(f) => DataType::Utf8,
                    other => other.clone(),
                };
                Field::new(f.name(), data_type, true)
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Fails when the reader schema cannot fill the `declared` columns.
    pub fn check_declared(&self, declared: &SchemaRef) -> Result<(), String> {
        match &self.reader {
            Some(reader) => check_schema(reader, declared).map_err(|e| {
                format!(
                    "{} does not fit the table's columns: {e}",
                    self.reader_origin
                )
            }),
            None => Ok(()),
        }
    }

    /// The `avroSchema` option.
    pub(super) fn given_schema(&self) -> Option<&str> {
        self.given_schema.as_deref()
    }

    /// The registry, when the values are framed.
    pub(super) fn registry(&self) -> Option<&RegistryClient> {
        match &self.framing {
            Framing::Registry(client) => Some(client),
            Framing::Plain => None,
        }
    }

    /// The subject writing registers a schema whose full name is `record` under, when the
    /// table's options name one.
    pub(super) fn write_subject(&self, record: Option<&str>) -> Option<String> {
        self.naming.subject(self.write_topic.as_deref(), record)
    }

    /// What to give when the subject written to cannot be named.
    pub(super) fn subject_hint(&self) -> String {
        self.naming.hint("avroSchema")
    }

    /// Whether the subject written to depends on the schema written (a record name
    /// strategy), so that the subject has no latest schema to write with before it.
    pub(super) fn subject_names_records(&self) -> bool {
        self.naming.names_records()
    }

    /// Fetches the writer schema of every framed value whose id is new (or was missing from
    /// the registry before), and checks it against the reader schema, or against the
    /// `declared` columns when there is none. An id the registry lacks leaves its values
    /// undecodable; a registry that cannot answer, or a writer schema that cannot be read,
    /// fails naming the first record that carries it (`locate(i)`).
    pub fn prepare(
        &self,
        values: &BinaryArray,
        declared: &SchemaRef,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<(), DataFusionError> {
        let Framing::Registry(client) = &self.framing else {
            return Ok(());
        };
        let unknown = {
            let known = self.lock_writers()?;
            unknown_ids(values, |id| matches!(known.get(&id), Some(Ok(_))))
        };
        for (id, first) in unknown {
            let first = locate(first);
            let fetched = block_on(client.schema_by_id(id, SchemaType::Avro))?;
            let entry = match lookup_outcome(fetched, id, &first)? {
                Ok(registered) => {
                    let schema: Arc<str> = registered.schema.as_str().into();
                    self.check_writer(id, &schema, declared).map_err(|e| {
                        DataFusionError::Execution(format!("{e} (first at {first})"))
                    })?;
                    Ok(schema)
                }
                Err(e) => Err(e),
            };
            self.lock_writers()?.insert(id, entry);
        }
        Ok(())
    }

    fn check_writer(&self, id: u32, schema: &str, declared: &SchemaRef) -> Result<(), String> {
        let Some(reader) = &self.reader else {
            return check_schema(schema, declared).map_err(|e| {
                format!(
                    "{}s written with schema id {id} cannot fill the table's columns: {e}",
                    self.part().name()
                )
            });
        };
        let Err(e) = decoder(schema, Some(reader), 1) else {
            return Ok(());
        };
        let at_fault = field_at_fault(schema, reader)
            .map(|field| format!("field '{field}': "))
            .unwrap_or_default();
        Err(format!(
            "{}s written with schema id {id} cannot be read with the table's reader schema, \
             {}: {at_fault}{e}",
            self.part().name(),
            self.reader_origin
        ))
    }

    fn lock_writers(&self) -> Result<MutexGuard<'_, WriterSchemas>, DataFusionError> {
        self.writers
            .lock()
            .map_err(|_| DataFusionError::Internal("Avro schema cache poisoned".to_string()))
    }

    /// The writer schema of a value framed with `id`.
    fn writer_of(&self, id: u32) -> Result<Arc<str>, ArrowError> {
        let Framing::Registry(client) = &self.framing else {
            return self.reader.as_deref().map(Arc::from).ok_or_else(|| {
                ArrowError::SchemaError("plain Avro without its schema".to_string())
            });
        };
        let known = self
            .lock_writers()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        match known.get(&id) {
            Some(Ok(schema)) => Ok(Arc::clone(schema)),
            Some(Err(e)) => Err(ArrowError::ParseError(format!(
                "its schema id {id} is unknown: {e}"
            ))),
            None => Err(ArrowError::ParseError(format!(
                "its schema id {id} was not fetched from the registry at {}",
                client.shown_url()
            ))),
        }
    }

    /// The writer schema's id and the Avro body of `value` (id 0 for plain values).
    fn frame<'a>(&self, value: &'a [u8]) -> Result<(u32, &'a [u8]), ArrowError> {
        match self.framing {
            Framing::Plain => Ok((0, value)),
            Framing::Registry(_) => split_frame(value),
        }
    }

    /// Decodes `values` into the columns `declared`; a value for which `nulled(i)` holds (a
    /// tombstone, a malformed value kept as PERMISSIVE) becomes a null row.
    pub fn decode(
        &self,
        values: &BinaryArray,
        nulled: &dyn Fn(usize) -> bool,
        declared: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let frame = |value| self.frame(value);
        let decode_group = |id: &u32, members: &Members| self.decode_group(*id, members, declared);
        decode_in_groups(values, nulled, declared, frame, decode_group)
    }

    /// The bodies of `members`, all written with schema `id`, as rows of `declared`.
    fn decode_group(
        &self,
        id: u32,
        members: &[(usize, &[u8])],
        declared: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        let writer = self.writer_of(id)?;
        let mut decoder = decoder(&writer, self.reader.as_deref(), members.len())?;
        for (_, body) in members {
            decode_one(&mut decoder, body)?;
        }
        let batch = flush_exactly(&mut decoder, members.len())?;
        conform(&batch.schema(), batch.columns(), batch.num_rows(), declared)
    }
}

/// The full name (`namespace.name`) of the record an Avro schema (JSON) defines, if it is a
/// named type.
pub(super) fn full_name(schema: &str) -> Option<String> {
    let json: serde_json::Value = serde_json::from_str(schema).ok()?;
    let name = json.get("name")?.as_str()?;
    match json.get("namespace").and_then(|n| n.as_str()) {
        Some(namespace) if !namespace.is_empty() && !name.contains('.') => {
            Some(format!("{namespace}.{name}"))
        }
        _ => Some(name.to_string()),
    }
}

/// The latest schema of `subject`, or `None` when it has none; without a subject, only checks
/// that the registry answers.
async fn latest_of(
    client: &RegistryClient,
    subject: Option<&str>,
) -> Result<Option<RegisteredSchema>, RegistryError> {
    let latest = match subject {
        Some(subject) => client.latest(subject, SchemaType::Avro).await?,
        None => None,
    };
    if latest.is_none() {
        client.check_reachable().await?;
    }
    Ok(latest)
}

/// The first top-level field of `reader` that `writer` cannot be resolved to, tried alone.
fn field_at_fault(writer: &str, reader: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_str(reader).ok()?;
    let fields = parsed.get("fields")?.as_array()?;
    fields.iter().find_map(|field| {
        let mut alone = parsed.clone();
        alone["fields"] = serde_json::Value::Array(vec![field.clone()]);
        decoder(writer, Some(&alone.to_string()), 1)
            .is_err()
            .then(|| field.get("name")?.as_str().map(str::to_string))
            .flatten()
    })
}

/// A decoder of values framed with schema id 0, written with `writer` and read as `reader`
/// (the writer schema itself when there is none), into up to `rows` rows.
fn decoder(writer: &str, reader: Option<&str>, rows: usize) -> Result<Decoder, ArrowError> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    let avro = AvroSchema::new(writer.to_string());
    store.set(Fingerprint::Id(0), avro)?;
    let mut builder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_batch_size(rows.max(1));
    if let Some(reader) = reader {
        builder = builder.with_reader_schema(AvroSchema::new(reader.to_string()));
    }
    builder.build_decoder()
}

/// The Arrow columns an Avro record `schema` decodes into.
pub(super) fn columns_of(schema: &str) -> Result<SchemaRef, String> {
    check_record(schema)?;
    Ok(decoder(schema, None, 1)
        .map_err(|e| e.to_string())?
        .schema())
}

fn check_record(schema: &str) -> Result<(), String> {
    let parsed: serde_json::Value =
        serde_json::from_str(schema).map_err(|e| format!("it is not JSON: {e}"))?;
    if parsed.get("type").and_then(|t| t.as_str()) != Some("record") {
        return Err(
            "its top level must be a record (\"type\": \"record\"), whose fields are the columns"
                .to_string(),
        );
    }
    if !parsed
        .get("fields")
        .is_some_and(serde_json::Value::is_array)
    {
        return Err("its record has no \"fields\" list".to_string());
    }
    Ok(())
}

/// Fails when `writer_schema` is not an Avro record schema arrow-avro can decode, or when its
/// fields cannot fill the `declared` columns: a column whose field has a type that does not
/// cast, a NOT NULL column without a field, a declared struct field the record lacks.
fn check_schema(writer_schema: &str, declared: &SchemaRef) -> Result<(), String> {
    let written = columns_of(writer_schema)?;
    check_fields(written.fields(), declared.fields())
}

/// The `rows` rows the decoder holds; fails when it holds another number.
fn flush_exactly(decoder: &mut Decoder, rows: usize) -> Result<RecordBatch, ArrowError> {
    let flushed = decoder.flush().map_err(ArrowError::from)?;
    match flushed {
        Some(batch) if batch.num_rows() == rows => Ok(batch),
        other => Err(ArrowError::ParseError(format!(
            "{rows} values decoded into {} rows",
            other.map_or(0, |b| b.num_rows())
        ))),
    }
}

/// Feeds one value, which must hold exactly one record: the decoder's room for rows falls by
/// one, and the value is used up.
fn decode_one(decoder: &mut Decoder, value: &[u8]) -> Result<(), ArrowError> {
    let room = decoder.capacity();
    let framed = decoder.decode(&ID_ZERO_FRAME).map_err(ArrowError::from)?;
    if framed != ID_ZERO_FRAME.len() || decoder.capacity() != room {
        return Err(ArrowError::ParseError(
            "the Avro decoder did not take the value's frame".to_string(),
        ));
    }
    let taken = decoder.decode(value).map_err(|e| {
        ArrowError::ParseError(format!(
            "the payload is not one Avro record of its schema (it may be cut short or written \
             with another schema): {e}"
        ))
    })?;
    let records = room - decoder.capacity();
    if records == 0 {
        return Err(ArrowError::ParseError(format!(
            "the payload ({} bytes) ends before its Avro record does",
            value.len()
        )));
    }
    if records > 1 {
        return Err(ArrowError::ParseError(
            "the payload holds more than one Avro record".to_string(),
        ));
    }
    if taken != value.len() {
        return Err(ArrowError::ParseError(format!(
            "the payload holds {} bytes after its Avro record",
            value.len() - taken
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::formats::SubjectStrategy;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Fields};

    fn plain(schema: &str) -> AvroOptions {
        AvroOptions {
            schema: Some(schema.to_string()),
            registry: None,
            subject: SubjectNaming {
                given: None,
                strategy: SubjectStrategy::TopicName,
                part: RecordPart::Value,
            },
        }
    }

    fn codec(schema: &str) -> AvroCodec {
        AvroCodec {
            framing: Framing::Plain,
            reader: Some(schema.to_string()),
            reader_origin: "option 'avroSchema'".to_string(),
            given_schema: Some(schema.to_string()),
            subject: None,
            naming: plain(SCHEMA).subject,
            write_topic: None,
            writers: Mutex::default(),
        }
    }

    fn decode(
        schema: &str,
        values: &BinaryArray,
        nulled: &dyn Fn(usize) -> bool,
        declared: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        codec(schema).decode(values, nulled, declared)
    }

    const SCHEMA: &str = r#"{"type": "record", "name": "Click", "fields": [
        {"name": "id", "type": "long"},
        {"name": "page", "type": ["null", "string"], "default": null},
        {"name": "extra", "type": "int"}]}"#;

    /// Avro binary of {id, page, extra}: zig-zag varints, a union index, a length-prefixed string.
    fn click(id: i64, page: Option<&str>, extra: i32) -> Vec<u8> {
        fn varint(n: i64, out: &mut Vec<u8>) {
            let mut z = ((n << 1) ^ (n >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        }
        let mut out = vec![];
        varint(id, &mut out);
        match page {
            None => varint(0, &mut out),
            Some(p) => {
                varint(1, &mut out);
                varint(p.len() as i64, &mut out);
                out.extend_from_slice(p.as_bytes());
            }
        }
        varint(i64::from(extra), &mut out);
        out
    }

    /// The declared `id` column (the second).
    fn ids(batch: &RecordBatch) -> Vec<Option<i64>> {
        let ids = batch.column(1).as_any().downcast_ref::<Int64Array>();
        ids.unwrap().iter().collect()
    }

    /// page, id (nullable for tombstones) and a field the writer lacks.
    fn declared(added_nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("page", DataType::Utf8, true),
            Field::new("id", DataType::Int64, true),
            Field::new("added", DataType::Utf8, added_nullable),
        ]))
    }

    #[test]
    fn values_decode_by_name_with_nulls_for_tombstones_and_missing_fields() {
        let values = BinaryArray::from(vec![
            Some(click(1, Some("home"), 7).as_slice()),
            None,
            Some(click(-300, None, 0).as_slice()),
        ]);
        let batch = decode(SCHEMA, &values, &|i| values.is_null(i), &declared(true)).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(ids(&batch), vec![Some(1), None, Some(-300)]);
        let pages = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(
            pages.iter().collect::<Vec<_>>(),
            vec![Some("home"), None, None]
        );
        assert_eq!(batch.column(2).null_count(), 3);
    }

    #[test]
    fn a_value_holding_two_records_fails_the_batch_and_is_found_alone() {
        let mut two = click(2, None, 0);
        two.extend_from_slice(&ID_ZERO_FRAME);
        two.extend(click(99, None, 0));
        let values = BinaryArray::from(vec![
            Some(click(1, None, 0).as_slice()),
            None,
            Some(two.as_slice()),
            Some(click(3, None, 0).as_slice()),
        ]);
        let e = decode(SCHEMA, &values, &|i| values.is_null(i), &declared(true)).unwrap_err();
        assert!(e.to_string().contains("more than one Avro record"), "{e}");
        let decoder = crate::format::ValueDecoder::new(
            crate::kafka::formats::ValueFormat::Avro(plain(SCHEMA)),
            declared(true),
            crate::kafka::options::MalformedMode::Permissive,
            Some(crate::format::SchemaCodec::Avro(Arc::new(codec(SCHEMA)))),
        )
        .unwrap();
        let decoded = decoder.decode(&values, &|i| format!("offset {i}")).unwrap();
        assert_eq!(ids(&decoded.batch), vec![Some(1), None, None, Some(3)]);
        assert_eq!(decoded.malformed, 1);
    }

    #[test]
    fn truncated_values_trailing_bytes_and_missing_required_fields_are_named() {
        let whole = click(5, Some("cart"), 1);
        let truncated = BinaryArray::from(vec![&whole[..whole.len() - 2]]);
        let e = decode(SCHEMA, &truncated, &|_| false, &declared(true)).unwrap_err();
        assert!(
            e.to_string().contains("ends before its Avro record does"),
            "{e}"
        );
        let mut longer = whole.clone();
        longer.extend_from_slice(&[1, 2]);
        let e = decode(
            SCHEMA,
            &BinaryArray::from(vec![longer.as_slice()]),
            &|_| false,
            &declared(true),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("2 bytes after its Avro record"),
            "{e}"
        );
        let e = decode(
            SCHEMA,
            &BinaryArray::from(vec![whole.as_slice()]),
            &|_| false,
            &declared(false),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no field 'added'"), "{e}");
        assert!(check_schema("{\"type\": \"nonsense\"}", &declared(true)).is_err());
        let e = check_schema("\"long\"", &declared(true)).unwrap_err();
        assert!(e.contains("top level must be a record"), "{e}");
        let e = check_schema(SCHEMA, &declared(false)).unwrap_err();
        assert!(e.contains("no field 'added'"), "{e}");
        let wrong_type = Arc::new(Schema::new(vec![Field::new(
            "page",
            DataType::Struct(Fields::empty()),
            true,
        )]));
        let e = check_schema(SCHEMA, &wrong_type).unwrap_err();
        assert!(
            e.contains("field 'page' cannot be read as the declared"),
            "{e}"
        );
    }
}
