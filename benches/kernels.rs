//! Criterion micro-benchmarks of the scan's hot kernels: Kafka messages → Arrow columns
//! (`BatchBuilder`) and JSON values → declared columns (`ValueDecoder`), one batch of 8192
//! records each. `cargo bench --bench kernels`.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::BinaryArray;
use arrow::datatypes::{DataType, Field, Schema};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdkafka::message::{OwnedMessage, Timestamp};
use weir::format::ValueDecoder;
use weir::kafka::TopicPartition;
use weir::kafka::formats::ValueFormat;
use weir::kafka::layout::{Column, TableLayout};
use weir::kafka::offsets::PartitionRange;
use weir::kafka::options::{KafkaTableOptions, MalformedMode};
use weir::kafka::scan::{BatchBuilder, ScanSource};

const RECORDS: usize = 8192;

fn messages() -> Vec<OwnedMessage> {
    (0..RECORDS as i64)
        .map(|i| {
            let mut value = format!("record-{i:012}-").into_bytes();
            value.resize(100, b'x');
            OwnedMessage::new(
                Some(value),
                Some(format!("k{}", i % 1000).into_bytes()),
                "t".into(),
                Timestamp::CreateTime(i),
                0,
                i,
                None,
            )
        })
        .collect()
}

fn messages_to_arrow(c: &mut Criterion) {
    let options: std::collections::HashMap<String, String> =
        [("subscribe".to_string(), "t".to_string())].into();
    let options = KafkaTableOptions::parse(&options, false, Some("unused:9092")).unwrap();
    let layout = TableLayout::new(None, false).unwrap();
    let projection = vec![
        Column::Key,
        Column::Value,
        Column::Topic,
        Column::Partition,
        Column::Offset,
        Column::Timestamp,
    ];
    let schema = Arc::new(layout.schema.project(&[0, 1, 2, 3, 4, 5]).unwrap());
    let source = ScanSource {
        table: "t".into(),
        options: Arc::new(options),
        layout,
        decoder: None,
        event_time: None,
    };
    let range = PartitionRange {
        tp: TopicPartition::new("t", 0),
        start: 0,
        end: RECORDS as i64,
    };
    let messages = messages();
    let mut group = c.benchmark_group("messages_to_arrow");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("raw_columns_8192", |b| {
        b.iter(|| {
            let mut builder = BatchBuilder::new(&projection, true, true, RECORDS);
            for m in &messages {
                builder.append(m);
            }
            black_box(
                builder
                    .finish(&source, &range, &projection, &schema)
                    .unwrap(),
            )
        })
    });
    group.finish();
}

fn json_decode(c: &mut Criterion) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let values: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"user-{i:06}","v":{},"city":"Seattle","pad":"{}"}}"#,
                i % 100,
                "y".repeat(30)
            )
            .into_bytes()
        })
        .collect();
    let values = BinaryArray::from(
        values
            .iter()
            .map(|v| Some(v.as_slice()))
            .collect::<Vec<_>>(),
    );
    let decoder =
        ValueDecoder::new(ValueFormat::Json, schema, MalformedMode::FailFast, None).unwrap();
    let locate = |i: usize| format!("record {i}");
    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("flat_4_columns_8192", |b| {
        b.iter(|| black_box(decoder.decode(&values, &locate).unwrap()))
    });
    group.finish();
}

criterion_group!(kernels, messages_to_arrow, json_decode);
criterion_main!(kernels);
