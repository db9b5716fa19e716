//! Protobuf messages ⇄ Arrow columns, driven by a message descriptor: the Arrow type of each
//! field, decoded messages appended to column builders (a whole batch into one set of
//! builders), and rows read back out of Arrow arrays into messages for encoding.
//!
//! As in Spark's `from_protobuf`, a field that is not present (a proto3 scalar at its default,
//! an unset message) is NULL; repeated fields and maps are lists and maps, empty when absent;
//! enums are their names; `google.protobuf.Timestamp` is a TIMESTAMP.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListArray, MapArray, StringBuilder, StructArray,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Field, Fields, Float32Type, Float64Type, Int32Type, Int64Type, TimeUnit,
    TimestampNanosecondType, UInt32Type, UInt64Type,
};
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value};

/// The full name of the message read as a TIMESTAMP.
const TIMESTAMP: &str = "google.protobuf.Timestamp";
/// How deep message types may nest (a recursive message would nest forever).
const MAX_DEPTH: usize = 32;

/// The Arrow fields of `message`'s fields, in declaration order.
pub fn fields_of(message: &MessageDescriptor) -> Result<Fields, String> {
    fields_at(message, 0)
}

fn fields_at(message: &MessageDescriptor, depth: usize) -> Result<Fields, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "message '{}' nests more than {MAX_DEPTH} levels deep (a recursive message?)",
            message.full_name()
        ));
    }
    message
        .fields()
        .map(|field| Ok(Field::new(field.name(), type_of(&field, depth)?, true)))
        .collect()
}

/// The Arrow type of `field`.
fn type_of(field: &FieldDescriptor, depth: usize) -> Result<DataType, String> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(format!("map field '{}' has no entry message", field.name()));
        };
        let key = scalar_type(&entry.map_entry_key_field(), depth)?;
        let value = scalar_type(&entry.map_entry_value_field(), depth)?;
        let entries = Fields::from(vec![
            Field::new("key", key, false),
            Field::new("value", value, true),
        ]);
        return Ok(DataType::Map(
            Arc::new(Field::new("entries", DataType::Struct(entries), false)),
            false,
        ));
    }
    let element = scalar_type(field, depth)?;
    if field.is_list() {
        return Ok(DataType::List(Arc::new(Field::new("item", element, true))));
    }
    Ok(element)
}

/// The Arrow type of one value of `field` (an element, for a repeated field).
fn scalar_type(field: &FieldDescriptor, depth: usize) -> Result<DataType, String> {
    Ok(match field.kind() {
        Kind::Double => DataType::Float64,
        Kind::Float => DataType::Float32,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => DataType::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => DataType::Int64,
        Kind::Uint32 | Kind::Fixed32 => DataType::UInt32,
        Kind::Uint64 | Kind::Fixed64 => DataType::UInt64,
        Kind::Bool => DataType::Boolean,
        Kind::String | Kind::Enum(_) => DataType::Utf8,
        Kind::Bytes => DataType::Binary,
        Kind::Message(m) if m.full_name() == TIMESTAMP => {
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
        }
        Kind::Message(m) => DataType::Struct(fields_at(&m, depth + 1)?),
    })
}

/// Column builders for the fields of one message type, filled a message at a time.
pub struct MessageColumns {
    fields: Vec<(FieldDescriptor, Column)>,
    arrow: Fields,
}

/// The builder of one field's column.
enum Column {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Timestamp(TimestampNanosecondBuilder),
    Struct(Box<MessageColumns>, NullBufferBuilder),
    List(Box<Column>, Vec<i32>, Arc<Field>),
    Map(Box<Column>, Box<Column>, Vec<i32>, Arc<Field>),
}

