//! Releasing the held orders of one dish: 10,000 orders held for `donut` are released by one
//! batch (its row arrives through the feed), beside held sets of other dishes of
//! different sizes (0 and 90,000 more held orders). The release's time should grow with the
//! 10,000 it releases, not with the held set: the hold finds them by dish, and expiry by age.
//! Both through the orders consumer's handler, on the in-memory table and store. And the
//! steady state: a batch of matched orders with the policy off and on, nothing held.
//!
//! `cargo bench -p orders-consumer --bench hold_release`

use std::time::Duration;

use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use orders_consumer::{Config, OrdersConsumer};
use serde_json::{json, Value};
use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
use test_support::MemoryStore;

/// Orders released by the measured batch.
const RELEASED: usize = 10_000;
/// Records per batch while holding.
const BATCH: usize = 10_000;

fn config() -> Config {
    config_with("hold")
}

fn config_with(unmatched: &'static str) -> Config {
    let vars = [
        ("REFERENCE_TABLE", "ProductPriority"),
        ("CHANGE_BUCKET", "feed-bucket"),
        ("OUTPUT_BUCKET", "out-bucket"),
        ("UNMATCHED", unmatched),
        ("HOLD_MAX_RECORDS", "1000000"),
        ("HOLD_MAX_BYTES", "1000000000"),
        ("HOLD_MAX_PER_DISH", "1000000"),
        ("FEED_POLL_INTERVAL_MS", "0"),
    ];
    Config::from_lookup(&|k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

fn product(dish: &str) -> stream_refdata_protocol::Item {
    let mut product = item(&[("item", dish), ("priority", "low")]);
    product.insert(
        "price".into(),
        stream_refdata_protocol::AttributeValue::N("100".into()),
    );
    product
}

/// A Kinesis event of `dishes`' orders from shard 2, sequence numbers from `first` on.
fn event(first: usize, dishes: impl Iterator<Item = String>) -> Value {
    let records: Vec<Value> = dishes
        .enumerate()
        .map(|(i, dish)| {
            let seq = format!("4959033827149025660855969253836157109592157{:013}", first + i);
            let order = json!({"dish": dish, "cost": 1, "customer_id": first + i});
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "k",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(order.to_string()),
                    "approximateArrivalTimestamp": 1795650067.123
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

type Consumer = OrdersConsumer<MemoryTable, MemoryBucket, MemoryStore>;

/// The table's stream.
const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-01-01T00:00:00.000";

/// Writes `item` as a new row to the feed, as the change-handler does: a change file now, then
/// the feed's pointer.
fn write_change(feed: &MemoryBucket, item: stream_refdata_protocol::Item) {
    use stream_refdata_protocol::*;
    let now = chrono::Utc::now();
    let seq = SequenceNumber::parse("100000000000000000001").unwrap();
    let mut keys = item.clone();
    keys.remove("priority");
    let change = StreamChange {
        index: 0,
        event_id: "e1".into(),
        event_name: EventName::Insert,
        sequence_number: seq.clone(),
        approximate_creation_ms: now.timestamp_millis(),
        stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        keys,
        new_image: Some(item),
        old_image: None,
        user_identity: None,
    };
    let key = ChangeKey {
        time: now,
        label: source_label(ARN),
        unique: None,
        sequences: Some(SequenceRange {
            first: seq.clone(),
            last: seq,
        }),
    }
    .to_key("change_flags/");
    let file = ChangeFile {
        schema_version: 1,
        kind: ChangeKind::Dynamodb,
        written_at: String::new(),
        write_window_ms: 20_000,
        producer: "bench".into(),
        source: Source {
            label: source_label(ARN),
            table: Some("ProductPriority".into()),
            stream_arn: Some(ARN.into()),
            region: None,
            bucket: None,
        },
        changes: vec![change],
        opaque: vec![],
        objects: vec![],
        reason: None,
    };
    feed.put(&key, file.to_vec());
    let pointer = HeadPointer {
        latest: key,
        written_at: String::new(),
    };
    feed.put(
        &head_key("change_flags/"),
        serde_json::to_vec(&pointer).unwrap(),
    );
}

/// A consumer holding `RELEASED` donuts and `others` orders of 100 other dishes without rows,
/// with donut's row written since (the table and the feed); and the batch that releases them
/// (one burger).
fn holding(rt: &tokio::runtime::Runtime, others: usize) -> (Consumer, MemoryTable, Value) {
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    table.put(product("burger"));
    let feed = MemoryBucket::default();
    let consumer = OrdersConsumer::new(config(), table.clone(), feed.clone(), MemoryStore::new());
    let mut next = 0;
    rt.block_on(async {
        let donuts = event(next, (0..RELEASED).map(|_| "donut".to_owned()));
        next += RELEASED;
        let (_, s) = consumer.handle_batch(&donuts).await.unwrap();
        assert_eq!(s.output.held, RELEASED);
        let mut left = others;
        while left > 0 {
            let n = left.min(BATCH);
            let batch = event(next, (0..n).map(|i| format!("missing-{}", i % 100)));
            next += n;
            left -= n;
            let (_, s) = consumer.handle_batch(&batch).await.unwrap();
            assert_eq!(s.output.held, n);
        }
    });
    table.put(product("donut"));
    write_change(&feed, product("donut"));
    let release = event(next, std::iter::once("burger".to_owned()));
    (consumer, table, release)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("release 10k held orders of one dish");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for others in [0, 90_000] {
        let name = format!("held set {}", RELEASED + others);
        group.bench_function(name, |b| {
            b.iter_batched(
                || holding(&rt, others),
                |(consumer, _table, release)| {
                    rt.block_on(async {
                        let (_, s) = consumer.handle_batch(&release).await.unwrap();
                        assert_eq!(s.output.released, RELEASED, "{:?}", s.failed);
                        consumer
                    })
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();

    // The steady state: a batch of matched orders, nothing held, nothing resolving, with the
    // policy off (dead-letter) and on (hold), in one run.
    let mut steady = c.benchmark_group("batch of 1,000 matched orders, nothing held");
    steady.sample_size(30);
    // (in the order A B B A, so a drift over the run shows as a gap between the two of a kind)
    for (unmatched, round) in [
        ("dead-letter", 1),
        ("hold", 1),
        ("hold", 2),
        ("dead-letter", 2),
    ] {
        let table = MemoryTable::new(&["item", "price"]);
        table.set_stream_arn(Some(ARN));
        for dish in ["burger", "pizza", "salad"] {
            table.put(product(dish));
        }
        let consumer = OrdersConsumer::new(
            config_with(unmatched),
            table,
            MemoryBucket::default(),
            MemoryStore::new(),
        );
        let dishes = ["burger", "pizza", "salad"];
        let mut next = 0;
        steady.throughput(criterion::Throughput::Elements(1_000));
        steady.bench_function(format!("UNMATCHED={unmatched} ({round})"), |b| {
            b.iter_batched(
                || {
                    let batch = event(next, (0..1_000).map(|i| dishes[i % 3].to_owned()));
                    next += 1_000;
                    batch
                },
                |batch| {
                    rt.block_on(async {
                        let (_, s) = consumer.handle_batch(&batch).await.unwrap();
                        assert_eq!(s.output.enriched, 1_000);
                    })
                },
                BatchSize::SmallInput,
            );
        });
    }
    steady.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
