//! How an `INSERT INTO` a Kafka table is planned, the same way whether it runs as a bounded
//! statement or as a streaming query, following Spark's Kafka sink:
//! - without a column list, the query's columns are matched to the table's by name when every
//!   one of them names a table column, and by position onto the first table columns otherwise;
//! - the record value (`value`, or the one declared column of `'format' 'raw'`) must be given;
//! - a `headers` column is taken whether or not the table reads headers (`includeHeaders`):
//!   the INSERT is then planned against the table with a headers column, registered under
//!   [`WRITE_SCHEMA`].

use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Ident, Insert, ObjectName, Statement as SQLStatement, TableObject,
};

use crate::error::{Error, Result};
use crate::kafka::KafkaTable;
use crate::kafka::layout::Column;

/// The schema holding the write views of Kafka tables (the table with a headers column).
pub const WRITE_SCHEMA: &str = "weir_write";

/// `statement` made ready to plan, when it is an INSERT into a Kafka table; unchanged otherwise.
pub async fn prepare(ctx: &SessionContext, statement: DFStatement) -> Result<DFStatement> {
    let DFStatement::Statement(boxed) = &statement else {
        return Ok(statement);
    };
    let SQLStatement::Insert(insert) = boxed.as_ref() else {
        return Ok(statement);
    };
    let (TableObject::TableName(table), Some(source)) = (&insert.table, &insert.source) else {
        return Ok(statement);
    };
    let reference = TableReference::from(table.to_string());
    let Ok(provider) = ctx.table_provider(reference.clone()).await else {
        return Ok(statement);
    };
    let Some(kafka) = provider.downcast_ref::<KafkaTable>() else {
        return Ok(statement);
    };
    let query = ctx.state().create_logical_plan(&source.to_string()).await?;
    let given: Vec<String> = query
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut insert = insert.clone();
    let columns = target_columns(kafka, &insert, &given, table)?;
    if let Some(value) = kafka.required_value_column()
        && !columns.contains(&value)
    {
        return Err(Error::Sql(format!(
            "INSERT INTO Kafka table '{table}' gives no '{value}' column (the record value), \
             which Spark's Kafka sink requires too; name a column '{value}' (NULL AS {value} \
             writes tombstones)"
        )));
    }
    if columns.contains(&headers_column(kafka)) && !kafka.has_headers_column() {
        insert.table = TableObject::TableName(write_view(ctx, kafka, &reference)?);
    }
    if insert.columns.is_empty() && columns.len() < kafka.layout().schema.fields().len() {
        insert.columns = columns
            .iter()
            .map(|n| ObjectName::from(vec![Ident::with_quote('"', n)]))
            .collect();
    }
    Ok(DFStatement::Statement(Box::new(SQLStatement::Insert(
        insert,
    ))))
}

/// The table columns the INSERT writes, in the order of the query's columns `given`.
fn target_columns(
    kafka: &KafkaTable,
    insert: &Insert,
    given: &[String],
    table: &ObjectName,
) -> Result<Vec<String>> {
    if !insert.columns.is_empty() {
        return Ok(insert
            .columns
            .iter()
            .map(|c| c.to_string().replace('"', ""))
            .collect());
    }
    let schema = &kafka.layout().schema;
    let writable: Vec<String> = kafka
        .layout()
        .columns
        .iter()
        .zip(schema.fields())
        .filter(|(c, _)| !matches!(c, Column::Headers))
        .map(|(_, f)| f.name().clone())
        .collect();
    if given.len() > writable.len() {
        return Err(Error::DataFusion(DataFusionError::Plan(format!(
            "INSERT INTO Kafka table '{table}' gives {} columns ({}) but the table has {} ({}); \
             name the query's columns after the table's",
            given.len(),
            given.join(", "),
            writable.len(),
            writable.join(", ")
        ))));
    }
    let headers = headers_column(kafka);
    let unknown: Vec<&str> = given
        .iter()
        .filter(|n| schema.index_of(n).is_err() && **n != headers)
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(given.to_vec());
    }
    if unknown.len() < given.len() {
        // Matching the rest by position would shift them silently.
        return Err(Error::DataFusion(DataFusionError::Plan(format!(
            "INSERT INTO Kafka table '{table}' gives columns named after the table's and {} that \
             the table has not ({}); name every column after one of the table's ({}, {headers}), \
             or none, to match them by position",
            if unknown.len() == 1 { "one" } else { "others" },
            unknown.join(", "),
            writable.join(", ")
        ))));
    }
    Ok(writable.into_iter().take(given.len()).collect())
}

/// The name of a headers column of `kafka`: `headers`, or `_headers` beside declared columns.
fn headers_column(kafka: &KafkaTable) -> String {
    match kafka.layout().declared {
        Some(_) => "_headers".to_string(),
        None => "headers".to_string(),
    }
}

/// Registers (again) the write view of `kafka`: the table with a headers column.
fn write_view(
    ctx: &SessionContext,
    kafka: &KafkaTable,
    reference: &TableReference,
) -> Result<ObjectName> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Streaming("the session has no default catalog".to_string()))?;
    let schema = match catalog.schema(WRITE_SCHEMA) {
        Some(schema) => schema,
        None => {
            let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog.register_schema(WRITE_SCHEMA, Arc::clone(&schema))?;
            schema
        }
    };
    // The whole reference, so that tables of one name in two schemas get views of their own.
    let name = reference.to_string();
    schema.deregister_table(&name)?;
    schema.register_table(name.clone(), Arc::new(kafka.with_headers_column()?))?;
    Ok(ObjectName::from(vec![
        Ident::new(WRITE_SCHEMA),
        Ident::with_quote('"', name),
    ]))
}
