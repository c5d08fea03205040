//! What every event source mapping shares: its settings, what a handler answers, its counts
//! and errors; and what the stream mappings share: a batch that exhausts its retries is
//! discarded, to the on-failure destination when there is one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::error::DisplayErrorContext;
use serde_json::Value;
use tracing::warn;

use crate::destination::{DiscardedBatch, S3Destination};

/// How a mapping polls and retries.
#[derive(Clone, Debug)]
pub struct MappingConfig {
    /// Records per invocation at most (`BatchSize`).
    pub batch_size: i32,
    /// Time between polls of a shard: Lambda polls DynamoDB stream shards 4 times a second.
    pub poll_interval: Duration,
    /// Start at the oldest record (`TRIM_HORIZON`) rather than the newest (`LATEST`).
    pub trim_horizon: bool,
    /// `MaximumRetryAttempts`: retries of a failed batch before it is discarded (sent to the
    /// on-failure destination, if there is one). `None` is `-1`: retry until it succeeds.
    pub maximum_retry_attempts: Option<u32>,
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            batch_size: 100,
            poll_interval: Duration::from_millis(250),
            trim_horizon: true,
            maximum_retry_attempts: None,
        }
    }
}

/// What a handler said about one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Every record was processed.
    Success,
    /// `batchItemFailures`: sequence numbers of records that failed; the mapping retries from
    /// the earliest of them (an unknown id retries the whole batch, as Lambda does).
    PartialFailure(Vec<String>),
    /// The invocation failed; the mapping retries the whole batch.
    Error(String),
}

impl Invocation {
    /// What a handler answered, as the mapping reads it: the ids in `batchItemFailures` (none:
    /// a success) or the invocation's error.
    pub fn from_reported<E: std::fmt::Display>(answer: Result<Vec<String>, E>) -> Invocation {
        match answer {
            Ok(ids) if ids.is_empty() => Invocation::Success,
            Ok(ids) => Invocation::PartialFailure(ids),
            Err(e) => Invocation::Error(e.to_string()),
        }
    }
}

/// The function a mapping invokes: a batch's Lambda event in, what the invocation answered
/// out. Any `FnMut(Value) -> impl Future<Output = Invocation>` is one.
pub trait Handler {
    /// The invocation, answered.
    type Answer: Future<Output = Invocation>;

    /// Invokes the function with `event`.
    fn invoke(&mut self, event: Value) -> Self::Answer;
}

impl<F, Fut> Handler for F
where
    F: FnMut(Value) -> Fut,
    Fut: Future<Output = Invocation>,
{
    type Answer = Fut;

    fn invoke(&mut self, event: Value) -> Fut {
        self(event)
    }
}

/// Counts of what the mapping did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingStats {
    /// Handler invocations.
    pub invocations: u64,
    /// Records delivered, retries included.
    pub records_delivered: u64,
    /// Invocations that were retries of a failed batch.
    pub retries: u64,
    /// GetRecords calls.
    pub polls: u64,
    /// Batches discarded after their last retry.
    pub discarded: u64,
    /// Records in those batches.
    pub discarded_records: u64,
    /// Keys of the invocation records written to the on-failure destination.
    pub failure_records: Vec<String>,
}

/// A Streams API call failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {stream_arn} failed: {message}")]
pub struct MappingError {
    /// The API operation.
    pub operation: &'static str,
    /// The stream.
    pub stream_arn: String,
    /// The SDK's error chain.
    pub message: String,
}

impl MappingError {
    /// `operation` on `target` (a stream's or queue's ARN) failed with the SDK's error `e`.
    pub(crate) fn new(
        operation: &'static str,
        target: &str,
        e: impl std::error::Error,
    ) -> MappingError {
        MappingError {
            operation,
            stream_arn: target.to_owned(),
            message: DisplayErrorContext(e).to_string(),
        }
    }
}

/// One GetRecords call at a shard iterator, written once for the two stream clients whose
/// call reads the same (DynamoDB Streams, Kinesis): the SDK's output, or the [`MappingError`]
/// on `$target` (the stream's ARN).
macro_rules! get_records {
    ($client:expr, $iterator:expr, $limit:expr, $target:expr) => {
        $client
            .get_records()
            .shard_iterator($iterator)
            .limit($limit)
            .send()
            .await
            .map_err(|e| $crate::MappingError::new("GetRecords", $target, e))
    };
}
pub(crate) use get_records;

/// A stream's event source mapping: polls `S` (a DynamoDB stream, or one Kinesis shard),
/// invokes a handler, retries a failed batch from its first failed record, and discards a
/// batch that exhausts its retries ([`MappingConfig::maximum_retry_attempts`]).
#[derive(Debug)]
pub struct StreamMapping<S> {
    pub(crate) stream: S,
    pub(crate) config: MappingConfig,
    on_failure: Option<S3Destination>,
    /// Records discarded so far (read while the mapping runs).
    discarded_records: AtomicU64,
}

impl<S> StreamMapping<S> {
    /// A mapping on `stream`, without an on-failure destination.
    pub(crate) fn on(stream: S, config: MappingConfig) -> Self {
        StreamMapping {
            stream,
            config,
            on_failure: None,
            discarded_records: AtomicU64::new(0),
        }
    }

    /// Records discarded so far, after their batch's last retry (while the mapping runs).
    pub fn discarded_records(&self) -> u64 {
        self.discarded_records.load(Ordering::Relaxed)
    }

    /// Discarded batches (see [`MappingConfig::maximum_retry_attempts`]) are recorded in
    /// `destination`, as an S3 on-failure destination does.
    pub fn with_on_failure(mut self, destination: S3Destination) -> Self {
        self.on_failure = Some(destination);
        self
    }

    /// Whether a batch invoked `attempts` times has exhausted its retries.
    pub(crate) fn exhausted(&self, attempts: u64) -> bool {
        self.config
            .maximum_retry_attempts
            .is_some_and(|max| attempts > u64::from(max))
    }

    /// Discards `batch`: writes its invocation record to the on-failure destination, or logs
    /// that it was dropped when there is none (as Lambda does); false if the record could not
    /// be written, so the batch stays to be retried.
    pub(crate) async fn discard(
        &self,
        batch: &DiscardedBatch<'_>,
        stats: &mut MappingStats,
    ) -> bool {
        let info = batch.info;
        match &self.on_failure {
            None => {
                warn!(shard = %info.shard_id, records = info.batch_size, "retries exhausted; batch discarded (no on-failure destination)");
            }
            Some(destination) => match destination.send(batch).await {
                Ok(key) => {
                    warn!(
                        shard = %info.shard_id,
                        records = info.batch_size,
                        bucket = destination.bucket(),
                        key,
                        "retries exhausted; batch discarded to the on-failure destination"
                    );
                    stats.failure_records.push(key);
                }
                Err(e) => {
                    warn!(error = %e, "the on-failure destination refused the record; the batch stays");
                    return false;
                }
            },
        }
        stats.discarded += 1;
        stats.discarded_records += info.batch_size as u64;
        self.discarded_records
            .fetch_add(info.batch_size as u64, Ordering::Relaxed);
        true
    }
}
