//! The OPTIONS of a JDBC table, checked when the table is created: unknown keys, bad values and
//! contradictions are refused there, naming the option.

use std::collections::{BTreeMap, HashMap};

use arrow::datatypes::Schema;
use datafusion::error::{DataFusionError, Result};

/// How rows reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every row is inserted.
    Append,
    /// A row whose key exists replaces the existing row's other columns.
    Upsert,
}

/// A JDBC table's options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JdbcOptions {
    /// The table in the database (`schema.table` allowed).
    pub table: String,
    /// Append or upsert.
    pub mode: Mode,
    /// The key columns, as indexes into the declared columns.
    pub key: Vec<usize>,
    /// Create the table (and its key) when it does not exist.
    pub create_table: bool,
    /// The table recording which batches of which streaming queries are committed.
    pub progress_table: String,
}

/// The options a JDBC table takes, with their defaults as docs/jdbc.md shows them (a test
/// checks that the page lists exactly these).
pub const JDBC_TABLE_OPTIONS: &[(&str, &str)] = &[
    ("table", "the weir table's name"),
    ("mode", "append"),
    ("key", "none"),
    ("createTable", "true"),
    ("progressTable", "_weir_progress"),
];

impl JdbcOptions {
    /// Parses `options` (keys as DataFusion passes them: lower-cased, undotted keys prefixed
    /// with `format.`) for a table named `name` with the declared columns `schema`.
    pub fn parse(name: &str, options: &HashMap<String, String>, schema: &Schema) -> Result<Self> {
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in options {
            let key = key
                .strip_prefix("format.")
                .unwrap_or(key)
                .to_ascii_lowercase();
            if given.insert(key.clone(), value.clone()).is_some() {
                return Err(plan(format!(
                    "option '{key}' is given twice (option names ignore case)"
                )));
            }
        }
        let mut take = |name: &str| given.remove(&name.to_ascii_lowercase());

        let table = match take("table") {
            Some(t) if t.trim().is_empty() => {
                return Err(plan("option 'table' is empty; name the database table"));
            }
            Some(t) => t.trim().to_string(),
            None => name.to_string(),
        };
        let mode = match take("mode").map(|m| m.trim().to_ascii_lowercase()) {
            None => Mode::Append,
            Some(m) if m == "append" => Mode::Append,
            Some(m) if m == "upsert" => Mode::Upsert,
            Some(other) => {
                return Err(plan(format!(
                    "option 'mode' has the value '{other}'; expected append or upsert"
                )));
            }
        };
        let key = match take("key") {
            None => vec![],
            Some(list) => {
                let mut key = vec![];
                for column in list.split(',').map(str::trim) {
                    if column.is_empty() {
                        return Err(plan(format!(
                            "option 'key' has the value '{list}'; expected declared column names separated by commas"
                        )));
                    }
                    let index = schema
                        .fields()
                        .iter()
                        .position(|f| f.name() == column)
                        .or_else(|| {
                            schema
                                .fields()
                                .iter()
                                .position(|f| f.name().eq_ignore_ascii_case(column))
                        })
                        .ok_or_else(|| {
                            plan(format!(
                                "option 'key' names '{column}', which is not a declared column; the columns are {}",
                                column_names(schema)
                            ))
                        })?;
                    if key.contains(&index) {
                        return Err(plan(format!("option 'key' names '{column}' twice")));
                    }
                    key.push(index);
                }
                key
            }
        };
        if mode == Mode::Upsert && key.is_empty() {
            return Err(plan(
                "option 'mode' is upsert, which needs option 'key' naming the columns that identify a row, as in 'key' 'id'",
            ));
        }
        let create_table = match take("createTable").map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if v == "true" => true,
            Some(v) if v == "false" => false,
            Some(other) => {
                return Err(plan(format!(
                    "option 'createTable' has the value '{other}'; expected true or false"
                )));
            }
        };
        let progress_table = match take("progressTable") {
            Some(t) if t.trim().is_empty() => {
                return Err(plan("option 'progressTable' is empty; name a table"));
            }
            Some(t) => t.trim().to_string(),
            None => "_weir_progress".to_string(),
        };
        if let Some(unknown) = given.keys().next() {
            let known: Vec<&str> = JDBC_TABLE_OPTIONS.iter().map(|(n, _)| *n).collect();
            return Err(plan(format!(
                "unknown JDBC table option '{unknown}'; the options are {}",
                known.join(", ")
            )));
        }
        Ok(JdbcOptions {
            table,
            mode,
            key,
            create_table,
            progress_table,
        })
    }
}

fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn plan(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("region", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ])
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<JdbcOptions> {
        let options = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        JdbcOptions::parse("orders", &options, &schema())
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        parse(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            options,
            JdbcOptions {
                table: "orders".to_string(),
                mode: Mode::Append,
                key: vec![],
                create_table: true,
                progress_table: "_weir_progress".to_string(),
            }
        );
    }

    #[test]
    fn keys_as_datafusion_passes_them() {
        let options = parse(&[
            ("format.table", "sales.orders"),
            ("format.mode", "UPSERT"),
            ("format.key", "region, id"),
            ("format.createtable", "false"),
            ("format.progresstable", "ops.progress"),
        ])
        .unwrap();
        assert_eq!(options.table, "sales.orders");
        assert_eq!(options.mode, Mode::Upsert);
        assert_eq!(options.key, vec![1, 0]);
        assert!(!options.create_table);
        assert_eq!(options.progress_table, "ops.progress");
    }

    #[test]
    fn bad_options_name_the_option() {
        let e = error(&[("format.mode", "upsert")]);
        assert!(e.contains("'mode'") && e.contains("'key'"), "{e}");
        let e = error(&[("format.mode", "apend")]);
        assert!(
            e.contains("'mode'") && e.contains("apend") && e.contains("append or upsert"),
            "{e}"
        );
        let e = error(&[("format.key", "id,nope")]);
        assert!(
            e.contains("'key'") && e.contains("'nope'") && e.contains("id, region, amount"),
            "{e}"
        );
        let e = error(&[("format.key", "id,id")]);
        assert!(e.contains("twice"), "{e}");
        let e = error(&[("format.key", "id,")]);
        assert!(e.contains("'key'"), "{e}");
        let e = error(&[("format.createtable", "yes")]);
        assert!(
            e.contains("'createTable'") && e.contains("true or false"),
            "{e}"
        );
        let e = error(&[("format.batchsize", "10")]);
        assert!(
            e.contains("unknown JDBC table option 'batchsize'") && e.contains("progressTable"),
            "{e}"
        );
        let e = error(&[("format.table", " ")]);
        assert!(e.contains("'table'"), "{e}");
    }
}
