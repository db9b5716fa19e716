//! The columns of a Kafka table: Spark's raw record schema, or declared columns followed by the
//! record's metadata under a `_` prefix.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::error::{DataFusionError, Result};

/// What one column of a Kafka table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The record key (binary).
    Key,
    /// The record value (binary).
    Value,
    /// The topic name.
    Topic,
    /// The partition number.
    Partition,
    /// The record offset.
    Offset,
    /// The record timestamp (ms, UTC).
    Timestamp,
    /// 0 for CreateTime, 1 for LogAppendTime, -1 when the record has none.
    TimestampType,
    /// The record headers.
    Headers,
    /// Declared column number `n`, decoded from the value.
    Declared(usize),
}

const METADATA: [(Column, &str); 8] = [
    (Column::Key, "key"),
    (Column::Value, "value"),
    (Column::Topic, "topic"),
    (Column::Partition, "partition"),
    (Column::Offset, "offset"),
    (Column::Timestamp, "timestamp"),
    (Column::TimestampType, "timestampType"),
    (Column::Headers, "headers"),
];

/// The type of the headers column: a list of (key, value) structs, as in Spark.
pub fn headers_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(header_fields()),
        true,
    )))
}

/// The fields of one header.
pub fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Binary, true),
    ])
}

/// The type of the timestamp column.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The column layout of one Kafka table.
#[derive(Debug, Clone)]
pub struct TableLayout {
    /// The table's schema.
    pub schema: SchemaRef,
    /// What each column of the schema holds.
    pub columns: Vec<Column>,
    /// The declared columns alone, when the table declares them.
    pub declared: Option<SchemaRef>,
}

impl TableLayout {
    /// The layout of a table with these declared columns (none: the raw record schema).
    pub fn new(declared: Option<SchemaRef>, include_headers: bool) -> Result<Self> {
        let prefix = if declared.is_some() { "_" } else { "" };
        let mut fields: Vec<Field> = vec![];
        let mut columns = vec![];
        if let Some(declared) = &declared {
            for (i, field) in declared.fields().iter().enumerate() {
                if field.name().starts_with('_') {
                    return Err(DataFusionError::Plan(format!(
                        "declared column '{}' starts with '_', which is reserved for the Kafka \
                         metadata columns (_key, _value, _topic, _partition, _offset, \
                         _timestamp, _timestampType, _headers)",
                        field.name()
                    )));
                }
                fields.push(field.as_ref().clone().with_nullable(true));
                columns.push(Column::Declared(i));
            }
        }
        for (column, name) in METADATA {
            if column == Column::Headers && !include_headers {
                continue;
            }
            // Nullable even where a record always has a value, so that INSERT may leave the
            // column out (the sink then chooses: the table's topic, the partitioner, now).
            let data_type = match column {
                Column::Key | Column::Value => DataType::Binary,
                Column::Topic => DataType::Utf8,
                Column::Partition | Column::TimestampType => DataType::Int32,
                Column::Offset => DataType::Int64,
                Column::Timestamp => timestamp_type(),
                Column::Headers => headers_type(),
                Column::Declared(_) => unreachable!("metadata columns only"),
            };
            fields.push(Field::new(format!("{prefix}{name}"), data_type, true));
            columns.push(column);
        }
        Ok(Self {
            schema: Arc::new(Schema::new(fields)),
            columns,
            declared,
        })
    }

    /// What the column named `name` holds.
    pub fn column_named(&self, name: &str) -> Option<Column> {
        let index = self.schema.index_of(name).ok()?;
        Some(self.columns[index])
    }

    /// The schema index of `column`, if the table has it.
    pub fn index_of(&self, column: Column) -> Option<usize> {
        self.columns.iter().position(|c| *c == column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_schema_is_sparks() {
        let layout = TableLayout::new(None, true).unwrap();
        let names: Vec<&str> = layout
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "key",
                "value",
                "topic",
                "partition",
                "offset",
                "timestamp",
                "timestampType",
                "headers"
            ]
        );
        assert_eq!(layout.column_named("offset"), Some(Column::Offset));
        assert_eq!(
            TableLayout::new(None, false).unwrap().schema.fields().len(),
            7
        );
    }

    #[test]
    fn declared_columns_come_first_and_metadata_is_prefixed() {
        let declared = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let layout = TableLayout::new(Some(declared), false).unwrap();
        assert_eq!(layout.schema.field(0).name(), "id");
        assert!(layout.schema.field(0).is_nullable());
        assert_eq!(layout.column_named("_partition"), Some(Column::Partition));
        assert_eq!(layout.column_named("partition"), None);
        let bad = Arc::new(Schema::new(vec![Field::new(
            "_offset",
            DataType::Int64,
            true,
        )]));
        let e = TableLayout::new(Some(bad), false).unwrap_err().to_string();
        assert!(e.contains("'_offset' starts with '_'"), "{e}");
    }
}
