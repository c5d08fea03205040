//! `orders-replay`: a range of an archived orders stream enriched again as of each record's
//! arrival, into a new output prefix (`redrive::replay`). The orders consumer's variables come
//! from this process's environment, or from the deployed function (`--orders-consumer`).

use clap::Parser;
use redrive::replay::{replay, replay_config, Archive, KinesisArchive, ReplayStop, S3Archive};
use stream_refdata_aws::{init, s3_client, sdk_config};

/// Enriches a range of an archived orders stream again, as of each record's arrival, into a
/// new output prefix; run twice, it writes the same bytes.
#[derive(Parser, Debug)]
#[command(name = "orders-replay", version)]
struct Args {
    /// Where the output goes, in the consumer's OUTPUT_BUCKET: `<prefix>enriched/` and
    /// `<prefix>dead-letter/`.
    #[arg(long)]
    output_prefix: String,
    /// Read this Kinesis data stream from `--from` (AT_TIMESTAMP, every shard).
    #[arg(long, conflicts_with = "archive", required_unless_present = "archive")]
    stream: Option<String>,
    /// Read these objects instead: `s3://bucket/prefix/`, each a Kinesis Lambda event.
    #[arg(long)]
    archive: Option<String>,
    /// The first arrival time replayed (RFC 3339, e.g. 2026-12-06T00:00:00Z).
    #[arg(long)]
    from: chrono::DateTime<chrono::Utc>,
    /// The last arrival time replayed (default: now).
    #[arg(long)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Records per batch read from a stream (the same each run: the same object names).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Take the orders consumer's variables from this deployed function's configuration.
    #[arg(long, value_name = "FUNCTION")]
    orders_consumer: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sdk = sdk_config(None).await;
    let env = match &args.orders_consumer {
        Some(name) => Some(
            redrive::cli::function_environment(&aws_sdk_lambda::Client::new(&sdk), name).await?,
        ),
        None => None,
    };
    let vars = |v: &str| match &env {
        Some(env) => env.get(v).cloned(),
        None => std::env::var(v).ok(),
    };
    let config = init::or_exit("orders-replay", replay_config(&vars, &args.output_prefix)).await;
    eprintln!(
        "replaying into s3://{}/{} (enriched/, dead-letter/), as of each record's arrival",
        config.output_bucket, args.output_prefix
    );
    let consumer = orders_consumer::deployed(config, &sdk);
    let (from, to) = (
        args.from.timestamp_millis(),
        args.to.unwrap_or_else(chrono::Utc::now).timestamp_millis(),
    );
    let region = sdk.region().map(ToString::to_string).unwrap_or_default();
    let progress = |batch: &redrive::replay::ArchivedBatch,
                    so_far: &redrive::replay::ReplayReport| {
        eprintln!(
            "{} from {}: {} records; so far {} batches, {} records, {} enriched, {} dead-lettered",
            batch.shard,
            batch.records[0].sequence_number,
            batch.records.len(),
            so_far.batches,
            so_far.records,
            so_far.enriched,
            so_far.dead_lettered
        );
    };
    let report = match (&args.stream, &args.archive) {
        (Some(stream), _) => {
            let kinesis = aws_sdk_kinesis::Client::new(&sdk);
            let mut archive = KinesisArchive::new(kinesis, stream, from, to, args.batch_size);
            run(&mut archive, &consumer, &region, progress).await
        }
        (None, Some(url)) => {
            let (bucket, prefix) = url
                .strip_prefix("s3://")
                .and_then(|rest| rest.split_once('/'))
                .ok_or("--archive takes s3://bucket/prefix/")?;
            let mut archive = S3Archive::new(s3_client(&sdk), bucket, prefix, from, to);
            run(&mut archive, &consumer, &region, progress).await
        }
        (None, None) => return Err("give --stream or --archive".into()),
    };
    match report {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Err(stop) => {
            eprintln!("orders-replay stopped: {stop}");
            std::process::exit(1);
        }
    }
}

async fn run(
    archive: &mut impl Archive,
    consumer: &orders_consumer::DeployedConsumer,
    region: &str,
    progress: impl FnMut(&redrive::replay::ArchivedBatch, &redrive::replay::ReplayReport),
) -> Result<redrive::replay::ReplayReport, ReplayStop> {
    replay(archive, consumer, region, progress).await
}