impl MessageColumns {
    /// Builders for `message`'s fields, with room for `rows` messages.
    pub fn new(message: &MessageDescriptor, rows: usize) -> Result<Self, String> {
        let arrow = fields_of(message)?;
        let fields = message
            .fields()
            .zip(arrow.iter())
            .map(|(field, arrow)| Ok((field.clone(), Column::new(&field, arrow, rows)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self { fields, arrow })
    }

    /// Appends `message`'s fields as one row; `None` appends a row of nulls.
    pub fn append(&mut self, message: Option<&DynamicMessage>) {
        for (field, column) in &mut self.fields {
            match message {
                Some(m) if field.is_list() || field.is_map() || m.has_field(field) => {
                    column.append(field, Some(&m.get_field(field)));
                }
                _ => column.append(field, None),
            }
        }
    }

    /// The columns of the rows appended so far.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.fields.iter_mut().map(|(_, c)| c.finish()).collect()
    }
}

impl Column {
    /// The builder of `field`, whose Arrow field is `arrow`.
    fn new(field: &FieldDescriptor, arrow: &Field, rows: usize) -> Result<Column, String> {
        match arrow.data_type() {
            DataType::List(item) => Ok(Column::List(
                Box::new(Column::element(field, rows)?),
                vec![0],
                Arc::clone(item),
            )),
            DataType::Map(entries, _) => {
                let Kind::Message(entry) = field.kind() else {
                    return Err(format!("map field '{}' has no entry message", field.name()));
                };
                Ok(Column::Map(
                    Box::new(Column::element(&entry.map_entry_key_field(), rows)?),
                    Box::new(Column::element(&entry.map_entry_value_field(), rows)?),
                    vec![0],
                    Arc::clone(entries),
                ))
            }
            _ => Column::element(field, rows),
        }
    }

    /// The builder of one value (an element, for a repeated field) of `field`.
    fn element(field: &FieldDescriptor, rows: usize) -> Result<Column, String> {
        Ok(match field.kind() {
            Kind::Double => Column::Float64(Float64Builder::with_capacity(rows)),
            Kind::Float => Column::Float32(Float32Builder::with_capacity(rows)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                Column::Int32(Int32Builder::with_capacity(rows))
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                Column::Int64(Int64Builder::with_capacity(rows))
            }
            Kind::Uint32 | Kind::Fixed32 => Column::UInt32(UInt32Builder::with_capacity(rows)),
            Kind::Uint64 | Kind::Fixed64 => Column::UInt64(UInt64Builder::with_capacity(rows)),
            Kind::Bool => Column::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::String | Kind::Enum(_) => {
                Column::Utf8(StringBuilder::with_capacity(rows, rows * 8))
            }
            Kind::Bytes => Column::Binary(BinaryBuilder::with_capacity(rows, rows * 8)),
            Kind::Message(m) if m.full_name() == TIMESTAMP => Column::Timestamp(
                TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            Kind::Message(m) => Column::Struct(
                Box::new(MessageColumns::new(&m, rows)?),
                NullBufferBuilder::new(rows),
            ),
        })
    }

    /// Appends `value` of `field` (`None`: null, or an empty list or map).
    fn append(&mut self, field: &FieldDescriptor, value: Option<&Value>) {
        match self {
            Column::List(items, offsets, _) => {
                if let Some(Value::List(values)) = value {
                    for v in values {
                        items.append_element(field, Some(v));
                    }
                }
                offsets.push(items.len() as i32);
            }
            Column::Map(keys, values, offsets, _) => {
                if let (Some(Value::Map(entries)), Kind::Message(entry)) = (value, field.kind()) {
                    let value_field = entry.map_entry_value_field();
                    let mut sorted: Vec<_> = entries.iter().collect();
                    sorted.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in sorted {
                        keys.append_key(k);
                        values.append_element(&value_field, Some(v));
                    }
                }
                offsets.push(keys.len() as i32);
            }
            element => element.append_element(field, value),
        }
    }

    /// Appends one value (not a list or a map) of `field`.
    fn append_element(&mut self, field: &FieldDescriptor, value: Option<&Value>) {
        match (self, value) {
            (Column::Bool(b), v) => b.append_option(v.and_then(Value::as_bool)),
            (Column::Int32(b), v) => b.append_option(v.and_then(Value::as_i32)),
            (Column::Int64(b), v) => b.append_option(v.and_then(Value::as_i64)),
            (Column::UInt32(b), v) => b.append_option(v.and_then(Value::as_u32)),
            (Column::UInt64(b), v) => b.append_option(v.and_then(Value::as_u64)),
            (Column::Float32(b), v) => b.append_option(v.and_then(Value::as_f32)),
            (Column::Float64(b), v) => b.append_option(v.and_then(Value::as_f64)),
            (Column::Utf8(b), Some(Value::EnumNumber(n))) => b.append_value(enum_name(field, *n)),
            (Column::Utf8(b), v) => b.append_option(v.and_then(Value::as_str)),
            (Column::Binary(b), v) => b.append_option(v.and_then(Value::as_bytes)),
            (Column::Timestamp(b), v) => {
                b.append_option(v.and_then(Value::as_message).map(timestamp_nanos))
            }
            (Column::Struct(columns, nulls), v) => {
                let message = v.and_then(Value::as_message);
                nulls.append(message.is_some());
                columns.append(message);
            }
            (nested, v) => nested.append(field, v),
        }
    }

    fn append_key(&mut self, key: &MapKey) {
        match (self, key) {
            (Column::Bool(b), MapKey::Bool(k)) => b.append_value(*k),
            (Column::Int32(b), MapKey::I32(k)) => b.append_value(*k),
            (Column::Int64(b), MapKey::I64(k)) => b.append_value(*k),
            (Column::UInt32(b), MapKey::U32(k)) => b.append_value(*k),
            (Column::UInt64(b), MapKey::U64(k)) => b.append_value(*k),
            (Column::Utf8(b), MapKey::String(k)) => b.append_value(k),
            _ => unreachable!("prost-reflect decodes a map key as its field's kind"),
        }
    }

    /// The number of values appended since the last [`Column::finish`].
    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Column::Bool(b) => b.len(),
            Column::Int32(b) => b.len(),
            Column::Int64(b) => b.len(),
            Column::UInt32(b) => b.len(),
            Column::UInt64(b) => b.len(),
            Column::Float32(b) => b.len(),
            Column::Float64(b) => b.len(),
            Column::Utf8(b) => b.len(),
            Column::Binary(b) => b.len(),
            Column::Timestamp(b) => b.len(),
            Column::Struct(_, nulls) => nulls.len(),
            Column::List(_, offsets, _) | Column::Map(_, _, offsets, _) => offsets.len() - 1,
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::UInt32(b) => Arc::new(b.finish()),
            Column::UInt64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Struct(columns, nulls) => {
                let children = columns.finish();
                Arc::new(StructArray::new(
                    columns.arrow.clone(),
                    children,
                    nulls.finish(),
                ))
            }
            Column::List(items, offsets, item) => {
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(
                    Arc::clone(item),
                    offsets,
                    items.finish(),
                    None,
                ))
            }
            Column::Map(keys, values, offsets, entries) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    unreachable!("map entries are a struct by construction")
                };
                let pairs =
                    StructArray::new(kv.clone(), vec![keys.finish(), values.finish()], None);
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(MapArray::new(
                    Arc::clone(entries),
                    offsets,
                    pairs,
                    None,
                    false,
                ))
            }
        }
    }
}

