//! Aggregate state as bytes and as memory: Arrow IPC stream encoding for saving state batches
//! in the checkpoint and reading them back (refusing damaged bytes), and the Arrow memory size
//! of state for progress reports.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};

/// `batches` (all of `schema`) as one Arrow IPC stream.
pub fn encode(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = StreamWriter::try_new(Vec::new(), schema)?;
    for (i, batch) in batches.iter().enumerate() {
        if batch.schema().fields() != schema.fields() {
            return Err(DataFusionError::Execution(format!(
                "state batch {i} has columns {}, not the state's {schema}",
                batch.schema()
            )));
        }
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(writer.into_inner()?)
}

/// The end-of-stream marker [`encode`] finishes with.
const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// The schema and batches of an Arrow IPC stream made by [`encode`]. Damaged or truncated bytes
/// are refused without reading lengths they claim (no large allocations from garbage).
pub fn decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let damaged = |why: String| {
        DataFusionError::Execution(format!(
            "saved aggregate state is not a complete Arrow IPC stream ({why}); the checkpoint's \
             state file is damaged or was written by something else"
        ))
    };
    if !bytes.ends_with(&END_OF_STREAM) {
        return Err(damaged("it lacks the end-of-stream marker".to_string()));
    }
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from(bytes);
    let mut batches = vec![];
    while !buffer.is_empty() {
        if let Some(batch) = decoder
            .decode(&mut buffer)
            .map_err(|e| damaged(e.to_string()))?
        {
            batches.push(batch);
        }
    }
    decoder.finish().map_err(|e| damaged(e.to_string()))?;
    let schema = decoder
        .schema()
        .ok_or_else(|| damaged("it has no schema".to_string()))?;
    Ok((schema, batches))
}

/// The Arrow memory `batches` hold, in bytes (buffers shared by several batches are counted
/// once per batch).
pub fn state_bytes(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::get_array_memory_size).sum()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn batch(keys: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from_iter_values(0..keys.len() as i64)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn encode_then_decode_gives_the_batches_back() {
        let batches = vec![batch(&["a", "b"]), batch(&[]), batch(&["c"])];
        let schema = batches[0].schema();
        let bytes = encode(&schema, &batches).unwrap();
        let (decoded_schema, decoded) = decode(&bytes).unwrap();
        assert_eq!(decoded_schema, schema);
        assert_eq!(decoded, batches);
        assert!(state_bytes(&batches) > 0);
        assert_eq!(state_bytes(&[]), 0);
    }

    #[test]
    fn an_empty_state_round_trips() {
        let schema = batch(&[]).schema();
        let (decoded_schema, decoded) = decode(&encode(&schema, &[]).unwrap()).unwrap();
        assert_eq!(decoded_schema, schema);
        assert!(decoded.is_empty());
    }

    #[test]
    fn damaged_bytes_and_foreign_batches_are_refused() {
        let err = decode(b"not arrow").unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        let bytes = encode(&batch(&["a"]).schema(), &[batch(&["a"])]).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 8] {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert!(err.to_string().contains("damaged"), "{err}");
        }
        // Garbage that ends like a stream, claiming a 2 GiB message.
        let mut garbage = vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x80];
        garbage.extend(END_OF_STREAM);
        let err = decode(&garbage).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
        let other = Schema::new(vec![Field::new("x", DataType::Int64, false)]);
        let err = encode(&other, &[batch(&["a"])]).unwrap_err();
        assert!(err.to_string().contains("state batch 0"), "{err}");
    }
}
