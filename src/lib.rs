//! weir: a streaming SQL engine for Apache Kafka, on Apache DataFusion and Arrow.
//!
//! Declare Kafka topics as tables with Spark's option names, and query exact offset ranges with
//! SQL, from the `weir` command (REPL, `.sql` runner, one-shot `-c`) or from Rust through
//! [`Engine`]:
//!
//! ```sql
//! CREATE EXTERNAL TABLE bids (auction BIGINT, price BIGINT)
//!   STORED AS KAFKA
//!   OPTIONS ('subscribe' 'bids', 'format' 'json', 'endingOffsets' 'latest');
//! SELECT auction, max(price) FROM bids GROUP BY auction;
//! ```
//!
//! The modules: [`kafka`] (options, offset planning, the scan and the sinks), [`format`] (value
//! decoding and encoding), [`jdbc`] (PostgreSQL, MySQL/MariaDB and SQLite tables), [`delta`]
//! (Delta Lake tables, written exactly once), [`stream`]
//! (streaming queries: the batch loop, watermarks, stateful sites), [`checkpoint`], [`sinks`],
//! [`window`] (window table functions), [`state`] (aggregate state), [`statements`] (splitting
//! scripts and weir's own statements), [`web`] (the web UI, its JSON API and metrics),
//! [`embedded`] (the in-process broker), [`engine`] (the API), [`cli`] (the command).

#![warn(missing_docs, missing_debug_implementations, clippy::clone_on_ref_ptr)]

mod admin;
pub mod checkpoint;
pub mod cli;
pub mod delta;
pub mod embedded;
pub mod engine;
pub mod error;
pub mod format;
pub mod generate;
mod insert;
pub mod jdbc;
pub mod kafka;
pub mod queries;
mod redact;
pub mod sinks;
pub mod state;
pub mod statements;
pub mod storage;
pub mod stream;
mod system_tables;
pub mod web;
pub mod window;

pub use engine::{Engine, EngineBuilder, KafkaReadReport, QueryResult};
pub use error::{Error, Result};
