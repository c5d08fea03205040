//! An as-of lookup against a current one, on a table of 100,000 items where most keys have one
//! version (1,000 of them changed once in the window): 1,000 lookups of existing keys each.
//! The target is an as-of lookup at most 3× a current one.
//!
//! `cargo bench -p stream-refdata --bench as_of`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stream_refdata::config::{DecodeError, Decoder, LookupKeyFn};
use stream_refdata::history::{AsOf, HistoryBuilder};
use stream_refdata::key::{ItemKey, KeyValue};
use stream_refdata::{Ambiguity, Lookup};
use stream_refdata_protocol::{
    AttributeValue, ChangeFile, ChangeKind, EntryBody, EventName, Item, SequenceNumber,
    SnapshotEntry, SnapshotHeader, Source, StreamChange,
};

mod common;

const N: usize = 100_000;
const START: i64 = 1_795_650_000_000;
const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/1";

#[derive(Debug)]
struct Product {
    item: String,
    priority: String,
}

fn item(name: &str, priority: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(name.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    m.insert("priority".to_owned(), AttributeValue::S(priority.into()));
    Item::from(m)
}

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..N).map(|n| format!("dish-{n}")).collect();
    // The current view.
    let current = stream_refdata::testing::snapshot(
        Ambiguity::LowestKey,
        names.iter().map(|name| {
            let key = ItemKey::from_iter([KeyValue::S(name.clone()), KeyValue::N("100".into())]);
            let product = Product {
                item: name.clone(),
                priority: "low".into(),
            };
            (key, product, Some(name.clone()))
        }),
    );
    // The history: a snapshot of the same items, and a change of one key in a hundred.
    let decode: Decoder<Product> = Arc::new(|i: Item| {
        let text = |k: &str| match i.get(k) {
            Some(AttributeValue::S(s)) => Ok(s.clone()),
            _ => Err(DecodeError::new(format!("no {k}"))),
        };
        Ok(Product {
            item: text("item")?,
            priority: text("priority")?,
        })
    });
    let key: LookupKeyFn<Product, String> = Arc::new(|p: &Product| Some(p.item.clone()));
    let mut b = HistoryBuilder::new(&["item", "price"], decode, key, Ambiguity::LowestKey, START);
    let header = SnapshotHeader {
        table: "T".into(),
        stream_arn: Some(ARN.into()),
        ..common::day::header(N)
    };
    b.snapshot(
        &header,
        names.iter().map(|name| SnapshotEntry {
            seq: None,
            stamp: None,
            body: EntryBody::Item(item(name, "low")),
        }),
    );
    let changes = (0..N / 100)
        .map(|n| StreamChange {
            index: n,
            event_id: format!("e{n}"),
            event_name: EventName::Modify,
            sequence_number: SequenceNumber::parse(&(1000 + n).to_string()).unwrap(),
            approximate_creation_ms: START + 60_000,
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
            keys: item(&names[n * 100], "x"),
            new_image: Some(item(&names[n * 100], "high")),
            old_image: None,
            user_identity: None,
        })
        .collect();
    b.file(
        "f",
        ChangeFile {
            schema_version: 1,
            kind: ChangeKind::Dynamodb,
            written_at: String::new(),
            write_window_ms: 20_000,
            producer: "bench".into(),
            source: Source {
                label: stream_refdata_protocol::source_label(ARN),
                table: Some("T".into()),
                stream_arn: Some(ARN.into()),
                region: None,
                bucket: None,
            },
            changes,
            opaque: vec![],
            objects: vec![],
            reason: None,
        },
    );
    let history = b.build(i64::MAX);
    let keys: Vec<&String> = (0..1000).map(|i| &names[(i * 97) % N]).collect();
    // (every key answers: a bench of refusals would measure nothing)
    assert!(keys
        .iter()
        .all(|k| matches!(history.lookup_as_of(k, START + 90_000), AsOf::Found(_))));

    let mut group = c.benchmark_group("1,000 lookups, 100k items");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("current", |b| {
        b.iter(|| {
            let mut found = 0;
            for k in &keys {
                if let Lookup::Found(p) = current.lookup(black_box(k.as_str())) {
                    found += p.priority.len();
                }
            }
            found
        })
    });
    group.bench_function("as of a time", |b| {
        b.iter(|| {
            let mut found = 0;
            for k in &keys {
                if let AsOf::Found(p) = history.lookup_as_of(black_box(*k), START + 90_000) {
                    found += p.priority.len();
                }
            }
            found
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
