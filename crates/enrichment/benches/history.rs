//! The versioned view of a day: 100,000 items (a snapshot) and 100,000 changes (1,000 change
//! files of 100, each image decoded with serde_dynamo as the consumers decode it), against
//! reading and decoding that day's change files twice (the target: building takes less). And
//! the memory each extra version costs (resident memory, as the memory bench measures it),
//! against that version's DynamoDB JSON (the target: at most 2×).
//!
//! `cargo bench -p enrichment --bench history` (`BENCH_ITEMS` sets the items and changes)

use std::hint::black_box;
use std::sync::Arc;

use change_protocol::{
    ChangeFile, ChangeKind, EntryBody, EventName, Item, SequenceNumber, SnapshotEntry,
    SnapshotHeader, Source, StreamChange,
};
use criterion::{criterion_group, Criterion};
use enrichment::config::{DecodeError, Decoder, LookupKeyFn};
use enrichment::history::{AsOf, History, HistoryBuilder};
use enrichment::Ambiguity;

mod common;
use common::{bench_items, product_item, Product};

/// The consumer binary's allocator: both sides of the comparison allocate per value.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The peak resident memory of this process in bytes (Linux `/proc/self/status`, `VmHWM`).
fn peak_rss() -> isize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<isize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const START: i64 = 1_795_650_000_000;
const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";
const PRIORITIES: [&str; 4] = ["low", "medium", "high", "very high"];

fn header(n: usize) -> SnapshotHeader {
    SnapshotHeader {
        kind: change_protocol::SNAPSHOT_KIND.into(),
        schema: change_protocol::SNAPSHOT_SCHEMA,
        table: "ProductPriority".into(),
        key_attributes: vec!["item".into(), "price".into()],
        stream_arn: Some(ARN.into()),
        position_ms: START,
        full_load_end_ms: Some(START - 60_000),
        write_window_ms: 20_000,
        clock_margin_ms: 0,
        created_ms: START,
        items: n as u64,
        tombstones: 0,
    }
}

fn entries(n: usize) -> Vec<SnapshotEntry> {
    (0..n)
        .map(|i| SnapshotEntry {
            seq: None,
            stamp: None,
            body: EntryBody::Item(product_item(format!("dish-{i:06}"), "low")),
        })
        .collect()
}

/// A day's change files as JSON, as S3 holds them: `changes` changes of random items spread
/// over the day, 100 to a file.
fn day_files(items: usize, changes: usize) -> Vec<Vec<u8>> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // (made a file at a time: the inputs' own peak stays below the views')
    let change = |n: usize, next: &mut dyn FnMut() -> u64| {
        let item = format!("dish-{:06}", next() as usize % items);
        let priority = PRIORITIES[next() as usize % 4];
        let image = product_item(item, priority);
        StreamChange {
            index: n % 100,
            event_id: format!("e{n}"),
            event_name: EventName::Modify,
            sequence_number: SequenceNumber::parse(&format!("{}", 10_u128.pow(20) + n as u128))
                .unwrap(),
            approximate_creation_ms: START + 120_000 + (n as i64 * 86_000_000 / changes as i64),
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
            keys: Item::from(
                image
                    .iter()
                    .filter(|(k, _)| *k == "item" || *k == "price")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
            new_image: Some(image),
            old_image: None,
            user_identity: None,
        }
    };
    (0..changes.div_ceil(100))
        .map(|f| {
            let chunk: Vec<StreamChange> = (f * 100..((f + 1) * 100).min(changes))
                .map(|n| change(n, &mut next))
                .collect();
            let file = ChangeFile {
                schema_version: 1,
                kind: ChangeKind::Dynamodb,
                written_at: String::new(),
                write_window_ms: 20_000,
                producer: "bench".into(),
                source: Source {
                    label: change_protocol::source_label(ARN),
                    table: Some("ProductPriority".into()),
                    stream_arn: Some(ARN.into()),
                    region: None,
                    bucket: None,
                },
                changes: chunk,
                opaque: vec![],
                objects: vec![],
                reason: None,
            };
            serde_json::to_vec(&file).unwrap()
        })
        .collect()
}

