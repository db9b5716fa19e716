//! The options of a Kafka table: their names (Spark's, for the options Spark has), defaults and
//! meanings, and their parsing into a validated [`KafkaTableOptions`].
//!
//! Option names are matched without regard to case, as in Spark. Every `kafka.*` key is passed to
//! librdkafka, which validates it when the table is created; the few librdkafka keys that weir
//! owns itself are refused with a pointer to the option that replaces them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use rdkafka::ClientConfig;
use regex::Regex;

use super::formats::{KeyFormat, ValueFormat, parse_formats};
use crate::redact;

/// One documented option of a Kafka table.
#[derive(Debug, Clone, Copy)]
pub struct OptionDoc {
    /// The option's name, as written in `OPTIONS (...)`.
    pub name: &'static str,
    /// Its default, in words.
    pub default: &'static str,
    /// What it does.
    pub meaning: &'static str,
}

/// Every option a Kafka table accepts besides the `kafka.*` keys. `docs/kafka-options.md`
/// documents each of them; a test keeps the two in step.
pub const KAFKA_TABLE_OPTIONS: &[OptionDoc] = &[
    OptionDoc {
        name: "subscribe",
        default: "none",
        meaning: "Comma-separated list of topics to read. Exactly one of subscribe, subscribePattern and assign is required.",
    },
    OptionDoc {
        name: "subscribePattern",
        default: "none",
        meaning: "Regular expression; every topic whose whole name matches it is read.",
    },
    OptionDoc {
        name: "assign",
        default: "none",
        meaning: r#"JSON naming the partitions to read, for example {"orders":[0,1]}."#,
    },
    OptionDoc {
        name: "startingOffsets",
        default: "latest for streaming queries, earliest for bounded queries and snapshots",
        meaning: r#"Where reading starts: earliest, latest, or JSON naming every partition read, such as {"orders":{"0":23,"1":-2}} (-2 is earliest, -1 latest). A streaming query resolves it once, when it first starts, and keeps the result in its checkpoint. A bounded query refuses latest (it would read nothing), as Spark does."#,
    },
    OptionDoc {
        name: "endingOffsets",
        default: "none (the table is a stream)",
        meaning: r#"Where reading stops (exclusive): latest, or JSON naming every partition read, such as {"orders":{"0":50,"1":-1}} (-1 is latest). Setting it makes the table bounded."#,
    },
    OptionDoc {
        name: "startingTimestamp",
        default: "none",
        meaning: "Milliseconds since the epoch; every partition starts at its first record with a timestamp at or after it. Replaces startingOffsets.",
    },
    OptionDoc {
        name: "startingOffsetsByTimestamp",
        default: "none",
        meaning: r#"JSON of start timestamps naming every partition read, such as {"orders":{"0":1700000000000}}. Replaces startingOffsets."#,
    },
    OptionDoc {
        name: "endingTimestamp",
        default: "none",
        meaning: "Milliseconds since the epoch; every partition ends before its first record with a timestamp at or after it (latest when there is none). Makes the table bounded.",
    },
    OptionDoc {
        name: "endingOffsetsByTimestamp",
        default: "none",
        meaning: "JSON of end timestamps naming every partition read, like startingOffsetsByTimestamp. Makes the table bounded.",
    },
    OptionDoc {
        name: "startingOffsetsByTimestampStrategy",
        default: "error",
        meaning: "What a starting timestamp with no record at or after it does: error fails the query, latest starts that partition at its latest offset.",
    },
    OptionDoc {
        name: "failOnDataLoss",
        default: "true",
        meaning: "Whether a starting offset that is no longer on the broker (deleted by retention) fails the query (true) or is logged and skipped to the earliest available offset (false).",
    },
    OptionDoc {
        name: "includeHeaders",
        default: "false",
        meaning: "Whether records' headers are read into a headers column (list of key/value structs).",
    },
    OptionDoc {
        name: "minPartitions",
        default: "none",
        meaning: "Minimum number of parallel readers; large offset ranges are split so that at least this many exist.",
    },
    OptionDoc {
        name: "groupIdPrefix",
        default: "weir",
        meaning: "Prefix of the consumer group id weir generates for its readers (weir never commits offsets to it).",
    },
    OptionDoc {
        name: "format",
        default: "raw without declared columns",
        meaning: "How record values are decoded into the declared columns and encoded from them: json, csv (reading only), avro (with avroSchema or schema.registry.url), protobuf (with protobuf.descriptorFile or schema.registry.url), or raw (one declared string or binary column holding the value).",
    },
    OptionDoc {
        name: "avroSchema",
        default: "none",
        meaning: "With 'format' 'avro': an Avro record schema as JSON (Spark's jsonFormatSchema). Without a registry, values are plain Avro binary written with this schema. With a registry, it is the reader schema that each record's writer schema is resolved against, and the schema written records carry. Declared columns are its fields, found by name; without declared columns the table's columns are its fields.",
    },
    OptionDoc {
        name: "schema.registry.url",
        default: "none",
        meaning: "With 'format' 'avro' or 'protobuf': a Confluent-compatible Schema Registry. Values are framed (magic byte 0, a 4-byte schema id, Protobuf's message indexes, the payload); each id's schema is fetched once. Writing registers the table's schema under the subject, or uses the subject's latest.",
    },
    OptionDoc {
        name: "subject",
        default: "named by value.subject.name.strategy: <topic>-value",
        meaning: "The registry subject of the values (Confluent's topic name strategy by default): its latest schema is the reader schema and gives the columns when none are declared; writing registers under it.",
    },
    OptionDoc {
        name: "schema.registry.basic.auth.user.info",
        default: "none",
        meaning: "USER:PASSWORD for the registry's HTTP basic auth; never shown.",
    },
    OptionDoc {
        name: "schema.registry.ssl.ca.location",
        default: "the system's roots",
        meaning: "A PEM file of the CA that signed an https:// registry's certificate.",
    },
    OptionDoc {
        name: "schema.registry.request.timeout.ms",
        default: "10000",
        meaning: "How long one registry request may take.",
    },
    OptionDoc {
        name: "schema.registry.max.retries",
        default: "3",
        meaning: "How many more times a registry request that failed in transit or with a 5xx answer is tried, with a growing pause.",
    },
    OptionDoc {
        name: "protobuf.descriptorFile",
        default: "none",
        meaning: "With 'format' 'protobuf': a compiled descriptor set (protoc --include_imports --descriptor_set_out) holding the values' message type (Spark's descFilePath). With a registry, writing registers its file under the subject.",
    },
    OptionDoc {
        name: "protobuf.message",
        default: "the one message of the subject's latest schema",
        meaning: "With 'format' 'protobuf': the full name of the values' message type (such as shop.Order); its fields are the table's columns.",
    },
    OptionDoc {
        name: "value.subject.name.strategy",
        default: "TopicNameStrategy",
        meaning: "With a registry and no 'subject': how the values' subject is named, as Confluent's serializers do. TopicNameStrategy: <topic>-value; RecordNameStrategy: the full name of the Avro record (avroSchema's, else the table's name made an Avro name, with _key for keys) or Protobuf message; TopicRecordNameStrategy: <topic>-<that full name>.",
    },
    OptionDoc {
        name: "key.format",
        default: "none (keys are the binary _key column)",
        meaning: "How record keys hold declared columns, as in Flink: raw or string (one column holding the key's bytes or UTF-8 text), json, avro or protobuf (the key.fields columns as one record). The key options are the value options with a key. prefix: key.avroSchema, key.protobuf.descriptorFile, key.protobuf.message, key.subject; the registry options are shared.",
    },
    OptionDoc {
        name: "key.fields",
        default: "the fields of the key's schema (avro, protobuf); required otherwise",
        meaning: "With 'key.format': the declared columns the key holds, in order, separated by ';' (as in Flink) or ','. Reading takes them from the key; writing encodes them into it.",
    },
    OptionDoc {
        name: "value.fields-include",
        default: "ALL",
        meaning: "With 'key.format': whether values hold every declared column, the key's too (ALL, Flink's default), or only the columns that are not in the key (EXCEPT_KEY).",
    },
    OptionDoc {
        name: "key.avroSchema",
        default: "none",
        meaning: "With 'key.format' 'avro': the keys' Avro schema as JSON, as avroSchema is for values.",
    },
    OptionDoc {
        name: "key.protobuf.descriptorFile",
        default: "none",
        meaning: "With 'key.format' 'protobuf': a compiled descriptor set holding the keys' message type, as protobuf.descriptorFile is for values.",
    },
    OptionDoc {
        name: "key.protobuf.message",
        default: "the one message of the key subject's latest schema",
        meaning: "With 'key.format' 'protobuf': the full name of the keys' message type.",
    },
    OptionDoc {
        name: "key.subject",
        default: "named by key.subject.name.strategy: <topic>-key",
        meaning: "The registry subject of the keys (Confluent's topic name strategy by default), as subject is for values.",
    },
    OptionDoc {
        name: "key.subject.name.strategy",
        default: "TopicNameStrategy",
        meaning: "With a registry and no 'key.subject': how the keys' subject is named, as value.subject.name.strategy does for values (TopicNameStrategy: <topic>-key).",
    },
    OptionDoc {
        name: "mode",
        default: "FAILFAST",
        meaning: "What a value that does not decode does: FAILFAST fails the query naming its topic, partition and offset; DROPMALFORMED skips it (counted); PERMISSIVE keeps it with null columns (counted).",
    },
    OptionDoc {
        name: "csv.delimiter",
        default: ",",
        meaning: "Field delimiter of csv values (one character).",
    },
    OptionDoc {
        name: "topic",
        default: "the subscribed topic, when there is exactly one",
        meaning: "Topic that INSERT and streaming queries write every record to, overriding a topic column (as in Spark). Without it, records go to their topic column's value, else to the one subscribed topic.",
    },
    OptionDoc {
        name: "watermark",
        default: "none",
        meaning: "Streaming queries: each row's event-time watermark candidate, a SQL expression over the declared columns, usually `ts - INTERVAL '5' SECOND`; the query's watermark is the minimum over active partitions of the largest candidate read.",
    },
    OptionDoc {
        name: "watermarkIdleTimeout",
        default: "none",
        meaning: "Streaming queries: a partition that brought no rows for this long (such as 30s) stops holding the watermark back until it brings rows again.",
    },
    OptionDoc {
        name: "transactional",
        default: "auto: true where the brokers have transactions",
        meaning: "Streaming queries writing to the table: true makes each batch one Kafka transaction (transactional.id weir-<query id>), so read_committed readers never see part of a batch and a restarted query fences what a killed one still had in flight; false writes without transactions (exactly once all the same, see docs/kafka-sink.md for the window that remains); by default weir uses transactions when the brokers have them.",
    },
    OptionDoc {
        name: "maxOffsetsPerTrigger",
        default: "none",
        meaning: "Streaming queries: at most this many offsets per batch, shared among partitions in proportion to their backlog.",
    },
    OptionDoc {
        name: "maxOffsetsPerPartitionPerTrigger",
        default: "none",
        meaning: "Streaming queries: at most this many offsets of any one partition per batch (for skewed topics).",
    },
    OptionDoc {
        name: "minOffsetsPerTrigger",
        default: "none",
        meaning: "Streaming queries: wait until this many offsets are available, or maxTriggerDelay has passed since the last batch.",
    },
    OptionDoc {
        name: "maxTriggerDelay",
        default: "15m",
        meaning: "Streaming queries: the longest minOffsetsPerTrigger may hold a batch back.",
    },
    OptionDoc {
        name: "kafkaConsumer.pollTimeoutMs",
        default: "120000",
        meaning: "How long a reader waits for the next record of a range it has not finished before failing the query.",
    },
    OptionDoc {
        name: "brokerTimeoutMs",
        default: "30000",
        meaning: "How long weir waits for the broker to answer a metadata, watermark or offset lookup, and for produced records to be acknowledged.",
    },
];

