//! `local-pipeline`: runs the walkthrough on the embedded emulator and prints a summary.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{ensure, Result};
use clap::Parser;
use local_emulator::provision::Names;
use local_emulator::LocalEmulator;
use local_pipeline::commands;
use local_pipeline::demo::{self, LiveOptions, Options, OrdersSource, Progress};
use local_pipeline::kafka_broker::KafkaBroker;

/// Runs the stream-refdata walkthrough on one machine: orders stream in, the reference data
/// changes (DynamoDB and S3), and the enriched output follows the change.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Orders per second.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Orders put (and consumed) before burger's priority changes from medium to high.
    #[arg(long, default_value_t = Options::default().update_after)]
    update_after: usize,
    /// Orders put before the S3 reference object changes.
    #[arg(long, default_value_t = Options::default().s3_change_after)]
    s3_change_after: usize,
    /// Orders put after every shard met the S3 change's flag.
    #[arg(long, default_value_t = Options::default().orders_after_flags)]
    orders_after_flags: usize,
    /// Keep the pipeline running until Ctrl-C, and change the reference data yourself with the
    /// `aws` commands it prints (the seed's walkthrough); no scripted changes.
    #[arg(long)]
    interactive: bool,
    /// Appended to every resource name (`ProductPriority-<suffix>` …), to run several pipelines
    /// on one emulator.
    #[arg(long)]
    name_suffix: Option<String>,
    /// Where the orders stream: `kinesis` (the 4-shard stream) or `kafka` (a 4-partition topic
    /// on a Kafka-protocol broker the run starts on loopback, as an MSK cluster's would be).
    #[arg(long, value_enum, default_value_t = Source::Kinesis)]
    source: Source,
}

/// The orders stream's kind (`--source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Source {
    Kinesis,
    Kafka,
}

/// The progress line: on a terminal rewritten in place; otherwise printed every 5 s, and (live)
/// whenever a dish lands somewhere new, a flag arrives or a shard enriches its first salad after
/// its flag.
struct Show {
    tty: bool,
    live: bool,
    last: std::sync::Mutex<(String, usize, usize)>,
}

