//! How a Kafka table's records encode its declared columns: the value's `format` and the key's
//! `key.format` (with `key.fields` and `value.fields-include`, as in Flink), and the Avro,
//! Protobuf and schema registry options of each, parsed and checked together.

use std::time::Duration;

use datafusion::error::{DataFusionError, Result};

use super::options::{OptionBag, bad_value};
use crate::format::registry::RegistryOptions;

/// Which part of a record a format encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    /// The record key (`key.format`).
    Key,
    /// The record value (`format`).
    Value,
}

impl RecordPart {
    /// "key" or "value", for messages.
    pub fn name(self) -> &'static str {
        match self {
            RecordPart::Key => "key",
            RecordPart::Value => "value",
        }
    }

    /// The name of this part's option `name`: `key.<name>` for keys.
    pub fn option(self, name: &str) -> String {
        match self {
            RecordPart::Key => format!("key.{name}"),
            RecordPart::Value => name.to_string(),
        }
    }

    /// The subject of `topic`'s keys or values by Confluent's topic name strategy.
    pub fn default_subject(self, topic: &str) -> String {
        format!("{topic}-{}", self.name())
    }

    /// The name of this part's subject name strategy option (Confluent's).
    pub fn strategy_option(self) -> &'static str {
        match self {
            RecordPart::Key => "key.subject.name.strategy",
            RecordPart::Value => "value.subject.name.strategy",
        }
    }
}

/// How the registry subject of a part is named when `subject` does not name it: Confluent's
/// subject name strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `<topic>-key` or `<topic>-value`.
    #[default]
    TopicName,
    /// The full name of the record (Avro) or message (Protobuf) type.
    RecordName,
    /// `<topic>-<full name of the record or message type>`.
    TopicRecordName,
}

impl SubjectStrategy {
    /// Parses Confluent's class names, with or without their package.
    fn parse(option: &str, text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        match lower.trim_start_matches("io.confluent.kafka.serializers.subject.") {
            "topicnamestrategy" => Ok(SubjectStrategy::TopicName),
            "recordnamestrategy" => Ok(SubjectStrategy::RecordName),
            "topicrecordnamestrategy" => Ok(SubjectStrategy::TopicRecordName),
            _ => bad_value(
                option,
                text,
                "TopicNameStrategy, RecordNameStrategy or TopicRecordNameStrategy",
            ),
        }
    }
}

/// How one part's registry subject is named: `subject` (or `key.subject`), else its strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectNaming {
    /// The subject given by the table's option.
    pub given: Option<String>,
    /// The strategy that names it otherwise.
    pub strategy: SubjectStrategy,
    /// Whose subject it is.
    pub part: RecordPart,
}

impl SubjectNaming {
    /// The subject of the part of records of `topic` whose type's full name is `record`;
    /// `None` when the strategy needs one of them and it is not known.
    pub fn subject(&self, topic: Option<&str>, record: Option<&str>) -> Option<String> {
        if let Some(given) = &self.given {
            return Some(given.clone());
        }
        match self.strategy {
            SubjectStrategy::TopicName => topic.map(|t| self.part.default_subject(t)),
            SubjectStrategy::RecordName => record.map(str::to_string),
            SubjectStrategy::TopicRecordName => Some(format!("{}-{}", topic?, record?)),
        }
    }

    /// What to give when the subject cannot be named; `type_option` names the type's full name
    /// (`avroSchema`, `protobuf.message`).
    pub fn hint(&self, type_option: &str) -> String {
        let subject = self.part.option("subject");
        let type_option = self.part.option(type_option);
        match self.strategy {
            SubjectStrategy::TopicName => format!(
                "set the table option '{subject}' (or 'topic', for the default {})",
                self.part.default_subject("<topic>")
            ),
            SubjectStrategy::RecordName => format!(
                "'{}' names it after the type: give '{type_option}'",
                self.part.strategy_option()
            ),
            SubjectStrategy::TopicRecordName => format!(
                "'{}' names it <topic>-<type>: give 'topic' and '{type_option}'",
                self.part.strategy_option()
            ),
        }
    }

