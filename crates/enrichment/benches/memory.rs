//! Memory per reference item: growth of resident memory per item while the snapshot is built
//! (an approximation: the allocator keeps some memory), against the item's size as DynamoDB JSON.
//! Prints one table; not a criterion benchmark. `BENCH_ITEMS` sets the number of items (default
//! 100,000).
//!
//! Two figures: "index" is the growth while `Snapshot::from_entries` runs, the decoded keys,
//! values and lookup keys already in memory (what the snapshot adds to them: the bench's
//! original figure); "all" is the growth from before decoding, so it also counts the decoded
//! values, keys and lookup keys the snapshot keeps. `BENCH_DROP_ITEMS=1` measures as the bench
//! did before both figures (the 8.6×): the source items are dropped before the "index"
//! figure's start, so the allocator can reuse their memory for the snapshot.
//!
//! `cargo bench -p stream-refdata --bench memory`

use stream_refdata::Ambiguity;
use stream_refdata_protocol::Item;

mod common;
use common::{bench_items, decoded, key_names, product_item, Entry};

/// Resident memory of this process in bytes (Linux `/proc/self/status`, `VmRSS`).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n = bench_items();
    let names = key_names();
    let items: Vec<Item> = (0..n)
        .map(|i| product_item(format!("dish-{i:06}"), "very high"))
        .collect();
    let json_bytes: usize = items
        .iter()
        .map(|i| serde_json::to_vec(i).unwrap().len())
        .sum();
    let start = rss() as isize;
    let entries: Vec<Entry> = items.iter().map(|i| decoded(&names, i.clone())).collect();
    let drop_first = std::env::var("BENCH_DROP_ITEMS").is_ok_and(|v| v == "1");
    let items = if drop_first {
        drop(items);
        None
    } else {
        Some(items)
    };
    let before = rss() as isize;
    let snapshot = stream_refdata::testing::snapshot(Ambiguity::LowestKey, entries);
    let after = rss() as isize;
    let per_item = (after - before) as f64 / n as f64;
    let all = (after - start) as f64 / n as f64;
    let json = json_bytes as f64 / n as f64;
    println!("items                         : {}", snapshot.len());
    println!("source items dropped first    : {drop_first}");
    println!("item as DynamoDB JSON (bytes) : {json:.0}");
    println!("snapshot bytes per item, index: {per_item:.0}");
    println!("ratio snapshot / JSON, index  : {:.2}", per_item / json);
    println!("snapshot bytes per item, all  : {all:.0}");
    println!("ratio snapshot / JSON, all    : {:.2}", all / json);
    drop(items);
}
