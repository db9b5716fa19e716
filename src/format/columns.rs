//! Fitting decoded columns to a table's declared ones, by name: the check at CREATE that a
//! schema's fields can fill them, the cast of each decoded batch (Avro uuids read as their
//! canonical text, as Spark and Flink read them), and putting rows decoded group by group (one
//! group per writer schema) back in the order of their records.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, FixedSizeBinaryArray, RecordBatch, StringBuilder,
    UInt32Array, new_null_array,
};
use arrow::compute::{CastOptions, can_cast_types, cast, cast_with_options, concat_batches, take};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The values of one group, decoded together: each value's index among the batch's values,
/// and its bytes to decode.
pub type Members<'a> = Vec<(usize, &'a [u8])>;

/// Fails when fields `written` cannot fill the `declared` columns: a column whose field has a
/// type that does not cast, a NOT NULL column without a field, a declared struct field the
/// record lacks.
pub fn check_fields(written: &Fields, declared: &Fields) -> Result<(), String> {
    check_fields_at(written, declared, "")
}

fn check_fields_at(written: &Fields, declared: &Fields, path: &str) -> Result<(), String> {
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
                check_fields_at(inner, wanted, &format!("{name}."))?;
            }
            (_, to) if is_uuid(&written[found]) && is_text(to) => {}
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

/// Whether `field` is an Avro uuid as arrow-avro reads it: 16 bytes marked with the logical
/// type.
pub fn is_uuid(field: &Field) -> bool {
    field.data_type() == &DataType::FixedSizeBinary(16)
        && field.metadata().get("logicalType").map(String::as_str) == Some("uuid")
}

/// Whether `data_type` is a string type.
pub fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// 16-byte uuids as their canonical text (`6f1c3a52-9f0e-4b3e-8f7a-1d2c3b4a5e6f`).
pub fn uuid_text(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let bytes = column
        .as_fixed_size_binary_opt()
        .ok_or_else(|| ArrowError::CastError("a uuid column that is not 16 bytes".to_string()))?;
    let mut text = StringBuilder::with_capacity(bytes.len(), bytes.len() * 36);
    let mut buffer = uuid::Uuid::encode_buffer();
    for value in bytes.iter() {
        match value.and_then(|v| <[u8; 16]>::try_from(v).ok()) {
            Some(value) => {
                let hyphenated = uuid::Uuid::from_bytes(value).hyphenated();
                text.append_value(hyphenated.encode_lower(&mut buffer));
            }
            None => text.append_null(),
        }
    }
    Ok(Arc::new(text.finish()))
}

/// Uuids written as text (canonical, or as 32 hex digits) as their 16 bytes; a text that is
/// not a uuid fails, naming it.
pub fn uuid_bytes(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let text = cast(column, &DataType::Utf8)?;
    let mut parsed: Vec<Option<[u8; 16]>> = Vec::with_capacity(text.len());
    for value in text.as_string::<i32>().iter() {
        parsed.push(match value {
            None => None,
            Some(value) => Some(
                *uuid::Uuid::parse_str(value)
                    .map_err(|e| ArrowError::CastError(format!("'{value}' is not a uuid: {e}")))?
                    .as_bytes(),
            ),
        });
    }
    let array = FixedSizeBinaryArray::try_from_sparse_iter_with_size(parsed.into_iter(), 16)?;
    Ok(Arc::new(array))
}

/// The position of the field named `name`, exactly or else ignoring case.
pub fn find(fields: &Fields, name: &str) -> Option<usize> {
    fields.iter().position(|f| f.name() == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    })
}

/// The declared columns among the `columns` decoded as `written`, found by name: cast to their
/// declared types; a nullable column the writer's schema lacks is null.
pub fn conform(
    written: &Schema,
    columns: &[ArrayRef],
    rows: usize,
    declared: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let conformed = declared
        .fields()
        .iter()
        .map(|field| {
            let found = find(written.fields(), field.name());
            match found {
                Some(i) if is_uuid(written.field(i)) && is_text(field.data_type()) => {
                    cast(&uuid_text(&columns[i])?, field.data_type())
                }
                Some(i) => cast_with_options(&columns[i], field.data_type(), &strict).map_err(|e| {
                    ArrowError::CastError(format!(
                        "field '{}' is {} in the schema and cannot be read as the declared {}: {e}",
                        field.name(),
                        written.field(i).data_type(),
                        field.data_type()
                    ))
                }),
                None if field.is_nullable() => Ok(new_null_array(field.data_type(), rows)),
                None => Err(ArrowError::SchemaError(format!(
                    "the schema has no field '{}', which the table declares NOT NULL",
                    field.name()
                ))),
            }
        })
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(Arc::clone(declared), conformed)
}

