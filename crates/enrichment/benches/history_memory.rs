//! The memory each extra version of a history keeps, counted by the allocator: the bytes a
//! built view of a day (100,000 items and 100,000 changes) holds, less those of the snapshot's
//! view alone, per change, against the change's image as DynamoDB JSON (the target: at most
//! 2×). Prints one line; not a criterion benchmark.
//!
//! `cargo bench -p stream-refdata --bench history_memory` (`BENCH_ITEMS` sets the items and changes)

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use stream_refdata::history::AsOf;
use stream_refdata_protocol::ChangeFile;

mod common;
use common::bench_items;
use common::day::{day_files, entries, START};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The bytes a view built from the snapshot and `files` holds once built, and of those, what
/// the builder held before `build` settled the items (the versions as read).
fn held(
    n: usize,
    files: &[Vec<u8>],
) -> (
    isize,
    isize,
    stream_refdata::history::History<common::Product, String>,
) {
    let snapshot = entries(n);
    // (a reallocation counts in the bytes allocated or deallocated already)
    let net = |c: stats_alloc::Stats| c.bytes_allocated as isize - c.bytes_deallocated as isize;
    let region = Region::new(GLOBAL);
    let mut b = common::day::builder();
    b.snapshot(&common::day::header(n), snapshot);
    for (i, body) in files.iter().enumerate() {
        b.file(&format!("f{i}"), ChangeFile::from_slice(body).unwrap());
    }
    let read = net(region.change());
    let view = b.build(i64::MAX);
    // (the snapshot's entries it consumed were allocated before: their frees count against it)
    (net(region.change()), read, view)
}

fn main() {
    let n = bench_items();
    let files = day_files(n, n);
    let json: usize = (files.iter())
        .flat_map(|b| ChangeFile::from_slice(b).unwrap().changes)
        .map(|c| serde_json::to_vec(&c.new_image.unwrap()).unwrap().len())
        .sum();
    let (base, base_read, base_view) = held(n, &[]);
    let (day, day_read, day_view) = held(n, &files);
    assert!(matches!(
        day_view.lookup_as_of(&"dish-000001".to_owned(), START + 86_400_000),
        AsOf::Found(_)
    ));
    drop(base_view);
    let per_version = (day - base) as f64 / n as f64;
    let per_json = json as f64 / n as f64;
    println!(
        "history of {n} items and {n} changes: each extra version holds {per_version:.0} B \
         (counted by the allocator; {:.0} B of it as read, before settling), its DynamoDB JSON \
         {per_json:.0} B: {:.2}x (target <= 2x)",
        (day_read - base_read) as f64 / n as f64,
        per_version / per_json
    );
}
