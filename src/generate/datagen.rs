//! `datagen(rows, keys, seed)`: simple keyed rows for load tests — `id` (the row number), `key`
//! uniform over `keys` keys, `value` uniform in [0, 1000), and `ts`, one millisecond apart from
//! 2024-01-01T00:00:00Z.

use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result;

use super::nexmark::BASE_TIME_MS;
use super::{Random, RowGenerator};

/// The datagen generator.
#[derive(Debug, Clone)]
pub struct Datagen {
    rows: u64,
    keys: u64,
    seed: u64,
    schema: SchemaRef,
}

impl Datagen {
    /// `rows` rows over `keys` keys from `seed`.
    pub fn new(rows: u64, keys: u64, seed: u64) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("key", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                false,
            ),
        ]));
        Self {
            rows,
            keys: keys.max(1),
            seed,
            schema,
        }
    }
}

impl RowGenerator for Datagen {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> u64 {
        self.rows
    }

    fn batch(&self, start: u64, end: u64) -> Result<RecordBatch> {
        let mut keys = Vec::with_capacity((end - start) as usize);
        let mut values = Vec::with_capacity(keys.capacity());
        for n in start..end {
            let mut rnd = Random::for_row(self.seed, n);
            keys.push(rnd.next_below(self.keys) as i64);
            values.push((rnd.next_f64() * 100_000.0).floor() / 100.0);
        }
        let ids: Vec<i64> = (start as i64..end as i64).collect();
        let times: Vec<i64> = ids.iter().map(|i| BASE_TIME_MS + i).collect();
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(keys)),
                Arc::new(Float64Array::from(values)),
                Arc::new(TimestampMillisecondArray::from(times)),
            ],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;

    #[test]
    fn keys_cover_the_range_evenly_and_rows_are_deterministic() {
        let g = Datagen::new(20_000, 10, 1);
        let batch = g.batch(0, 20_000).unwrap();
        let keys = batch.column(1).as_primitive::<Int64Type>();
        let mut counts = [0usize; 10];
        for k in keys.values() {
            counts[*k as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (1_800..2_200).contains(c)),
            "{counts:?}"
        );
        assert_eq!(g.batch(5, 10).unwrap(), batch.slice(5, 5));
    }
}