    /// Whether the subject depends on the type written, not only on the topic.
    pub fn names_records(&self) -> bool {
        self.given.is_none() && self.strategy != SubjectStrategy::TopicName
    }
}

/// How record values (or keys) are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueFormat {
    /// No decoding: Spark's raw schema (key, value, topic, partition, …).
    RawRecord,
    /// The value is one declared string or binary column.
    RawValue,
    /// The value is a JSON object of the declared columns.
    Json,
    /// The value is one CSV line of the declared columns.
    Csv {
        /// Field delimiter.
        delimiter: u8,
    },
    /// The value is Avro binary: plain, with a known schema, or framed for a schema registry.
    Avro(AvroOptions),
    /// The value is a Protobuf message: of a type in a descriptor file, or framed for a schema
    /// registry.
    Protobuf(ProtobufOptions),
}

impl ValueFormat {
    /// Whether the format follows a schema (Avro, Protobuf).
    pub fn has_schema(&self) -> bool {
        matches!(self, ValueFormat::Avro(_) | ValueFormat::Protobuf(_))
    }
}

/// Where the message types of a table's Protobuf values (or keys) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtobufOptions {
    /// `protobuf.descriptorFile`: a compiled `FileDescriptorSet`.
    pub descriptor_file: Option<String>,
    /// `protobuf.message`: the full name of the table's message type.
    pub message: Option<String>,
    /// The registry of framed values.
    pub registry: Option<RegistryOptions>,
    /// How the registry subject is named, and whose options these are (values' or keys').
    pub subject: SubjectNaming,
}

/// Where the schemas of a table's Avro values (or keys) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvroOptions {
    /// `avroSchema`: the writer schema of plain values, or the reader schema with a registry.
    pub schema: Option<String>,
    /// The registry of framed values.
    pub registry: Option<RegistryOptions>,
    /// How the registry subject is named, and whose options these are (values' or keys').
    pub subject: SubjectNaming,
}

impl AvroOptions {
    /// Whether these are the options of the values or of the keys.
    pub fn part(&self) -> RecordPart {
        self.subject.part
    }
}

impl ProtobufOptions {
    /// Whether these are the options of the values or of the keys.
    pub fn part(&self) -> RecordPart {
        self.subject.part
    }
}

/// How record keys hold declared columns (`key.format`, `key.fields`,
/// `value.fields-include`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    /// How keys are encoded: raw (also for 'string'), json, avro or protobuf.
    pub format: ValueFormat,
    /// The declared columns the key holds, in order; empty when they are the fields of the
    /// key's schema.
    pub fields: Vec<String>,
    /// Whether values hold the key columns too (`value.fields-include` `ALL`, Flink's default)
    /// rather than only the other columns (`EXCEPT_KEY`).
    pub value_includes_key: bool,
}

/// The formats of a table's values and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFormats {
    /// `format`.
    pub value: ValueFormat,
    /// `key.format`, when given.
    pub key: Option<KeyFormat>,
}

/// Takes the format options out of `bag` and checks them together.
pub(super) fn parse_formats(
    bag: &mut OptionBag,
    has_declared_columns: bool,
) -> Result<RecordFormats> {
    let mut registry = GivenRegistry::take(bag)?;
    let value_schema = GivenSchemaOptions::take(bag, RecordPart::Value)?;
    let key_schema = GivenSchemaOptions::take(bag, RecordPart::Key)?;
    let value = parse_value_format(bag, has_declared_columns, value_schema, &mut registry)?;
    let key = parse_key_format(bag, has_declared_columns, &value, key_schema, &mut registry)?;
    registry.check_used()?;
    Ok(RecordFormats { value, key })
}