/// Decodes `values` group by group into the columns `declared`: `frame` tells each value's
/// group (its writer schema or message type) and the bytes to decode, `decode_group` decodes
/// one group's values into rows of `declared`, and the rows are put back in the order of their
/// values. A value for which `nulled(i)` holds (a tombstone, a malformed value kept as
/// PERMISSIVE) is a null row.
pub fn decode_in_groups<'a, K: PartialEq>(
    values: &'a BinaryArray,
    nulled: &dyn Fn(usize) -> bool,
    declared: &SchemaRef,
    frame: impl Fn(&'a [u8]) -> Result<(K, &'a [u8]), ArrowError>,
    decode_group: impl Fn(&K, &Members<'a>) -> Result<RecordBatch, ArrowError>,
) -> Result<RecordBatch, ArrowError> {
    let mut groups: Vec<(K, Members<'a>)> = vec![];
    for i in (0..values.len()).filter(|i| !nulled(*i)) {
        let (key, bytes) = frame(values.value(i))?;
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push((i, bytes)),
            None => groups.push((key, vec![(i, bytes)])),
        }
    }
    if groups.is_empty() {
        let columns = declared
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), values.len()))
            .collect();
        return RecordBatch::try_new(Arc::clone(declared), columns);
    }
    let decoded = groups
        .iter()
        .map(|(key, members)| decode_group(key, members))
        .collect::<Result<Vec<_>, _>>()?;
    let sources = groups
        .iter()
        .flat_map(|(_, members)| members.iter().map(|(value_index, _)| *value_index));
    spread(&concat_batches(declared, &decoded)?, sources, values.len())
}

/// The rows of `decoded` put back in the order of the values they came from: decoded row `r`
/// came from value `sources[r]`; a value no row came from is a null row; `rows` values in all.
fn spread(
    decoded: &RecordBatch,
    sources: impl Iterator<Item = usize>,
    rows: usize,
) -> Result<RecordBatch, ArrowError> {
    let mut source_row: Vec<Option<u32>> = vec![None; rows];
    for (decoded_row, value_index) in sources.enumerate() {
        source_row[value_index] = Some(decoded_row as u32);
    }
    let indices = UInt32Array::from(source_row);
    let columns = decoded
        .columns()
        .iter()
        .map(|column| take(column, &indices, None))
        .collect::<Result<Vec<ArrayRef>, ArrowError>>()?;
    RecordBatch::try_new(decoded.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    #[test]
    fn uuids_read_as_canonical_text_and_are_written_from_text() {
        let bytes: ArrayRef = Arc::new(
            FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                [Some([0x6f_u8; 16]), None].into_iter(),
                16,
            )
            .unwrap(),
        );
        let text = uuid_text(&bytes).unwrap();
        let text = text.as_string::<i32>();
        assert_eq!(text.value(0), "6f6f6f6f-6f6f-6f6f-6f6f-6f6f6f6f6f6f");
        assert!(text.is_null(1));
        let given: ArrayRef = Arc::new(StringArray::from(vec![
            Some("6f6f6f6f-6f6f-6f6f-6f6f-6f6f6f6f6f6f"),
            Some("6F6F6F6F6F6F6F6F6F6F6F6F6F6F6F6F"),
            None,
        ]));
        let back = uuid_bytes(&given).unwrap();
        let back = back.as_fixed_size_binary();
        assert_eq!(back.value(0), [0x6f_u8; 16]);
        assert_eq!(back.value(1), [0x6f_u8; 16]);
        assert!(back.is_null(2));
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["not-a-uuid"]));
        let e = uuid_bytes(&bad).unwrap_err().to_string();
        assert!(e.contains("'not-a-uuid' is not a uuid"), "{e}");
    }
}
