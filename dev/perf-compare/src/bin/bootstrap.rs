//! A new consumer environment on the emulator (issue 19): the orders consumer's first batch,
//! from construction to its answer, once with its own consistent Scan of the table and once
//! starting from the feed-compactor's snapshot. Each side reaches the emulator through its own
//! request-counting proxy, so DynamoDB items read are counted, not assumed. Prints a Markdown
//! table (`docs/perf/bootstrap-run.md` keeps one run).
//!
//! `cargo run --release -p perf-compare --bin bootstrap -- --items 100000`
#![recursion_limit = "256"]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use orders_consumer::{Config, OrdersConsumer};
use perf_compare::workload::{kinesis_batch, Orders};
use perf_compare::world::{Paths, World};
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata_aws::{s3_client, S3Store};
use test_support::{through_proxy, HttpFaultProxy};

/// Measures a new consumer's first batch with a Scan and with a feed snapshot.
#[derive(Debug, Parser)]
struct Args {
    /// Items in the reference table.
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Orders in the first batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Runs of each side (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

struct Side {
    elapsed: Vec<Duration>,
    items_read: u64,
    requests: u64,
}

fn env(world: &World, snapshots: bool) -> HashMap<&'static str, String> {
    HashMap::from([
        ("REFERENCE_TABLE", world.table.name.clone()),
        ("CHANGE_BUCKET", world.bucket.clone()),
        ("OUTPUT_BUCKET", world.bucket.clone()),
        ("OUTPUT_PREFIX", "bootstrap/".to_owned()),
        (
            "SNAPSHOT_PREFIX",
            if snapshots { "feed-snapshots/" } else { "none" }.to_owned(),
        ),
    ])
}

async fn first_batch(world: &World, snapshots: bool, event: &serde_json::Value) -> Result<Side> {
    let proxy = HttpFaultProxy::start(world.emulator.endpoint(), 0).await;
    let sdk = through_proxy(&world.sdk, proxy.endpoint());
    let vars = env(world, snapshots);
    let config = Config::from_lookup(&|k: &str| vars.get(k).cloned())?;
    let started = Instant::now();
    let s3 = s3_client(&sdk);
    let consumer = OrdersConsumer::new(
        config,
        DynamoDbTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            world.table.name.clone(),
        ),
        S3Feed::new(s3.clone(), world.bucket.clone()),
        S3Store::new(s3),
    );
    let (response, summary) = consumer
        .handle_batch(event)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let elapsed = started.elapsed();
    ensure!(
        response.batch_item_failures.is_empty() && summary.failed.is_none(),
        "the first batch failed: {:?}",
        summary.failed
    );
    let m = consumer.metrics().await;
    ensure!(
        m.snapshot_loads == u64::from(snapshots),
        "snapshot loads {} (snapshots {snapshots})",
        m.snapshot_loads
    );
    Ok(Side {
        elapsed: vec![elapsed],
        items_read: proxy.items_read().values().sum(),
        requests: proxy.counts().values().sum(),
    })
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // The functions' binaries are built beside this one (same target dir and profile).
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    eprintln!("creating a table of {} items on the emulator…", args.items);
    let world = World::create(args.items, Paths::in_repository(bin_dir)).await?;

    // The compactor's first run: its one Scan, then the snapshot.
    let proxy = HttpFaultProxy::start(world.emulator.endpoint(), 0).await;
    let sdk = through_proxy(&world.sdk, proxy.endpoint());
    let config = feed_compactor::Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(world.table.name.clone()),
        "CHANGE_BUCKET" => Some(world.bucket.clone()),
        _ => None,
    })?;
    let mut compactor = feed_compactor::deployed(config, &sdk);
    let started = Instant::now();
    let first = compactor
        .run_once()
        .await
        .context("the compactor's first run")?;
    let first_time = started.elapsed();
    let published = first.published.context("a snapshot")?;
    let started = Instant::now();
    let steady = compactor.run_once().await.context("a steady-state run")?;
    let steady_time = started.elapsed();

    let mut orders = Orders::new(7, world.items);
    let batch: Vec<Vec<u8>> = (0..args.batch).map(|_| orders.next_order()).collect();
    let event = kinesis_batch(
        "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream",
        "shardId-000000000000",
        1,
        &batch,
    );
    let mut sides = Vec::new();
    for snapshots in [false, true] {
        let mut side = first_batch(&world, snapshots, &event).await?;
        for _ in 1..args.runs {
            let more = first_batch(&world, snapshots, &event).await?;
            side.elapsed.extend(more.elapsed);
        }
        sides.push(side);
    }
    let [scan, snap] = &mut sides[..] else {
        unreachable!("two sides")
    };
    let (t_scan, t_snap) = (median(&mut scan.elapsed), median(&mut snap.elapsed));
    println!(
        "# A new consumer environment: Scan against feed snapshot (one run)\n\n\
         `bootstrap --items {}` — table of {} items on the emulator (moto), first batch of {} orders, \
         median of {} runs per side, each side through its own counting proxy.\n",
        args.items, world.items, args.batch, args.runs
    );
    println!("| measure | Scan | feed snapshot | Scan / snapshot |");
    println!("|---|---|---|---|");
    println!(
        "| construction to the first batch's answer (median) | {:.2} s | {:.2} s | **{:.1}×** |",
        t_scan.as_secs_f64(),
        t_snap.as_secs_f64(),
        t_scan.as_secs_f64() / t_snap.as_secs_f64()
    );
    println!(
        "| DynamoDB items read by the first load | {} | {} | — |",
        scan.items_read, snap.items_read
    );
    println!(
        "| AWS requests for the first batch (all services) | {} | {} | — |",
        scan.requests, snap.requests
    );
    println!(
        "\nThe compactor: first run (its one Scan, then the snapshot) {:.2} s, {} items read; \
         snapshot {} bytes compressed for {} items ({:.1} bytes per item). A steady-state run \
         with no change: {:.3} s, {} items read, {}.",
        first_time.as_secs_f64(),
        first.items_read,
        published.bytes,
        published.items,
        published.bytes as f64 / published.items.max(1) as f64,
        steady_time.as_secs_f64(),
        steady.items_read,
        steady.skipped.as_deref().unwrap_or("a snapshot written")
    );
    Ok(())
}