/// The name of enum value `number` of `field`, or the number when the enum has no such value.
fn enum_name(field: &FieldDescriptor, number: i32) -> String {
    match field.kind() {
        Kind::Enum(e) => e
            .get_value(number)
            .map_or_else(|| number.to_string(), |v| v.name().to_string()),
        _ => number.to_string(),
    }
}

/// A `google.protobuf.Timestamp` as nanoseconds since the epoch.
fn timestamp_nanos(message: &DynamicMessage) -> i64 {
    let part = |name: &str| {
        message
            .get_field_by_name(name)
            .and_then(|v| v.as_i64().or(v.as_i32().map(i64::from)))
            .unwrap_or(0)
    };
    part("seconds")
        .saturating_mul(1_000_000_000)
        .saturating_add(part("nanos"))
}

/// The messages of a batch's rows: each field of `message` from the column of its name.
pub struct RowsAsMessages {
    message: MessageDescriptor,
    columns: Vec<(FieldDescriptor, Option<ArrayRef>)>,
}

impl RowsAsMessages {
    /// Matches `message`'s fields to `columns` (name, array) by name, each cast to the field's
    /// Arrow type; a field without a column is left unset.
    pub fn new(message: &MessageDescriptor, columns: &[(&str, &ArrayRef)]) -> Result<Self, String> {
        let arrow = fields_of(message)?;
        let mut matched = Vec::with_capacity(arrow.len());
        for (field, arrow) in message.fields().zip(arrow.iter()) {
            let found = columns
                .iter()
                .find(|(name, _)| *name == field.name())
                .or_else(|| {
                    columns
                        .iter()
                        .find(|(name, _)| name.eq_ignore_ascii_case(field.name()))
                });
            let column = match found {
                None => None,
                Some((name, array)) => Some(cast(array, arrow.data_type()).map_err(|e| {
                    format!(
                        "column '{name}' cannot be written as field '{}' ({}): {e}",
                        field.name(),
                        arrow.data_type()
                    )
                })?),
            };
            matched.push((field, column));
        }
        Ok(Self {
            message: message.clone(),
            columns: matched,
        })
    }

