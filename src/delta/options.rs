//! The options of `CREATE EXTERNAL TABLE … STORED AS DELTA`: whether to create the table,
//! its partition columns, how data files are written, whether declared columns may add to the
//! table's, and the Delta table properties (`delta.*`) a new table is created with.

use std::collections::{BTreeMap, HashMap};

use datafusion::error::{DataFusionError, Result};
use parquet::basic::Compression;

use crate::sinks::parquet::parse_compression;

/// What a Delta table property's value is.
#[derive(Debug, Clone, Copy)]
enum PropertyValue {
    /// `true` or `false`.
    Boolean,
    /// A positive whole number.
    Count,
    /// `interval <n> <unit>`, as Delta writes durations.
    Interval,
    /// A list of column names.
    Columns,
}

/// The Delta table properties weir passes on, spelled as Delta spells them (DataFusion hands
/// options over in lower case), with the values they take.
const TABLE_PROPERTIES: &[(&str, PropertyValue)] = &[
    ("delta.appendOnly", PropertyValue::Boolean),
    ("delta.checkpointInterval", PropertyValue::Count),
    ("delta.checkpoint.writeStatsAsJson", PropertyValue::Boolean),
    (
        "delta.checkpoint.writeStatsAsStruct",
        PropertyValue::Boolean,
    ),
    ("delta.dataSkippingNumIndexedCols", PropertyValue::Count),
    ("delta.dataSkippingStatsColumns", PropertyValue::Columns),
    (
        "delta.deletedFileRetentionDuration",
        PropertyValue::Interval,
    ),
    ("delta.enableExpiredLogCleanup", PropertyValue::Boolean),
    ("delta.logRetentionDuration", PropertyValue::Interval),
];

const INTERVAL_UNITS: &[&str] = &[
    "nanosecond",
    "microsecond",
    "millisecond",
    "second",
    "minute",
    "hour",
    "day",
    "week",
];

impl PropertyValue {
    fn accepts(self, value: &str) -> bool {
        let value = value.trim().to_ascii_lowercase();
        match self {
            PropertyValue::Boolean => value == "true" || value == "false",
            PropertyValue::Count => value.parse::<u64>().is_ok_and(|n| n > 0),
            PropertyValue::Columns => !value.is_empty(),
            PropertyValue::Interval => match value.split_whitespace().collect::<Vec<_>>()[..] {
                ["interval", n, unit] => {
                    n.parse::<u64>().is_ok()
                        && INTERVAL_UNITS.contains(&unit.strip_suffix('s').unwrap_or(unit))
                }
                _ => false,
            },
        }
    }

    fn expected(self) -> &'static str {
        match self {
            PropertyValue::Boolean => "true or false",
            PropertyValue::Count => "a positive whole number",
            PropertyValue::Columns => "column names separated by commas",
            PropertyValue::Interval => {
                "a duration such as 'interval 7 days' (units: seconds, minutes, hours, days, weeks)"
            }
        }
    }
}

/// What a Delta table's options ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaOptions {
    /// `createIfMissing` (default true): create the table at an empty location.
    pub create_if_missing: bool,
    /// `partitionBy` or `PARTITIONED BY (…)`: the partition columns of a new table.
    pub partition_by: Vec<String>,
    /// `parquet.compression` of the data files.
    pub compression: Compression,
    /// `targetFileSizeBytes`: a data file is closed once it reaches this size.
    pub target_file_bytes: u64,
    /// `mergeSchema` (default false): declared columns the table lacks are added to it.
    pub merge_schema: bool,
    /// `delta.*` table properties, set when the table is created.
    pub properties: BTreeMap<String, String>,
}

const OPTIONS: &str = "createIfMissing, partitionBy, parquet.compression, targetFileSizeBytes, \
                       mergeSchema and delta.* table properties";

fn plan_error(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

fn parse_bool(name: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(plan_error(format!(
            "option '{name}' has the value '{value}'; expected true or false"
        ))),
    }
}

fn table_property(key: &str) -> Option<(&'static str, PropertyValue)> {
    TABLE_PROPERTIES
        .iter()
        .copied()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
}

