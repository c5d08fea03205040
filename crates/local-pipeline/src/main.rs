//! `local-pipeline`: runs the walkthrough on the embedded emulator and prints a summary.

use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use local_emulator::LocalEmulator;
use local_pipeline::{demo, provision::Names};

/// Runs the stream-refdata walkthrough on one machine.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// How long to wait for each step before giving up, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    let emulator = LocalEmulator::connect_or_start()?;
    println!(
        "emulator: {} ({})",
        emulator.endpoint(),
        if emulator.is_owned() {
            "started for this run"
        } else {
            "AWS_ENDPOINT_URL"
        }
    );
    let sdk = emulator.sdk_config().await;
    let summary = demo::run(
        &sdk,
        &Names::default(),
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    println!();
    println!("summary");
    println!("  change files in the feed : {}", summary.change_files);
    println!(
        "  changes                  : {} INSERT, {} MODIFY, {} REMOVE",
        summary.inserts, summary.modifies, summary.removes
    );
    if let Some(p) = summary.propagation {
        println!("  table write -> change file listed: {} ms", p.as_millis());
    }
    println!(
        "  stream mapping           : {} invocations, {} records, {} retries, {} polls",
        summary.mapping.invocations,
        summary.mapping.records_delivered,
        summary.mapping.retries,
        summary.mapping.polls
    );
    Ok(())
}
