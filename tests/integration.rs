//! Integration tests: weir against librdkafka's mock cluster speaking the real Kafka protocol,
//! in process and as a separate `weir broker` process, plus the `weir` command itself.

mod integration {
    pub mod avro;
    pub mod cli;
    pub mod common;
    pub mod crash;
    pub mod crash_delta;
    pub mod crash_event_time;
    pub mod crash_jdbc;
    pub mod crash_kafka;
    pub mod delta;
    pub mod docs;
    pub mod event_time;
    pub mod formats;
    pub mod jdbc;
    pub mod kafka_sink;
    pub mod keys;
    pub mod nexmark;
    pub mod protobuf;
    pub mod real_kafka;
    pub mod registry;
    pub mod s3;
    pub mod sink;
    pub mod source;
    pub mod spark_semantics;
    pub mod streaming;
    pub mod web;
}
