//! What a redrive replays through, and where it announces gaps.

use std::future::Future;

use aws_plumbing::{ObjectStore, OffsetClock, S3Store, SdkConfig, StoreError};
use change_handler::ChangeHandler;
use feed_writer::{FeedConfig, FeedWriter};
use orders_consumer::DeployedConsumer;
use serde_json::Value;

use crate::Function;

/// Why a payload was not replayed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    /// The redrive has no configuration for this function.
    #[error("no configuration for the {0}: {1}")]
    NotConfigured(Function, String),
    /// The handler failed (an error, or it reported records in `batchItemFailures`).
    #[error("{0}")]
    Failed(String),
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
    ) -> impl Future<Output = Result<String, String>>;
}

/// The functions as deployed, in-process: the same handler code and configuration variables
/// as the Lambda functions (`change_handler::deployed`, `orders_consumer::deployed`); or, for a
/// function named with [`Deployed::invoking`], the deployed function itself through the Lambda
/// API.
pub struct Deployed {
    change_handler: Option<ChangeHandler<S3Store>>,
    gap_writer: FeedWriter<S3Store>,
    orders: Result<DeployedConsumer, String>,
    invoke: Vec<(Function, String, aws_sdk_lambda::Client)>,
}

impl std::fmt::Debug for Deployed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployed")
            .field("change_handler", &self.change_handler.is_some())
            .field("orders", &self.orders.is_ok())
            .finish()
    }
}

impl Deployed {
    /// From the environment, with the functions' own variables: the feed's (`CHANGE_BUCKET`,
    /// `CHANGE_PREFIX`, `WRITE_WINDOW_SECS`, `LEGACY_FLAG_KEY`: required, gaps are written
    /// there) and, when set, the orders consumer's (`REFERENCE_TABLE`, `OUTPUT_BUCKET`, …);
    /// without those, orders records are left and reported.
    pub async fn from_env() -> Result<Deployed, aws_plumbing::ConfigError> {
        let get = |v: &str| std::env::var(v).ok();
        Deployed::from_lookup(&get, &get).await
    }

    /// From two variable lookups: `feed` for the change-handler's (and the gap writer's)
    /// variables, `orders` for the orders consumer's (a deployed function's environment, say).
    pub async fn from_lookup(
        feed: &impl Fn(&str) -> Option<String>,
        orders: &impl Fn(&str) -> Option<String>,
    ) -> Result<Deployed, aws_plumbing::ConfigError> {
        let feed = FeedConfig::from_lookup(feed)?;
        let orders = orders_consumer::Config::from_lookup(orders).map_err(|e| e.to_string());
        Ok(Deployed::new(feed, orders).await)
    }

    /// From the functions' configurations (`orders`: the consumer's, or why there is none),
    /// with SDK clients from the environment as the functions load them, and S3's clock: the
    /// change files and gaps it writes are named from S3's time, not this machine's.
    pub async fn new(feed: FeedConfig, orders: Result<orders_consumer::Config, String>) -> Self {
        // The change-handler's own SDK settings: the operation timeout is its write budget.
        let handler_sdk = aws_plumbing::sdk_config(Some(feed.write_budget())).await;
        let sdk = aws_plumbing::sdk_config(None).await;
        let probe = format!("{}.redrive-clock-probe", feed.prefix);
        let s3 = aws_plumbing::s3_client(&sdk);
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
        orders: Result<orders_consumer::Config, String>,
        handler_sdk: &SdkConfig,
        sdk: &SdkConfig,
        clock: OffsetClock,
    ) -> Self {
        Deployed {
            change_handler: Some(change_handler::deployed_with_clock(
                feed.clone(),
                handler_sdk,
                clock,
            )),
            gap_writer: FeedWriter::new(
                feed,
                S3Store::new(aws_plumbing::s3_client(handler_sdk)),
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
        .map_err(|e| {
            ReplayError::Failed(format!(
                "Invoke {name}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(e)
            ))
        })?;
    let body = out
        .payload()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .unwrap_or_default();
    if let Some(kind) = out.function_error() {
        return Err(ReplayError::Failed(format!(
            "{name} failed ({kind}): {body}"
        )));
    }
    serde_json::from_str(&body).map_err(|e| {
        ReplayError::Failed(format!(
            "{name} answered something that is not JSON ({e}): {body}"
        ))
    })
}

/// `Ok` when a Lambda response has no `batchItemFailures`.
fn no_failures(response: &Value) -> Result<(), ReplayError> {
    let failed: Vec<&str> = response["batchItemFailures"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["itemIdentifier"].as_str())
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
                let handler = self.change_handler.as_ref().ok_or_else(|| {
                    ReplayError::NotConfigured(function, "set CHANGE_BUCKET".into())
                })?;
                let event: Value = serde_json::from_str(payload)
                    .map_err(|e| ReplayError::Failed(format!("payload is not JSON: {e}")))?;
                let r = handler
                    .handle(&event, request_id)
                    .await
                    .map_err(|e| ReplayError::Failed(e.to_string()))?;
                serde_json::to_value(r).map_err(|e| ReplayError::Failed(e.to_string()))?
            }
            Function::OrdersConsumer => {
                let consumer = self
                    .orders
                    .as_ref()
                    .map_err(|why| ReplayError::NotConfigured(function, why.clone()))?;
                let r = consumer
                    .handle_raw(payload)
                    .await
                    .map_err(|e| ReplayError::Failed(e.to_string()))?;
                serde_json::to_value(r).map_err(|e| ReplayError::Failed(e.to_string()))?
            }
        };
        no_failures(&response)
    }

    async fn announce_gap(&self, reason: &str, unique: &str) -> Result<String, String> {
        self.gap_writer
            .write_gap(reason, unique)
            .await
            .map(|w| w.key)
            .map_err(|e| e.to_string())
    }
}

/// The failure bucket: list, read, and write the redrive's markers. Implemented for S3 by
/// [`S3FailureBucket`]; tests pass fakes.
pub trait FailureBucket: Send + Sync {
    /// Every key under `prefix`.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, String>> + Send;
    /// The object's bytes, `None` if there is none.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, String>> + Send;
    /// Writes a (small) object.
    fn put(&self, key: &str, body: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
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
    async fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .store
                .list_page(&self.bucket, prefix, None, token)
                .await
                .map_err(|e| format!("listing s3://{}/{prefix}: {e}", self.bucket))?;
            keys.extend(page.keys);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.store
            .get(&self.bucket, key)
            .await
            .map(|o| o.map(|o| o.bytes))
            .map_err(|e| format!("reading s3://{}/{key}: {e}", self.bucket))
    }

    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), String> {
        self.store
            .put(&self.bucket, key, body)
            .await
            .map_err(|e: StoreError| e.to_string())
    }
}
