//! An example consumer of `stream-refdata`, built as a user builds one: a Lambda on a Kinesis
//! stream of page views (`{"user_id": "...", "page": "..."}`), each enriched with its user's plan
//! from a DynamoDB table `Users {user_id, plan}`. The table is held in memory and follows the
//! change feed that stream-refdata's change-handler writes from the table's stream, so a plan
//! changed in the table is seen by the next batch without a restart and without reading the
//! table per batch.
//!
//! Output, per batch, in `OUTPUT_BUCKET`: `enriched/<first sequence number>.jsonl` (each view with
//! its user's plan) and `rejected/<first sequence number>.jsonl` (each record that was not
//! enriched, with why: an unknown user, a record that is not a page view). Every record is in one
//! of the two: the counts reconcile, or the batch fails and Lambda retries it.

use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use serde::{Deserialize, Serialize};
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata::{Classified, FeedSettings, Outcome, SystemClock, TableConfig, TableEnricher};
use stream_refdata_aws::{number_var, required_var, ConfigError};

/// A record of the stream.
#[derive(Debug, Deserialize, Serialize)]
pub struct PageView {
    /// Who viewed.
    pub user_id: String,
    /// What.
    pub page: String,
}

/// An item of the reference table.
#[derive(Debug, Deserialize)]
pub struct User {
    /// The table's key.
    pub user_id: String,
    /// The user's plan.
    pub plan: String,
}

/// A page view with its user's plan: one line of the output.
#[derive(Debug, Serialize)]
struct Enriched<'a> {
    user_id: &'a str,
    page: &'a str,
    plan: &'a str,
}

/// The function's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The reference table (`TABLE_NAME`).
    pub table: String,
    /// The bucket of the table's change feed (`FEED_BUCKET`).
    pub feed_bucket: String,
    /// Where the output goes (`OUTPUT_BUCKET`).
    pub output_bucket: String,
    /// How the feed is followed (`FEED_POLL_INTERVAL_MS` sets how often it is polled at most).
    pub feed: FeedSettings,
}

impl Config {
    /// From the function's environment.
    ///
    /// # Errors
    /// A variable that is missing or not what it should be, named.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_vars(&|name| std::env::var(name).ok())
    }

    /// From variables read through `get` (the environment, or a map in tests).
    ///
    /// # Errors
    /// A variable that is missing or not what it should be, named.
    pub fn from_vars(get: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let feed = FeedSettings {
            poll_interval: Duration::from_millis(number_var(
                get,
                "FEED_POLL_INTERVAL_MS",
                1_000,
                0..=3_600_000,
                "milliseconds, at most an hour",
            )?),
            ..FeedSettings::default()
        };
        Ok(Config {
            table: required_var(get, "TABLE_NAME")?,
            feed_bucket: required_var(get, "FEED_BUCKET")?,
            output_bucket: required_var(get, "OUTPUT_BUCKET")?,
            feed,
        })
    }
}

/// One record of a batch on its way through the enricher.
struct Input {
    sequence_number: String,
    view: Result<PageView, String>,
}

/// The function: its enricher (one per instance, warm across invocations) and its output.
pub struct Handler {
    enricher: tokio::sync::Mutex<TableEnricher<User>>,
    s3: aws_sdk_s3::Client,
    output_bucket: String,
}

/// Why a batch failed (Lambda retries it whole).
pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl Handler {
    /// The function for `config`, with the SDK's configuration.
    pub fn new(config: Config, sdk: &aws_config::SdkConfig) -> Handler {
        let table_config = TableConfig::new(&config.table, &["user_id"], |u: &User| {
            Some(u.user_id.clone())
        })
        .with_feed(config.feed);
        let table = DynamoDbTable::new(aws_sdk_dynamodb::Client::new(sdk), &config.table);
        // (path-style addressing when an endpoint URL is set: an emulator)
        let s3 = stream_refdata_aws::s3_client(sdk);
        let feed = S3Feed::new(s3.clone(), &config.feed_bucket);
        Handler {
            enricher: tokio::sync::Mutex::new(TableEnricher::new(
                table_config,
                table,
                Some(feed),
                SystemClock,
            )),
            s3,
            output_bucket: config.output_bucket,
        }
    }

    /// Enriches a batch and writes it out.
    ///
    /// # Errors
    /// An output that could not be written, or counts that do not reconcile: the batch is
    /// retried whole (the objects are named by the batch, so a retry overwrites them).
    pub async fn handle(&self, event: KinesisEvent) -> Result<KinesisEventResponse, Error> {
        let records = event.records.len();
        let Some(first) = event.records.first() else {
            return Ok(KinesisEventResponse::default());
        };
        let name = first.kinesis.sequence_number.clone();
        let inputs: Vec<Input> = (event.records.into_iter())
            .map(|r| Input {
                sequence_number: r.kinesis.sequence_number,
                view: serde_json::from_slice(&r.kinesis.data.0)
                    .map_err(|e| format!("not a page view: {e}")),
            })
            .collect();
        let (outcomes, report) = self
            .enricher
            .lock()
            .await
            .process_batch(inputs, |input| match &input.view {
                Ok(view) => Classified::Data(view.user_id.clone()),
                Err(why) => Classified::Invalid(why.clone()),
            })
            .await;
        let (mut enriched, mut rejected) = (String::new(), String::new());
        let mut reject = |input: Input, why: String| {
            let user_id = input.view.ok().map(|v| v.user_id);
            rejected.push_str(
                &serde_json::json!({
                    "sequenceNumber": input.sequence_number, "user_id": user_id, "reason": why
                })
                .to_string(),
            );
            rejected.push('\n');
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Enriched { record, item } => {
                    if let Ok(view) = &record.view {
                        let line = Enriched {
                            user_id: &view.user_id,
                            page: &view.page,
                            plan: &item.plan,
                        };
                        enriched.push_str(&serde_json::to_string(&line)?);
                        enriched.push('\n');
                    }
                }
                Outcome::Rejected { record, reason } | Outcome::Passed { record, reason } => {
                    reject(record, reason.to_string());
                }
                Outcome::Invalid { record, reason } => reject(record, reason),
                Outcome::Held { .. } | Outcome::Waiting { .. } => {
                    // (the default policies hold nothing: a held record means a refresh
                    // failed, and the batch is retried)
                    return Err("the reference could not be refreshed: retrying the batch".into());
                }
                Outcome::Dropped { .. } | Outcome::Flag => {}
            }
        }
        let written = enriched.lines().count() + rejected.lines().count();
        if !report.reconciles() || written != records {
            return Err(format!("{records} records in, {written} written: {report:?}").into());
        }
        for (prefix, body) in [("enriched", enriched), ("rejected", rejected)] {
            if body.is_empty() {
                continue;
            }
            self.s3
                .put_object()
                .bucket(&self.output_bucket)
                .key(format!("{prefix}/{name}.jsonl"))
                .body(body.into_bytes().into())
                .send()
                .await?;
        }
        Ok(KinesisEventResponse::default())
    }
}
