//! The Kafka records that rows become when they are written to a Kafka table, as in Spark's
//! Kafka sink: `value` (required), `key`, `topic` (the table's `topic` option, when given,
//! overrides it), `partition`, `headers` (list of key/value structs) and `timestamp`. A table with
//! declared columns encodes them as a JSON value and takes the rest from `_key`, `_topic`,
//! `_partition`, `_headers` and `_timestamp`.
//!
//! [`RecordColumns`] is checked once, when the INSERT is planned; [`SinkRecords`] casts one
//! Arrow batch's columns once, and builds each record from them.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int32Array, ListArray, RecordBatch,
    StringArray, TimestampMillisecondArray,
};

use arrow::buffer::NullBuffer;
use arrow::compute::kernels::boolean::{and, not};
use arrow::compute::{cast, is_null};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::formats::ValueFormat;
use super::layout::{Column, TableLayout, timestamp_type};
use super::readback::{Fingerprint, fingerprint, is_weirs_header};
use super::scan::ScanSource;
use crate::format::{RowEncoder, SchemaCodec, encode_json_rows};

/// Where each part of a record comes from, as column indices of the input.
#[derive(Debug, Clone)]
pub struct RecordColumns {
    value: PartColumns,
    key: Option<PartColumns>,
    topic: Option<usize>,
    partition: Option<usize>,
    headers: Option<usize>,
    timestamp: Option<usize>,
    /// The table's `topic` option overrides the topic column.
    topic_overrides: bool,
}

/// How one part of a record (its value or key) is made from input columns.
#[derive(Debug, Clone)]
enum PartColumns {
    /// The part is this column's bytes.
    Bytes(usize),
    /// The part is these columns as a JSON object.
    Json(Vec<usize>),
    /// The part is these columns encoded by a schema (Avro, Protobuf).
    Encoded(Vec<usize>, Arc<RowEncoder>),
}