/// librdkafka keys that weir sets itself, with the reason a user may not.
const OWNED_CLIENT_KEYS: &[(&str, &str)] = &[
    ("kafka.auto.offset.reset", "use startingOffsets instead"),
    (
        "kafka.enable.auto.commit",
        "weir tracks offsets itself and never auto-commits",
    ),
    (
        "kafka.enable.partition.eof",
        "weir uses it to detect the end of a range",
    ),
    (
        "kafka.key.deserializer",
        "weir reads keys as bytes; decode them in SQL",
    ),
    (
        "kafka.value.deserializer",
        "use the 'format' option to decode values",
    ),
    (
        "kafka.transactional.id",
        "use 'transactional' 'true'; weir derives the id from the query's checkpoint",
    ),
];

/// The longest a reader's fetch waits on the broker for records, unless `kafka.fetch.wait.max.ms`
/// says otherwise.
pub const FETCH_WAIT_MAX_MS: &str = "10";

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// A partition of a topic.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Which partitions a table reads.
#[derive(Debug, Clone)]
pub enum TopicSelection {
    /// `subscribe`: every partition of these topics.
    Subscribe(Vec<String>),
    /// `subscribePattern`: every partition of the topics whose whole name matches.
    Pattern(Regex),
    /// `assign`: exactly these partitions.
    Assign(BTreeMap<String, Vec<i32>>),
}

