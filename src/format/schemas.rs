//! The formats whose values follow a schema, Avro and Protobuf, behind one type each for
//! reading ([`SchemaCodec`]) and writing ([`RowEncoder`]), so that tables, scans and sinks
//! treat them alike.

use std::sync::Arc;

use arrow::array::{BinaryArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use datafusion::error::Result;

use super::avro::AvroCodec;
use super::avro_encode::AvroWriter;
use super::protobuf::ProtobufCodec;
use super::protobuf_encode::ProtobufWriter;
use crate::kafka::formats::ValueFormat;

/// How a table's schema-bound values are read.
#[derive(Debug, Clone)]
pub enum SchemaCodec {
    /// 'format' 'avro'.
    Avro(Arc<AvroCodec>),
    /// 'format' 'protobuf'.
    Protobuf(Arc<ProtobufCodec>),
}

impl SchemaCodec {
    /// The codec of `format` when its values follow a schema (asking the registry for the
    /// subject's latest schema, when there is one); `read_topic` and `write_topic` are the one
    /// topic the table reads and writes, for the default subjects.
    pub async fn open(
        format: &ValueFormat,
        read_topic: Option<&str>,
        write_topic: Option<&str>,
    ) -> Result<Option<Self>> {
        Ok(match format {
            ValueFormat::Avro(options) => Some(SchemaCodec::Avro(Arc::new(
                AvroCodec::open(options, read_topic, write_topic).await?,
            ))),
            ValueFormat::Protobuf(options) => Some(SchemaCodec::Protobuf(Arc::new(
                ProtobufCodec::open(options, read_topic, write_topic).await?,
            ))),
            _ => None,
        })
    }

    /// The columns of a table that declares none.
    pub fn columns(&self) -> Result<SchemaRef, String> {
        match self {
            SchemaCodec::Avro(codec) => codec.columns(),
            SchemaCodec::Protobuf(codec) => codec.columns(),
        }
    }

    /// Fails when the schema cannot fill the `declared` columns.
    pub fn check_declared(&self, declared: &SchemaRef) -> Result<(), String> {
        match self {
            SchemaCodec::Avro(codec) => codec.check_declared(declared),
            SchemaCodec::Protobuf(codec) => codec.check_declared(declared),
        }
    }

    /// Fetches the schemas the framed `values` name that are new.
    pub fn prepare(
        &self,
        values: &BinaryArray,
        declared: &SchemaRef,
        locate: &dyn Fn(usize) -> String,
    ) -> Result<()> {
        match self {
            SchemaCodec::Avro(codec) => codec.prepare(values, declared, locate),
            SchemaCodec::Protobuf(codec) => codec.prepare(values, locate),
        }
    }

    /// Decodes `values` into the `declared` columns; `nulled(i)` values are null rows.
    pub fn decode(
        &self,
        values: &BinaryArray,
        nulled: &dyn Fn(usize) -> bool,
        declared: &SchemaRef,
    ) -> Result<RecordBatch, ArrowError> {
        match self {
            SchemaCodec::Avro(codec) => codec.decode(values, nulled, declared),
            SchemaCodec::Protobuf(codec) => codec.decode(values, nulled, declared),
        }
    }

    /// The encoder of `table`'s `declared` columns into values.
    pub fn writer(&self, table: &str, declared: &SchemaRef) -> Result<RowEncoder> {
        Ok(match self {
            SchemaCodec::Avro(codec) => {
                RowEncoder::Avro(AvroWriter::try_new(Arc::clone(codec), table, declared)?)
            }
            SchemaCodec::Protobuf(codec) => {
                RowEncoder::Protobuf(ProtobufWriter::try_new(Arc::clone(codec), table)?)
            }
        })
    }
}

/// How rows are written as a table's schema-bound values.
#[derive(Debug)]
pub enum RowEncoder {
    /// 'format' 'avro'.
    Avro(AvroWriter),
    /// 'format' 'protobuf'.
    Protobuf(ProtobufWriter),
}

impl RowEncoder {
    /// Settles the schema values are written with (registering it, with a registry), once.
    pub async fn ready(&self) -> Result<()> {
        match self {
            RowEncoder::Avro(writer) => writer.ready().await,
            RowEncoder::Protobuf(writer) => writer.ready().await,
        }
    }

    /// One value per row of `batch` (the declared columns).
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray> {
        match self {
            RowEncoder::Avro(writer) => writer.encode(batch),
            RowEncoder::Protobuf(writer) => writer.encode(batch),
        }
    }
}