fn is_text_or_bytes(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// The declared column that holds a 'format' 'raw' table's value: the first that the key
/// (`key.fields`) does not hold.
pub fn raw_value_column(source: &ScanSource) -> Option<usize> {
    let declared = source.layout.declared.as_ref()?;
    let key_fields = source.options.key.as_ref().map(|k| k.fields.as_slice());
    (0..declared.fields().len()).find(|i| {
        !key_fields
            .unwrap_or_default()
            .contains(declared.field(*i).name())
    })
}

impl RecordColumns {
    /// Finds the record parts among the input columns (`schema`: the table's, as INSERT casts
    /// to it), and checks their types; an error names the table and the column.
    pub fn try_new(source: &ScanSource, schema: &SchemaRef) -> Result<Self> {
        let layout: &TableLayout = &source.layout;
        let find = |column: Column| -> Option<usize> {
            let name = layout.schema.field(layout.index_of(column)?).name().clone();
            schema.index_of(&name).ok()
        };
        let value = value_columns(source, schema, &find)?;
        let key = match &source.options.key {
            None => find(Column::Key).map(PartColumns::Bytes),
            Some(_) => Some(key_columns(source, schema)?),
        };
        let columns = RecordColumns {
            value,
            key,
            topic: find(Column::Topic),
            partition: find(Column::Partition),
            headers: find(Column::Headers),
            timestamp: find(Column::Timestamp),
            topic_overrides: source.options.topic_option.is_some(),
        };
        if columns.topic.is_none() && source.options.sink_topic.is_none() {
            return Err(DataFusionError::Plan(format!(
                "rows written to Kafka table '{}' have no topic: set the table option 'topic', or \
                 give the table a topic column",
                source.table
            )));
        }
        Ok(columns)
    }

    /// Settles the schemas the table's values and keys are written with (registering them,
    /// with a registry), once.
    pub async fn ready(&self) -> Result<()> {
        for part in std::iter::once(&self.value).chain(&self.key) {
            if let PartColumns::Encoded(_, writer) = part {
                writer.ready().await?;
            }
        }
        Ok(())
    }
}

/// The input columns of the declared columns `names`, in that order, and those columns.
fn input_indices<'a>(
    source: &ScanSource,
    schema: &SchemaRef,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(Vec<usize>, SchemaRef)> {
    let declared = source.layout.declared.as_ref().ok_or_else(|| {
        DataFusionError::Internal("a table with a value format but no columns".to_string())
    })?;
    let (mut chosen, mut indices) = (vec![], vec![]);
    for name in names {
        chosen.push(declared.index_of(name)?);
        indices.push(schema.index_of(name).map_err(|_| {
            DataFusionError::Internal(format!("the INSERT input has no column '{name}'"))
        })?);
    }
    Ok((indices, Arc::new(declared.project(&chosen)?)))
}

fn value_columns(
    source: &ScanSource,
    schema: &SchemaRef,
    find: &dyn Fn(Column) -> Option<usize>,
) -> Result<PartColumns> {
    let key = source.options.key.as_ref();
    let in_value =
        |name: &String| key.is_none_or(|k| k.value_includes_key || !k.fields.contains(name));
    let value_names = || {
        let declared = source
            .layout
            .declared
            .iter()
            .flat_map(|d| d.fields().iter());
        declared
            .map(|f| f.name())
            .filter(|n| in_value(n))
            .map(String::as_str)
    };
    Ok(match &source.options.format {
        ValueFormat::RawRecord | ValueFormat::RawValue => {
            let column = match source.options.format {
                ValueFormat::RawValue => raw_value_column(source).map(Column::Declared),
                _ => Some(Column::Value),
            };
            let index = column.and_then(find).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "INSERT INTO Kafka table '{}' needs a value column",
                    source.table
                ))
            })?;
            PartColumns::Bytes(index)
        }
        ValueFormat::Json => PartColumns::Json(input_indices(source, schema, value_names())?.0),
        ValueFormat::Avro(_) | ValueFormat::Protobuf(_) => {
            let codec = source.decoder.as_ref().and_then(|d| d.codec());
            let (indices, declared) = input_indices(source, schema, value_names())?;
            PartColumns::Encoded(indices, Arc::new(writer(source, codec, &declared)?))
        }
        ValueFormat::Csv { .. } => {
            return Err(DataFusionError::Plan(format!(
                "INSERT INTO Kafka table '{}' with 'format' 'csv' is not supported; declare \
                 the target table with 'format' 'json' or 'avro', or write a raw value \
                 column",
                source.table,
            )));
        }
    })
}

/// The columns of the key of a table with `key.format`.
fn key_columns(source: &ScanSource, schema: &SchemaRef) -> Result<PartColumns> {
    let key = source.options.key.as_ref().ok_or_else(|| {
        DataFusionError::Internal("key columns of a table without 'key.format'".to_string())
    })?;
    // In key.fields' order, as the key's decoder reads them.
    let (indices, declared) = input_indices(source, schema, key.fields.iter().map(String::as_str))?;
    Ok(match &key.format {
        ValueFormat::RawValue => match indices.as_slice() {
            [index] => PartColumns::Bytes(*index),
            _ => {
                return Err(DataFusionError::Plan(
                    "'key.format' 'raw' holds exactly one column".to_string(),
                ));
            }
        },
        ValueFormat::Json => PartColumns::Json(indices),
        ValueFormat::Avro(_) | ValueFormat::Protobuf(_) => {
            let codec = source.decoder.as_ref().and_then(|d| d.key_codec());
            PartColumns::Encoded(indices, Arc::new(writer(source, codec, &declared)?))
        }
        ValueFormat::Csv { .. } | ValueFormat::RawRecord => {
            return Err(DataFusionError::Internal(
                "a key format that cannot be written".to_string(),
            ));
        }
    })
}

fn writer(
    source: &ScanSource,
    codec: Option<&SchemaCodec>,
    declared: &SchemaRef,
) -> Result<RowEncoder> {
    let codec = codec.ok_or_else(|| {
        DataFusionError::Internal("a table without its schema's codec".to_string())
    })?;
    codec.writer(&source.table, declared)
}

/// What an INSERT gives one column of a Kafka table, before INSERT casts it to the table's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Produced {
    /// Nothing: the column is left out (a NULL literal).
    Nothing,
    /// Values of this type.
    Values(DataType),
}