/// Offset sentinel meaning "the earliest offset" in offsets JSON, as in Spark.
pub const EARLIEST_SENTINEL: i64 = -2;
/// Offset sentinel meaning "the latest offset" in offsets JSON, as in Spark.
pub const LATEST_SENTINEL: i64 = -1;

/// A position given as offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsSpec {
    /// The earliest offset still on the broker.
    Earliest,
    /// The latest offset (the high watermark, or the last stable offset under read_committed).
    Latest,
    /// Explicit offsets (or the -2/-1 sentinels) for every partition read.
    PerPartition(BTreeMap<TopicPartition, i64>),
}

/// A position given as offsets or as timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionSpec {
    /// By offsets.
    Offsets(OffsetsSpec),
    /// The first record at or after this timestamp (ms), in every partition.
    Timestamp(i64),
    /// The first record at or after a timestamp, per partition (every partition read).
    TimestampPerPartition(BTreeMap<TopicPartition, i64>),
}

/// What a starting timestamp with no record at or after it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampStrategy {
    /// Fail the query.
    Error,
    /// Start the partition at its latest offset.
    Latest,
}

/// Whether a streaming query's batches into the table are Kafka transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transactional {
    /// Always; a broker without transactions fails the query.
    On,
    /// Never.
    Off,
    /// When the brokers have transactions.
    Auto,
}

/// What happens to a value that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedMode {
    /// Fail the query, naming the record.
    FailFast,
    /// Skip the record, counting it.
    DropMalformed,
    /// Keep the record with null declared columns, counting it.
    Permissive,
}

/// The rate and flow options of one source (Spark's, plus a per-partition cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// `maxOffsetsPerTrigger`: at most this many offsets a batch, split by backlog.
    pub max_offsets: Option<i64>,
    /// `maxOffsetsPerPartitionPerTrigger`: at most this many offsets of one partition a batch.
    pub max_per_partition: Option<i64>,
    /// `minOffsetsPerTrigger`: wait for this many offsets, up to `max_trigger_delay`.
    pub min_offsets: Option<i64>,
    /// `maxTriggerDelay`.
    pub max_trigger_delay: Duration,
}

/// Parses a duration such as `15m`, `30 seconds`, `500ms` (a bare number is milliseconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "" | "ms" | "millisecond" | "milliseconds" => value / 1000.0,
        "s" | "sec" | "second" | "seconds" => value,
        "m" | "min" | "minute" | "minutes" => value * 60.0,
        "h" | "hour" | "hours" => value * 3600.0,
        _ => return None,
    };
    if seconds > 0.0 {
        Duration::try_from_secs_f64(seconds).ok()
    } else {
        None
    }
}

/// The validated options of one Kafka table.
#[derive(Debug, Clone)]
pub struct KafkaTableOptions {
    /// Which partitions are read.
    pub topics: TopicSelection,
    /// Where reading starts, when given (the default depends on how the table is read: see
    /// [`KafkaTableOptions::starting_position`]).
    pub starting: Option<PositionSpec>,
    /// Where reading ends; `None` makes the table a stream.
    pub ending: Option<PositionSpec>,
    /// What a starting timestamp with no record at or after it does.
    pub timestamp_strategy: TimestampStrategy,
    /// Whether lost offsets fail the query.
    pub fail_on_data_loss: bool,
    /// Whether headers are read.
    pub include_headers: bool,
    /// Minimum number of parallel readers.
    pub min_partitions: Option<usize>,
    /// Consumer group id of weir's readers.
    pub group_id: String,
    /// How values are decoded.
    pub format: ValueFormat,
    /// How keys hold declared columns, when they do (`key.format`).
    pub key: Option<KeyFormat>,
    /// What a value that does not decode does.
    pub malformed: MalformedMode,
    /// The topic records are written to when they have no topic column value: the `topic`
    /// option, else the one subscribed topic.
    pub sink_topic: Option<String>,
    /// The `topic` option, which overrides a topic column.
    pub topic_option: Option<String>,
    /// Whether streaming queries write each batch in a Kafka transaction.
    pub transactional: Transactional,
    /// The watermark expression, as given.
    pub watermark: Option<String>,
    /// How long a partition without rows may hold the watermark back.
    pub watermark_idle_timeout: Option<Duration>,
    /// How long a reader waits for the next record.
    pub poll_timeout: Duration,
    /// How long weir waits for the broker's answers and acknowledgements.
    pub broker_timeout: Duration,
    /// Rate and flow limits of streaming queries reading the table.
    pub rate: RateLimits,
    /// The `kafka.*` keys, without the prefix, as given.
    pub client: BTreeMap<String, String>,
    /// The options as they may be shown.
    shown: Vec<(String, String)>,
}

