//! The rows of one write, held in memory until the transaction commits, so that a write can be
//! retried on a new connection, and so that a refused row can be shown by its values.

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

/// Rows to write, in order.
#[derive(Debug, Default)]
pub struct Rows {
    batches: Vec<RecordBatch>,
    count: usize,
}

/// How many characters of a value a message shows.
const SHOWN_VALUE_CHARS: usize = 40;

impl Rows {
    /// Reads the whole stream.
    pub async fn collect(mut data: SendableRecordBatchStream) -> Result<Rows> {
        let mut rows = Rows::default();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() > 0 {
                rows.count += batch.num_rows();
                rows.batches.push(batch);
            }
        }
        Ok(rows)
    }

    /// Rows held from these record batches.
    #[cfg(test)]
    pub fn from_batches(batches: Vec<RecordBatch>) -> Rows {
        let count = batches.iter().map(RecordBatch::num_rows).sum();
        Rows { batches, count }
    }

    /// The record batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Row `row` as `name=value, …` over `columns` (indexes), values cut to a readable length.
    pub fn show(&self, row: usize, columns: &[usize]) -> String {
        let mut rest = row;
        for batch in &self.batches {
            if rest >= batch.num_rows() {
                rest -= batch.num_rows();
                continue;
            }
            let options = FormatOptions::default().with_null("NULL");
            let schema = batch.schema();
            let shown: Vec<String> = columns
                .iter()
                .filter(|c| **c < batch.num_columns())
                .map(|c| {
                    let value = ArrayFormatter::try_new(batch.column(*c).as_ref(), &options)
                        .map(|f| f.value(rest).to_string())
                        .unwrap_or_else(|_| "?".to_string());
                    let value = if value.chars().count() > SHOWN_VALUE_CHARS {
                        let cut: String = value.chars().take(SHOWN_VALUE_CHARS).collect();
                        format!("{cut}…")
                    } else {
                        value
                    };
                    format!("{}={value}", schema.field(*c).name())
                })
                .collect();
            return shown.join(", ");
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn rows_show_across_batches() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<i64>, names: Vec<Option<&str>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(names)),
                ],
            )
            .unwrap()
        };
        let long = "x".repeat(100);
        let rows = Rows::from_batches(vec![
            batch(vec![1, 2], vec![Some("a"), None]),
            batch(vec![3], vec![Some(long.as_str())]),
        ]);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.show(1, &[0, 1]), "id=2, name=NULL");
        assert_eq!(rows.show(2, &[0]), "id=3");
        assert!(rows.show(2, &[1]).ends_with("x…"));
        assert_eq!(rows.show(7, &[0]), "");
    }
}