fn strip_cast_logical(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => strip_cast_logical(&alias.expr),
        Expr::Cast(cast) => strip_cast_logical(&cast.expr),
        Expr::TryCast(cast) => strip_cast_logical(&cast.expr),
        other => other,
    }
}

/// What the INSERT plan `input` (the input of a DML statement) gives each table column, by
/// name; empty when the plan is not the projection INSERT builds.
pub fn produced_by_logical(input: &LogicalPlan) -> Result<Vec<(String, Produced)>> {
    let LogicalPlan::Projection(projection) = input else {
        return Ok(vec![]);
    };
    projection
        .expr
        .iter()
        .zip(projection.schema.fields())
        .map(|(expr, field)| {
            let inner = strip_cast_logical(expr);
            let produced = match inner {
                Expr::Literal(value, _) if value.is_null() => Produced::Nothing,
                other => Produced::Values(other.get_type(projection.input.schema())?),
            };
            Ok((field.name().clone(), produced))
        })
        .collect()
}

/// Checks what an INSERT gives each column of Kafka table `source` before anything runs:
/// value, key, topic, partition, timestamp and headers must have types that suit them (as in
/// Spark's Kafka sink), offsets and timestamp types are Kafka's to assign, and every row must
/// get a topic. The error names the column.
pub fn check_produced(source: &ScanSource, produced: &[(String, Produced)]) -> Result<()> {
    let layout = &source.layout;
    let table = &source.table;
    let mut topic_given = false;
    for (name, what) in produced {
        let Ok(index) = layout.schema.index_of(name) else {
            continue;
        };
        let column = layout.columns[index];
        let Produced::Values(data_type) = what else {
            continue;
        };
        let wanted = match column {
            Column::Value if source.options.format == ValueFormat::RawRecord => {
                Some(("a string or binary", is_text_or_bytes(data_type)))
            }
            Column::Declared(i)
                if source.options.format == ValueFormat::RawValue
                    && raw_value_column(source) == Some(i) =>
            {
                Some(("a string or binary", is_text_or_bytes(data_type)))
            }
            Column::Key if source.options.key.is_some() => {
                return Err(DataFusionError::Plan(format!(
                    "column '{name}' of Kafka table '{table}' is read-only: the table's \
                     'key.format' encodes each record's key from its 'key.fields' columns; \
                     leave '{name}' out of the INSERT"
                )));
            }
            Column::Key => Some(("a string or binary", is_text_or_bytes(data_type))),
            Column::Topic => {
                topic_given = true;
                Some((
                    "a string",
                    matches!(
                        data_type,
                        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                    ),
                ))
            }
            Column::Partition => Some(("an integer", data_type.is_integer())),
            Column::Timestamp => Some((
                "a timestamp",
                matches!(data_type, DataType::Timestamp(_, _)),
            )),
            Column::Headers => Some(("a list of {key, value} structs", is_header_list(data_type))),
            Column::Offset | Column::TimestampType => {
                return Err(DataFusionError::Plan(format!(
                    "column '{name}' of Kafka table '{table}' is assigned by Kafka and cannot be                      written; leave it out of the INSERT"
                )));
            }
            _ => None,
        };
        if let Some((expected, false)) = wanted {
            return Err(DataFusionError::Plan(format!(
                "column '{name}' written to Kafka table '{table}' must be {expected}, but the \
                 query gives it {data_type}"
            )));
        }
    }
    if !produced.is_empty() && !topic_given && source.options.sink_topic.is_none() {
        return Err(DataFusionError::Plan(format!(
            "rows written to Kafka table '{table}' have no topic: set the table option 'topic', \
             or give a topic column"
        )));
    }
    Ok(())
}

fn is_header_list(data_type: &DataType) -> bool {
    match data_type {
        DataType::List(item) | DataType::LargeList(item) => match item.data_type() {
            DataType::Struct(fields) => {
                fields.len() == 2
                    && is_text_or_bytes(fields[0].data_type())
                    && is_text_or_bytes(fields[1].data_type())
            }
            _ => false,
        },
        _ => false,
    }
}

