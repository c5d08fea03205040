//! The versioned view of a day: 100,000 items (a snapshot) and 100,000 changes (1,000 change
//! files of 100, each image decoded with serde_dynamo as the consumers decode it), against
//! reading and decoding that day's change files twice (the target: building takes less). Its
//! memory is `--bench history_memory`.
//!
//! `cargo bench -p stream-refdata --bench history` (`BENCH_ITEMS` sets the items and changes); after
//! criterion's two groups it times the two in turn for fifteen rounds and prints the median
//! ratio (the figure docs/performance.md reports).

use std::hint::black_box;

use criterion::{criterion_group, Criterion};
use stream_refdata_protocol::ChangeFile;

mod common;
use common::day::{build_from, day_files, entries};
use common::{bench_items, Product};

/// The consumer binary's allocator: both sides of the comparison allocate per value.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn bench(c: &mut Criterion) {
    let n = bench_items();
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

/// The two sides timed in turn, round after round (a machine busy for a while slows both of a
/// round alike): the median of the rounds' ratios, and their range.
fn interleaved(rounds: usize) {
    let n = bench_items();
    let snapshot = entries(n);
    let files = day_files(n, n);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let entries = snapshot.clone();
        let started = std::time::Instant::now();
        let view = build_from(n, entries, black_box(&files));
        let build = started.elapsed();
        drop(black_box(view));
        let started = std::time::Instant::now();
        black_box(decode_files(&files) + decode_files(&files));
        let twice = started.elapsed();
        ratios.push(build.as_secs_f64() / twice.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "build / decode twice, {rounds} rounds in turn: median {:.2}x (from {:.2}x to {:.2}x; \
         target < 1x)",
        ratios[rounds / 2],
        ratios[0],
        ratios[rounds - 1]
    );
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // (not under `cargo test --benches`, which runs each benchmark once)
    if std::env::args().any(|a| a == "--bench") {
        interleaved(15);
    }
}
