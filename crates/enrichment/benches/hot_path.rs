//! The enrichment hot path, per record: lookup alone; decode + encode of an order (the limit
//! any consumer pays); decode + lookup + encode (what enrichment costs on top).
//!
//! `cargo bench -p stream-refdata --bench hot_path`. Compare the two `orders/*` figures: the target
//! is enrichment at no less than half the speed of the decode+encode limit.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use stream_refdata::key::{ItemKey, KeyValue};
use stream_refdata::{Ambiguity, Lookup, Snapshot};

#[derive(Debug)]
struct Product {
    priority: String,
    price: u32,
}

#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow)]
    dish: std::borrow::Cow<'a, str>,
    cost: f64,
    customer_id: i64,
}

#[derive(Serialize)]
struct Enriched<'a> {
    cost: f64,
    price: Option<u32>,
    priority: Option<&'a str>,
    customer_id: i64,
    item: &'a str,
}

const DISHES: [&str; 6] = ["pizza", "burger", "salad", "donut", "ice-cream", "pasta"];

fn snapshot(extra: usize) -> Snapshot<Product, String> {
    let originals = [
        ("salad", "high"),
        ("pizza", "low"),
        ("burger", "medium"),
        ("pasta", "very high"),
        ("ice-cream", "very very high"),
    ];
    let entries = originals
        .iter()
        .map(|(i, p)| ((*i).to_owned(), (*p).to_owned()))
        .chain((0..extra).map(|n| (format!("dish-{n}"), "low".to_owned())))
        .map(|(item, priority)| {
            let key = ItemKey::from_iter([KeyValue::S(item.clone()), KeyValue::N("100".into())]);
            (
                key,
                Product {
                    priority,
                    price: 100,
                },
                Some(item),
            )
        });
    stream_refdata::testing::snapshot(Ambiguity::LowestKey, entries)
}

/// 1,000 orders as the data generator makes them (one dish in six is not in the table).
fn orders() -> Vec<Vec<u8>> {
    (0..1000u32)
        .map(|i| {
            let dish = DISHES[(i as usize * 7) % DISHES.len()];
            format!(
                r#"{{"dish":"{dish}","cost":{},"customer_id":{}}}"#,
                10 + i % 140,
                1000 + i
            )
            .into_bytes()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let small = snapshot(0);
    let large = snapshot(100_000);
    let orders = orders();

    let mut lookups = c.benchmark_group("lookup");
    lookups.throughput(Throughput::Elements(DISHES.len() as u64));
    for (name, snap) in [("5 items", &small), ("100k items", &large)] {
        lookups.bench_function(name, |b| {
            b.iter(|| {
                let mut found = 0;
                for dish in DISHES {
                    if let Lookup::Found(p) = snap.lookup(black_box(dish)) {
                        found += p.price;
                    }
                }
                found
            })
        });
    }
    lookups.finish();

    let mut group = c.benchmark_group("orders");
    group.throughput(Throughput::Elements(orders.len() as u64));
    group.bench_function("decode+encode (limit)", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(100_000),
            |out: &mut Vec<u8>| {
                for raw in &orders {
                    let o: Order<'_> = serde_json::from_slice(black_box(raw)).unwrap();
                    let e = Enriched {
                        cost: o.cost,
                        price: None,
                        priority: None,
                        customer_id: o.customer_id,
                        item: &o.dish,
                    };
                    serde_json::to_writer(&mut *out, &e).unwrap();
                    out.push(b'\n');
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("decode+lookup+encode", |b| {
        let snap = Arc::new(snapshot(0));
        b.iter_batched_ref(
            || Vec::with_capacity(100_000),
            |out: &mut Vec<u8>| {
                for raw in &orders {
                    let o: Order<'_> = serde_json::from_slice(black_box(raw)).unwrap();
                    let found = match snap.lookup(o.dish.as_ref()) {
                        Lookup::Found(p) => Some(p),
                        _ => None,
                    };
                    let e = Enriched {
                        cost: o.cost,
                        price: found.map(|p| p.price),
                        priority: found.map(|p| p.priority.as_str()),
                        customer_id: o.customer_id,
                        item: &o.dish,
                    };
                    serde_json::to_writer(&mut *out, &e).unwrap();
                    out.push(b'\n');
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
