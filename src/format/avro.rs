//! Avro values written with a known schema (the table's `avroSchema`, Spark's
//! `jsonFormatSchema`): a whole batch of values decoded by arrow-avro into Arrow columns, then
//! fitted to the table's declared columns by name.
//!
//! arrow-avro reads framed values only (Confluent's magic byte and schema id), so each value is
//! fed after a frame naming schema 0, the table's, without copying the value.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{CastOptions, can_cast_types, cast_with_options, take};
use arrow::datatypes::{DataType, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};

/// Confluent's framing of a value written with schema id 0.
const FRAME: [u8; 5] = [0, 0, 0, 0, 0];

/// A decoder of values written with `writer_schema` (Avro schema JSON) into batches of up to
/// `rows` rows.
fn decoder(writer_schema: &str, rows: usize) -> Result<Decoder, ArrowError> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(
        Fingerprint::Id(0),
        AvroSchema::new(writer_schema.to_string()),
    )?;
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .with_batch_size(rows.max(1))
        .build_decoder()
}

/// Fails when `writer_schema` is not an Avro record schema arrow-avro can decode, or when its
/// fields cannot fill the `declared` columns: a column whose field has a type that does not
/// cast, a NOT NULL column without a field, a declared struct field the record lacks.
pub fn check_schema(writer_schema: &str, declared: &SchemaRef) -> Result<(), String> {
    let parsed: serde_json::Value =
        serde_json::from_str(writer_schema).map_err(|e| format!("it is not JSON: {e}"))?;
    if parsed.get("type").and_then(|t| t.as_str()) != Some("record") {
        return Err(
            "its top level must be a record (\"type\": \"record\"), whose fields are \
                    the columns"
                .to_string(),
        );
    }
    let written = decoder(writer_schema, 1)
        .map_err(|e| e.to_string())?
        .schema();
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

/// Decodes `values` written with `writer_schema` into the columns `declared`; a value for which
/// `nulled(i)` holds (a tombstone, a malformed value kept as PERMISSIVE) becomes a null row.
pub fn decode(
    writer_schema: &str,
    values: &BinaryArray,
    nulled: &dyn Fn(usize) -> bool,
    declared: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let wanted = (0..values.len()).filter(|i| !nulled(*i)).count();
    let mut decoder = decoder(writer_schema, wanted)?;
    let mut rows: Vec<Option<u32>> = Vec::with_capacity(values.len());
    let mut decoded = 0u32;
    for i in 0..values.len() {
        if nulled(i) {
            rows.push(None);
            continue;
        }
        decode_one(&mut decoder, values.value(i))?;
        rows.push(Some(decoded));
        decoded += 1;
    }
    let flushed = decoder.flush().map_err(ArrowError::from)?;
    if flushed.as_ref().map_or(0, RecordBatch::num_rows) != decoded as usize {
        return Err(ArrowError::ParseError(format!(
            "{decoded} values decoded into a different number of rows"
        )));
    }
    let Some(batch) = flushed else {
        let columns = declared
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), values.len()))
            .collect();
        return RecordBatch::try_new(Arc::clone(declared), columns);
    };
    let rows = UInt32Array::from(rows);
    let spread = batch
        .columns()
        .iter()
        .map(|column| take(column, &rows, None))
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    conform(&batch.schema(), &spread, declared)
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
            "the value is not one Avro record of the schema: {e}"
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
            crate::kafka::options::ValueFormat::Avro {
                schema: SCHEMA.to_string(),
            },
            declared(true),
            crate::kafka::options::MalformedMode::Permissive,
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
