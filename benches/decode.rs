//! Value decoding: weir's batch decoder over Kafka values against the C3 ceiling of
//! `../shared/docs/benchmarks.md` (arrow-json over the same payloads as one contiguous buffer),
//! and over the same records as Avro values, measured alternately in the same run.
//! `cargo bench --bench decode`.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::BinaryArray;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use weir::format::{SchemaCodec, ValueDecoder};
use weir::kafka::formats::{AvroOptions, RecordPart, SubjectNaming, SubjectStrategy, ValueFormat};
use weir::kafka::options::MalformedMode;

const RECORDS: usize = 200_000;
const BATCH: usize = 8192;
const RUNS: usize = 5;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("channel", DataType::Utf8, true),
        Field::new("extra", DataType::Utf8, true),
    ]))
}

fn payloads() -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"auction":{},"bidder":{},"price":{},"channel":"channel-{}","extra":"{}"}}"#,
                1000 + i % 97,
                2000 + i % 1013,
                (i * 7919) % 100_000,
                i % 4,
                "x".repeat(20 + i % 17)
            )
            .into_bytes()
        })
        .collect()
}

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Bid", "fields": [
  {"name": "auction", "type": "long"}, {"name": "bidder", "type": "long"},
  {"name": "price", "type": "long"}, {"name": "channel", "type": "string"},
  {"name": "extra", "type": "string"}]}"#;

/// The JSON payload `json` as Avro binary of [`AVRO_SCHEMA`].
fn avro_payload(json: &[u8]) -> Vec<u8> {
    fn long(n: i64, out: &mut Vec<u8>) {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let record: serde_json::Value = serde_json::from_slice(json).unwrap();
    let mut out = Vec::with_capacity(48);
    for field in ["auction", "bidder", "price"] {
        long(record[field].as_i64().unwrap(), &mut out);
    }
    for field in ["channel", "extra"] {
        let text = record[field].as_str().unwrap();
        long(text.len() as i64, &mut out);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn avro_decoder() -> ValueDecoder {
    let options = AvroOptions {
        schema: Some(AVRO_SCHEMA.to_string()),
        registry: None,
        subject: SubjectNaming {
            given: None,
            strategy: SubjectStrategy::TopicName,
            part: RecordPart::Value,
        },
    };
    let format = ValueFormat::Avro(options);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let codec = runtime
        .block_on(SchemaCodec::open(&format, None, None))
        .unwrap();
    ValueDecoder::new(format, schema(), MalformedMode::FailFast, codec).unwrap()
}

/// C3: arrow-json over newline-delimited payloads already in one buffer.
fn ceiling(buffer: &[u8]) -> usize {
    let mut decoder = arrow_json::ReaderBuilder::new(schema())
        .with_batch_size(BATCH)
        .build_decoder()
        .unwrap();
    let mut rows = 0;
    let mut rest = buffer;
    while !rest.is_empty() {
        let taken = decoder.decode(rest).unwrap();
        rest = &rest[taken..];
        if let Some(batch) = decoder.flush().unwrap() {
            rows += batch.num_rows();
        }
    }
    rows + decoder.flush().unwrap().map_or(0, |b| b.num_rows())
}

/// weir: batches of Kafka values as the scan builds them.
fn weir_decode(batches: &[BinaryArray], decoder: &ValueDecoder) -> usize {
    let locate = |i: usize| format!("record {i}");
    batches
        .iter()
        .map(|values| decoder.decode(values, &locate).unwrap().batch.num_rows())
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let payloads = payloads();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let mut buffer = Vec::with_capacity(bytes + RECORDS);
    for p in &payloads {
        buffer.extend_from_slice(p);
        buffer.push(b'\n');
    }
    let batches: Vec<BinaryArray> = payloads
        .chunks(BATCH)
        .map(|c| BinaryArray::from(c.iter().map(|p| Some(p.as_slice())).collect::<Vec<_>>()))
        .collect();
    let decoder =
        ValueDecoder::new(ValueFormat::Json, schema(), MalformedMode::FailFast, None).unwrap();

    let avro_payloads: Vec<Vec<u8>> = payloads.iter().map(|p| avro_payload(p)).collect();
    let avro_bytes: usize = avro_payloads.iter().map(Vec::len).sum();
    let avro_batches: Vec<BinaryArray> = avro_payloads
        .chunks(BATCH)
        .map(|c| BinaryArray::from(c.iter().map(|p| Some(p.as_slice())).collect::<Vec<_>>()))
        .collect();
    let avro = avro_decoder();

    assert_eq!(ceiling(&buffer), RECORDS);
    assert_eq!(weir_decode(&batches, &decoder), RECORDS);
    assert_eq!(weir_decode(&avro_batches, &avro), RECORDS);
    let (mut c3, mut ours, mut ours_avro) = (vec![], vec![], vec![]);
    for _ in 0..RUNS {
        let t = Instant::now();
        assert_eq!(ceiling(&buffer), RECORDS);
        c3.push(RECORDS as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert_eq!(weir_decode(&batches, &decoder), RECORDS);
        ours.push(RECORDS as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert_eq!(weir_decode(&avro_batches, &avro), RECORDS);
        ours_avro.push(RECORDS as f64 / t.elapsed().as_secs_f64());
    }
    let ratios: Vec<f64> = ours.iter().zip(&c3).map(|(w, c)| w / c).collect();
    let range = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    println!(
        "JSON decode, {RECORDS} records of {} B on average ({} B as Avro), {RUNS} alternating runs",
        bytes / RECORDS,
        avro_bytes / RECORDS
    );
    for (name, v) in [
        ("C3 arrow-json, one buffer", &c3),
        ("weir ValueDecoder", &ours),
        ("weir ValueDecoder, Avro", &ours_avro),
    ] {
        let (lo, hi) = range(v);
        println!(
            "{name:28} median {:>10.0} records/s  (min {lo:.0}, max {hi:.0})",
            median(v.clone())
        );
    }
    let (lo, hi) = range(&ratios);
    println!(
        "{:28} median {:>10.3}            (min {lo:.3}, max {hi:.3})",
        "weir / C3",
        median(ratios.clone())
    );
    let avro_vs_json: Vec<f64> = ours_avro.iter().zip(&ours).map(|(a, j)| a / j).collect();
    let (lo, hi) = range(&avro_vs_json);
    println!(
        "{:28} median {:>10.3}            (min {lo:.3}, max {hi:.3})",
        "weir Avro / weir JSON",
        median(avro_vs_json.clone())
    );
}