fn property_names() -> String {
    let names: Vec<&str> = TABLE_PROPERTIES.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

fn column_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

impl DeltaOptions {
    /// Parses a table's options; `partitioned_by` is the `PARTITIONED BY (…)` clause.
    pub fn parse(options: &HashMap<String, String>, partitioned_by: &[String]) -> Result<Self> {
        let mut parsed = DeltaOptions {
            create_if_missing: true,
            partition_by: partitioned_by.to_vec(),
            compression: Compression::SNAPPY,
            target_file_bytes: 128 * 1024 * 1024,
            merge_schema: false,
            properties: BTreeMap::new(),
        };
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        for key in keys {
            let value = &options[key];
            match key.strip_prefix("format.").unwrap_or(key) {
                "createifmissing" => {
                    parsed.create_if_missing = parse_bool("createIfMissing", value)?
                }
                "partitionby" => parsed.set_partition_by(value)?,
                "parquet.compression" => parsed.compression = parse_compression(value)?,
                "targetfilesizebytes" => {
                    parsed.target_file_bytes = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            plan_error(format!(
                                "option 'targetFileSizeBytes' has the value '{value}'; expected \
                                 a positive number of bytes"
                            ))
                        })?;
                }
                "mergeschema" => parsed.merge_schema = parse_bool("mergeSchema", value)?,
                other => match table_property(other) {
                    Some((property, kind)) if !kind.accepts(value) => {
                        return Err(plan_error(format!(
                            "Delta table property '{property}' has the value '{value}'; \
                             expected {}",
                            kind.expected()
                        )));
                    }
                    Some((property, _)) => {
                        parsed
                            .properties
                            .insert(property.to_string(), value.clone());
                    }
                    None if other.starts_with("delta.") => {
                        return Err(plan_error(format!(
                            "unknown Delta table property '{other}'; weir sets {}",
                            property_names()
                        )));
                    }
                    None => {
                        return Err(plan_error(format!(
                            "unknown option '{other}' for a Delta table; the options are {OPTIONS}"
                        )));
                    }
                },
            }
        }
        Ok(parsed)
    }

    fn set_partition_by(&mut self, value: &str) -> Result<()> {
        let columns = column_list(value);
        if !self.partition_by.is_empty() && self.partition_by != columns {
            return Err(plan_error(format!(
                "option 'partitionBy' ({}) contradicts PARTITIONED BY ({}); give one of them",
                columns.join(", "),
                self.partition_by.join(", ")
            )));
        }
        self.partition_by = columns;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<DeltaOptions> {
        let options = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DeltaOptions::parse(&options, &[])
    }

    #[test]
    fn defaults_create_an_unpartitioned_snappy_table() {
        let options = parse(&[]).unwrap();
        assert!(options.create_if_missing);
        assert!(options.partition_by.is_empty());
        assert_eq!(options.compression, Compression::SNAPPY);
        assert!(!options.merge_schema);
        assert!(options.properties.is_empty());
    }

    #[test]
    fn options_arrive_lower_cased_and_properties_keep_delta_spelling() {
        let options = parse(&[
            ("createifmissing", "false"),
            ("partitionby", "day, region"),
            ("parquet.compression", "zstd"),
            ("targetfilesizebytes", "1048576"),
            ("mergeschema", "TRUE"),
            ("delta.checkpointinterval", "10"),
        ])
        .unwrap();
        assert!(!options.create_if_missing);
        assert_eq!(options.partition_by, ["day", "region"]);
        assert_eq!(options.target_file_bytes, 1_048_576);
        assert!(options.merge_schema);
        assert_eq!(
            options.properties.get("delta.checkpointInterval"),
            Some(&"10".to_string())
        );
    }

    #[test]
    fn bad_options_are_named() {
        let message = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().to_string();
        assert!(message(&[("subscribe", "t")]).contains("unknown option 'subscribe'"));
        assert!(message(&[("delta.nosuch", "1")]).contains("unknown Delta table property"));
        assert!(message(&[("createifmissing", "maybe")]).contains("'createIfMissing'"));
        assert!(message(&[("targetfilesizebytes", "0")]).contains("positive number"));
        assert!(message(&[("parquet.compression", "brotli9")]).contains("'brotli9'"));
        assert!(
            message(&[("delta.checkpointinterval", "often")])
                .contains("'delta.checkpointInterval' has the value 'often'")
        );
        assert!(
            message(&[("delta.logretentionduration", "7 days")])
                .contains("a duration such as 'interval 7 days'")
        );
        let accepted = parse(&[("delta.deletedfileretentionduration", "interval 1 second")]);
        assert!(accepted.is_ok());
        let options = [("partitionby".to_string(), "a".to_string())].into();
        let contradiction = DeltaOptions::parse(&options, &["b".to_string()]).unwrap_err();
        assert!(
            contradiction
                .to_string()
                .contains("contradicts PARTITIONED BY (b)")
        );
    }
}