fn parse_value_format(
    bag: &mut OptionBag,
    has_declared_columns: bool,
    given: GivenSchemaOptions,
    registry: &mut GivenRegistry,
) -> Result<ValueFormat> {
    let delimiter = bag.take("csv.delimiter");
    let format = bag.take("format");
    let named = format.as_deref().map(|f| f.trim().to_ascii_lowercase());
    if let Some(d) = &delimiter
        && named.as_deref() != Some("csv")
    {
        return Err(DataFusionError::Plan(format!(
            "option 'csv.delimiter' ('{d}') only applies to 'format' 'csv'"
        )));
    }
    given.check_applies_to(named.as_deref())?;
    let parsed = match named {
        None if has_declared_columns => {
            return Err(DataFusionError::Plan(
                "a Kafka table with declared columns needs the option 'format' (json, csv, \
                 avro, protobuf or raw) to say how record values decode into them"
                    .to_string(),
            ));
        }
        None => ValueFormat::RawRecord,
        Some(f) if f == "avro" => given.into_avro(registry)?,
        Some(f) if f == "protobuf" => given.into_protobuf(registry)?,
        Some(f) if !has_declared_columns => {
            return Err(DataFusionError::Plan(format!(
                "option 'format' is '{f}' but the table declares no columns to decode values \
                 into; declare them, as in CREATE EXTERNAL TABLE t (id BIGINT, name VARCHAR) …"
            )));
        }
        Some(f) => match f.as_str() {
            "json" => ValueFormat::Json,
            "raw" => ValueFormat::RawValue,
            "csv" => {
                let delimiter = match delimiter.as_deref() {
                    None => b',',
                    Some(d) if d.len() == 1 => d.as_bytes()[0],
                    Some(d) => return bad_value("csv.delimiter", d, "a single ASCII character"),
                };
                ValueFormat::Csv { delimiter }
            }
            other => return bad_value("format", other, "json, csv, avro, protobuf or raw"),
        },
    };
    Ok(parsed)
}

fn parse_key_format(
    bag: &mut OptionBag,
    has_declared_columns: bool,
    value: &ValueFormat,
    given: GivenSchemaOptions,
    registry: &mut GivenRegistry,
) -> Result<Option<KeyFormat>> {
    let named = bag
        .take("key.format")
        .map(|f| f.trim().to_ascii_lowercase());
    let fields = bag.take("key.fields");
    let include = bag.take("value.fields-include");
    given.check_applies_to(named.as_deref())?;
    let Some(named) = named else {
        return match (fields, include) {
            (Some(_), _) => needs_key_format("key.fields"),
            (_, Some(_)) => needs_key_format("value.fields-include"),
            (None, None) => Ok(None),
        };
    };
    let format = match named.as_str() {
        "raw" | "string" => ValueFormat::RawValue,
        "json" => ValueFormat::Json,
        "avro" => given.into_avro(registry)?,
        "protobuf" => given.into_protobuf(registry)?,
        other => return bad_value("key.format", other, "raw, string, json, avro or protobuf"),
    };
    if *value == ValueFormat::RawRecord {
        return Err(DataFusionError::Plan(
            "option 'key.format' needs the values' 'format' too: keys decode into declared \
             columns, beside the columns the values decode into"
                .to_string(),
        ));
    }
    let columns_from_schemas = format.has_schema() && value.has_schema();
    if !has_declared_columns && !columns_from_schemas {
        return Err(DataFusionError::Plan(format!(
            "'key.format' '{named}' needs declared columns (only when both the keys and the \
             values are avro or protobuf can the columns come from their schemas)"
        )));
    }
    if include.is_some() && *value == ValueFormat::RawValue {
        return Err(DataFusionError::Plan(
            "option 'value.fields-include' does not apply to 'format' 'raw': a raw value holds \
             the one declared column that the key does not"
                .to_string(),
        ));
    }
    let fields = parse_key_fields(fields.as_deref(), &named, &format)?;
    let value_includes_key = match include.as_deref().map(str::trim) {
        None => true,
        Some(v) if v.eq_ignore_ascii_case("ALL") => true,
        Some(v) if v.eq_ignore_ascii_case("EXCEPT_KEY") => false,
        Some(v) => return bad_value("value.fields-include", v, "ALL or EXCEPT_KEY"),
    };
    Ok(Some(KeyFormat {
        format,
        fields,
        value_includes_key,
    }))
}

