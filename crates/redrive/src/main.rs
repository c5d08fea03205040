//! The redrive binary: a command (`redrive [--dry-run] …`), or, under the Lambda runtime, a
//! function on the failure bucket's `ObjectCreated` notifications. The logic is in the library.

use aws_lambda_events::event::s3::S3Event;
use aws_plumbing::{decode_key, init, s3_client, sdk_config, S3Store};
use clap::Parser;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use redrive::{Action, Deployed, Function, Redriver, Report, S3FailureBucket, Settings};

/// Replays batches that an event source mapping discarded to its S3 on-failure destination,
/// through the same handler code with the functions' own configuration variables (the feed's
/// `CHANGE_BUCKET`, … and the orders consumer's `REFERENCE_TABLE`, `OUTPUT_BUCKET`, …), or
/// announces a gap in the change feed for what cannot be replayed.
#[derive(Parser, Debug)]
#[command(name = "redrive", version)]
struct Args {
    /// The failure bucket (default: $FAILURE_BUCKET).
    #[arg(long, env = "FAILURE_BUCKET")]
    bucket: String,
    /// The invocation records' prefix.
    #[arg(long, default_value = redrive::DEFAULT_FAILURE_PREFIX)]
    prefix: String,
    /// Say what would be done; write nothing, replay nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replays of one record before it counts as failing.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Take the change-handler's (and the feed's) variables from this deployed function's
    /// configuration (GetFunctionConfiguration) instead of this process's environment.
    #[arg(long, value_name = "FUNCTION")]
    change_handler: Option<String>,
    /// Take the orders consumer's variables from this deployed function's configuration.
    #[arg(long, value_name = "FUNCTION")]
    orders_consumer: Option<String>,
    /// Replay change-handler batches by invoking this deployed function (Lambda API) instead of
    /// in-process.
    #[arg(long, value_name = "FUNCTION")]
    invoke_change_handler: Option<String>,
    /// Replay orders batches by invoking this deployed function (Lambda API) instead of
    /// in-process.
    #[arg(long, value_name = "FUNCTION")]
    invoke_orders_consumer: Option<String>,
}

fn print(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    for o in &report.records {
        let action = serde_json::to_value(o.action).unwrap_or_default();
        let what = match (o.function, o.records) {
            (Some(f), Some(n)) => format!(" ({f}, {n} records)"),
            _ => String::new(),
        };
        println!(
            "{:<20} {}{what}: {}",
            action.as_str().unwrap_or("?"),
            o.key,
            o.detail
        );
        if let Some(gap) = &o.gap_key {
            println!("{:<20} gap file {gap}", "");
        }
    }
    let totals: Vec<String> = report
        .totals
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    println!(
        "{}{} record(s): {}",
        if report.dry_run { "dry run: " } else { "" },
        report.listed,
        if totals.is_empty() {
            "nothing to do".to_owned()
        } else {
            totals.join(", ")
        }
    );
}

/// A deployed function's environment variables (GetFunctionConfiguration).
async fn function_environment(
    client: &aws_sdk_lambda::Client,
    name: &str,
) -> Result<std::collections::HashMap<String, String>, Error> {
    let out = client
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(|e| {
            format!(
                "reading {name}'s configuration: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            )
        })?;
    Ok(out
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if lambda {
        lambda_runtime::tracing::init_default_subscriber();
    }
    let args = if lambda {
        Args {
            bucket: init::or_exit(
                "redrive",
                aws_plumbing::required_var(&|v| std::env::var(v).ok(), "FAILURE_BUCKET"),
            )
            .await,
            prefix: redrive::DEFAULT_FAILURE_PREFIX.into(),
            dry_run: false,
            attempts: 3,
            json: true,
            change_handler: None,
            orders_consumer: None,
            invoke_change_handler: None,
            invoke_orders_consumer: None,
        }
    } else {
        Args::parse()
    };
    let sdk = sdk_config(None).await;
    let lambda_client = aws_sdk_lambda::Client::new(&sdk);
    // The functions' own variables: from the deployed functions when named, else from here.
    let change_env = match &args.change_handler {
        Some(name) => Some(function_environment(&lambda_client, name).await?),
        None => None,
    };
    let orders_env = match &args.orders_consumer {
        Some(name) => Some(function_environment(&lambda_client, name).await?),
        None => None,
    };
    let feed_vars = |v: &str| match change_env.as_ref().or(orders_env.as_ref()) {
        Some(env) => env.get(v).cloned(),
        None => std::env::var(v).ok(),
    };
    let orders_vars = |v: &str| match &orders_env {
        Some(env) => env.get(v).cloned(),
        None => std::env::var(v).ok(),
    };
    let mut functions = init::or_exit(
        "redrive",
        Deployed::from_lookup(&feed_vars, &orders_vars).await,
    )
    .await;
    for (function, name) in [
        (Function::ChangeHandler, &args.invoke_change_handler),
        (Function::OrdersConsumer, &args.invoke_orders_consumer),
    ] {
        if let Some(name) = name {
            functions = functions.invoking(function, name, lambda_client.clone());
        }
    }
    let bucket = S3FailureBucket::new(S3Store::new(s3_client(&sdk)), &args.bucket);
    let settings = Settings {
        failure_prefix: args.prefix.clone(),
        dry_run: args.dry_run,
        attempts: args.attempts,
        ..Settings::default()
    };
    let redriver = Redriver::new(bucket, functions, settings);
    if !lambda {
        let report = redriver.run().await?;
        print(&report, args.json);
        // Anything not replayed (left, or announced as a gap) is the operator's to follow up.
        if report.unresolved() > 0 {
            std::process::exit(1);
        }
        return Ok(());
    }
    let redriver = &redriver;
    let prefix = &args.prefix;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        let mut keys = Vec::new();
        for r in &event.payload.records {
            let Some(raw) = r.s3.object.key.as_deref() else {
                continue;
            };
            let key = decode_key(raw)?;
            if key.starts_with(prefix.as_str()) {
                keys.push(key);
            }
        }
        let report = redriver.run_keys(&keys).await?;
        print(&report, true);
        // Left records fail the invocation, so Lambda's asynchronous retries try again; the
        // record stays in the bucket for the command either way.
        match report.count(Action::Left) {
            0 => Ok(()),
            n => Err(Error::from(format!(
                "{n} failure record(s) left; see the report"
            ))),
        }
    }))
    .await
}
