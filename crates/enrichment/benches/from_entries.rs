//! The index build alone: `Snapshot::from_entries` (through `stream_refdata::testing::snapshot`) on
//! decoded entries, the step both full-load paths end with. Unique lookup keys, and a variant
//! where every lookup key is shared by 4 items (groups). `BENCH_ITEMS` sets the number of items
//! (default 100,000).
//!
//! `cargo bench -p stream-refdata --bench from_entries`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stream_refdata::key::{ItemKey, KeyValue};
use stream_refdata::Ambiguity;

mod common;
use common::{bench_items, Entry, Product};

fn entries(n: usize, share: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let item = format!("dish-{:07}", i / share);
            let price = (i % share) as u32 + 100;
            let key =
                ItemKey::from_iter([KeyValue::S(item.clone()), KeyValue::N(price.to_string())]);
            let lookup = Some(item.clone());
            let p = Product {
                item,
                price,
                priority: "very high".into(),
            };
            (key, p, lookup)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = bench_items();
    let mut group = c.benchmark_group(format!("from_entries, {n} items"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));
    for (name, share, ambiguity) in [
        ("unique lookup keys", 1, Ambiguity::LowestKey),
        (
            "4 items per lookup key, lowest key",
            4,
            Ambiguity::LowestKey,
        ),
        ("4 items per lookup key, reject", 4, Ambiguity::Reject),
    ] {
        let input = entries(n, share);
        group.bench_function(name, |b| {
            b.iter_batched(
                || input.clone(),
                |e| stream_refdata::testing::snapshot(ambiguity, e),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
