//! Building a change file from a DynamoDB Streams event of 100 and 1,000 records: parse each
//! record, build the file, encode it (what the handler does before its PutObject).
//!
//! `cargo bench -p change-handler --bench change_file`

use std::hint::black_box;

use change_handler::parse_event;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

fn event(n: usize) -> Value {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "eventID": format!("{i:032x}"),
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": 1795650067,
                    "Keys": {"item": {"S": format!("dish-{i}")}, "price": {"N": "100"}},
                    "NewImage": {"item": {"S": format!("dish-{i}")}, "price": {"N": "100"}, "priority": {"S": "high"}},
                    "OldImage": {"item": {"S": format!("dish-{i}")}, "price": {"N": "100"}, "priority": {"S": "medium"}},
                    "SequenceNumber": format!("{}", 4_421_584_500_000_000_017_450_439_091u128 + i as u128),
                    "SizeBytes": 120,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-11-25T23:00:00.000"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("change file");
    for n in [100usize, 1000] {
        let payload = event(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n} records"), |b| {
            b.iter(|| {
                parse_event(black_box(&payload))
                    .unwrap()
                    .to_change_file()
                    .to_vec()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
