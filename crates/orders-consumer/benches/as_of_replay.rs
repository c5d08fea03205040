//! Records per second through the orders consumer as of arrival (what `orders-replay` and the
//! redrive run per batch) against the live consumer, side by side, warm, on the in-memory table,
//! feed and store: a table of 1,000 dishes with a feed snapshot the feed-compactor published two
//! hours ago, batches of 1,000 orders that arrived an hour ago (final answers: nothing waits).
//! The target: as of arrival at least 80% of the live records per second (per core: both run on
//! one thread), with the binary's allocator.
//!
//! `cargo bench -p orders-consumer --bench as_of_replay`

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use orders_consumer::{Config, OrdersConsumer};
use serde_json::{json, Value};
use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
use test_support::MemoryStore;

/// The binary's allocator (as the function and the replay run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DISHES: usize = 1_000;
const BATCH: usize = 1_000;
const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-01-01T00:00:00.000";

fn config(extra: &[(&'static str, &'static str)]) -> Config {
    let mut vars = vec![
        ("REFERENCE_TABLE", "ProductPriority"),
        ("CHANGE_BUCKET", "feed-bucket"),
        ("OUTPUT_BUCKET", "out-bucket"),
    ];
    vars.extend_from_slice(extra);
    Config::from_lookup(&|k: &str| {
        vars.iter()
            .rev()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

fn product(dish: &str, priority: &str) -> stream_refdata_protocol::Item {
    let mut product = item(&[("item", dish), ("priority", priority)]);
    product.insert(
        "price".into(),
        stream_refdata_protocol::AttributeValue::N("100".into()),
    );
    product
}

/// A Kinesis event of `BATCH` orders from shard 2 that arrived at `arrival_ms`.
fn event(arrival_ms: i64) -> Value {
    let records: Vec<Value> = (0..BATCH)
        .map(|i| {
            let seq = format!("4959033827149025660855969253836157109592157{i:013}");
            let order = json!({"dish": format!("dish-{:04}", (i * 7) % DISHES), "cost": 1, "customer_id": i});
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(order.to_string()),
                    "approximateArrivalTimestamp": arrival_ms as f64 / 1000.0
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
    json!({ "Records": records })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    for d in 0..DISHES {
        table.put(product(
            &format!("dish-{d:04}"),
            ["low", "medium", "high"][d % 3],
        ));
    }
    let feed = MemoryBucket::default();
    // The compactor's snapshot, two hours ago (its clock set back).
    let compactor_config = feed_compactor::Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some("ProductPriority".into()),
        "CHANGE_BUCKET" => Some("feed-bucket".into()),
        _ => None,
    })
    .unwrap();
    let mut compactor = feed_compactor::Compactor::new(
        compactor_config,
        table.clone(),
        feed.clone(),
        feed.clone(),
        stream_refdata_aws::OffsetClock::new(-chrono::Duration::hours(2)),
    );
    let published = runtime.block_on(compactor.run_once()).unwrap();
    assert!(published.published.is_some());
    let arrival = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let batch = event(arrival);
    let live: OrdersConsumer<MemoryTable, MemoryBucket, MemoryStore> =
        OrdersConsumer::new(config(&[]), table.clone(), feed.clone(), MemoryStore::new());
    let as_of: OrdersConsumer<MemoryTable, MemoryBucket, MemoryStore> = OrdersConsumer::new(
        config(&[("ENRICH_AS_OF", "arrival")]),
        table.clone(),
        feed.clone(),
        MemoryStore::new(),
    );
    // Warm, and both enrich every order (the bench would measure nothing otherwise).
    for consumer in [&live, &as_of] {
        let (_, summary) = runtime.block_on(consumer.handle_batch(&batch)).unwrap();
        assert_eq!(summary.output.enriched, BATCH, "{summary:?}");
    }
    let mut group = c.benchmark_group(format!("a batch of {BATCH} orders, {DISHES} dishes"));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("live", |b| {
        b.iter(|| runtime.block_on(live.handle_batch(&batch)).unwrap())
    });
    group.bench_function("as of arrival (replay, redrive)", |b| {
        b.iter(|| runtime.block_on(as_of.handle_batch(&batch)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
