//! A DynamoDB Streams event source mapping: poll, invoke, retry from the failed record.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::DisplayErrorContext;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, warn};

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
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            batch_size: 100,
            poll_interval: Duration::from_millis(250),
            trim_horizon: true,
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
}

/// Polls one DynamoDB stream and invokes a handler, as Lambda's event source mapping does.
#[derive(Debug)]
pub struct DynamoDbStreamMapping {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    config: MappingConfig,
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
        }
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
        match handler(event).await {
            Invocation::Success => {
                shard.pending.clear();
                shard.iterator = shard.next_iterator.take();
                return Ok(true);
            }
            Invocation::PartialFailure(ids) if ids.is_empty() => {
                shard.pending.clear();
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
        Ok(false)
    }
}
