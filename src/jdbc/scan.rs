//! Reading a JDBC table: a bounded scan (`SELECT <projected columns> FROM table [LIMIT n]`) on
//! a connection of its own, run when the plan executes, its rows decoded into record batches
//! of the declared (projected) schema.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use tokio::sync::mpsc;

use super::backend;
use super::decode::RowDecoder;
use super::location::Location;

/// One scan of a JDBC table.
#[derive(Debug)]
pub struct JdbcScan {
    location: Location,
    /// The database table, for messages.
    table: String,
    sql: String,
    schema: SchemaRef,
}

impl JdbcScan {
    /// A scan running `sql`, whose columns are `schema`'s.
    pub fn new(location: Location, table: String, sql: String, schema: SchemaRef) -> Self {
        Self {
            location,
            table,
            sql,
            schema,
        }
    }
}

impl PartitionStream for JdbcScan {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batch_size = ctx.session_config().batch_size().max(1);
        let (sender, mut receiver) = mpsc::channel(2);
        let location = self.location.clone();
        let sql = self.sql.clone();
        let decoder = RowDecoder::new(
            Arc::clone(&self.schema),
            format!("table {} in {}", self.table, self.location),
        );
        tokio::spawn(async move {
            let result = match decoder {
                Ok(decoder) => {
                    backend::fetch(&location, &sql, decoder, batch_size, sender.clone()).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                let _ = sender.send(Err(e)).await;
            }
        });
        let batches = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}
