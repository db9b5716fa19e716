//! The error type of weir's public API, and how its errors read.
//!
//! Code that runs inside DataFusion traits (table providers, execution plans, sinks) reports
//! `DataFusionError`s with a message that names the option, topic, partition or offset at fault;
//! this type carries those out of the engine together with errors of weir's own layers. Its
//! messages are for people: a syntax error says where and what was expected, and DataFusion's
//! category prefixes ("Error during planning: ") are left out; [`Error::causes`] keeps the
//! underlying errors' own words for a verbose display.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// Errors returned by [`crate::Engine`] and the command-line tools.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQL text could not be split into statements, or a statement is not one weir runs.
    #[error("{0}")]
    Sql(String),
    /// Parsing, planning or executing a statement failed.
    #[error("{}", describe_datafusion_error(.0))]
    DataFusion(#[from] DataFusionError),
    /// A Kafka operation of weir's own (embedded broker, topic creation) failed.
    #[error("Kafka error: {0}")]
    Kafka(String),
    /// A streaming query's checkpoint is missing, foreign, corrupt or taken.
    #[error("{0}")]
    Checkpoint(String),
    /// A streaming query failed or was misconfigured.
    #[error("{0}")]
    Streaming(String),
    /// Reading a file or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with weir's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The errors under this one, outermost first, each in its own library's words (what
    /// `weir --verbose` prints under the message).
    pub fn causes(&self) -> Vec<String> {
        let mut causes: Vec<String> = vec![];
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            let text = error.to_string();
            if causes.last() != Some(&text) {
                causes.push(text);
            }
            cause = error.source();
        }
        causes
    }
}

/// Renders a DataFusion error without the wrappers and category prefixes DataFusion adds on its
/// way up (`External error: …`, `Error during planning: …`), so that users read weir's own
/// message, and a parser error as a syntax error with its position.
fn describe_datafusion_error(error: &DataFusionError) -> String {
    match error {
        DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(df) => describe_datafusion_error(df),
            None => inner.to_string(),
        },
        DataFusionError::Context(context, inner) => {
            format!("{context}: {}", describe_datafusion_error(inner))
        }
        DataFusionError::Shared(inner) => describe_datafusion_error(inner),
        DataFusionError::Diagnostic(_, inner) => describe_datafusion_error(inner),
        DataFusionError::SQL(parser, _) => syntax_error(parser),
        DataFusionError::Plan(_)
        | DataFusionError::Execution(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::SchemaError(..) => error.message().into_owned(),
        DataFusionError::NotImplemented(message) => format!("not supported: {message}"),
        other => other.to_string(),
    }
}

/// A parser error as a person reads it:
/// `syntax error at line 1, column 1: expected an SQL statement, found 'SELEC'`.
pub fn syntax_error(error: &ParserError) -> String {
    let message = match error {
        ParserError::TokenizerError(message) | ParserError::ParserError(message) => message,
        ParserError::RecursionLimitExceeded => {
            return "syntax error: the statement is nested too deeply".to_string();
        }
    };
    let (what, position) = match message.rsplit_once(" at Line: ") {
        Some((what, position)) => match position.split_once(", Column: ") {
            Some((line, column)) => (what, format!(" at line {line}, column {column}")),
            None => (message.as_str(), String::new()),
        },
        None => (message.as_str(), String::new()),
    };
    let what = match what
        .strip_prefix("Expected: ")
        .and_then(|w| w.rsplit_once(", found: "))
    {
        Some((expected, "EOF")) => format!("expected {expected}, found the end of the statement"),
        Some((expected, found)) => format!("expected {expected}, found '{found}'"),
        None => lowercase_first(what),
    };
    format!("syntax error{position}: {what}")
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;

    use super::*;

    fn parse_error(sql: &str) -> String {
        let error = DFParserBuilder::new(sql)
            .build()
            .and_then(|mut parser| parser.parse_statements())
            .map(|_| ())
            .unwrap_err();
        Error::from(error).to_string()
    }

    #[test]
    fn syntax_errors_say_where_and_what_was_expected() {
        assert_eq!(
            parse_error("SELEC 1"),
            "syntax error at line 1, column 1: expected an SQL statement, found 'SELEC'"
        );
        assert_eq!(
            parse_error("SELECT 1 +"),
            "syntax error: expected an expression, found the end of the statement"
        );
        assert_eq!(
            parse_error("SELECT 'open"),
            "syntax error at line 1, column 8: unterminated string literal"
        );
    }

    #[test]
    fn datafusions_prefixes_are_left_out_and_kept_among_the_causes() {
        let error = Error::from(DataFusionError::Plan("table 'nope' not found".to_string()));
        assert_eq!(error.to_string(), "table 'nope' not found");
        assert_eq!(
            error.causes(),
            vec!["Error during planning: table 'nope' not found"]
        );
        let wrapped = Error::from(DataFusionError::External(Box::new(
            DataFusionError::Execution("broker unreachable".to_string()),
        )));
        assert_eq!(wrapped.to_string(), "broker unreachable");
    }
}