impl KafkaTableOptions {
    /// Parses and validates a table's options. `options` maps names (any case) to values;
    /// `has_declared_columns` says whether the table declares its own columns; a missing
    /// `kafka.bootstrap.servers` is filled from `default_bootstrap`.
    pub fn parse(
        options: &HashMap<String, String>,
        has_declared_columns: bool,
        default_bootstrap: Option<&str>,
    ) -> Result<Self> {
        let mut bag = OptionBag::new(options)?;
        let shown = shown_options(options, default_bootstrap);

        let topics = parse_topic_selection(&mut bag)?;
        let starting = parse_position(&mut bag, Side::Starting)?;
        let ending = parse_position(&mut bag, Side::Ending)?;
        if ending.is_some()
            && let Some(start) = &starting
        {
            refuse_latest_start(start)?;
        }
        let timestamp_strategy = match bag.take("startingOffsetsByTimestampStrategy") {
            None => TimestampStrategy::Error,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "error" => TimestampStrategy::Error,
                "latest" => TimestampStrategy::Latest,
                _ => return bad_value("startingOffsetsByTimestampStrategy", &v, "error or latest"),
            },
        };
        let fail_on_data_loss = bag.take_bool("failOnDataLoss", true)?;
        let include_headers = bag.take_bool("includeHeaders", false)?;
        let min_partitions = match bag.take("minPartitions") {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return bad_value("minPartitions", &v, "a positive whole number"),
            },
        };
        let group_id_prefix = bag
            .take("groupIdPrefix")
            .unwrap_or_else(|| "weir".to_string());
        let formats = parse_formats(&mut bag, has_declared_columns)?;
        let malformed = match bag.take("mode") {
            None => MalformedMode::FailFast,
            Some(v) => match v.to_ascii_uppercase().as_str() {
                "FAILFAST" => MalformedMode::FailFast,
                "DROPMALFORMED" => MalformedMode::DropMalformed,
                "PERMISSIVE" => MalformedMode::Permissive,
                _ => return bad_value("mode", &v, "FAILFAST, DROPMALFORMED or PERMISSIVE"),
            },
        };
        let topic_option = bag.take("topic");
        let sink_topic = topic_option.clone().or_else(|| match &topics {
            TopicSelection::Subscribe(list) if list.len() == 1 => Some(list[0].clone()),
            _ => None,
        });
        let transactional = match bag.take("transactional") {
            None => Transactional::Auto,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Transactional::On,
                "false" => Transactional::Off,
                "auto" => Transactional::Auto,
                _ => return bad_value("transactional", &v, "true, false or auto"),
            },
        };
        let watermark = bag.take("watermark");
        if watermark.is_some() && !has_declared_columns {
            return Err(DataFusionError::Plan(
                "option 'watermark' needs declared columns (with 'format' 'json' or 'csv') to \
                 compute event times from"
                    .to_string(),
            ));
        }
        let watermark_idle_timeout = match bag.take("watermarkIdleTimeout") {
            None => None,
            Some(v) => match parse_duration(&v) {
                Some(d) => Some(d),
                None => {
                    return bad_value("watermarkIdleTimeout", &v, "a duration such as 30s or 1m");
                }
            },
        };
        let poll_timeout = bag.take_millis("kafkaConsumer.pollTimeoutMs", 120_000)?;
        let broker_timeout = bag.take_millis("brokerTimeoutMs", 30_000)?;
        let rate = RateLimits {
            max_offsets: bag.take_positive("maxOffsetsPerTrigger")?,
            max_per_partition: bag.take_positive("maxOffsetsPerPartitionPerTrigger")?,
            min_offsets: bag.take_positive("minOffsetsPerTrigger")?,
            max_trigger_delay: match bag.take("maxTriggerDelay") {
                None => Duration::from_secs(15 * 60),
                Some(v) => match parse_duration(&v) {
                    Some(d) => d,
                    None => {
                        return bad_value(
                            "maxTriggerDelay",
                            &v,
                            "a duration such as 15m, 30s or 500ms",
                        );
                    }
                },
            },
        };

        let mut client = bag.take_client_keys()?;
        bag.reject_leftovers()?;

        if !client.contains_key("bootstrap.servers") {
            match default_bootstrap {
                Some(servers) => {
                    client.insert("bootstrap.servers".to_string(), servers.to_string());
                }
                None => {
                    return Err(DataFusionError::Plan(
                        "no Kafka broker given: set the table option 'kafka.bootstrap.servers', \
                         or a session default with SET weir.kafka.bootstrap.servers = '…', the \
                         environment variable WEIR_KAFKA_BOOTSTRAP, or --embedded-kafka"
                            .to_string(),
                    ));
                }
            }
        }
        let group_id = client
            .remove("group.id")
            .unwrap_or_else(|| format!("{group_id_prefix}-{}", unique_suffix()));
        validate_client_keys(&client)?;

        Ok(Self {
            topics,
            starting,
            ending,
            timestamp_strategy,
            fail_on_data_loss,
            include_headers,
            min_partitions,
            group_id,
            format: formats.value,
            key: formats.key,
            malformed,
            sink_topic,
            topic_option,
            transactional,
            watermark,
            watermark_idle_timeout,
            poll_timeout,
            broker_timeout,
            rate,
            client,
            shown,
        })
    }

    /// What the table reads, such as `subscribe orders`, for checkpoint metadata.
    pub fn topics_description(&self) -> String {
        match &self.topics {
            TopicSelection::Subscribe(t) => format!("subscribe {}", t.join(",")),
            TopicSelection::Pattern(p) => format!("subscribePattern {}", p.as_str()),
            TopicSelection::Assign(a) => {
                format!("assign {}", serde_json::to_string(a).unwrap_or_default())
            }
        }
    }

    /// The broker list readers and writers connect to.
    pub fn bootstrap_servers(&self) -> &str {
        self.client
            .get("bootstrap.servers")
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Whether the table has an end (a batch table) or is a stream.
    pub fn is_bounded(&self) -> bool {
        self.ending.is_some()
    }

    /// Where reading starts: the `startingOffsets` (or timestamp) option when given, else
    /// Spark's defaults: latest for a streaming query, earliest for a bounded query or snapshot.
    pub fn starting_position(&self, streaming: bool) -> PositionSpec {
        match &self.starting {
            Some(given) => given.clone(),
            None if streaming => PositionSpec::Offsets(OffsetsSpec::Latest),
            None => PositionSpec::Offsets(OffsetsSpec::Earliest),
        }
    }

    /// librdkafka configuration for weir's readers: the user's keys, then the keys weir owns.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error");
        if !self.client.contains_key("socket.timeout.ms") {
            config.set(
                "socket.timeout.ms",
                self.broker_timeout.as_millis().to_string(),
            );
        }
        // A fetch waiting on the broker holds back partitions resumed or sought meanwhile:
        // keep the wait short (librdkafka's default is 500 ms).
        if !self.client.contains_key("fetch.wait.max.ms") {
            config.set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS);
        }
        config
    }

    /// librdkafka configuration for INSERT's producer: idempotent, placing keyed records with
    /// Kafka's default (murmur2) partitioner as the Java client does, giving up on a record
    /// after `brokerTimeoutMs` unless the user set `kafka.message.timeout.ms`, and sending
    /// without lingering (`linger.ms` 0, as the Java client before Kafka 4.0 that Spark uses): a
    /// batch is produced at once and then waited for, so lingering only adds latency.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .set("partitioner", super::partitioner::LIBRDKAFKA_PARTITIONER)
            .set(
                "message.timeout.ms",
                self.broker_timeout.as_millis().to_string(),
            );
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// librdkafka configuration for a streaming query's transactional producer: a batch's
    /// transaction may last as long as the broker allows by default (15 minutes, Kafka's
    /// `transaction.max.timeout.ms`) rather than librdkafka's one minute, unless
    /// `kafka.transaction.timeout.ms` says otherwise; a large batch (a `once` trigger over a
    /// backlog) would otherwise be aborted by the broker at every attempt.
    pub fn transactional_producer_config(&self, transactional_id: &str) -> ClientConfig {
        let mut config = self.producer_config();
        config.set("transactional.id", transactional_id);
        if !self.client.contains_key("transaction.timeout.ms") {
            config.set("transaction.timeout.ms", "900000");
        }
        config
    }

    /// The one topic the table reads, when it reads exactly one.
    pub fn single_read_topic(&self) -> Option<&str> {
        match &self.topics {
            TopicSelection::Subscribe(list) if list.len() == 1 => Some(&list[0]),
            TopicSelection::Assign(map) if map.len() == 1 => map.keys().next().map(String::as_str),
            _ => None,
        }
    }

    /// The options as given (with their documented names, and secrets redacted), plus the
    /// brokers when they came from the session default; for `\d name`.
    pub fn describe(&self) -> &[(String, String)] {
        &self.shown
    }
}