/// One Arrow batch's record parts, cast once.
#[derive(Debug)]
pub struct SinkRecords {
    /// Each row's value (null: a record without value, a tombstone).
    pub values: BinaryArray,
    /// Each row's key.
    pub keys: Option<BinaryArray>,
    /// Each row's topic (the table's `topic` option where the row has none).
    pub topics: StringArray,
    /// Each row's explicit partition.
    pub partitions: Option<Int32Array>,
    /// Each row's timestamp (ms).
    pub timestamps: Option<TimestampMillisecondArray>,
    /// Each row's headers.
    pub headers: Option<HeaderColumns>,
}

/// The headers of a batch's records, cast once: each row's entries are
/// `names[offsets[row]..offsets[row + 1]]` and the same of `values`.
#[derive(Debug)]
pub struct HeaderColumns {
    list: ListArray,
    names: StringArray,
    values: BinaryArray,
}

impl HeaderColumns {
    /// The headers of a `List<Struct<key, value>>` column.
    pub fn try_new(list: ListArray) -> Result<Self> {
        let entries = list.values().as_struct();
        let names = cast(entries.column(0), &DataType::Utf8)?
            .as_string::<i32>()
            .clone();
        let values = cast(entries.column(1), &DataType::Binary)?
            .as_binary::<i32>()
            .clone();
        Ok(Self {
            list,
            names,
            values,
        })
    }

    /// Row `row`'s headers (those with a name that is not weir's own), in order.
    pub fn of_row(&self, row: usize) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        let range = if self.list.is_valid(row) {
            let offsets = self.list.value_offsets();
            offsets[row] as usize..offsets[row + 1] as usize
        } else {
            0..0
        };
        range
            .filter(|h| self.names.is_valid(*h) && !is_weirs_header(self.names.value(*h)))
            .map(|h| {
                (
                    self.names.value(h),
                    self.values.is_valid(h).then(|| self.values.value(h)),
                )
            })
    }
}

fn cast_column(
    batch: &RecordBatch,
    index: Option<usize>,
    to: &DataType,
) -> Result<Option<ArrayRef>> {
    index
        .map(|i| cast(batch.column(i), to).map_err(DataFusionError::from))
        .transpose()
}

impl PartColumns {
    /// One value (or key) per row of `batch`.
    fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray> {
        Ok(match self {
            PartColumns::Bytes(i) => cast(batch.column(*i), &DataType::Binary)?
                .as_binary::<i32>()
                .clone(),
            PartColumns::Json(indices) => {
                BinaryArray::from_iter_values(encode_json_rows(&batch.project(indices)?)?)
            }
            PartColumns::Encoded(indices, writer) => writer.encode(&batch.project(indices)?)?,
        })
    }
}

/// `keys` made of several columns, with no key where all of them are null: such a row is
/// written without a key, as a record whose key columns are all null is read.
fn without_empty_keys(
    keys: BinaryArray,
    columns: &PartColumns,
    batch: &RecordBatch,
) -> Result<BinaryArray> {
    let indices = match columns {
        PartColumns::Bytes(_) => return Ok(keys),
        PartColumns::Json(indices) | PartColumns::Encoded(indices, _) => indices,
    };
    let key_columns: Vec<&ArrayRef> = indices.iter().map(|i| batch.column(*i)).collect();
    if key_columns.iter().any(|c| c.null_count() == 0) {
        return Ok(keys);
    }
    let mut all_null = BooleanArray::from(vec![true; batch.num_rows()]);
    for column in key_columns {
        all_null = and(&all_null, &is_null(column)?)?;
    }
    let present = not(&all_null)?;
    let (offsets, bytes, _) = keys.into_parts();
    let nulls = NullBuffer::new(present.values().clone());
    Ok(BinaryArray::try_new(offsets, bytes, Some(nulls))?)
}

