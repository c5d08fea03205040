//! Refresh costs on a 100k-item table: the full reload's decode-and-index step (DynamoDB
//! items to the snapshot), and a delta (the next snapshot from the current one with 1 or 1,000
//! changed items: the base is shared and the changes are persistent maps over it, so this is
//! not a copy of the table).
//!
//! `cargo bench -p stream-refdata --bench refresh`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stream_refdata::key::{ItemKey, KeyValue};
use stream_refdata::{Ambiguity, Snapshot};
use stream_refdata_protocol::Item;

mod common;
use common::{decoded, key_names, product_item, Product};

const N: usize = 100_000;

fn key(i: usize) -> ItemKey {
    ItemKey::from_iter([KeyValue::S(format!("dish-{i}")), KeyValue::N("100".into())])
}

fn decode(items: &[Item]) -> Snapshot<Product, String> {
    let names = key_names();
    stream_refdata::testing::snapshot(
        Ambiguity::LowestKey,
        items.iter().map(|i| decoded(&names, i.clone())),
    )
}

fn bench(c: &mut Criterion) {
    let items: Vec<Item> = (0..N)
        .map(|i| product_item(format!("dish-{i}"), "low"))
        .collect();
    let mut full = c.benchmark_group("full reload");
    full.sample_size(10);
    full.throughput(Throughput::Elements(N as u64));
    full.bench_function("decode + index 100k items", |b| {
        b.iter(|| decode(black_box(&items)))
    });
    full.finish();

    let base = decode(&items);
    let changed: Vec<Product> = (0..1000)
        .map(|i| Product {
            item: format!("dish-{}", i * 97),
            price: 100,
            priority: "high".into(),
        })
        .collect();
    let mut delta = c.benchmark_group("delta on 100k items");
    for n in [1usize, 1000] {
        delta.throughput(Throughput::Elements(n as u64));
        delta.bench_function(format!("{n} changes"), |b| {
            b.iter_batched(
                || base.clone(),
                |mut next| {
                    for p in &changed[..n] {
                        let k = key(p.item[5..].parse().unwrap());
                        next = stream_refdata::testing::with_upsert(
                            next,
                            k,
                            Product {
                                item: p.item.clone(),
                                price: 100,
                                priority: p.priority.clone(),
                            },
                            Some(p.item.clone()),
                        );
                    }
                    next
                },
                BatchSize::SmallInput,
            )
        });
    }
    delta.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