fn builder() -> HistoryBuilder<Product, String> {
    let decode: Decoder<Product> =
        Arc::new(|i: Item| serde_dynamo::from_item(i).map_err(DecodeError::wrap));
    let key: LookupKeyFn<Product, String> = Arc::new(|p: &Product| Some(p.item.clone()));
    HistoryBuilder::new(&["item", "price"], decode, key, Ambiguity::LowestKey, START)
}

/// The day's view: the snapshot's entries and every file decoded and placed.
fn build(n: usize, snapshot: &[SnapshotEntry], files: &[Vec<u8>]) -> History<Product, String> {
    build_from(n, snapshot.to_vec(), files)
}

/// [`build`] from entries handed over.
fn build_from(
    n: usize,
    snapshot: Vec<SnapshotEntry>,
    files: &[Vec<u8>],
) -> History<Product, String> {
    let mut b = builder();
    b.snapshot(&header(n), snapshot);
    for (i, body) in files.iter().enumerate() {
        b.file(&format!("f{i}"), ChangeFile::from_slice(body).unwrap());
    }
    b.build(i64::MAX)
}

/// Reading and decoding the day's files: each parsed, each image decoded into the value.
fn decode_files(files: &[Vec<u8>]) -> usize {
    let mut n = 0;
    for body in files {
        let file = ChangeFile::from_slice(black_box(body)).unwrap();
        for change in file.changes {
            let p: Product = serde_dynamo::from_item(change.new_image.unwrap()).unwrap();
            n += p.priority.len();
        }
    }
    n
}

/// In a process of its own (`BENCH_HISTORY_MEMORY=base|day`): the inputs made, then the view
/// of the snapshot alone (`base`) or of the snapshot and the day's files (`day`) built; prints
/// the process's peak resident memory. Both processes make the same inputs, so the difference
/// of their peaks is what the day's versions add.
fn measure(n: usize, what: &str) {
    let snapshot = entries(n);
    let files = day_files(n, n);
    let view = if what == "day" {
        build(n, &snapshot, &files)
    } else {
        build(n, &snapshot, &[])
    };
    assert!(matches!(
        view.lookup_as_of(&"dish-000001".to_owned(), START + 86_400_000),
        AsOf::Found(_)
    ));
    println!("{}", peak_rss());
}

fn memory(n: usize) {
    let peak = |what: &str| -> isize {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("BENCH_HISTORY_MEMORY", what)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    // (the median of three processes each: a peak moves with the allocator's segments)
    let median = |what: &str| {
        let mut runs = [peak(what), peak(what), peak(what)];
        runs.sort_unstable();
        runs[1]
    };
    let (base, day) = (median("base"), median("day"));
    let files = day_files(n, n);
    let json: usize = (files.iter())
        .flat_map(|b| ChangeFile::from_slice(b).unwrap().changes)
        .map(|c| serde_json::to_vec(&c.new_image.unwrap()).unwrap().len())
        .sum();
    let per_version = (day - base) as f64 / n as f64;
    let per_json = json as f64 / n as f64;
    println!(
        "history of {n} items: each of {n} extra versions {per_version:.0} B at the peak (the \
         process building it against one building the snapshot alone), its DynamoDB JSON \
         {per_json:.0} B: {:.2}x (target <= 2x)",
        per_version / per_json
    );
}

fn bench(c: &mut Criterion) {
    let n = bench_items();
    memory(n);
    let snapshot = entries(n);
    let files = day_files(n, n);
    let mut group = c.benchmark_group(format!("a day: {n} items, {n} changes"));
    group.sample_size(10);
    // (the snapshot's entries are handed over, as its reader hands them: not copied in the
    // timing)
    group.bench_function("build the versioned view", |b| {
        b.iter_batched(
            || snapshot.clone(),
            |entries| build_from(n, entries, black_box(&files)),
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("decode the day's change files twice", |b| {
        b.iter(|| decode_files(&files) + decode_files(&files))
    });
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(what) = std::env::var("BENCH_HISTORY_MEMORY") {
        measure(bench_items(), &what);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