/// The options as they may be shown: documented names, secrets redacted, sorted.
fn shown_options(
    options: &HashMap<String, String>,
    default_bootstrap: Option<&str>,
) -> Vec<(String, String)> {
    let mut shown: Vec<(String, String)> = options
        .iter()
        .map(|(key, value)| {
            let name = KAFKA_TABLE_OPTIONS
                .iter()
                .find(|o| o.name.eq_ignore_ascii_case(key))
                .map_or_else(|| key.to_ascii_lowercase(), |o| o.name.to_string());
            let value = redact::redact_url_credentials(redact::shown_value(&name, value));
            (name, value)
        })
        .collect();
    if !shown.iter().any(|(k, _)| k == "kafka.bootstrap.servers")
        && let Some(servers) = default_bootstrap
    {
        shown.push((
            "kafka.bootstrap.servers".to_string(),
            format!("{servers} (session default)"),
        ));
    }
    shown.sort();
    shown
}

/// A table's options as given, matched without regard to case, taken one by one.
pub(super) struct OptionBag {
    /// Lower-case name → (name as given, value).
    entries: BTreeMap<String, (String, String)>,
}

impl OptionBag {
    fn new(options: &HashMap<String, String>) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for (key, value) in options {
            let lower = key.to_ascii_lowercase();
            if entries
                .insert(lower, (key.clone(), value.clone()))
                .is_some()
            {
                return Err(DataFusionError::Plan(format!(
                    "option '{key}' is given twice (option names ignore case)"
                )));
            }
        }
        Ok(Self { entries })
    }

    pub(super) fn take(&mut self, name: &str) -> Option<String> {
        self.entries
            .remove(&name.to_ascii_lowercase())
            .map(|(_, v)| v)
    }

    fn take_bool(&mut self, name: &str, default: bool) -> Result<bool> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bad_value(name, &v, "true or false"),
            },
        }
    }

    fn take_positive(&mut self, name: &str) -> Result<Option<i64>> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => bad_value(name, &v, "a positive whole number"),
            },
        }
    }

    fn take_millis(&mut self, name: &str, default: u64) -> Result<Duration> {
        match self.take(name) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => bad_value(name, &v, "a positive number of milliseconds"),
            },
        }
    }

    /// Takes every `kafka.*` key, refusing those weir owns.
    fn take_client_keys(&mut self) -> Result<BTreeMap<String, String>> {
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|k| k.starts_with("kafka."))
            .cloned()
            .collect();
        let mut client = BTreeMap::new();
        for lower in keys {
            if let Some((_, reason)) = OWNED_CLIENT_KEYS.iter().find(|(k, _)| *k == lower) {
                return Err(DataFusionError::Plan(format!(
                    "option '{lower}' cannot be set: {reason}"
                )));
            }
            let (_, value) = self.entries.remove(&lower).unwrap_or_default();
            client.insert(lower["kafka.".len()..].to_string(), value);
        }
        Ok(client)
    }

    fn reject_leftovers(&self) -> Result<()> {
        let Some((_, (given, _))) = self.entries.iter().next() else {
            return Ok(());
        };
        let known: Vec<&str> = KAFKA_TABLE_OPTIONS.iter().map(|o| o.name).collect();
        Err(DataFusionError::Plan(format!(
            "unknown Kafka table option '{given}'; the options are {} and any kafka.* key \
             (passed to librdkafka)",
            known.join(", ")
        )))
    }
}

pub(super) fn bad_value<T>(name: &str, value: &str, expected: &str) -> Result<T> {
    let shown = redact::shown_value(name, value);
    Err(DataFusionError::Plan(format!(
        "option '{name}' has the value '{shown}'; expected {expected}"
    )))
}