fn needs_key_format<T>(option: &str) -> Result<T> {
    Err(DataFusionError::Plan(format!(
        "option '{option}' only applies with 'key.format'"
    )))
}

/// The `key.fields` list (names separated by ';' as in Flink, or ','), checked against the
/// key's format.
fn parse_key_fields(given: Option<&str>, named: &str, format: &ValueFormat) -> Result<Vec<String>> {
    let fields: Vec<String> = given
        .unwrap_or_default()
        .split([';', ','])
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    if fields.is_empty() && !format.has_schema() {
        return Err(DataFusionError::Plan(format!(
            "'key.format' '{named}' needs 'key.fields': the declared columns the key holds, \
             such as 'user_id' or 'user_id;item_id'"
        )));
    }
    if *format == ValueFormat::RawValue && fields.len() != 1 {
        return Err(DataFusionError::Plan(format!(
            "'key.format' '{named}' holds one column, but 'key.fields' names {}",
            fields.len()
        )));
    }
    if let Some(twice) = fields
        .iter()
        .enumerate()
        .find_map(|(i, f)| fields[..i].contains(f).then_some(f))
    {
        return Err(DataFusionError::Plan(format!(
            "option 'key.fields' names column '{twice}' twice"
        )));
    }
    Ok(fields)
}

/// The registry options as given, shared by the values and the keys.
struct GivenRegistry {
    url: Option<String>,
    user_info: Option<String>,
    ca_location: Option<String>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    /// Whether a format took the registry.
    used: bool,
}

impl GivenRegistry {
    fn take(bag: &mut OptionBag) -> Result<Self> {
        let timeout = match bag.take("schema.registry.request.timeout.ms") {
            None => None,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Some(Duration::from_millis(ms)),
                _ => {
                    return bad_value(
                        "schema.registry.request.timeout.ms",
                        &v,
                        "a positive number of milliseconds",
                    );
                }
            },
        };
        let retries = match bag.take("schema.registry.max.retries") {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(n) if n <= 20 => Some(n),
                _ => {
                    return bad_value(
                        "schema.registry.max.retries",
                        &v,
                        "a whole number from 0 to 20",
                    );
                }
            },
        };
        Ok(Self {
            url: bag.take("schema.registry.url"),
            user_info: bag.take("schema.registry.basic.auth.user.info"),
            ca_location: bag.take("schema.registry.ssl.ca.location"),
            timeout,
            retries,
            used: false,
        })
    }

    /// The registry, when `schema.registry.url` is given.
    fn options(&mut self) -> Option<RegistryOptions> {
        let url = self.url.clone()?;
        self.used = true;
        Some(RegistryOptions {
            url,
            user_info: self.user_info.clone(),
            ca_location: self.ca_location.clone(),
            timeout: self.timeout.unwrap_or(Duration::from_secs(10)),
            retries: self.retries.unwrap_or(3),
        })
    }

    /// Fails when the registry is given but neither the values nor the keys use it, or when
    /// its other options are given without it.
    fn check_used(&self) -> Result<()> {
        if self.url.is_some() {
            return match self.used {
                true => Ok(()),
                false => Err(DataFusionError::Plan(
                    "option 'schema.registry.url' only applies to 'format' or 'key.format' \
                     'avro' and 'protobuf'"
                        .to_string(),
                )),
            };
        }
        let given = [
            (
                self.user_info.is_some(),
                "schema.registry.basic.auth.user.info",
            ),
            (
                self.ca_location.is_some(),
                "schema.registry.ssl.ca.location",
            ),
            (self.timeout.is_some(), "schema.registry.request.timeout.ms"),
            (self.retries.is_some(), "schema.registry.max.retries"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name));
        match given {
            Some(name) => Err(DataFusionError::Plan(format!(
                "option '{name}' needs 'schema.registry.url'"
            ))),
            None => Ok(()),
        }
    }
}

/// The Avro and Protobuf options of one record part as given, before its format is known.
struct GivenSchemaOptions {
    part: RecordPart,
    schema: Option<String>,
    descriptor_file: Option<String>,
    message: Option<String>,
    subject: Option<String>,
    strategy: Option<SubjectStrategy>,
}

