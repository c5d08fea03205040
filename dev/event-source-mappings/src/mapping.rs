//! A DynamoDB Streams event source mapping: poll, invoke, retry from the failed record.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::destination::{BatchInfo, S3Destination, StreamKind};
use crate::dynamodb_stream_event;

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

struct Shard {
    id: String,
    iterator: Option<String>,
    /// Records of a failed invocation, to deliver again before reading on.
    pending: Vec<Record>,
    /// The iterator after `pending`.
    next_iterator: Option<String>,
    /// Invocations of `pending` so far.
    attempts: u64,
}

/// Polls one DynamoDB stream and invokes a handler, as Lambda's event source mapping does.
#[derive(Debug)]
pub struct DynamoDbStreamMapping {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    config: MappingConfig,
    on_failure: Option<S3Destination>,
    /// Records discarded so far (read while the mapping runs).
    discarded_records: std::sync::atomic::AtomicU64,
}

impl DynamoDbStreamMapping {
    /// A mapping on `stream_arn`.
    pub fn new(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: impl Into<String>,
        config: MappingConfig,
    ) -> Self {
        DynamoDbStreamMapping {
            client,
            stream_arn: stream_arn.into(),
            config,
            on_failure: None,
            discarded_records: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records discarded so far, after their batch's last retry (while the mapping runs).
    pub fn discarded_records(&self) -> u64 {
        self.discarded_records
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Discarded batches (see [`MappingConfig::maximum_retry_attempts`]) are recorded in
    /// `destination`, as an S3 on-failure destination does.
    pub fn with_on_failure(mut self, destination: S3Destination) -> Self {
        self.on_failure = Some(destination);
        self
    }

    fn error(&self, operation: &'static str, e: impl std::error::Error) -> MappingError {
        MappingError {
            operation,
            stream_arn: self.stream_arn.clone(),
            message: DisplayErrorContext(e).to_string(),
        }
    }

    async fn shards(&self) -> Result<Vec<Shard>, MappingError> {
        let described = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| self.error("DescribeStream", e))?;
        let ids: Vec<String> = described
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let position = if self.config.trim_horizon {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let mut shards = Vec::new();
        for id in ids {
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&id)
                .shard_iterator_type(position.clone())
                .send()
                .await
                .map_err(|e| self.error("GetShardIterator", e))?
                .shard_iterator;
            shards.push(Shard {
                id,
                iterator,
                pending: Vec::new(),
                next_iterator: None,
                attempts: 0,
            });
        }
        Ok(shards)
    }

    /// Polls until `stop` turns true, invoking `handler` with each batch's Lambda event.
    /// Failed batches are retried (with the poll interval as back-off) until they succeed,
    /// like the change-handler's mapping with unbounded retries.
    pub async fn run<H, Fut>(
        &self,
        mut handler: H,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Invocation>,
    {
        let mut shards = self.shards().await?;
        let mut stats = MappingStats::default();
        while !*stop.borrow() {
            let mut busy = false;
            for shard in &mut shards {
                busy |= self.poll_shard(shard, &mut handler, &mut stats).await?;
            }
            // Like Lambda, read on at once while a shard has records; wait a poll interval
            // only when every shard was empty (or a batch is waiting to be retried).
            if busy {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(stats)
    }

    /// Polls one shard and invokes the handler if it has records; true if the batch succeeded
    /// and the shard may have more.
    async fn poll_shard<H, Fut>(
        &self,
        shard: &mut Shard,
        handler: &mut H,
        stats: &mut MappingStats,
    ) -> Result<bool, MappingError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Invocation>,
    {
        let retry = !shard.pending.is_empty();
        if !retry {
            let Some(iterator) = shard.iterator.clone() else {
                return Ok(false); // a closed shard, read to its end
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .limit(self.config.batch_size)
                .send()
                .await
                .map_err(|e| self.error("GetRecords", e))?;
            stats.polls += 1;
            if out.records().is_empty() {
                shard.iterator = out.next_shard_iterator;
                return Ok(false);
            }
            shard.pending = out.records().to_vec();
            shard.next_iterator = out.next_shard_iterator;
        } else {
            stats.retries += 1;
        }
        let event = dynamodb_stream_event(&self.stream_arn, &shard.pending);
        stats.invocations += 1;
        stats.records_delivered += shard.pending.len() as u64;
        shard.attempts += 1;
        let outcome = handler(event).await;
        match &outcome {
            Invocation::Success => {
                shard.pending.clear();
                shard.attempts = 0;
                shard.iterator = shard.next_iterator.take();
                return Ok(true);
            }
            Invocation::PartialFailure(ids) if ids.is_empty() => {
                shard.pending.clear();
                shard.attempts = 0;
                shard.iterator = shard.next_iterator.take();
                return Ok(true);
            }
            Invocation::PartialFailure(ids) => {
                let first_failed = shard.pending.iter().position(|r| {
                    r.dynamodb()
                        .and_then(|d| d.sequence_number())
                        .is_some_and(|s| ids.iter().any(|id| id == s))
                });
                match first_failed {
                    Some(i) => {
                        debug!(shard = %shard.id, from = i, "retrying from the first failed record");
                        shard.pending.drain(..i);
                    }
                    None => {
                        warn!(shard = %shard.id, ?ids, "reported ids not in the batch; retrying it whole")
                    }
                }
            }
            Invocation::Error(message) => {
                warn!(shard = %shard.id, %message, "invocation failed; retrying the batch");
            }
        }
        let exhausted = self
            .config
            .maximum_retry_attempts
            .is_some_and(|max| shard.attempts > u64::from(max));
        if exhausted {
            // The event of the failing suffix, as the next retry would have delivered it.
            let event = dynamodb_stream_event(&self.stream_arn, &shard.pending);
            if self.discard(shard, &event, &outcome, stats).await {
                shard.pending.clear();
                shard.attempts = 0;
                shard.iterator = shard.next_iterator.take();
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Records a discarded batch in the destination (or drops it, without one, as Lambda
    /// does); false if the record could not be written, so the batch stays to be retried.
    async fn discard(
        &self,
        shard: &Shard,
        event: &Value,
        last: &Invocation,
        stats: &mut MappingStats,
    ) -> bool {
        let seq = |r: Option<&Record>| {
            r.and_then(|r| r.dynamodb())
                .and_then(|d| d.sequence_number())
                .unwrap_or_default()
                .to_owned()
        };
        let created = |r: Option<&Record>| {
            r.and_then(|r| r.dynamodb())
                .and_then(|d| d.approximate_creation_date_time())
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0))
        };
        let info = BatchInfo {
            stream_arn: self.stream_arn.clone(),
            shard_id: shard.id.clone(),
            start_sequence_number: seq(shard.pending.first()),
            end_sequence_number: seq(shard.pending.last()),
            first_arrival: created(shard.pending.first()),
            last_arrival: created(shard.pending.last()),
            batch_size: shard.pending.len(),
        };
        let discarded = discard_batch(
            self.on_failure.as_ref(),
            StreamKind::DynamoDb,
            &info,
            event,
            last,
            shard.attempts,
            stats,
        )
        .await;
        if discarded {
            self.discarded_records.fetch_add(
                shard.pending.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        discarded
    }
}

/// Shared by the stream mappings: writes the invocation record of a discarded batch, or logs
/// that it was dropped when there is no destination.
pub(crate) async fn discard_batch(
    destination: Option<&S3Destination>,
    kind: StreamKind,
    info: &BatchInfo,
    event: &Value,
    last: &Invocation,
    attempts: u64,
    stats: &mut MappingStats,
) -> bool {
    let Some(destination) = destination else {
        warn!(shard = %info.shard_id, records = info.batch_size, "retries exhausted; batch discarded (no on-failure destination)");
        stats.discarded += 1;
        stats.discarded_records += info.batch_size as u64;
        return true;
    };
    match destination.send(kind, info, event, last, attempts).await {
        Ok(key) => {
            warn!(
                shard = %info.shard_id,
                records = info.batch_size,
                bucket = destination.bucket(),
                key,
                "retries exhausted; batch discarded to the on-failure destination"
            );
            stats.discarded += 1;
            stats.discarded_records += info.batch_size as u64;
            stats.failure_records.push(key);
            true
        }
        Err(e) => {
            warn!(error = %e, "the on-failure destination refused the record; the batch stays");
            false
        }
    }
}
