//! Avro values: plain Avro binary written with a known schema (the table's `avroSchema`,
//! Spark's `jsonFormatSchema`), or framed for a Confluent-compatible schema registry (magic byte
//! 0, a 4-byte schema id, the Avro binary). [`AvroCodec`] knows where each value's writer schema
//! comes from and the reader schema it is resolved against (Avro's rules: defaults for added
//! fields, removed fields skipped, promoted types); it decodes a whole batch of values with
//! arrow-avro, one pass per writer schema, and fits the columns to the table's declared ones by
//! name. Writing is in [`super::avro_encode`].
//!
//! arrow-avro reads framed values only, so a plain value is fed after a frame naming schema 0
//! without copying the value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, concat_batches, take};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use datafusion::error::DataFusionError;

use super::registry::{RegistryClient, RegistryError};
use crate::kafka::options::AvroOptions;

/// Confluent's framing of a value written with schema id 0.
const FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// Where the writer schema of each value comes from.
#[derive(Debug)]
enum Framing {
    /// Plain Avro binary, all written with this schema.
    Plain(String),
    /// Registry framing: each value names its schema's id.
    Registry(Arc<RegistryClient>),
}

/// How a table's Avro values are read (and written): their framing, the reader schema, and
/// the registry's schemas seen so far.
#[derive(Debug)]
pub struct AvroCodec {
    framing: Framing,
    /// The schema writer schemas are resolved against, when there is one.
    reader: Option<String>,
    /// Where the reader schema came from, for errors.
    reader_origin: String,
    /// The registry subject: where the reader schema came from, and where writing registers.
    subject: Option<String>,
    /// The `avroSchema` option, which writing uses as its schema.
    given_schema: Option<String>,
    /// Writer schemas by id, checked against the reader schema; `Err` for an id the registry
    /// does not have (its values are undecodable).
    writers: Mutex<WriterSchemas>,
}

/// Writer schemas by registry id; `Err` says why an id has none.
type WriterSchemas = HashMap<u32, Result<Arc<str>, String>>;

impl AvroCodec {
    /// The codec of a table with these options; `default_subject` is `<topic>-value` when the
    /// table has one topic. With a registry, this asks it for the subject's latest schema (so
    /// an unreachable registry fails here, naming it).
    pub async fn open(
        options: &AvroOptions,
        default_subject: Option<String>,
    ) -> Result<Self, DataFusionError> {
        let plan = |e: String| DataFusionError::Plan(e);
        let Some(registry) = &options.registry else {
            let schema = options.schema.clone().ok_or_else(|| {
                plan("'format' 'avro' needs 'avroSchema' or 'schema.registry.url'".to_string())
            })?;
            return Ok(Self::new(
                Framing::Plain(schema.clone()),
                Some(schema),
                None,
                options,
            ));
        };
        let client = Arc::new(RegistryClient::new(registry).map_err(plan)?);
        let subject = options.subject.clone().or(default_subject);
        let latest = match &subject {
            Some(subject) => client.latest(subject).await,
            None => client.check_reachable().await.map(|()| None),
        }
        .map_err(|e| plan(format!("cannot use the schema registry: {e}")))?;
        if let (Some(subject), None, None) = (&options.subject, &latest, &options.schema) {
            log::info!(
                "subject '{subject}' has no schema in the registry at {} yet",
                client.shown_url()
            );
        }
        let (reader, origin) = match (&options.schema, latest, &subject) {
            (Some(given), _, _) => (Some(given.clone()), "option 'avroSchema'".to_string()),
            (None, Some(latest), Some(subject)) => (
                Some(latest.schema),
                format!(
                    "the latest schema of subject '{subject}' (id {})",
                    latest.id
                ),
            ),
            _ => (None, String::new()),
        };
        let mut codec = Self::new(Framing::Registry(client), reader, subject, options);
        codec.reader_origin = origin;
        Ok(codec)
    }

    fn new(
        framing: Framing,
        reader: Option<String>,
        subject: Option<String>,
        options: &AvroOptions,
    ) -> Self {
        Self {
            framing,
            reader,
            reader_origin: "option 'avroSchema'".to_string(),
            subject,
            given_schema: options.schema.clone(),
            writers: Mutex::default(),
        }
    }