impl Show {
    fn show(&self, p: &Progress) {
        let mut line = format!(
            "[{:>5.1}s] sent {:>5} | consumed {:>5} | enriched {:>5} | held {:>4} (released {:>4}) | unmatched {:>4} | rejected {:>3} | flags {} | burger: medium {:>4}, high {:>4}",
            p.elapsed.as_secs_f64(), p.sent, p.consumed, p.enriched, p.held, p.released, p.unmatched, p.rejected, p.flags, p.burger_medium, p.burger_high
        );
        let landing = p.landing_line();
        if self.live {
            line = format!(
                "{line} | salad after its flag on {} shards | {landing}",
                p.shards_with_salad_after_flag
            );
        }
        if self.tty {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = (landing, p.flags, p.shards_with_salad_after_flag);
        let changed = self.live && *last != now;
        if changed || p.elapsed.as_millis() % 5000 < 500 {
            eprintln!("{line}");
            *last = now;
        }
    }
}

fn names(suffix: Option<&str>) -> Names {
    let d = Names::default();
    let Some(x) = suffix else { return d };
    Names {
        table: format!("{}-{x}", d.table),
        bucket: format!("{}-{x}", d.bucket),
        stream: format!("{}-{x}", d.stream),
        queue: format!("{}-{x}", d.queue),
        ..d
    }
}

/// The redrive of the demo's discarded batches (see crates/redrive), with the functions'
/// variables as the demo sets them; `endpoint` when printed for another terminal.
fn redrive_command(names: &Names, endpoint: Option<&str>) -> String {
    let endpoint = endpoint
        .map(|e| format!("AWS_ENDPOINT_URL={e} AWS_REGION=us-east-1 "))
        .unwrap_or_default();
    let vars: Vec<String> = local_pipeline::demo::consumer_variables(names)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", commands::shell_quote(&v)))
        .collect();
    format!(
        "{endpoint}FAILURE_BUCKET={} {} cargo run -q -p redrive -- --dry-run",
        names.bucket,
        vars.join(" ")
    )
}

/// Prints the endpoint and the seed's commands for the interactive mode.
fn print_commands(endpoint: &str, names: &Names) {
    println!("\nthe pipeline runs until Ctrl-C. In another terminal (the emulator takes any credentials):");
    println!("  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing");
    for c in commands::walkthrough(names, endpoint) {
        println!("  # {}", c.what);
        println!("  $ {}", c.shell_line());
    }
    println!("  # batches a mapping discards after its last retry: what the redrive would replay (drop --dry-run to replay)");
    println!("  $ {}", redrive_command(names, Some(endpoint)));
    println!("the progress line shows where each dish lands (dish→priority); flags count the S3 change's flags met.\n");
    let _ = std::io::stdout().flush();
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let args = Args::parse();
    let emulator = LocalEmulator::connect_or_start()?;
    println!(
        "stream-refdata walkthrough on the local pipeline — emulator {} ({})",
        emulator.endpoint(),
        if emulator.is_owned() {
            "started for this run"
        } else {
            "AWS_ENDPOINT_URL"
        }
    );
    let sdk = emulator.sdk_config().await;
    let names = names(args.name_suffix.as_deref());
    // (with `--source kafka`: the broker, for this run, with the 4-partition orders topic)
    let topic = format!(
        "orders{}",
        args.name_suffix
            .as_deref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default()
    );
    let broker = match args.source {
        Source::Kinesis => None,
        Source::Kafka => Some(KafkaBroker::start(&topic, 4)?),
    };
    let source = match &broker {
        None => OrdersSource::Kinesis,
        Some(b) => {
            println!(
                "orders on Kafka: topic {topic} (4 partitions) on the broker at {} (started for this run)",
                b.bootstrap_servers.join(",")
            );
            OrdersSource::Kafka {
                bootstrap_servers: b.bootstrap_servers.clone(),
                topic: topic.clone(),
            }
        }
    };
    let over = match args.source {
        Source::Kinesis => "4 shards",
        Source::Kafka => "4 partitions",
    };
    let show = Show {
        tty: std::io::stderr().is_terminal(),
        live: args.interactive,
        last: Default::default(),
    };
    let s = if args.interactive {
        println!(
            "{} orders/s over {over} until Ctrl-C; the reference data changes when you change it",
            args.rate
        );
        print_commands(emulator.endpoint(), &names);
        let options = LiveOptions {
            rate: args.rate,
            drain_timeout: Duration::from_secs(60),
            source: source.clone(),
        };
        let stop = async {
            // Without a signal handler the stop is never asked for: run on.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            eprintln!("\nCtrl-C: stopping the orders, draining the stream");
        };
        demo::live(&sdk, &names, &options, stop, |p| show.show(p)).await?
    } else {
        println!(
            "{} orders/s over {over}; burger medium -> high after {} orders; the S3 reference object changes after {}; {} more orders once every {} met its flag",
            args.rate,
            args.update_after,
            args.s3_change_after,
            args.orders_after_flags,
            if broker.is_some() { "partition" } else { "shard" }
        );
        let options = Options {
            rate: args.rate,
            update_after: args.update_after,
            s3_change_after: args.s3_change_after,
            orders_after_flags: args.orders_after_flags,
            source,
            ..Options::default()
        };
        demo::run(&sdk, &names, &options, |p| show.show(p)).await?
    };
    if show.tty {
        eprintln!();
    }

    let p = &s.progress;
    let orders = s.sent.len();
    // Orders in batches a mapping discarded after its last retry: in the failure records.
    let discarded = s.discarded_orders;
    let accounted = p.enriched + p.held + p.unmatched + p.rejected + discarded;
    println!("\nsummary ({:.1} s)", p.elapsed.as_secs_f64());
    println!(
        "  orders in                : {orders} (plus {} change flags in the stream)",
        p.flags
    );
    println!(
        "  enriched / held / unmatched / rejected : {} / {} / {} / {}   in = out + held + unmatched + rejected: {}",
        p.enriched,
        p.held,
        p.unmatched,
        p.rejected,
        if accounted == orders { "yes" } else { "NO" }
    );
    println!(
        "  held orders: {} released once their row arrived, {} dead-lettered past the grace, {} still held (no row yet; `donut` never gets one)",
        p.released,
        p.expired,
        p.held - p.released - p.expired
    );
    if let (Some(at), Some(before)) = (s.new_dish_row_at, s.new_dish_before_row) {
        let dish = local_pipeline::demo::NEW_DISH;
        let landed = s.output.iter().filter(|l| l.item == dish).count();
        println!(
            "  {dish} went on sale before its row: {before} orders came first and were held; its row was written at {:.2} s; {landed} {dish} orders are in item={dish}/priority={}/, none dead-lettered; the longest was held {}",
            at.as_secs_f64(),
            local_pipeline::demo::NEW_DISH_PRIORITY,
            p.longest_held
                .map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        );
    }
    let records = s.failure_records();
    if !records.is_empty() {
        println!(
            "  DISCARDED after the last retry: {discarded} orders in {} batch(es), recorded under s3://{}/aws/lambda/; replay them with",
            records.len(),
            names.bucket
        );
        println!("    {}", redrive_command(&names, None));
    }
    println!(
        "  lines read back from s3://{}/{}:",
        names.bucket, names.output_prefix
    );
    for (partition, n) in &s.partitions {
        println!("    {partition:<40} {n:>6}");
    }
    println!(
        "  dead letters (s3://{}/{}) : {}",
        names.bucket, names.dead_letter_prefix, s.dead_letters
    );
    match (s.update_at, s.first_high_burger_at) {
        (Some(update), Some(first_high)) => println!(
            "  burger switched to priority=high: update-item at {:.2} s, first burger written to priority=high at {:.2} s",
            update.as_secs_f64(),
            first_high.as_secs_f64()
        ),
        (None, Some(first_high)) => println!(
            "  first burger written to priority=high at {:.2} s",
            first_high.as_secs_f64()
        ),
        _ => {}
    }
    if let (Some(before), Some(applied)) = (s.updated_after, s.applied_after) {
        println!(
            "  the first {before} orders were consumed before the update; from order {applied} on, every shard's consumer had applied it"
        );
    }
    println!("  where each dish landed last: {}", p.landing_line());
    if let Some(prop) = s.propagation() {
        println!(
            "  propagation (table write -> first enriched record with the new value): {} ms",
            prop.as_millis()
        );
    }
    if let Some(at) = s.s3_change_at {
        println!(
            "  S3 reference object changed at {:.2} s: {} flags reached the consumers (one per {})",
            at.as_secs_f64(),
            p.flags,
            if broker.is_some() {
                "partition"
            } else {
                "shard"
            }
        );
    }
    if !s.flags_at.is_empty() {
        println!(
            "  salad's menu category starters -> salads (the S3 object), per {}:",
            if broker.is_some() {
                "partition"
            } else {
                "shard"
            }
        );
        for e in s.flag_effects(local_pipeline::demo::NEW_SALAD_CATEGORY) {
            let tail = |seq: &str| seq[seq.len().saturating_sub(8)..].to_owned();
            match &e.first_after {
                Some((seq, category)) => println!(
                    "    {}: flag at …{}, first salad after it …{} with category={}; old value after the flag: {}",
                    e.shard,
                    tail(&e.flag_at),
                    tail(seq),
                    category.as_deref().unwrap_or("-"),
                    e.old_after
                ),
                None => println!(
                    "    {}: flag at …{}, no salad order after it",
                    e.shard,
                    tail(&e.flag_at)
                ),
            }
        }
    }
    let m = &s.consumer_requests;
    println!("  AWS requests by the 4 consumers:");
    println!(
        "    full loads (Scan)                 : {} ({} DynamoDB items read in all, {} re-read)",
        m.full_refreshes, m.items_read, m.items_reread
    );
    println!(
        "    change-feed pointer polls (GET)   : {} ({} answered 304 Not Modified)",
        m.head_polls, m.head_not_modified
    );
    println!("    change-feed lists                 : {}", m.feed_lists);
    println!(
        "    change files read                 : {} ({} files in the feed, each read by each consumer)",
        m.feed_gets, s.change_files
    );
    println!(
        "    delta refreshes                   : {}",
        m.delta_refreshes
    );
    println!("  event source mappings:");
    for (name, st) in &s.mappings {
        println!(
            "    {name:<40} {:>5} invocations, {:>6} records, {} retries",
            st.invocations, st.records_delivered, st.retries
        );
    }
    ensure!(
        accounted == orders,
        "orders were lost: {orders} in, {accounted} accounted for"
    );
    Ok(())
}
