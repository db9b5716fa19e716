//! Opening a Delta table for `CREATE EXTERNAL TABLE … STORED AS DELTA`: an existing table is
//! checked against the declared columns (and widened by `mergeSchema`), an empty location
//! becomes a new table, anything else is refused.

use std::collections::HashMap;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::StructField;
use deltalake_core::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake_core::logstore::LogStoreRef;
use deltalake_core::operations::create::CreateBuilder;

use super::location::holds_anything;
use super::options::DeltaOptions;
use crate::storage::Location;

/// What `open` needs to know about the table being declared.
pub struct Declaration<'a> {
    /// The table's name in the session.
    pub name: &'a str,
    /// The declared columns (empty: take the table's).
    pub schema: &'a Schema,
    /// Its options.
    pub options: &'a DeltaOptions,
    /// Where it is.
    pub location: &'a Location,
}

impl Declaration<'_> {
    /// An error about the declared table.
    pub fn error(&self, what: impl std::fmt::Display) -> DataFusionError {
        DataFusionError::Plan(format!(
            "Delta table '{}' at {}: {what}",
            self.name, self.location.display
        ))
    }
}

/// Opens the table `declared` names, creating it when the location is empty: returns it loaded.
pub async fn open(declared: &Declaration<'_>, log_store: LogStoreRef) -> Result<DeltaTable> {
    let exists = log_store
        .is_delta_table_location()
        .await
        .map_err(|e| declared.error(format!("cannot read its log: {e}")))?;
    if !exists {
        return create(declared, log_store).await;
    }
    let mut table = DeltaTable::new(log_store);
    table
        .load()
        .await
        .map_err(|e| declared.error(format!("cannot load it: {e}")))?;
    check_partitions(declared, &table)?;
    check_properties(declared, &table)?;
    if declared.schema.fields().is_empty() {
        return Ok(table);
    }
    let added = check_columns(declared, table_schema(&table)?.as_ref())?;
    if added.is_empty() {
        return Ok(table);
    }
    table
        .add_columns()
        .with_fields(added)
        .await
        .map_err(|e| declared.error(format!("cannot add the declared columns: {e}")))
}

async fn create(declared: &Declaration<'_>, log_store: LogStoreRef) -> Result<DeltaTable> {
    if holds_anything(declared.location).await? {
        return Err(declared.error(
            "the location is not a Delta table (it has no _delta_log) and is not empty; give an \
             empty location for a new table, or the root of an existing Delta table",
        ));
    }
    if !declared.options.create_if_missing {
        return Err(declared.error("there is no Delta table there and 'createIfMissing' is false"));
    }
    if declared.schema.fields().is_empty() {
        return Err(
            declared.error("there is no Delta table there yet; declare its columns to create it")
        );
    }
    for column in &declared.options.partition_by {
        if declared.schema.field_with_name(column).is_err() {
            return Err(declared.error(format!(
                "partition column '{column}' is not a declared column"
            )));
        }
    }
    let properties: HashMap<String, Option<String>> = declared
        .options
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(declared.name)
        .with_columns(kernel_fields(declared)?)
        .with_partition_columns(declared.options.partition_by.clone())
        .with_configuration(properties)
        .await
        .map_err(|e| declared.error(format!("cannot create it: {e}")))
}

fn kernel_fields(declared: &Declaration<'_>) -> Result<Vec<StructField>> {
    declared
        .schema
        .fields()
        .iter()
        .map(|field| kernel_field(declared, field))
        .collect()
}

fn kernel_field(declared: &Declaration<'_>, field: &Field) -> Result<StructField> {
    field.as_ref().try_into_kernel().map_err(|e| {
        declared.error(format!(
            "column '{}' has type {}, which Delta has no type for: {e}",
            field.name(),
            field.data_type()
        ))
    })
}

/// The table's columns as Delta's Arrow conversion gives them.
fn table_schema(table: &DeltaTable) -> Result<SchemaRef> {
    let snapshot = table
        .snapshot()
        .map_err(|e| DataFusionError::Plan(e.to_string()))?;
    Ok(snapshot.snapshot().arrow_schema())
}

/// The type Delta stores a declared column's values as.
fn delta_type(declared: &Declaration<'_>, field: &Field) -> Result<DataType> {
    let kernel = kernel_field(declared, field)?;
    let arrow: Field = (&kernel).try_into_arrow().map_err(|e| declared.error(e))?;
    Ok(arrow.data_type().clone())
}

/// Checks the declared columns against the table's: the same names in the same order, of the
/// same types; declared columns after the table's are returned for `mergeSchema` to add.
fn check_columns(declared: &Declaration<'_>, table: &Schema) -> Result<Vec<StructField>> {
    let names = |schema: &Schema| -> String {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        names.join(", ")
    };
    for (i, column) in table.fields().iter().enumerate() {
        let Some(given) = declared.schema.fields().get(i) else {
            return Err(declared.error(format!(
                "the table has column '{}', which the declaration lacks (the table's columns: \
                 {}); declare them all, or declare no columns to take the table's",
                column.name(),
                names(table)
            )));
        };
        if !given.name().eq_ignore_ascii_case(column.name()) {
            return Err(declared.error(format!(
                "column {} is '{}' in the declaration but '{}' in the table (the table's \
                 columns: {})",
                i + 1,
                given.name(),
                column.name(),
                names(table)
            )));
        }
        let given_type = delta_type(declared, given)?;
        if &given_type != column.data_type() {
            return Err(declared.error(format!(
                "column '{}' is declared {} but the table stores {}",
                given.name(),
                given.data_type(),
                column.data_type()
            )));
        }
    }
    let extra = &declared.schema.fields()[table.fields().len()..];
    if extra.is_empty() {
        return Ok(vec![]);
    }
    let extra_names: Vec<&str> = extra.iter().map(|f| f.name().as_str()).collect();
    if !declared.options.merge_schema {
        return Err(declared.error(format!(
            "the declaration has columns the table lacks ({}); set 'mergeSchema' 'true' to \
             add them to the table",
            extra_names.join(", ")
        )));
    }
    if let Some(required) = extra.iter().find(|f| !f.is_nullable()) {
        return Err(declared.error(format!(
            "column '{}' is NOT NULL, but rows already in the table have no value for it; \
             Delta adds only nullable columns",
            required.name()
        )));
    }
    extra.iter().map(|f| kernel_field(declared, f)).collect()
}

fn check_partitions(declared: &Declaration<'_>, table: &DeltaTable) -> Result<()> {
    let wanted = &declared.options.partition_by;
    if wanted.is_empty() {
        return Ok(());
    }
    let snapshot = table.snapshot().map_err(|e| declared.error(e))?;
    let actual = snapshot.metadata().partition_columns();
    if actual != wanted {
        return Err(declared.error(format!(
            "the table is partitioned by ({}), not by ({}); a Delta table keeps the partitioning \
             it was created with",
            actual.join(", "),
            wanted.join(", ")
        )));
    }
    Ok(())
}

fn check_properties(declared: &Declaration<'_>, table: &DeltaTable) -> Result<()> {
    let snapshot = table.snapshot().map_err(|e| declared.error(e))?;
    let configuration = snapshot.metadata().configuration();
    for (key, value) in &declared.options.properties {
        let actual = configuration.get(key);
        if actual != Some(value) {
            return Err(declared.error(format!(
                "the table has {key} = {}, not {value}; table properties are set when a table \
                 is created",
                actual.map_or("(unset)", String::as_str)
            )));
        }
    }
    Ok(())
}