    /// The columns the reader schema gives a table that declares none: its top-level fields,
    /// all nullable (a tombstone is a row of nulls), enums as strings.
    pub fn columns(&self) -> Result<SchemaRef, String> {
        let Some(reader) = &self.reader else {
            return Err(match &self.subject {
                Some(subject) => format!(
                    "the subject '{subject}' has no schema in the registry to take the \
                     table's columns from; declare the columns, or give 'avroSchema'"
                ),
                None => "there is no subject to take the table's columns from; set 'subject', \
                         declare the columns, or give 'avroSchema'"
                    .to_string(),
            });
        };
        let written = columns_of(reader)?;
        let fields: Vec<Field> = written
            .fields()
            .iter()
            .map(|f| {
                let data_type = match f.data_type() {
                    DataType::Dictionary(_, value) => value.as_ref().clone(),
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

    /// The schema written records carry: `avroSchema`, else one made from `declared`.
    pub(super) fn writer_schema(&self) -> Option<&str> {
        self.given_schema.as_deref()
    }

    /// The registry and subject writing registers under, when the values are framed.
    pub(super) fn registry(&self) -> Option<(&RegistryClient, Option<&str>)> {
        match &self.framing {
            Framing::Registry(client) => Some((client, self.subject.as_deref())),
            Framing::Plain(_) => None,
        }
    }

    /// Fetches the writer schema of every framed value whose id is new, and checks it against
    /// the reader schema. An id the registry lacks leaves its values undecodable; a registry
    /// that cannot answer, or a writer schema the reader schema cannot read, fails.
    pub fn prepare(&self, values: &BinaryArray) -> Result<(), DataFusionError> {
        let Framing::Registry(client) = &self.framing else {
            return Ok(());
        };
        let mut new_ids: Vec<u32> = vec![];
        {
            let known = self.lock_writers()?;
            for value in values.iter().flatten() {
                if let Ok((id, _)) = split_frame(value)
                    && !known.contains_key(&id)
                    && !new_ids.contains(&id)
                {
                    new_ids.push(id);
                }
            }
        }
        for id in new_ids {
            let fetched = block_on(client.schema_by_id(id))?;
            let entry = match fetched {
                Ok(schema) => {
                    self.check_writer(id, &schema)?;
                    Ok(schema)
                }
                Err(RegistryError::NotFound(e)) => Err(e),
                Err(RegistryError::Failed(e)) => return Err(DataFusionError::Execution(e)),
            };
            self.lock_writers()?.insert(id, entry);
        }
        Ok(())
    }

    fn check_writer(&self, id: u32, schema: &str) -> Result<(), DataFusionError> {
        let Err(e) = decoder(schema, self.reader.as_deref(), 1) else {
            return Ok(());
        };
        let at_fault = self
            .reader
            .as_deref()
            .and_then(|reader| field_at_fault(schema, reader))
            .map(|field| format!("field '{field}': "))
            .unwrap_or_default();
        Err(DataFusionError::Execution(format!(
            "values written with schema id {id} cannot be read with the table's reader schema, \
             {}: {at_fault}{e}",
            self.reader_origin
        )))
    }

    fn lock_writers(&self) -> Result<std::sync::MutexGuard<'_, WriterSchemas>, DataFusionError> {
        self.writers
            .lock()
            .map_err(|_| DataFusionError::Internal("Avro schema cache poisoned".to_string()))
    }

    /// The writer schema of a value framed with `id`.
    fn writer_of(&self, id: u32) -> Result<Arc<str>, ArrowError> {
        match &self.framing {
            Framing::Plain(schema) => Ok(schema.as_str().into()),
            Framing::Registry(client) => {
                match self.writers.lock().ok().and_then(|w| w.get(&id).cloned()) {
                    Some(Ok(schema)) => Ok(schema),
                    Some(Err(e)) => Err(ArrowError::ParseError(format!(
                        "its schema id {id} is unknown: {e}"
                    ))),
                    None => Err(ArrowError::ParseError(format!(
                        "its schema id {id} was not fetched from the registry at {}",
                        client.shown_url()
                    ))),
                }
            }
        }
    }

    /// The writer schema's id and the Avro body of `value` (id 0 for plain values).
    fn frame<'a>(&self, value: &'a [u8]) -> Result<(u32, &'a [u8]), ArrowError> {
        match self.framing {
            Framing::Plain(_) => Ok((0, value)),
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
        let mut groups: Vec<(u32, Vec<usize>)> = vec![];
        let mut rows: Vec<Option<u32>> = Vec::with_capacity(values.len());
        let mut frames = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            if nulled(i) {
                frames.push(None);
                continue;
            }
            let (id, body) = self.frame(values.value(i))?;
            match groups.iter_mut().find(|(g, _)| *g == id) {
                Some((_, members)) => members.push(i),
                None => groups.push((id, vec![i])),
            }
            frames.push(Some(body));
        }
        let mut decoded = Vec::with_capacity(groups.len());
        let mut position = vec![0u32; values.len()];
        let mut next = 0u32;
        for (id, members) in &groups {
            let writer = self.writer_of(*id)?;
            let mut decoder = decoder(&writer, self.reader.as_deref(), members.len())?;
            for &i in members {
                let body = frames[i].ok_or_else(|| {
                    ArrowError::ParseError("a nulled value was grouped".to_string())
                })?;
                decode_one(&mut decoder, body)?;
                position[i] = next;
                next += 1;
            }
            let batch = flush_exactly(&mut decoder, members.len())?;
            decoded.push(conform(&batch.schema(), batch.columns(), declared)?);
        }
        for i in 0..values.len() {
            rows.push(frames[i].map(|_| position[i]));
        }
        if decoded.is_empty() {
            let columns = declared
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), values.len()))
                .collect();
            return RecordBatch::try_new(Arc::clone(declared), columns);
        }
        let all = concat_batches(declared, &decoded)?;
        let rows = UInt32Array::from(rows);
        let spread = all
            .columns()
            .iter()
            .map(|column| take(column, &rows, None))
            .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
        RecordBatch::try_new(Arc::clone(declared), spread)
    }
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

