//! `weir broker`: an embedded Kafka broker in a process of its own, so that an engine can be
//! killed and restarted while the broker keeps its records.
//!
//! It prints `bootstrap.servers=HOST:PORT` on its first line, then answers commands on standard
//! input, one per line: `create-topic NAME PARTITIONS` (answers `ok` or `error: …`). It stops
//! when standard input closes.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use crate::embedded::EmbeddedKafka;
use crate::error::{Error, Result};

/// Runs the broker until standard input closes.
pub fn run(brokers: i32, topics: &[String]) -> Result<ExitCode> {
    let kafka = EmbeddedKafka::start(brokers)?;
    for spec in topics {
        let (name, partitions) = parse_topic_spec(spec)?;
        kafka.create_topic(name, partitions)?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "bootstrap.servers={}", kafka.bootstrap_servers())?;
    stdout.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            [] => continue,
            ["create-topic", name, partitions] => match partitions.parse::<i32>() {
                Ok(p) => kafka.create_topic(name, p).map(|()| "ok".to_string()),
                Err(_) => Err(Error::Kafka(format!(
                    "'{partitions}' is not a partition count"
                ))),
            },
            _ => Err(Error::Kafka(format!(
                "unknown command '{line}'; try: create-topic NAME PARTITIONS"
            ))),
        };
        match answer {
            Ok(ok) => writeln!(stdout, "{ok}")?,
            Err(e) => writeln!(stdout, "error: {e}")?,
        }
        stdout.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_topic_spec(spec: &str) -> Result<(&str, i32)> {
    let parsed = spec
        .rsplit_once(':')
        .and_then(|(name, p)| Some((name, p.parse::<i32>().ok()?)));
    parsed
        .filter(|(name, p)| !name.is_empty() && *p > 0)
        .ok_or_else(|| Error::Kafka(format!("--topic '{spec}' is not NAME:PARTITIONS")))
}