fn parse_topic_selection(bag: &mut OptionBag) -> Result<TopicSelection> {
    let subscribe = bag.take("subscribe");
    let pattern = bag.take("subscribePattern");
    let assign = bag.take("assign");
    let given: Vec<&str> = [
        subscribe.as_ref().map(|_| "subscribe"),
        pattern.as_ref().map(|_| "subscribePattern"),
        assign.as_ref().map(|_| "assign"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        let what = if given.is_empty() {
            "none is given".to_string()
        } else {
            format!("{} are given", given.join(" and "))
        };
        return Err(DataFusionError::Plan(format!(
            "a Kafka table needs exactly one of the options subscribe, subscribePattern and \
             assign; {what}"
        )));
    }
    if let Some(list) = subscribe {
        let topics: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if topics.is_empty() {
            return bad_value("subscribe", &list, "a comma-separated list of topic names");
        }
        return Ok(TopicSelection::Subscribe(topics));
    }
    if let Some(pattern) = pattern {
        if pattern.trim().is_empty() {
            return bad_value(
                "subscribePattern",
                &pattern,
                "a regular expression matching topic names",
            );
        }
        return match Regex::new(&format!("^(?:{pattern})$")) {
            Ok(regex) => Ok(TopicSelection::Pattern(regex)),
            Err(e) => Err(DataFusionError::Plan(format!(
                "option 'subscribePattern' is not a valid regular expression: {e}"
            ))),
        };
    }
    let json = assign.unwrap_or_default();
    let parsed: BTreeMap<String, Vec<i32>> = serde_json::from_str(&json).map_err(|e| {
        DataFusionError::Plan(format!(
            r#"option 'assign' must be JSON like {{"orders":[0,1]}}: {e}"#
        ))
    })?;
    if parsed.values().all(Vec::is_empty) {
        return bad_value("assign", &json, "at least one partition");
    }
    Ok(TopicSelection::Assign(parsed))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Starting,
    Ending,
}

impl Side {
    fn offsets_name(self) -> &'static str {
        match self {
            Side::Starting => "startingOffsets",
            Side::Ending => "endingOffsets",
        }
    }
    fn timestamp_name(self) -> &'static str {
        match self {
            Side::Starting => "startingTimestamp",
            Side::Ending => "endingTimestamp",
        }
    }
    fn by_timestamp_name(self) -> &'static str {
        match self {
            Side::Starting => "startingOffsetsByTimestamp",
            Side::Ending => "endingOffsetsByTimestamp",
        }
    }
}

fn parse_position(bag: &mut OptionBag, side: Side) -> Result<Option<PositionSpec>> {
    let offsets = bag
        .take(side.offsets_name())
        .map(|v| (side.offsets_name(), v));
    let timestamp = bag
        .take(side.timestamp_name())
        .map(|v| (side.timestamp_name(), v));
    let by_timestamp = bag
        .take(side.by_timestamp_name())
        .map(|v| (side.by_timestamp_name(), v));
    let given: Vec<(&str, String)> = [offsets, timestamp, by_timestamp]
        .into_iter()
        .flatten()
        .collect();
    if given.len() > 1 {
        let names: Vec<&str> = given.iter().map(|(n, _)| *n).collect();
        return Err(DataFusionError::Plan(format!(
            "options {} contradict each other: give only one of them",
            names.join(" and ")
        )));
    }
    let Some((name, value)) = given.into_iter().next() else {
        return Ok(None);
    };
    let spec = if name == side.offsets_name() {
        PositionSpec::Offsets(parse_offsets(name, &value, side)?)
    } else if name == side.timestamp_name() {
        PositionSpec::Timestamp(parse_timestamp(name, &value)?)
    } else {
        let timestamps = parse_partition_map(name, &value)?
            .into_iter()
            .map(|(tp, ts)| {
                if ts < 0 {
                    bad_value(name, &value, "timestamps of zero or more milliseconds")
                } else {
                    Ok((tp, ts))
                }
            })
            .collect::<Result<_>>()?;
        PositionSpec::TimestampPerPartition(timestamps)
    };
    Ok(Some(spec))
}