/// The schema id of a registry-framed value, and its Avro body.
fn split_frame(value: &[u8]) -> Result<(u32, &[u8]), ArrowError> {
    if value.len() < FRAME.len() {
        return Err(ArrowError::ParseError(format!(
            "the value is {} bytes, shorter than the registry's 5-byte frame",
            value.len()
        )));
    }
    if value[0] != 0 {
        return Err(ArrowError::ParseError(format!(
            "the value starts with byte {:#04x}, not the registry's magic byte 0",
            value[0]
        )));
    }
    let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
    Ok((id, &value[FRAME.len()..]))
}

/// Runs a registry request from the scan's blocking reader thread.
fn block_on<T>(request: impl Future<Output = T>) -> Result<T, DataFusionError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        DataFusionError::Internal("a registry lookup outside the engine's runtime".to_string())
    })?;
    Ok(runtime.block_on(request))
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
    check_fields(written.fields(), declared.fields(), "")
}

fn check_fields(written: &Fields, declared: &Fields, path: &str) -> Result<(), String> {
    for field in declared {
        let name = format!("{path}{}", field.name());
        let Some(found) = find(written, field.name()) else {
            if field.is_nullable() && path.is_empty() {
                continue;
            }
            return Err(format!(
                "the record has no field '{name}', which the table declares"
            ));
        };
        let from = written[found].data_type();
        match (from, field.data_type()) {
            (DataType::Struct(inner), DataType::Struct(wanted)) => {
                let exact: Vec<_> = wanted
                    .iter()
                    .filter(|w| inner.find(w.name()).is_some())
                    .collect();
                if exact.len() != wanted.len() {
                    return Err(format!(
                        "the fields of struct '{name}' must be named exactly as in the record"
                    ));
                }
                check_fields(inner, wanted, &format!("{name}."))?;
            }
            (from, to) if !can_cast_types(from, to) => {
                return Err(format!(
                    "field '{name}' cannot be read as the declared {to} (the record holds {from})"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The position of the field named `name`, exactly or else ignoring case.
fn find(fields: &Fields, name: &str) -> Option<usize> {
    fields.iter().position(|f| f.name() == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    })
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
    let framed = decoder.decode(&FRAME).map_err(ArrowError::from)?;
    if framed != FRAME.len() || decoder.capacity() != room {
        return Err(ArrowError::ParseError(
            "the Avro decoder did not take the value's frame".to_string(),
        ));
    }
    let taken = decoder.decode(value).map_err(|e| {
        ArrowError::ParseError(format!(
            "the value is not one Avro record of its schema (it may be cut short or written \
             with another schema): {e}"
        ))
    })?;
    let records = room - decoder.capacity();
    if records == 0 {
        return Err(ArrowError::ParseError(format!(
            "the value ({} bytes) ends before its Avro record does",
            value.len()
        )));
    }
    if records > 1 {
        return Err(ArrowError::ParseError(
            "the value holds more than one Avro record".to_string(),
        ));
    }
    if taken != value.len() {
        return Err(ArrowError::ParseError(format!(
            "the value holds {} bytes after its Avro record",
            value.len() - taken
        )));
    }
    Ok(())
}

/// The declared columns among the `columns` decoded as `written`, found by name: cast to their
/// declared types; a nullable column the writer's schema lacks is null.
fn conform(
    written: &Schema,
    columns: &[ArrayRef],
    declared: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let rows = columns.first().map_or(0, |c| c.len());
    let conformed = declared
        .fields()
        .iter()
        .map(|field| {
            let found = find(written.fields(), field.name());
            match found {
                Some(i) => cast_with_options(&columns[i], field.data_type(), &strict).map_err(|e| {
                    ArrowError::CastError(format!(
                        "field '{}' is {} in the Avro schema and cannot be read as the declared {}: {e}",
                        field.name(),
                        written.field(i).data_type(),
                        field.data_type()
                    ))
                }),
                None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows)),
                None => Err(ArrowError::SchemaError(format!(
                    "the Avro schema has no field '{}', which the table declares NOT NULL",
                    field.name()
                ))),
            }
        })
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(Arc::clone(declared), conformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Field;

    fn plain(schema: &str) -> AvroOptions {
        AvroOptions {
            schema: Some(schema.to_string()),
            registry: None,
            subject: None,
        }
    }

    fn codec(schema: &str) -> AvroCodec {
        let schema = schema.to_string();
        AvroCodec::new(
            Framing::Plain(schema.clone()),
            Some(schema.clone()),
            None,
            &plain(&schema),
        )
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
        two.extend_from_slice(&FRAME);
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
            crate::kafka::options::ValueFormat::Avro(plain(SCHEMA)),
            declared(true),
            crate::kafka::options::MalformedMode::Permissive,
            Some(Arc::new(codec(SCHEMA))),
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
