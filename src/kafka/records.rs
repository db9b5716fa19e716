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
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, ListArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
};

use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::layout::{Column, TableLayout, timestamp_type};
use super::options::ValueFormat;
use super::readback::{Fingerprint, fingerprint, is_weirs_header};
use super::scan::ScanSource;
use crate::format::{RowEncoder, encode_json_rows};

/// Where each part of a record comes from, as column indices of the input.
#[derive(Debug, Clone)]
pub struct RecordColumns {
    value: ValueColumns,
    key: Option<usize>,
    topic: Option<usize>,
    partition: Option<usize>,
    headers: Option<usize>,
    timestamp: Option<usize>,
    /// The table's `topic` option overrides the topic column.
    topic_overrides: bool,
}

#[derive(Debug, Clone)]
enum ValueColumns {
    /// The value is this column's bytes.
    Bytes(usize),
    /// The value is these columns as a JSON object.
    Json(Vec<usize>),
    /// The value is these columns encoded by a schema (Avro, Protobuf).
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

impl RecordColumns {
    /// Finds the record parts among the input columns (`schema`: the table's, as INSERT casts
    /// to it), and checks their types; an error names the table and the column.
    pub fn try_new(source: &ScanSource, schema: &SchemaRef) -> Result<Self> {
        let layout: &TableLayout = &source.layout;
        let find = |column: Column| -> Option<usize> {
            let name = layout.schema.field(layout.index_of(column)?).name().clone();
            schema.index_of(&name).ok()
        };
        let declared_indices = || -> Vec<usize> {
            layout
                .columns
                .iter()
                .filter(|c| matches!(c, Column::Declared(_)))
                .filter_map(|c| find(*c))
                .collect()
        };
        let value = match &source.options.format {
            ValueFormat::RawRecord | ValueFormat::RawValue => {
                let column = if source.options.format == ValueFormat::RawValue {
                    Column::Declared(0)
                } else {
                    Column::Value
                };
                let index = find(column).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "INSERT INTO Kafka table '{}' needs a value column",
                        source.table
                    ))
                })?;
                ValueColumns::Bytes(index)
            }
            ValueFormat::Json => ValueColumns::Json(declared_indices()),
            ValueFormat::Avro(_) | ValueFormat::Protobuf(_) => {
                let codec = source
                    .decoder
                    .as_ref()
                    .and_then(|d| d.codec())
                    .ok_or_else(|| {
                        DataFusionError::Internal("a table without its schema's codec".to_string())
                    })?;
                let declared = layout.declared.as_ref().ok_or_else(|| {
                    DataFusionError::Internal("a schema-bound table without columns".to_string())
                })?;
                let writer = codec.writer(&source.table, declared)?;
                ValueColumns::Encoded(declared_indices(), Arc::new(writer))
            }
            ValueFormat::Csv { .. } => {
                return Err(DataFusionError::Plan(format!(
                    "INSERT INTO Kafka table '{}' with 'format' 'csv' is not supported; declare \
                     the target table with 'format' 'json' or 'avro', or write a raw value \
                     column",
                    source.table,
                )));
            }
        };
        let columns = RecordColumns {
            value,
            key: find(Column::Key),
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

    /// Settles the schema the table's values are written with (registering it, with a
    /// registry), once.
    pub async fn ready(&self) -> Result<()> {
        match &self.value {
            ValueColumns::Encoded(_, writer) => writer.ready().await,
            _ => Ok(()),
        }
    }
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
            Column::Declared(0) if source.options.format == ValueFormat::RawValue => {
                Some(("a string or binary", is_text_or_bytes(data_type)))
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

impl SinkRecords {
    /// The records of `batch`; fails naming the first row without a topic.
    pub fn try_new(
        batch: &RecordBatch,
        columns: &RecordColumns,
        default_topic: Option<&str>,
        table: &str,
    ) -> Result<Self> {
        let values = match &columns.value {
            ValueColumns::Bytes(i) => cast(batch.column(*i), &DataType::Binary)?
                .as_binary::<i32>()
                .clone(),
            ValueColumns::Json(indices) => {
                BinaryArray::from_iter_values(encode_json_rows(&batch.project(indices)?)?)
            }
            ValueColumns::Encoded(indices, writer) => writer.encode(&batch.project(indices)?)?,
        };
        let keys = cast_column(batch, columns.key, &DataType::Binary)?
            .map(|a| a.as_binary::<i32>().clone());
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
