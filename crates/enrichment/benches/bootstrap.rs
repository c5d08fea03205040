//! A new consumer environment's first load: a consistent Scan of the table (here the in-memory
//! table, so the figure is decode and index, without DynamoDB's own time) against the feed
//! snapshot the feed-compactor keeps (GET, gunzip, parse each line, decode, index). Both end
//! with the first poll of the (empty) feed. `BENCH_ITEMS` sets the table size (default 100,000).
//! A third group is the S3-object enricher's first load of as many rows, in one CSV object and
//! in ten.
//!
//! `cargo bench -p stream-refdata --bench bootstrap`

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stream_refdata::testing::{MemoryBucket, MemoryTable};
use stream_refdata::{
    FeedSettings, ObjectConfig, ObjectEnricher, SystemClock, TableConfig, TableEnricher,
};
use stream_refdata_protocol::{Item, SnapshotPointer, DEFAULT_SNAPSHOT_PREFIX};

mod common;
use common::{bench_items, decoded, key_names, product_item, Product};

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";

fn table(n: usize) -> MemoryTable {
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    for i in 0..n {
        table.put(product_item(format!("dish-{i:07}"), "very high"));
    }
    table
}

fn settings(snapshots: bool) -> FeedSettings {
    FeedSettings {
        poll_interval: Duration::ZERO,
        snapshot_prefix: snapshots.then(|| DEFAULT_SNAPSHOT_PREFIX.to_owned()),
        ..FeedSettings::default()
    }
}

fn consumer(
    table: &MemoryTable,
    bucket: &MemoryBucket,
    snapshots: bool,
) -> TableEnricher<Product, String, MemoryTable, MemoryBucket> {
    let config = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_feed(settings(snapshots));
    TableEnricher::new(config, table.clone(), Some(bucket.clone()), SystemClock)
}

/// Publishes the table's snapshot into `bucket` as the feed-compactor does.
fn publish(table: &MemoryTable, bucket: &MemoryBucket, rt: &tokio::runtime::Runtime) -> usize {
    let config = TableConfig::raw("ProductPriority", &["item", "price"], |_: &Item| {
        None::<String>
    })
    .with_feed(settings(false));
    let mut follower = TableEnricher::new(config, table.clone(), Some(bucket.clone()), SystemClock);
    rt.block_on(follower.refresh());
    let now = chrono::Utc::now();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let (gz, header) = follower.write_feed_snapshot(gz, now).unwrap();
    let body = gz.finish().unwrap();
    let size = body.len();
    let key = stream_refdata_protocol::snapshot_key(DEFAULT_SNAPSHOT_PREFIX, &header.table, now);
    bucket.put(&key, body);
    let pointer = SnapshotPointer::to(key, &header);
    bucket.put(
        &stream_refdata_protocol::snapshot_pointer_key(DEFAULT_SNAPSHOT_PREFIX, &header.table),
        serde_json::to_vec(&pointer).unwrap(),
    );
    size
}

fn bench(c: &mut Criterion) {
    let n = bench_items();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = table(n);
    let bucket = MemoryBucket::default();
    let size = publish(&table, &bucket, &rt);
    println!(
        "snapshot of {n} items: {size} bytes compressed ({:.1} bytes per item)",
        size as f64 / n as f64
    );
    let mut group = c.benchmark_group(format!("new consumer, first load of {n} items"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    for (name, snapshots) in [("Scan", false), ("feed snapshot", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || consumer(&table, &bucket, snapshots),
                |mut c| {
                    let report = rt.block_on(c.refresh());
                    assert_eq!(report.snapshot.is_some(), snapshots, "{report:?}");
                    assert_eq!(c.snapshot().len(), n);
                    c
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    // Where the snapshot path's time goes: reading the lines (gunzip + JSON), then decoding the
    // items into the user's type and their keys, then building the indexed snapshot.
    let key = {
        let pointer: SnapshotPointer = serde_json::from_slice(
            &bucket
                .object(&stream_refdata_protocol::snapshot_pointer_key(
                    DEFAULT_SNAPSHOT_PREFIX,
                    "ProductPriority",
                ))
                .unwrap(),
        )
        .unwrap();
        pointer.key
    };
    let body = bucket.object(&key).unwrap();
    let read = || {
        let gz = flate2::bufread::GzDecoder::new(body.as_slice());
        let mut r =
            stream_refdata_protocol::SnapshotReader::new(std::io::BufReader::new(gz)).unwrap();
        let mut entries = Vec::with_capacity(n);
        while let Some(e) = r.next_entry().unwrap() {
            entries.push(e);
        }
        entries
    };
    let names = key_names();
    let decode = |entries: Vec<stream_refdata_protocol::SnapshotEntry>| {
        entries
            .into_iter()
            .map(|e| {
                let stream_refdata_protocol::EntryBody::Item(item) = e.body else {
                    unreachable!("no tombstones here")
                };
                decoded(&names, item)
            })
            .collect::<Vec<_>>()
    };
    let mut stages = c.benchmark_group(format!("feed snapshot stages, {n} items"));
    stages.sample_size(10);
    stages.throughput(Throughput::Elements(n as u64));
    stages.bench_function("0 gunzip alone", |b| {
        b.iter(|| {
            let mut gz = flate2::bufread::GzDecoder::new(body.as_slice());
            std::io::copy(&mut gz, &mut std::io::sink()).unwrap()
        })
    });
    stages.bench_function("1 gunzip + parse lines", |b| b.iter(read));
    stages.bench_function("2 decode items and keys", |b| {
        b.iter_batched(read, decode, BatchSize::PerIteration)
    });
    stages.bench_function("3 build the indexed snapshot", |b| {
        b.iter_batched(
            || decode(read()),
            |entries| {
                stream_refdata::testing::snapshot(stream_refdata::Ambiguity::LowestKey, entries)
            },
            BatchSize::PerIteration,
        )
    });
    stages.finish();

    objects(c, n, &rt);
}

#[derive(Debug, serde::Deserialize)]
struct Dish {
    dish: String,
    #[allow(dead_code)]
    category: String,
}

/// The S3-object enricher's first load: `n` CSV rows in one object, and in ten.
fn objects(c: &mut Criterion, n: usize, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group(format!("reference objects, first load of {n} rows"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    for parts in [1, 10] {
        let bucket = MemoryBucket::default();
        for part in 0..parts {
            let mut csv = String::from("dish,category\n");
            for i in (part..n).step_by(parts) {
                csv.push_str(&format!("dish-{i:07},mains\n"));
            }
            bucket.put(&format!("reference/part-{part:02}.csv"), csv.into_bytes());
        }
        group.bench_function(format!("{parts} objects"), |b| {
            b.iter_batched(
                || {
                    let config = ObjectConfig::new("ref-bucket", "reference/", |d: &Dish| {
                        Some(d.dish.clone())
                    });
                    ObjectEnricher::new(config, bucket.clone(), None::<MemoryBucket>, SystemClock)
                },
                |mut e| {
                    rt.block_on(e.refresh());
                    assert_eq!(e.snapshot().len(), n);
                    e
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
