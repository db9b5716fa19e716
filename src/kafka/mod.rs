//! Kafka as SQL tables: options, offset planning, reading exact ranges, and writing records.

pub mod client;
pub mod consumers;
pub mod exactly_once;
pub mod formats;
pub mod layout;
pub mod offsets;
pub mod options;
pub mod partitioner;
pub mod provider;
pub mod pushdown;
pub mod read_progress;
pub mod readback;
pub mod records;
pub mod scan;
pub mod sink;
pub mod transactions;

pub use options::{KAFKA_TABLE_OPTIONS, KafkaTableOptions, OptionDoc, TopicPartition};
pub use provider::{KafkaTable, KafkaTableFactory};
pub use scan::KafkaScanExec;
