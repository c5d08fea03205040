//! What a redrive replays through, and where it announces gaps.

use std::future::Future;

use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use change_handler::ChangeHandler;
use feed_writer::{FeedConfig, FeedWriter, WriteError};
use orders_consumer::DeployedConsumer;
use serde_json::Value;
use stream_refdata_aws::{
    ConfigError, ObjectStore, OffsetClock, S3Error, S3Store, SdkConfig, StoreError,
};

use crate::Function;

/// Why the redrive has no configuration for a function: its variables are wrong, or the
/// caller left it out on purpose (`"none".into()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconfigured {
    /// The function's variables are missing or wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The caller gave no configuration, for the reason stated.
    #[error("{0}")]
    Omitted(String),
}

impl From<&str> for Unconfigured {
    fn from(reason: &str) -> Self {
        Unconfigured::Omitted(reason.to_owned())
    }
}

/// Why a payload was not replayed. The handler's own error, the SDK's or the JSON parser's
/// is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The redrive has no configuration for this function.
    #[error("no configuration for the {0}: {1}")]
    NotConfigured(Function, #[source] Unconfigured),
    /// The handler reported a failure: a function error, or records in `batchItemFailures`.
    #[error("{0}")]
    Failed(String),
    /// The deployed function could not be invoked.
    #[error("Invoke {function}: {}", DisplayErrorContext(.source.as_ref()))]
    Invoke {
        /// The deployed function's name.
        function: String,
        /// What the Lambda API said.
        #[source]
        source: Box<SdkError<InvokeError>>,
    },
    /// The deployed function's response is not JSON.
    #[error("{function} answered something that is not JSON ({source}): {body}")]
    NotJson {
        /// The deployed function's name.
        function: String,
        /// What it answered.
        body: String,
        /// Why that does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The record's payload is not JSON.
    #[error("payload is not JSON: {0}")]
    Payload(#[source] serde_json::Error),
    /// The change-handler failed the invocation.
    #[error("{0}")]
    ChangeHandler(#[source] change_handler::HandlerError),
    /// The orders consumer failed the invocation.
    #[error("{0}")]
    OrdersConsumer(#[source] orders_consumer::HandlerError),
    /// The handler's response could not be read back as JSON.
    #[error("{0}")]
    Response(#[source] serde_json::Error),
}

impl ReplayError {
    /// The Invoke call on the deployed function `function` failed.
    fn invoke(function: &str, source: SdkError<InvokeError>) -> ReplayError {
        ReplayError::Invoke {
            function: function.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Why the failure bucket could not be listed, read or written.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// Listing failed.
    #[error("listing s3://{bucket}/{prefix}: {source}")]
    List {
        /// The failure bucket.
        bucket: String,
        /// The prefix listed.
        prefix: String,
        /// What S3 said.
        #[source]
        source: S3Error,
    },
    /// Reading an object failed.
    #[error("reading s3://{bucket}/{key}: {source}")]
    Get {
        /// The failure bucket.
        bucket: String,
        /// The object read.
        key: String,
        /// What S3 said.
        #[source]
        source: S3Error,
    },
    /// Writing an object failed.
    #[error("{0}")]
    Put(#[source] StoreError),
}

/// The handlers a discarded batch goes back through, and the feed a gap is announced in.
/// [`Deployed`] is the real one; tests pass fakes. The futures need not be `Send`: a redrive
/// runs its records one after the other on one task.
pub trait Functions {
    /// Replays one invocation `payload` (the event's JSON text) through `function`'s handler.
    /// `Ok` only when the handler succeeded and reported no `batchItemFailures`.
    fn replay(
        &self,
        function: Function,
        payload: &str,
        request_id: &str,
    ) -> impl Future<Output = Result<(), ReplayError>>;

    /// Writes a `gap` change file stating `reason`, so every consumer reloads; returns its key.
    fn announce_gap(
        &self,
        reason: &str,
        unique: &str,
    ) -> impl Future<Output = Result<String, WriteError>>;
}

/// The functions as deployed, in-process: the same handler code and configuration variables
/// as the Lambda functions (`change_handler::deployed`, `orders_consumer::deployed`); or, for a
/// function named with [`Deployed::invoking`], the deployed function itself through the Lambda
/// API.
pub struct Deployed {
    change_handler: ChangeHandler<S3Store>,
    gap_writer: FeedWriter<S3Store>,
    orders: Result<DeployedConsumer, Unconfigured>,
    invoke: Vec<(Function, String, aws_sdk_lambda::Client)>,
}

impl std::fmt::Debug for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployed")
            .field("orders", &self.orders.is_ok())
            .finish_non_exhaustive()
    }
}

/// The orders consumer's configuration for replaying its batches, from its variables `orders`:
/// as the function has it, except that orders are enriched **as of their arrival**
/// (`ENRICH_AS_OF=arrival`) unless the function sets `ENRICH_AS_OF` itself, and live when
/// `live` is asked (whatever the function says). A replay as of arrival writes byte for byte
/// what an as-of first attempt wrote; for a live function, what it would have written had it
/// run at the records' arrival (each line then says `as_of`, and an order can land in another
/// partition than a live attempt's partial output put it). A function whose configuration
/// cannot enrich as of arrival (the hold, a second reference) is replayed as it is: the second
/// value says why.
///
/// # Errors
/// The function's variables are missing or wrong.
pub fn replay_config(
    orders: &impl Fn(&str) -> Option<String>,
    live: bool,
) -> Result<(orders_consumer::Config, Option<String>), Unconfigured> {
    let mut own = orders_consumer::Config::from_lookup(orders)?;
    if live {
        own.as_of = None;
        return Ok((own, None));
    }
    if orders("ENRICH_AS_OF").is_some_and(|v| !v.trim().is_empty()) {
        return Ok((own, None));
    }
    let as_of = |var: &str| match var {
        "ENRICH_AS_OF" => Some("arrival".to_owned()),
        other => orders(other),
    };
    match orders_consumer::Config::from_lookup(&as_of) {
        Ok(config) => Ok((config, None)),
        Err(why) => Ok((own, Some(why.to_string()))),
    }
}

impl Deployed {
    /// From the environment, with the functions' own variables: the feed's (`CHANGE_BUCKET`,
    /// `CHANGE_PREFIX`, `WRITE_WINDOW_SECS`, `LEGACY_FLAG_KEY`: required, gaps are written
    /// there) and, when set, the orders consumer's (`REFERENCE_TABLE`, `OUTPUT_BUCKET`, …);
    /// without those, orders records are left and reported.
    pub async fn from_env() -> Result<Deployed, stream_refdata_aws::ConfigError> {
        let get = |v: &str| std::env::var(v).ok();
        Deployed::from_lookup(&get, &get, false).await
    }

    /// From two variable lookups: `feed` for the change-handler's (and the gap writer's)
    /// variables, `orders` for the orders consumer's (a deployed function's environment, say).
    ///
    /// Orders batches are replayed as of each record's arrival unless `live` (see
    /// [`replay_config`]).
    pub async fn from_lookup(
        feed: &impl Fn(&str) -> Option<String>,
        orders: &impl Fn(&str) -> Option<String>,
        live: bool,
    ) -> Result<Deployed, stream_refdata_aws::ConfigError> {
        let feed = FeedConfig::from_lookup(feed)?;
        let orders = replay_config(orders, live).map(|(config, why_live)| {
            if let Some(why) = why_live {
                tracing::warn!(reason = %why, "orders batches are replayed with the reference as it is now, not as of their arrival");
            }
            config
        });
        Ok(Deployed::new(feed, orders).await)
    }

    /// From the functions' configurations (`orders`: the consumer's, or why there is none),
    /// with SDK clients from the environment as the functions load them, and S3's clock: the
    /// change files and gaps it writes are named from S3's time, not this machine's.
    pub async fn new(
        feed: FeedConfig,
        orders: Result<orders_consumer::Config, Unconfigured>,
    ) -> Self {
        // The change-handler's own SDK settings: the operation timeout is its write budget.
        let handler_sdk = stream_refdata_aws::sdk_config(Some(feed.write_budget())).await;
        let sdk = stream_refdata_aws::sdk_config(None).await;
        let probe = format!("{}.redrive-clock-probe", feed.prefix);
        let s3 = stream_refdata_aws::s3_client(&sdk);
        let clock = match OffsetClock::measure(&s3, &feed.bucket, &probe).await {
            Ok(clock) => {
                if !clock.offset().is_zero() {
                    tracing::warn!(
                        offset_ms = clock.offset().num_milliseconds(),
                        "this machine's clock differs from S3's; change files are named from S3's"
                    );
                }
                clock
            }
            Err(e) => {
                tracing::warn!(error = %e, "S3's clock not measured; using this machine's");
                OffsetClock::default()
            }
        };
        Deployed::with_sdk(feed, orders, &handler_sdk, &sdk, clock)
    }

    /// Like [`Deployed::new`] with the SDK configurations and the clock given: `handler_sdk`
    /// for the change-handler and the gap writer, `sdk` for the orders consumer.
    pub fn with_sdk(
        feed: FeedConfig,
        orders: Result<orders_consumer::Config, Unconfigured>,
        handler_sdk: &SdkConfig,
        sdk: &SdkConfig,
        clock: OffsetClock,
    ) -> Self {
        Deployed {
            change_handler: change_handler::deployed_with_clock(feed.clone(), handler_sdk, clock),
            gap_writer: FeedWriter::new(
                feed,
                S3Store::new(stream_refdata_aws::s3_client(handler_sdk)),
                clock,
                concat!("redrive ", env!("CARGO_PKG_VERSION")),
            ),
            orders: orders.map(|c| orders_consumer::deployed(c, sdk)),
            invoke: Vec::new(),
        }
    }

    /// Replays `function`'s batches by invoking the deployed function `name` (synchronously,
    /// `RequestResponse`) through `client` instead of in-process: its own code version and
    /// configuration, at the price of `lambda:InvokeFunction` on it.
    pub fn invoking(
        mut self,
        function: Function,
        name: impl Into<String>,
        client: aws_sdk_lambda::Client,
    ) -> Self {
        self.invoke.retain(|(f, _, _)| *f != function);
        self.invoke.push((function, name.into(), client));
        self
    }
}

/// One synchronous invocation of the deployed function `name` with `payload`: its response, or
/// why it failed (the function's own error included, from `X-Amz-Function-Error`).
async fn invoke(
    client: &aws_sdk_lambda::Client,
    name: &str,
    payload: &str,
) -> Result<Value, ReplayError> {
    let out = client
        .invoke()
        .function_name(name)
        .invocation_type(aws_sdk_lambda::types::InvocationType::RequestResponse)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.as_bytes()))
        .send()
        .await
        .map_err(|e| ReplayError::invoke(name, e))?;
    let body = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(kind) = out.function_error() {
        return Err(ReplayError::Failed(format!(
            "{name} failed ({kind}): {body}"
        )));
    }
    serde_json::from_str(&body).map_err(|source| ReplayError::NotJson {
        function: name.to_owned(),
        body,
        source,
    })
}

/// `Ok` when a Lambda response has no `batchItemFailures` (a stream's identifiers are sequence
/// numbers; a Kafka mapping's, `{partition, offset}` objects: any entry is a failure).
fn no_failures(response: &Value) -> Result<(), ReplayError> {
    let failed: Vec<String> = response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| match &f["itemIdentifier"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ReplayError::Failed(format!(
            "the handler reported {} record(s) in batchItemFailures, from {}",
            failed.len(),
            failed[0]
        )))
    }
}

impl Functions for Deployed {
    async fn replay(
        &self,
        function: Function,
        payload: &str,
        request_id: &str,
    ) -> Result<(), ReplayError> {
        if let Some((_, name, client)) = self.invoke.iter().find(|(f, _, _)| *f == function) {
            return no_failures(&invoke(client, name, payload).await?);
        }
        let response = match function {
            Function::ChangeHandler => {
                let event: Value = serde_json::from_str(payload).map_err(ReplayError::Payload)?;
                let r = self
                    .change_handler
                    .handle(&event, request_id)
                    .await
                    .map_err(ReplayError::ChangeHandler)?;
                serde_json::to_value(r).map_err(ReplayError::Response)?
            }
            Function::OrdersConsumer => {
                let consumer = self
                    .orders
                    .as_ref()
                    .map_err(|why| ReplayError::NotConfigured(function, why.clone()))?;
                // (a Kinesis event or a Kafka one, parsed as the function parses it)
                let event: orders_consumer::Invocation =
                    serde_json::from_str(payload).map_err(ReplayError::Payload)?;
                let (r, _) = consumer
                    .handle_any(event)
                    .await
                    .map_err(ReplayError::OrdersConsumer)?;
                serde_json::to_value(r).map_err(ReplayError::Response)?
            }
        };
        no_failures(&response)
    }

    async fn announce_gap(&self, reason: &str, unique: &str) -> Result<String, WriteError> {
        self.gap_writer
            .write_gap(reason, unique)
            .await
            .map(|w| w.key)
    }
}

/// The failure bucket: list, read, and write the redrive's markers. Implemented for S3 by
/// [`S3FailureBucket`]; tests pass fakes.
pub trait FailureBucket: Send + Sync {
    /// Every key under `prefix`.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, BucketError>> + Send;
    /// The object's bytes, `None` if there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, BucketError>> + Send;
    /// Writes a (small) object.
    fn put(&self, key: &str, body: Vec<u8>)
        -> impl Future<Output = Result<(), BucketError>> + Send;
}

/// The failure bucket in S3.
#[derive(Clone, Debug)]
pub struct S3FailureBucket {
    store: S3Store,
    bucket: String,
}

impl S3FailureBucket {
    /// `bucket` through `store`.
    pub fn new(store: S3Store, bucket: impl Into<String>) -> Self {
        S3FailureBucket {
            store,
            bucket: bucket.into(),
        }
    }
}

impl FailureBucket for S3FailureBucket {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BucketError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list_page(&self.bucket, prefix, None, token)
                .await
                .map_err(|source| BucketError::List {
                    bucket: self.bucket.clone(),
                    prefix: prefix.to_owned(),
                    source,
                })?;
            keys.extend(page.keys);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BucketError> {
        self.store
            .get(&self.bucket, key)
            .await
            .map(|o| o.map(|o| o.bytes))
            .map_err(|source| BucketError::Get {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                source,
            })
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BucketError> {
        self.store
            .put(&self.bucket, key, body)
            .await
            .map_err(BucketError::Put)
    }
}

#[cfg(test)]
mod kafka_responses {
    use super::*;

    #[test]
    fn a_kafka_partial_batch_response_is_a_failure_too() {
        let kafka = serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "orders-1", "offset": 7}}
        ]});
        let err = no_failures(&kafka).unwrap_err().to_string();
        assert!(err.contains("orders-1") && err.contains('7'), "{err}");
        let kinesis = serde_json::json!({"batchItemFailures": [{"itemIdentifier": "4959"}]});
        assert!(no_failures(&kinesis)
            .unwrap_err()
            .to_string()
            .contains("4959"));
        assert!(no_failures(&serde_json::json!({"batchItemFailures": []})).is_ok());
    }
}
