//! When a streaming query runs its batches.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::kafka::options::parse_duration;

/// A streaming query's trigger, as in Spark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Start the next batch as soon as the last one ends and data is there (the default).
    AsFastAsPossible,
    /// Start a batch every interval (when data is there).
    ProcessingTime(Duration),
    /// One batch of everything available (rate limits aside), then stop.
    Once,
    /// Everything available at start, in rate-limited batches, then stop.
    AvailableNow,
}

impl Trigger {
    /// Parses `'5 seconds'`, `'processingTime 500 ms'`, `'once'`, `'availableNow'`,
    /// `'default'`.
    pub fn parse(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let bad = || {
            Error::Streaming(format!(
                "trigger '{text}' is not one of: 'default', 'once', 'availableNow', or an \
                 interval such as '5 seconds' or 'processingTime 500 ms'"
            ))
        };
        match lower.as_str() {
            "" | "default" => return Ok(Trigger::AsFastAsPossible),
            "once" => return Ok(Trigger::Once),
            "availablenow" | "available now" => return Ok(Trigger::AvailableNow),
            _ => {}
        }
        let interval = lower.strip_prefix("processingtime").unwrap_or(&lower);
        parse_duration(interval)
            .map(Trigger::ProcessingTime)
            .ok_or_else(bad)
    }
}

impl std::fmt::Display for Trigger {
    /// As the `trigger` option takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::AsFastAsPossible => write!(f, "default"),
            Trigger::ProcessingTime(interval) => {
                write!(f, "processingTime {} ms", interval.as_millis())
            }
            Trigger::Once => write!(f, "once"),
            Trigger::AvailableNow => write!(f, "availableNow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sparks_triggers() {
        assert_eq!(
            Trigger::parse("5 seconds").unwrap(),
            Trigger::ProcessingTime(Duration::from_secs(5))
        );
        assert_eq!(
            Trigger::parse("processingTime 250ms").unwrap(),
            Trigger::ProcessingTime(Duration::from_millis(250))
        );
        assert_eq!(
            Trigger::parse("1 minute").unwrap(),
            Trigger::ProcessingTime(Duration::from_secs(60))
        );
        assert_eq!(Trigger::parse("Once").unwrap(), Trigger::Once);
        assert_eq!(
            Trigger::parse("availableNow").unwrap(),
            Trigger::AvailableNow
        );
        assert_eq!(
            Trigger::parse("default").unwrap(),
            Trigger::AsFastAsPossible
        );
        for bad in ["soon", "0 seconds", "5 fortnights", "-1 s"] {
            assert!(
                Trigger::parse(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("is not one of"),
                "{bad}"
            );
        }
    }
}
