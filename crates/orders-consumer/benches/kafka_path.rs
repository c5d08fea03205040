//! CPU per record of the Kafka path against the Kinesis path, side by side: the same 1,000
//! orders as one Kinesis shard's event and as one Kafka partition's (MSK's), each parsed from its
//! text as the binary parses it ([`Invocation`]) and handled warm ([`OrdersConsumer::handle_any`])
//! on the in-memory table, feed and store, one thread, with the binary's allocator. The target:
//! the Kafka path within 10% of the Kinesis path.
//!
//! `cargo bench -p orders-consumer --bench kafka_path`

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orders_consumer::{Config, Invocation, OrdersConsumer};
use serde_json::{json, Value};
use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
use test_support::MemoryStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DISHES: usize = 1_000;
const BATCH: usize = 1_000;

fn order(i: usize) -> String {
    json!({"dish": format!("dish-{:04}", (i * 7) % DISHES), "cost": 1, "customer_id": i})
        .to_string()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The orders as Kinesis delivers them (shard 2).
fn kinesis() -> String {
    let records: Vec<Value> = (0..BATCH)
        .map(|i| {
            let seq = format!("4959033827149025660855969253836157109592157{i:013}");
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": seq,
                    "data": b64(&order(i)),
                    "approximateArrivalTimestamp": 1_795_650_067.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000002:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/orders-consumer",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream"
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// The same orders as MSK delivers them (partition 2 of `orders`, with a header each).
fn kafka() -> String {
    let records: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({
                "topic": "orders",
                "partition": 2,
                "offset": 1_000_000 + i,
                "timestamp": 1_795_650_067_123_i64,
                "timestampType": "CREATE_TIME",
                "key": b64("k"),
                "value": b64(&order(i)),
                "headers": [{"source": [103, 101, 110]}]
            })
        })
        .collect();
    json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders/751d2973-a626-431c-9d4e-d7975eb44dd7-2",
        "bootstrapServers": "b-1.orders.a1bcde.c1.kafka.us-east-1.amazonaws.com:9098",
        "records": { "orders-2": records }
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = MemoryTable::new(&["item", "price"]);
    for d in 0..DISHES {
        let mut product = item(&[
            ("item", &format!("dish-{d:04}")),
            ("priority", ["low", "medium", "high"][d % 3]),
        ]);
        product.insert(
            "price".into(),
            stream_refdata_protocol::AttributeValue::N("100".into()),
        );
        table.put(product);
    }
    let config = Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some("ProductPriority".into()),
        "CHANGE_BUCKET" => Some("feed-bucket".into()),
        "OUTPUT_BUCKET" => Some("out-bucket".into()),
        _ => None,
    })
    .unwrap();
    let consumer: OrdersConsumer<MemoryTable, MemoryBucket, MemoryStore> =
        OrdersConsumer::new(config, table, MemoryBucket::default(), MemoryStore::new());
    let (kinesis, kafka) = (kinesis(), kafka());
    let handle = |text: &str| {
        let event: Invocation = serde_json::from_str(text).unwrap();
        runtime.block_on(consumer.handle_any(event)).unwrap()
    };
    // Warm, and both enrich every order.
    for text in [&kinesis, &kafka] {
        let (_, summary) = handle(text);
        assert_eq!(summary.output.enriched, BATCH, "{summary:?}");
    }
    let mut group = c.benchmark_group(format!("a batch of {BATCH} orders"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("Kinesis (one shard)", |b| b.iter(|| handle(&kinesis)));
    group.bench_function("Kafka, MSK (one partition)", |b| b.iter(|| handle(&kafka)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
