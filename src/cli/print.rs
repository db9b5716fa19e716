//! Printing statement results as aligned tables, CSV or JSON lines, and the summary line that
//! follows each (rows, time, what was read from Kafka).

use std::io::Write;
use std::sync::Arc;

use arrow::util::pretty::pretty_format_batches_with_schema;
use clap::ValueEnum;

use crate::engine::QueryResult;
use crate::error::{Error, Result};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row and line.
    Json,
}

/// Writes the rows of `result` (nothing for a statement without rows).
pub fn write_rows(result: &QueryResult, format: OutputFormat, out: &mut dyn Write) -> Result<()> {
    if result.schema.fields().is_empty() {
        return Ok(());
    }
    let arrow = |e: arrow::error::ArrowError| Error::DataFusion(e.into());
    match format {
        OutputFormat::Table => {
            let table =
                pretty_format_batches_with_schema(Arc::clone(&result.schema), &result.batches)
                    .map_err(arrow)?;
            writeln!(out, "{table}")?;
        }
        OutputFormat::Csv => {
            let mut writer = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if result.batches.is_empty() {
                writer
                    .write(&arrow::array::RecordBatch::new_empty(Arc::clone(
                        &result.schema,
                    )))
                    .map_err(arrow)?;
            }
            for batch in &result.batches {
                writer.write(batch).map_err(arrow)?;
            }
        }
        OutputFormat::Json => {
            let mut writer = arrow_json::LineDelimitedWriter::new(&mut *out);
            for batch in &result.batches {
                writer.write(batch).map_err(arrow)?;
            }
            writer.finish().map_err(arrow)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The line (or lines) that follow a result: its message or row count, the time taken, what was
/// read from Kafka, and a note when a stream was read as a snapshot.
pub fn summary(result: &QueryResult) -> String {
    let seconds = result.elapsed.as_secs_f64();
    let mut text = match &result.message {
        Some(message) => format!("{message} ({seconds:.3} s)"),
        None if result.schema.fields().is_empty() => format!("OK ({seconds:.3} s)"),
        None => {
            let rows = result.row_count();
            let plural = if rows == 1 { "" } else { "s" };
            format!("{rows} row{plural} in {seconds:.3} s")
        }
    };
    let kafka = &result.kafka;
    if kafka.ranges > 0 {
        text.push_str(&format!(
            "; read {} Kafka record(s) from {} offset range(s)",
            kafka.records_fetched, kafka.ranges
        ));
    }
    if kafka.malformed_records > 0 {
        text.push_str(&format!(
            "; {} record(s) did not decode (see the table's 'mode')",
            kafka.malformed_records
        ));
    }
    text.push('.');
    for table in &kafka.snapshot_tables {
        text.push_str(&format!(
            "\nNote: '{table}' is a stream (no endingOffsets): this read a snapshot up to its \
             latest offsets at query start."
        ));
    }
    text
}