impl GivenSchemaOptions {
    fn take(bag: &mut OptionBag, part: RecordPart) -> Result<Self> {
        let strategy = match bag.take(part.strategy_option()) {
            Some(text) => Some(SubjectStrategy::parse(part.strategy_option(), &text)?),
            None => None,
        };
        let mut take = |name: &str| bag.take(&part.option(name));
        let given = Self {
            part,
            schema: take("avroSchema"),
            descriptor_file: take("protobuf.descriptorFile"),
            message: take("protobuf.message"),
            subject: take("subject"),
            strategy,
        };
        if given.subject.is_some() && given.strategy.is_some() {
            return Err(DataFusionError::Plan(format!(
                "options '{}' and '{}' contradict each other: the first names the subject, the \
                 second would name it from the topic or type; give one",
                part.option("subject"),
                part.strategy_option()
            )));
        }
        Ok(given)
    }

    /// How the part's registry subject is named.
    fn naming(&self) -> SubjectNaming {
        SubjectNaming {
            given: self.subject.clone(),
            strategy: self.strategy.unwrap_or_default(),
            part: self.part,
        }
    }

    /// Fails when an option is given that the format `named` does not take.
    fn check_applies_to(&self, named: Option<&str>) -> Result<()> {
        let avro = named == Some("avro");
        let protobuf = named == Some("protobuf");
        let misplaced = [
            (self.schema.is_some() && !avro, "avroSchema", "'avro'"),
            (
                self.descriptor_file.is_some() && !protobuf,
                "protobuf.descriptorFile",
                "'protobuf'",
            ),
            (
                self.message.is_some() && !protobuf,
                "protobuf.message",
                "'protobuf'",
            ),
            (
                self.subject.is_some() && !avro && !protobuf,
                "subject",
                "'avro' and 'protobuf'",
            ),
        ];
        if let Some((_, name, formats)) = misplaced.iter().find(|(wrong, _, _)| *wrong) {
            return Err(DataFusionError::Plan(format!(
                "option '{}' only applies to '{}' {formats}",
                self.part.option(name),
                self.part.option("format"),
            )));
        }
        if self.strategy.is_some() && !avro && !protobuf {
            return Err(DataFusionError::Plan(format!(
                "option '{}' only applies to '{}' 'avro' and 'protobuf'",
                self.part.strategy_option(),
                self.part.option("format"),
            )));
        }
        Ok(())
    }

    fn into_avro(self, registry: &mut GivenRegistry) -> Result<ValueFormat> {
        let registry = self.registry(registry)?;
        if self.schema.is_none() && registry.is_none() {
            return Err(DataFusionError::Plan(format!(
                "'{}' 'avro' needs the option '{}' (the schema the {}s were written with, as \
                 Avro schema JSON) or 'schema.registry.url' (a registry whose schema ids frame \
                 them)",
                self.part.option("format"),
                self.part.option("avroSchema"),
                self.part.name(),
            )));
        }
        Ok(ValueFormat::Avro(AvroOptions {
            subject: self.naming(),
            schema: self.schema,
            registry,
        }))
    }

    fn into_protobuf(self, registry: &mut GivenRegistry) -> Result<ValueFormat> {
        let registry = self.registry(registry)?;
        if self.descriptor_file.is_none() && registry.is_none() {
            return Err(DataFusionError::Plan(format!(
                "'{}' 'protobuf' needs the option '{}' (a compiled descriptor set, with '{}') \
                 or 'schema.registry.url' (a registry whose schema ids frame the {}s)",
                self.part.option("format"),
                self.part.option("protobuf.descriptorFile"),
                self.part.option("protobuf.message"),
                self.part.name(),
            )));
        }
        Ok(ValueFormat::Protobuf(ProtobufOptions {
            subject: self.naming(),
            descriptor_file: self.descriptor_file,
            message: self.message,
            registry,
        }))
    }