impl SinkRecords {
    /// The records of `batch`; fails naming the first row without a topic.
    pub fn try_new(
        batch: &RecordBatch,
        columns: &RecordColumns,
        default_topic: Option<&str>,
        table: &str,
    ) -> Result<Self> {
        let values = columns.value.encode(batch)?;
        let keys = match &columns.key {
            Some(key) => Some(without_empty_keys(key.encode(batch)?, key, batch)?),
            None => None,
        };
        let given_topics = cast_column(batch, columns.topic, &DataType::Utf8)?
            .map(|a| a.as_string::<i32>().clone());
        let topics = match (given_topics, default_topic) {
            (_, Some(topic)) if columns.topic_overrides => {
                StringArray::from_iter_values(std::iter::repeat_n(topic, batch.num_rows()))
            }
            (Some(t), _) if t.null_count() == 0 => t,
            (given, Some(default)) => StringArray::from_iter_values(
                (0..batch.num_rows())
                    .map(|row| match &given {
                        Some(t) if t.is_valid(row) => t.value(row),
                        _ => default,
                    })
                    .collect::<Vec<_>>(),
            ),
            (given, None) => {
                let row = given
                    .as_ref()
                    .and_then(|t| (0..t.len()).find(|r| t.is_null(*r)))
                    .unwrap_or(0);
                return Err(DataFusionError::Execution(format!(
                    "row {} written to Kafka table '{table}' has no topic: give the topic column \
                     a value or set the table option 'topic'",
                    row + 1
                )));
            }
        };
        let partitions = cast_column(batch, columns.partition, &DataType::Int32)?
            .map(|a| a.as_primitive().clone());
        let timestamps = cast_column(batch, columns.timestamp, &timestamp_type())?
            .map(|a| a.as_primitive().clone());
        let headers = columns
            .headers
            .map(|i| HeaderColumns::try_new(batch.column(i).as_list::<i32>().clone()))
            .transpose()?;
        Ok(Self {
            values,
            keys,
            topics,
            partitions,
            timestamps,
            headers,
        })
    }

    /// How many records there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row `row`'s key, if it has one.
    pub fn key(&self, row: usize) -> Option<&[u8]> {
        self.keys
            .as_ref()
            .filter(|k| k.is_valid(row))
            .map(|k| k.value(row))
    }

    /// Row `row`'s explicit partition, if it has one.
    pub fn partition(&self, row: usize) -> Option<i32> {
        self.partitions
            .as_ref()
            .filter(|p| p.is_valid(row))
            .map(|p| p.value(row))
    }

    /// Row `row`'s headers, followed by `extra`.
    pub fn headers(&self, row: usize, extra: &[(&str, &[u8])]) -> Option<OwnedHeaders> {
        let own = self.headers.as_ref().map_or(0, |h| h.of_row(row).count());
        if own == 0 && extra.is_empty() {
            return None;
        }
        let mut headers = OwnedHeaders::new_with_capacity(own + extra.len());
        for (key, value) in self.headers.iter().flat_map(|h| h.of_row(row)) {
            headers = headers.insert(Header { key, value });
        }
        for (key, value) in extra {
            headers = headers.insert(Header {
                key,
                value: Some(*value),
            });
        }
        Some(headers)
    }

    /// Row `row` as a record; `partition` overrides the row's own.
    pub fn record(
        &self,
        row: usize,
        partition: Option<i32>,
        headers: Option<OwnedHeaders>,
    ) -> BaseRecord<'_, [u8], [u8]> {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(self.topics.value(row));
        if self.values.is_valid(row) {
            record = record.payload(self.values.value(row));
        }
        if let Some(key) = self.key(row) {
            record = record.key(key);
        }
        if let Some(p) = partition.or_else(|| self.partition(row)) {
            record = record.partition(p);
        }
        if let Some(ts) = self.timestamps.as_ref().filter(|t| t.is_valid(row)) {
            record = record.timestamp(ts.value(row));
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        record
    }

    /// The fingerprint of row `row`'s record, as [`super::readback::message_fingerprint`]
    /// gives it for the record read back.
    pub fn fingerprint(&self, row: usize) -> Fingerprint {
        let topic = self.topics.value(row);
        let value = self.values.is_valid(row).then(|| self.values.value(row));
        match &self.headers {
            Some(headers) => fingerprint(topic, self.key(row), value, headers.of_row(row)),
            None => fingerprint(topic, self.key(row), value, std::iter::empty()),
        }
    }
}
