//! Rows → Protobuf values for the Kafka sink: each row one message of the table's type, a
//! whole batch into one buffer; bare messages, or framed with the registry id of the message's
//! file (registered from `'protobuf.descriptorFile'`, or the subject's latest) and the
//! message's indexes in it.

use std::sync::Arc;

use arrow::array::{BinaryArray, RecordBatch};
use datafusion::error::{DataFusionError, Result};

use super::protobuf::{ProtobufCodec, encode_rows, frame_prefix, register_file};
use super::protobuf_arrow::RowsAsMessages;
use super::registry::SchemaType;

/// Encodes a table's declared columns as its Protobuf values.
#[derive(Debug)]
pub struct ProtobufWriter {
    codec: Arc<ProtobufCodec>,
    table: String,
    /// What goes before each message: nothing, or the registry framing, once settled.
    prefix: tokio::sync::OnceCell<Vec<u8>>,
}

impl ProtobufWriter {
    /// The writer of `table`'s values; fails when a registry subject to write under is
    /// unknown.
    pub fn try_new(codec: Arc<ProtobufCodec>, table: &str) -> Result<Self> {
        if let Some((_, None)) = codec.registry() {
            return Err(DataFusionError::Plan(format!(
                "cannot write Protobuf {}s to Kafka table '{table}': the registry subject to \
                 write under is unknown; {}",
                codec.part().name(),
                codec.subject_hint(),
            )));
        }
        Ok(Self {
            codec,
            table: table.to_string(),
            prefix: tokio::sync::OnceCell::new(),
        })
    }

    /// Settles the framing, once: with a registry, the message's file is registered under the
    /// subject (when it came from a descriptor file, or a record name strategy names the
    /// subject), else the subject's latest schema is used.
    pub async fn ready(&self) -> Result<()> {
        self.prefix.get_or_try_init(|| self.settle()).await?;
        Ok(())
    }

    async fn settle(&self) -> Result<Vec<u8>> {
        let Some((client, Some(subject))) = self.codec.registry() else {
            return Ok(vec![]);
        };
        let message = self.codec.message();
        let failed = |e: super::registry::RegistryError| {
            DataFusionError::Execution(format!(
                "cannot settle the Protobuf schema of Kafka table '{}' under subject \
                 '{subject}': {e}",
                self.table
            ))
        };
        let id = match (self.codec.registers_its_file(), self.codec.registered()) {
            (true, Some(registered)) => {
                let (schema, references) = (&registered.schema, &registered.references);
                let id = client.register(subject, SchemaType::Protobuf, schema, references);
                id.await.map_err(failed)?
            }
            (true, None) => register_file(client, subject, &message.parent_file())
                .await
                .map_err(failed)?,
            (false, _) => {
                let latest = client.latest(subject, SchemaType::Protobuf).await;
                latest.map_err(failed)?.map(|l| l.id).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "Kafka table '{}' has no Protobuf schema under subject '{subject}' to \
                         write with; give '{}'",
                        self.table,
                        self.codec.part().option("protobuf.descriptorFile"),
                    ))
                })?
            }
        };
        log::info!(
            "Kafka table '{}' writes {} with schema id {id} of subject '{subject}'",
            self.table,
            message.full_name()
        );
        Ok(frame_prefix(id, message))
    }

    /// One value per row of `batch` (the declared columns, by name).
    pub fn encode(&self, batch: &RecordBatch) -> Result<BinaryArray> {
        let prefix = self.prefix.get().ok_or_else(|| {
            DataFusionError::Internal("Protobuf values encoded before their framing".to_string())
        })?;
        let schema = batch.schema();
        let columns: Vec<(&str, &arrow::array::ArrayRef)> = schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .zip(batch.columns())
            .collect();
        let failed = |e: String| {
            DataFusionError::Execution(format!(
                "cannot encode rows as {} for Kafka table '{}': {e}",
                self.codec.message().full_name(),
                self.table
            ))
        };
        let rows = RowsAsMessages::new(self.codec.message(), &columns).map_err(failed)?;
        encode_rows(&rows, batch.num_rows(), prefix).map_err(failed)
    }
}