    /// The message of row `row`.
    pub fn message(&self, row: usize) -> Result<DynamicMessage, String> {
        let mut message = DynamicMessage::new(self.message.clone());
        for (field, column) in &self.columns {
            if let Some(column) = column
                && let Some(value) = value_at(field, column, row)?
            {
                message.set_field(field, value);
            }
        }
        Ok(message)
    }
}

/// The value of `field` at `row` of `array` (of the field's Arrow type); `None` for a null.
fn value_at(
    field: &FieldDescriptor,
    array: &ArrayRef,
    row: usize,
) -> Result<Option<Value>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Ok(None);
        };
        let map = array.as_map();
        let pairs = map.value(row);
        let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let mut entries = std::collections::HashMap::with_capacity(pairs.len());
        for i in 0..pairs.len() {
            let key = element_at(&key_field, pairs.column(0), i)?.and_then(map_key);
            if let (Some(key), Some(value)) = (key, element_at(&value_field, pairs.column(1), i)?) {
                entries.insert(key, value);
            }
        }
        return Ok(Some(Value::Map(entries)));
    }
    if field.is_list() {
        let items = array.as_list::<i32>().value(row);
        let values = (0..items.len())
            .filter_map(|i| element_at(field, &items, i).transpose())
            .collect::<Result<Vec<Value>, String>>()?;
        return Ok(Some(Value::List(values)));
    }
    element_at(field, array, row)
}

/// One value (not a list or a map) of `field` at `row` of `array`.
fn element_at(
    field: &FieldDescriptor,
    array: &ArrayRef,
    row: usize,
) -> Result<Option<Value>, String> {
    if array.is_null(row) {
        return Ok(None);
    }
    Ok(Some(match field.kind() {
        Kind::Double => Value::F64(array.as_primitive::<Float64Type>().value(row)),
        Kind::Float => Value::F32(array.as_primitive::<Float32Type>().value(row)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(array.as_primitive::<Int32Type>().value(row))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(array.as_primitive::<Int64Type>().value(row))
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(array.as_primitive::<UInt32Type>().value(row)),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(array.as_primitive::<UInt64Type>().value(row)),
        Kind::Bool => Value::Bool(array.as_boolean().value(row)),
        Kind::String => Value::String(array.as_string::<i32>().value(row).to_string()),
        Kind::Bytes => Value::Bytes(array.as_binary::<i32>().value(row).to_vec().into()),
        Kind::Enum(e) => {
            let name = array.as_string::<i32>().value(row);
            let number = e
                .get_value_by_name(name)
                .map(|v| v.number())
                .ok_or_else(|| {
                    format!(
                        "'{name}' is not a value of enum {} (field '{}')",
                        e.full_name(),
                        field.name()
                    )
                })?;
            Value::EnumNumber(number)
        }
        Kind::Message(m) if m.full_name() == TIMESTAMP => {
            let nanos = array.as_primitive::<TimestampNanosecondType>().value(row);
            let mut timestamp = DynamicMessage::new(m);
            timestamp.set_field_by_name("seconds", Value::I64(nanos.div_euclid(1_000_000_000)));
            timestamp
                .set_field_by_name("nanos", Value::I32(nanos.rem_euclid(1_000_000_000) as i32));
            Value::Message(timestamp)
        }
        Kind::Message(m) => {
            let fields = array.as_struct();
            let mut nested = DynamicMessage::new(m.clone());
            for (i, inner) in m.fields().enumerate() {
                if let Some(value) = value_at(&inner, fields.column(i), row)? {
                    nested.set_field(&inner, value);
                }
            }
            Value::Message(nested)
        }
    }))
}

fn map_key(value: Value) -> Option<MapKey> {
    Some(match value {
        Value::Bool(k) => MapKey::Bool(k),
        Value::I32(k) => MapKey::I32(k),
        Value::I64(k) => MapKey::I64(k),
        Value::U32(k) => MapKey::U32(k),
        Value::U64(k) => MapKey::U64(k),
        Value::String(k) => MapKey::String(k),
        _ => return None,
    })
}