/// A bounded query that starts at the latest offsets reads nothing: Spark refuses it, and so
/// does weir.
pub fn refuse_latest_start(start: &PositionSpec) -> Result<()> {
    let latest_partition = match start {
        PositionSpec::Offsets(OffsetsSpec::Latest) => None,
        PositionSpec::Offsets(OffsetsSpec::PerPartition(offsets)) => {
            match offsets.iter().find(|(_, o)| **o == LATEST_SENTINEL) {
                Some((tp, _)) => Some(tp),
                None => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    let what = latest_partition.map_or_else(
        || "'latest'".to_string(),
        |tp| format!("-1 (latest) for {tp}"),
    );
    Err(DataFusionError::Plan(format!(
        "option 'startingOffsets' is {what}, which a bounded query cannot start from (it would \
         read nothing); use earliest or explicit offsets, or read the topic in a streaming query"
    )))
}

fn parse_timestamp(name: &str, value: &str) -> Result<i64> {
    match value.trim().parse::<i64>() {
        Ok(ts) if ts >= 0 => Ok(ts),
        _ => bad_value(name, value, "milliseconds since the epoch"),
    }
}

fn parse_offsets(name: &str, value: &str, side: Side) -> Result<OffsetsSpec> {
    match value.trim().to_ascii_lowercase().as_str() {
        "earliest" if side == Side::Ending => Err(DataFusionError::Plan(
            "option 'endingOffsets' cannot be 'earliest': a range that ends where the topic \
             starts is always empty; use latest or JSON offsets"
                .to_string(),
        )),
        "earliest" => Ok(OffsetsSpec::Earliest),
        "latest" => Ok(OffsetsSpec::Latest),
        _ => {
            let offsets = parse_partition_map(name, value)?;
            for (tp, offset) in &offsets {
                let allowed = match side {
                    Side::Starting => *offset >= EARLIEST_SENTINEL,
                    Side::Ending => *offset >= LATEST_SENTINEL,
                };
                if !allowed {
                    let sentinels = match side {
                        Side::Starting => "-2 (earliest) or -1 (latest)",
                        Side::Ending => "-1 (latest)",
                    };
                    return Err(DataFusionError::Plan(format!(
                        "option '{name}' gives offset {offset} for {tp}; offsets are 0 or more, \
                         or {sentinels}"
                    )));
                }
            }
            Ok(OffsetsSpec::PerPartition(offsets))
        }
    }
}

/// Parses Spark's `{"topic":{"0":value,…},…}` JSON.
fn parse_partition_map(name: &str, value: &str) -> Result<BTreeMap<TopicPartition, i64>> {
    let parsed: BTreeMap<String, BTreeMap<String, i64>> =
        serde_json::from_str(value).map_err(|e| {
            DataFusionError::Plan(format!(
                r#"option '{name}' must be earliest, latest or JSON like {{"orders":{{"0":23,"1":-2}}}}: {e}"#
            ))
        })?;
    let mut out = BTreeMap::new();
    for (topic, partitions) in parsed {
        for (partition, v) in partitions {
            let partition: i32 = partition.parse().map_err(|_| {
                DataFusionError::Plan(format!(
                    "option '{name}' names partition '{partition}' of topic '{topic}', which is \
                     not a partition number"
                ))
            })?;
            out.insert(TopicPartition::new(topic.clone(), partition), v);
        }
    }
    Ok(out)
}

/// Lets librdkafka check every passed-through key, so that a typo fails at CREATE.
fn validate_client_keys(client: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in client {
        let mut config = ClientConfig::new();
        config.set(key, value);
        if let Err(e) = config.create_native_config() {
            let shown = redact::shown_value(key, value);
            let cause = e.to_string().replace(value.as_str(), shown);
            return Err(DataFusionError::Plan(format!(
                "option 'kafka.{key}' is refused by librdkafka: {cause}"
            )));
        }
    }
    Ok(())
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<KafkaTableOptions> {
        parse_with(pairs, false)
    }

    fn parse_with(pairs: &[(&str, &str)], columns: bool) -> Result<KafkaTableOptions> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        KafkaTableOptions::parse(&map, columns, Some("127.0.0.1:9092"))
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        parse(pairs)
            .expect_err("options should be refused")
            .to_string()
    }

    #[test]
    fn subscribe_defaults() {
        let o = parse(&[("subscribe", "a, b")]).unwrap();
        assert!(matches!(&o.topics, TopicSelection::Subscribe(t) if t == &["a", "b"]));
        assert_eq!(o.starting, None);
        assert_eq!(
            o.starting_position(true),
            PositionSpec::Offsets(OffsetsSpec::Latest),
            "Spark's default for streaming queries"
        );
        assert_eq!(
            o.starting_position(false),
            PositionSpec::Offsets(OffsetsSpec::Earliest),
            "Spark's default for bounded queries"
        );
        assert!(o.ending.is_none());
        assert!(o.fail_on_data_loss);
        assert!(!o.include_headers);
        assert_eq!(o.format, ValueFormat::RawRecord);
        assert_eq!(o.bootstrap_servers(), "127.0.0.1:9092");
        assert!(o.group_id.starts_with("weir-"));
        assert_eq!(
            o.sink_topic, None,
            "two subscribed topics give no default sink topic"
        );
    }

    #[test]
    fn names_ignore_case_and_kafka_keys_pass_through() {
        let o = parse(&[
            ("SUBSCRIBE", "t"),
            ("startingoffsets", "latest"),
            ("kafka.bootstrap.servers", "b:1"),
            ("kafka.isolation.level", "read_committed"),
            ("kafka.group.id", "mine"),
        ])
        .unwrap();
        assert_eq!(o.starting, Some(PositionSpec::Offsets(OffsetsSpec::Latest)));
        assert_eq!(o.bootstrap_servers(), "b:1");
        assert_eq!(o.client.get("isolation.level").unwrap(), "read_committed");
        assert_eq!(o.group_id, "mine");
        assert_eq!(o.sink_topic.as_deref(), Some("t"));
        let o = parse(&[
            ("subscribe", "a,b"),
            ("groupIdPrefix", "etl"),
            ("topic", "b"),
        ])
        .unwrap();
        assert!(o.group_id.starts_with("etl-"), "{}", o.group_id);
        assert_eq!(o.sink_topic.as_deref(), Some("b"));
        assert_eq!(
            o.consumer_config().get("group.id"),
            Some(o.group_id.as_str())
        );
    }

    #[test]
    fn exactly_one_topic_selection() {
        assert!(error(&[]).contains("exactly one of the options subscribe"));
        let e = error(&[("subscribe", "a"), ("assign", r#"{"a":[0]}"#)]);
        assert!(e.contains("subscribe and assign are given"), "{e}");
        let e = error(&[("subscribePattern", "a.*"), ("subscribe", "a")]);
        assert!(e.contains("subscribe and subscribePattern"), "{e}");
    }

    #[test]
    fn pattern_and_assign() {
        let o = parse(&[("subscribePattern", "ord.*")]).unwrap();
        let TopicSelection::Pattern(p) = o.topics else {
            panic!("pattern expected")
        };
        assert!(p.is_match("orders") && !p.is_match("xorders"));
        assert!(error(&[("subscribePattern", "(")]).contains("not a valid regular expression"));
        let e = error(&[("subscribePattern", "")]);
        assert!(e.contains("'subscribePattern' has the value ''"), "{e}");
        let o = parse(&[("assign", r#"{"t":[0,2]}"#)]).unwrap();
        let TopicSelection::Assign(a) = o.topics else {
            panic!("assign expected")
        };
        assert_eq!(a["t"], vec![0, 2]);
        assert!(error(&[("assign", "t:0")]).contains("option 'assign' must be JSON"));
    }

    #[test]
    fn offsets_json_and_sentinels() {
        let o = parse(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":5,"1":-2}}"#),
            ("endingOffsets", r#"{"t":{"0":-1}}"#),
        ])
        .unwrap();
        let Some(PositionSpec::Offsets(OffsetsSpec::PerPartition(offsets))) = &o.starting else {
            panic!("per-partition offsets expected")
        };
        assert_eq!(offsets[&TopicPartition::new("t", 0)], 5);
        assert_eq!(offsets[&TopicPartition::new("t", 1)], EARLIEST_SENTINEL);
        assert!(o.is_bounded());
        let e = error(&[("subscribe", "t"), ("endingOffsets", r#"{"t":{"0":-2}}"#)]);
        assert!(
            e.contains("endingOffsets") && e.contains("-1 (latest)"),
            "{e}"
        );
        let e = error(&[("subscribe", "t"), ("startingOffsets", r#"{"t":{"x":1}}"#)]);
        assert!(e.contains("not a partition number"), "{e}");
    }

    #[test]
    fn a_bounded_table_cannot_start_at_latest() {
        let e = error(&[
            ("subscribe", "t"),
            ("startingOffsets", "latest"),
            ("endingOffsets", "latest"),
        ]);
        assert!(
            e.contains("'startingOffsets' is 'latest', which a bounded query cannot start from"),
            "{e}"
        );
        let e = error(&[
            ("subscribe", "t"),
            ("startingOffsets", r#"{"t":{"0":-2,"1":-1}}"#),
            ("endingOffsets", "latest"),
        ]);
        assert!(e.contains("-1 (latest) for t[1]"), "{e}");
        assert!(
            parse(&[("subscribe", "t"), ("startingOffsets", "latest")]).is_ok(),
            "a stream may start at latest"
        );
    }

    #[test]
    fn contradictions_and_bad_values() {
        let e = error(&[("subscribe", "t"), ("endingOffsets", "earliest")]);
        assert!(e.contains("'endingOffsets' cannot be 'earliest'"), "{e}");
        let e = error(&[
            ("subscribe", "t"),
            ("startingOffsets", "earliest"),
            ("startingTimestamp", "5"),
        ]);
        assert!(
            e.contains("startingOffsets and startingTimestamp contradict"),
            "{e}"
        );
        let e = error(&[("subscribe", "t"), ("failOnDataLoss", "maybe")]);
        assert!(e.contains("'failOnDataLoss' has the value 'maybe'"), "{e}");
        let e = error(&[("subscribe", "t"), ("minPartitions", "0")]);
        assert!(e.contains("minPartitions"), "{e}");
        let e = error(&[("subscribe", "t"), ("startingTimestamp", "yesterday")]);
        assert!(e.contains("startingTimestamp"), "{e}");
        let e = error(&[("subscribe", "t"), ("maxOffsetsPerTrigger", "-5")]);
        assert!(
            e.contains("'maxOffsetsPerTrigger' has the value '-5'"),
            "{e}"
        );
        let e = error(&[("subscribe", "t"), ("maxTriggerDelay", "soon")]);
        assert!(e.contains("maxTriggerDelay"), "{e}");
        let o = parse(&[
            ("subscribe", "t"),
            ("maxOffsetsPerTrigger", "100"),
            ("minOffsetsPerTrigger", "10"),
            ("maxTriggerDelay", "30s"),
        ])
        .unwrap();
        assert_eq!(o.rate.max_offsets, Some(100));
        assert_eq!(o.rate.min_offsets, Some(10));
        assert_eq!(o.rate.max_trigger_delay, Duration::from_secs(30));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        let e = error(&[
            ("subscribe", "t"),
            ("startingOffsetsByTimestampStrategy", "skip"),
        ]);
        assert!(e.contains("error or latest"), "{e}");
    }

    #[test]
    fn unknown_and_owned_keys() {
        let e = error(&[("subscribe", "t"), ("maxOfsetsPerTrigger", "5")]);
        assert!(
            e.contains("unknown Kafka table option 'maxOfsetsPerTrigger'"),
            "{e}"
        );
        let e = error(&[("subscribe", "t"), ("kafka.auto.offset.reset", "earliest")]);
        assert!(e.contains("use startingOffsets"), "{e}");
        let e = error(&[("subscribe", "t"), ("kafka.no.such.key", "1")]);
        assert!(
            e.contains("'kafka.no.such.key' is refused by librdkafka"),
            "{e}"
        );
        let e = error(&[("subscribe", "t"), ("SUBSCRIBE", "u")]);
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn secrets_never_appear_in_errors_or_descriptions() {
        let e = error(&[
            ("subscribe", "t"),
            ("kafka.sasl.password", "hunter2"),
            ("kafka.security.protocol", "bogus"),
        ]);
        assert!(
            e.contains("kafka.security.protocol") && !e.contains("hunter2"),
            "{e}"
        );
        let e = bad_value::<()>("kafka.sasl.password", "hunter2", "x")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let o = parse(&[
            ("subscribe", "t"),
            ("kafka.sasl.password", "hunter2"),
            ("startingoffsets", "latest"),
        ])
        .unwrap();
        let shown = o.describe();
        assert!(
            shown.contains(&(
                "kafka.sasl.password".to_string(),
                redact::REDACTED.to_string()
            )),
            "{shown:?}"
        );
        assert!(
            shown.contains(&("startingOffsets".to_string(), "latest".to_string())),
            "{shown:?}"
        );
        assert!(
            shown.contains(&(
                "kafka.bootstrap.servers".to_string(),
                "127.0.0.1:9092 (session default)".to_string()
            )),
            "{shown:?}"
        );
    }

    #[test]
    fn formats_need_declared_columns() {
        assert!(
            parse_with(&[("subscribe", "t")], true)
                .unwrap_err()
                .to_string()
                .contains("needs the option 'format'")
        );
        assert!(error(&[("subscribe", "t"), ("format", "json")]).contains("declares no columns"));
        let o = parse_with(
            &[
                ("subscribe", "t"),
                ("format", "CSV"),
                ("csv.delimiter", "|"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(o.format, ValueFormat::Csv { delimiter: b'|' });
        let e = parse_with(&[("subscribe", "t"), ("format", "xml")], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("json, csv, avro, protobuf or raw"), "{e}");
        let e = parse_with(&[("subscribe", "t"), ("format", "avro")], true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs the option 'avroSchema'"), "{e}");
        let e = parse_with(
            &[
                ("subscribe", "t"),
                ("format", "json"),
                ("avroSchema", "\"long\""),
            ],
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only applies to 'format' 'avro'"), "{e}");
        let o = parse_with(
            &[
                ("subscribe", "t"),
                ("format", "json"),
                ("mode", "dropmalformed"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(o.malformed, MalformedMode::DropMalformed);
    }

    #[test]
    fn missing_bootstrap_is_explained() {
        let map = [("subscribe".to_string(), "t".to_string())]
            .into_iter()
            .collect();
        let e = KafkaTableOptions::parse(&map, false, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kafka.bootstrap.servers") && e.contains("WEIR_KAFKA_BOOTSTRAP"),
            "{e}"
        );
    }
}