    /// The registry, when one is given; fails when the subject is given without one.
    fn registry(&self, registry: &mut GivenRegistry) -> Result<Option<RegistryOptions>> {
        let options = registry.options();
        if options.is_none() {
            let needing = [
                (self.subject.is_some(), self.part.option("subject")),
                (
                    self.strategy.is_some(),
                    self.part.strategy_option().to_string(),
                ),
            ];
            if let Some((_, name)) = needing.iter().find(|(given, _)| *given) {
                return Err(DataFusionError::Plan(format!(
                    "option '{name}' needs 'schema.registry.url'"
                )));
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::kafka::options::KafkaTableOptions;

    fn parse(pairs: &[(&str, &str)], declared: bool) -> Result<KafkaTableOptions> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.insert("subscribe".to_string(), "orders".to_string());
        KafkaTableOptions::parse(&map, declared, Some("localhost:9092"))
    }

    fn error(pairs: &[(&str, &str)], declared: bool) -> String {
        parse(pairs, declared).unwrap_err().to_string()
    }

    #[test]
    fn key_fields_and_value_fields_include() {
        let o = parse(
            &[
                ("format", "json"),
                ("key.format", "JSON"),
                ("key.fields", "user_id; item_id"),
            ],
            true,
        )
        .unwrap();
        let key = o.key.unwrap();
        assert_eq!(key.format, ValueFormat::Json);
        assert_eq!(key.fields, ["user_id", "item_id"]);
        assert!(key.value_includes_key);
        let o = parse(
            &[
                ("format", "json"),
                ("key.format", "string"),
                ("key.fields", "user_id"),
                ("value.fields-include", "except_key"),
            ],
            true,
        )
        .unwrap();
        let key = o.key.unwrap();
        assert_eq!(key.format, ValueFormat::RawValue);
        assert!(!key.value_includes_key);
        assert_eq!(parse(&[("format", "json")], true).unwrap().key, None);
    }

    #[test]
    fn key_options_that_do_not_fit_are_refused() {
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, &'a str);
        let cases: [Case; 9] = [
            (
                &[("format", "json"), ("key.format", "json")],
                true,
                "'key.format' 'json' needs 'key.fields'",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "raw"),
                    ("key.fields", "a,b"),
                ],
                true,
                "holds one column, but 'key.fields' names 2",
            ),
            (
                &[("format", "json"), ("key.fields", "a")],
                true,
                "option 'key.fields' only applies with 'key.format'",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "json"),
                    ("key.fields", "a"),
                    ("value.fields-include", "SOME"),
                ],
                true,
                "expected ALL or EXCEPT_KEY",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "xml"),
                    ("key.fields", "a"),
                ],
                true,
                "expected raw, string, json, avro or protobuf",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "json"),
                    ("key.fields", "a"),
                    ("key.avroSchema", "\"long\""),
                ],
                true,
                "option 'key.avroSchema' only applies to 'key.format' 'avro'",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "avro"),
                    ("key.fields", "a"),
                ],
                true,
                "'key.format' 'avro' needs the option 'key.avroSchema'",
            ),
            (
                &[("key.format", "json"), ("key.fields", "a")],
                false,
                "needs the values' 'format' too",
            ),
            (
                &[
                    ("format", "json"),
                    ("key.format", "json"),
                    ("key.fields", "a;a"),
                ],
                true,
                "names column 'a' twice",
            ),
        ];
        for (pairs, declared, expected) in cases {
            let e = error(pairs, declared);
            assert!(e.contains(expected), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn subjects_are_named_by_confluents_strategies() {
        let naming = |strategy| SubjectNaming {
            given: None,
            strategy,
            part: RecordPart::Value,
        };
        let record = Some("shop.Order");
        let topic = Some("orders");
        assert_eq!(
            naming(SubjectStrategy::TopicName).subject(topic, record),
            Some("orders-value".to_string())
        );
        assert_eq!(
            naming(SubjectStrategy::RecordName).subject(None, record),
            Some("shop.Order".to_string())
        );
        assert_eq!(
            naming(SubjectStrategy::TopicRecordName).subject(topic, record),
            Some("orders-shop.Order".to_string())
        );
        assert_eq!(
            naming(SubjectStrategy::TopicRecordName).subject(None, record),
            None
        );
        assert_eq!(
            naming(SubjectStrategy::RecordName).subject(topic, None),
            None
        );

        let o = parse(
            &[
                ("format", "protobuf"),
                ("schema.registry.url", "http://r:8081"),
                (
                    "value.subject.name.strategy",
                    "io.confluent.kafka.serializers.subject.RecordNameStrategy",
                ),
                ("key.format", "avro"),
                ("key.subject.name.strategy", "topicrecordnamestrategy"),
            ],
            false,
        )
        .unwrap();
        match (&o.format, &o.key.unwrap().format) {
            (ValueFormat::Protobuf(value), ValueFormat::Avro(key)) => {
                assert_eq!(value.subject.strategy, SubjectStrategy::RecordName);
                assert_eq!(key.subject.strategy, SubjectStrategy::TopicRecordName);
            }
            other => panic!("{other:?}"),
        }
        for (pairs, expected) in [
            (
                vec![
                    ("format", "avro"),
                    ("schema.registry.url", "http://r:8081"),
                    ("subject", "s"),
                    ("value.subject.name.strategy", "RecordNameStrategy"),
                ],
                "options 'subject' and 'value.subject.name.strategy' contradict each other",
            ),
            (
                vec![
                    ("format", "avro"),
                    ("schema.registry.url", "http://r:8081"),
                    ("value.subject.name.strategy", "NameStrategy"),
                ],
                "expected TopicNameStrategy, RecordNameStrategy or TopicRecordNameStrategy",
            ),
            (
                vec![
                    ("format", "json"),
                    ("value.subject.name.strategy", "RecordNameStrategy"),
                ],
                "option 'value.subject.name.strategy' only applies to 'format' 'avro' and \
                 'protobuf'",
            ),
            (
                vec![
                    ("format", "avro"),
                    ("avroSchema", "\"long\""),
                    ("value.subject.name.strategy", "RecordNameStrategy"),
                ],
                "option 'value.subject.name.strategy' needs 'schema.registry.url'",
            ),
        ] {
            let e = error(&pairs, true);
            assert!(e.contains(expected), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn the_registry_serves_keys_and_values() {
        let o = parse(
            &[
                ("format", "json"),
                ("key.format", "avro"),
                ("schema.registry.url", "http://registry:8081"),
                ("key.subject", "orders-key-v2"),
            ],
            true,
        )
        .unwrap();
        match o.key.unwrap().format {
            ValueFormat::Avro(avro) => {
                assert!(avro.registry.is_some());
                assert_eq!(avro.subject.given.as_deref(), Some("orders-key-v2"));
                assert_eq!(avro.part(), RecordPart::Key);
            }
            other => panic!("{other:?}"),
        }
        let e = error(
            &[("format", "json"), ("schema.registry.url", "http://r:8081")],
            true,
        );
        assert!(
            e.contains("'schema.registry.url' only applies to 'format' or 'key.format'"),
            "{e}"
        );
        let e = error(
            &[
                ("format", "avro"),
                (
                    "avroSchema",
                    "{\"type\":\"record\",\"name\":\"r\",\"fields\":[]}",
                ),
                ("schema.registry.max.retries", "2"),
            ],
            true,
        );
        assert!(e.contains("needs 'schema.registry.url'"), "{e}");
        let e = error(
            &[
                ("format", "json"),
                ("key.format", "json"),
                ("key.fields", "a"),
            ],
            false,
        );
        assert!(e.contains("declares no columns"), "{e}");
        let e = error(
            &[
                ("format", "avro"),
                ("schema.registry.url", "http://r:8081"),
                ("key.format", "json"),
                ("key.fields", "a"),
            ],
            false,
        );
        assert!(
            e.contains("'key.format' 'json' needs declared columns"),
            "{e}"
        );
        assert_eq!(RecordPart::Key.default_subject("orders"), "orders-key");
    }
}
