//! `compare`: runs the side-by-side comparison with the original design on the emulator and
//! writes the report. `scripts/compare` builds the release binaries and runs this.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use perf_compare::live::{self, LiveOptions};
use perf_compare::report::Report;
use perf_compare::world::{Paths, World};
use perf_compare::{in_memory, sequential};

/// Side-by-side comparison of stream-refdata with the original design.
#[derive(Parser, Debug)]
struct Args {
    /// Directory of our function binaries (orders-consumer, change-handler, s3-event-handler,
    /// lambda-hello, consumer-floor).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Items in the reference table (the original five, then synthetic ones).
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Measured batches in the batch loop.
    #[arg(long, default_value_t = 40)]
    batches: usize,
    /// Orders per batch.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Reference changes in the batch loop.
    #[arg(long, default_value_t = 10)]
    changes: usize,
    /// Starts per function for the start-up figure.
    #[arg(long, default_value_t = 10)]
    startup_runs: usize,
    /// Spread-out changes in the live pipeline (propagation).
    #[arg(long, default_value_t = 30)]
    live_changes: usize,
    /// Changes in the live pipeline's burst (lost changes).
    #[arg(long, default_value_t = 20)]
    burst: usize,
    /// Our consumers' FEED_POLL_INTERVAL_MS in the live pipeline (the batch loop uses 0, so
    /// both sides check for changes on every batch).
    #[arg(long, default_value_t = 1000)]
    feed_poll_ms: u64,
    /// Measured batches of the floor phase (after a warm-up batch).
    #[arg(long, default_value_t = 10)]
    floor_batches: usize,
    /// Orders per batch in the floor phase.
    #[arg(long, default_value_t = 5000)]
    floor_batch_size: usize,
    /// The floor phase's orders only for dishes the table has (no `donut`): what a consumer
    /// with nothing to hold does (`UNMATCHED=hold` against the policy off).
    #[arg(long)]
    floor_matched_only: bool,
    /// Phases to run (the report leaves out what did not run).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "startup,batch,enrichment,memory,floor,live"
    )]
    phases: Vec<String>,
    /// Where the report and plots go.
    #[arg(long, default_value = "target/perf-compare")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let step = |s: &str| eprintln!("compare: {s}");

    step(&format!("emulator and a table of {} items", args.items));
    let world = World::create(args.items, Paths::in_repository(args.bin_dir.clone())).await?;
    let on = |phase: &str| args.phases.iter().any(|p| p == phase);
    let mut startup = Vec::new();
    if on("startup") {
        step("start-up of every function");
        startup = sequential::startup(&world, args.startup_runs).await?;
    }
    let mut throughput = sequential::Throughput::default();
    if on("batch") {
        step("batch loop (CPU, handler time, requests, items read)");
        throughput =
            sequential::throughput(&world, args.batch_size, args.batches, args.changes).await?;
    }
    let event = {
        let mut orders = perf_compare::workload::Orders::new(7, world.items);
        let data: Vec<Vec<u8>> = (0..1000).map(|_| orders.next_order()).collect();
        perf_compare::workload::kinesis_batch(
            "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream",
            "shardId-000000000000",
            1,
            &data,
        )
    };
    let mut enrichment_cpu = Default::default();
    if on("enrichment") {
        step("enrichment CPU in each consumer's own code, AWS calls replaced by memory");
        enrichment_cpu = (
            in_memory::ours(&world, &event, 200).await?,
            in_memory::peer(&world, &event, 20).await?,
        );
    }
    let mut memory = Vec::new();
    if on("memory") {
        step("peak memory on 1,000-record batches");
        memory = sequential::peak_memory(&world).await?;
    }
    let mut floor = None;
    if on("floor") {
        step(&format!(
            "our consumer against the floor binary, {} batches of {} orders",
            args.floor_batches, args.floor_batch_size
        ));
        floor = Some(
            sequential::floor(
                &world,
                args.floor_batch_size,
                args.floor_batches,
                args.floor_matched_only,
            )
            .await?,
        );
    }
    let mut live_results = Vec::new();
    for consumers in [1, 2].into_iter().filter(|_| on("live")) {
        for ours in [true, false] {
            let side = if ours { "ours" } else { "peer" };
            step(&format!("live pipeline, {side}, {consumers} consumer(s)"));
            live_results.push(
                live::run(
                    &world,
                    LiveOptions {
                        label: format!("live{consumers}-{side}"),
                        ours,
                        consumers,
                        changes: if consumers == 1 { args.live_changes } else { 4 },
                        change_interval: Duration::from_millis(1500),
                        burst: args.burst,
                        burst_spacing: Duration::from_millis(100),
                        orders_per_second: 100,
                        feed_poll_ms: args.feed_poll_ms,
                    },
                )
                .await?,
            );
        }
    }
    let report = Report {
        items: world.items,
        command,
        startup,
        throughput,
        enrichment_cpu,
        memory,
        live: live_results,
        floor,
    };
    report.write(&args.out)?;
    println!("{}", report.markdown());
    step(&format!(
        "report and plots in {} (report.md, propagation.svg, throughput.svg)",
        args.out.display()
    ));
    Ok(())
}
