//! The binary's two modes, decided here so `main` stays thin: a command (`redrive [--dry-run]
//! …`), or, under the Lambda runtime, a function on the failure bucket's `ObjectCreated`
//! notifications. Also where the functions' configuration comes from: this process's
//! environment, or the deployed functions' own variables (GetFunctionConfiguration).

use std::collections::HashMap;

use aws_lambda_events::event::s3::S3Event;
use clap::Parser;
use stream_refdata_aws::{decode_key, s3_client, KeyDecodeError, S3Store, SdkConfig};

use crate::{Action, Deployed, Function, Redriver, Report, S3FailureBucket, Settings};

/// Replays batches that an event source mapping discarded to its S3 on-failure destination,
/// through the same handler code with the functions' own configuration variables (the feed's
/// `CHANGE_BUCKET`, … and the orders consumer's `REFERENCE_TABLE`, `OUTPUT_BUCKET`, …), or
/// announces a gap in the change feed for what cannot be replayed.
#[derive(Parser, Debug, Clone)]
#[command(name = "redrive", version)]
pub struct Args {
    /// The failure bucket (default: $FAILURE_BUCKET).
    #[arg(long, env = "FAILURE_BUCKET")]
    pub bucket: String,
    /// The invocation records' prefix.
    #[arg(long, default_value = crate::DEFAULT_FAILURE_PREFIX)]
    pub prefix: String,
    /// Say what would be done; write nothing, replay nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replays of one record before it counts as failing.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Take the change-handler's (and the feed's) variables from this deployed function's
    /// configuration (GetFunctionConfiguration) instead of this process's environment.
    #[arg(long, value_name = "FUNCTION")]
    pub change_handler: Option<String>,
    /// Take the orders consumer's variables from this deployed function's configuration.
    #[arg(long, value_name = "FUNCTION")]
    pub orders_consumer: Option<String>,
    /// Replay change-handler batches by invoking this deployed function (Lambda API) instead of
    /// in-process.
    #[arg(long, value_name = "FUNCTION")]
    pub invoke_change_handler: Option<String>,
    /// Replay orders batches by invoking this deployed function (Lambda API) instead of
    /// in-process.
    #[arg(long, value_name = "FUNCTION")]
    pub invoke_orders_consumer: Option<String>,
    /// Replay orders batches with the reference as it is now, not as of each record's arrival
    /// (the default, `ENRICH_AS_OF=arrival`, unless the function sets `ENRICH_AS_OF`).
    #[arg(long)]
    pub live: bool,
}

impl Args {
    /// The Lambda mode's settings: the failure bucket from `FAILURE_BUCKET`, the rest default,
    /// the report as JSON.
    pub fn for_lambda(bucket: String) -> Args {
        Args {
            bucket,
            prefix: crate::DEFAULT_FAILURE_PREFIX.into(),
            dry_run: false,
            attempts: 3,
            json: true,
            change_handler: None,
            orders_consumer: None,
            invoke_change_handler: None,
            invoke_orders_consumer: None,
            live: false,
        }
    }
}

/// How the binary runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A command: one run over the bucket, the report on stdout.
    Command,
    /// A Lambda function on the failure bucket's notifications.
    Lambda,
}

impl Mode {
    /// Lambda when the runtime API is there (`AWS_LAMBDA_RUNTIME_API`), else a command.
    pub fn from_env() -> Mode {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
            Mode::Lambda
        } else {
            Mode::Command
        }
    }
}

/// Why the redriver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A deployed function's configuration could not be read.
    #[error("reading {function}'s configuration: {}", aws_sdk_lambda::error::DisplayErrorContext(.source.as_ref()))]
    FunctionConfiguration {
        /// The function named.
        function: String,
        /// What the Lambda API said.
        #[source]
        source: Box<
            aws_sdk_lambda::error::SdkError<
                aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationError,
            >,
        >,
    },
    /// A variable the functions need is missing or wrong.
    #[error(transparent)]
    Config(#[from] stream_refdata_aws::ConfigError),
}

/// A deployed function's environment variables (GetFunctionConfiguration).
pub async fn function_environment(
    client: &aws_sdk_lambda::Client,
    name: &str,
) -> Result<HashMap<String, String>, SetupError> {
    let out = client
        .get_function_configuration()
        .function_name(name)
        .send()
        .await
        .map_err(|source| SetupError::FunctionConfiguration {
            function: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(out
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default())
}

/// The redriver `args` describe, with clients from `sdk`: the functions' variables from the
/// deployed functions when named (else from this process's environment), replays in-process
/// or through the Lambda API as asked.
pub async fn redriver(
    args: &Args,
    sdk: &SdkConfig,
) -> Result<Redriver<S3FailureBucket, Deployed>, SetupError> {
    let lambda_client = aws_sdk_lambda::Client::new(sdk);
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
    let mut functions = Deployed::from_lookup(&feed_vars, &orders_vars, args.live).await?;
    for (function, name) in [
        (Function::ChangeHandler, &args.invoke_change_handler),
        (Function::OrdersConsumer, &args.invoke_orders_consumer),
    ] {
        if let Some(name) = name {
            functions = functions.invoking(function, name, lambda_client.clone());
        }
    }
    let bucket = S3FailureBucket::new(S3Store::new(s3_client(sdk)), &args.bucket);
    let settings = Settings {
        failure_prefix: args.prefix.clone(),
        dry_run: args.dry_run,
        attempts: args.attempts,
        ..Settings::default()
    };
    Ok(Redriver::new(bucket, functions, settings))
}

/// The failure records an S3 notification names under `prefix` (keys decoded as S3 encodes
/// them in events).
pub fn notified_keys(event: &S3Event, prefix: &str) -> Result<Vec<String>, KeyDecodeError> {
    let mut keys = Vec::new();
    for r in &event.records {
        let Some(raw) = r.s3.object.key.as_deref() else {
            continue;
        };
        let key = decode_key(raw)?;
        if key.starts_with(prefix) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Records a Lambda-mode run left: they fail the invocation, so Lambda's asynchronous retries
/// try again (the record stays in the bucket for the command either way).
#[derive(Debug, thiserror::Error)]
#[error("{0} failure record(s) left; see the report")]
pub struct RecordsLeft(pub usize);

/// The Lambda mode's verdict on a run: an error when records were left.
pub fn lambda_outcome(report: &Report) -> Result<(), RecordsLeft> {
    match report.count(Action::Left) {
        0 => Ok(()),
        n => Err(RecordsLeft(n)),
    }
}

/// The report as the command prints it: JSON, or one line per record and a total.
pub fn render(report: &Report, json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(report).unwrap_or_default();
    }
    let mut out = String::new();
    for o in &report.records {
        let action = serde_json::to_value(o.action).unwrap_or_default();
        let what = match (o.function, o.records) {
            (Some(f), Some(n)) => format!(" ({f}, {n} records)"),
            _ => String::new(),
        };
        out += &format!(
            "{:<20} {}{what}: {}\n",
            action.as_str().unwrap_or("?"),
            o.key,
            o.detail
        );
        if let Some(gap) = &o.gap_key {
            out += &format!("{:<20} gap file {gap}\n", "");
        }
    }
    let totals: Vec<String> = report
        .totals
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    out += &format!(
        "{}{} record(s): {}",
        if report.dry_run { "dry run: " } else { "" },
        report.listed,
        if totals.is_empty() {
            "nothing to do".to_owned()
        } else {
            totals.join(", ")
        }
    );
    out
}
