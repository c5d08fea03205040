//! Kinesis shard and SQS queue event source mappings.

use std::time::Duration;

use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use serde_json::Value;
use tokio::sync::watch;
use tracing::warn;

use crate::destination::{BatchInfo, DiscardedBatch, StreamKind};
use crate::mapping::{get_records, Handler, StreamMapping};
use crate::{kinesis_event, sqs_event, Invocation, MappingConfig, MappingError, MappingStats};

/// The Kinesis shard a [`KinesisShardMapping`] polls.
#[derive(Debug)]
pub struct KinesisShard {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    stream_arn: String,
    shard_id: String,
}

/// One Kinesis shard's event source mapping (Lambda polls each shard once a second): in AWS
/// each shard's batches go to their own invocation, in order, one at a time.
pub type KinesisShardMapping = StreamMapping<KinesisShard>;

impl StreamMapping<KinesisShard> {
    /// A mapping on one shard; `config.poll_interval` should be 1 s to match Lambda.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream_name: impl Into<String>,
        stream_arn: impl Into<String>,
        shard_id: impl Into<String>,
        config: MappingConfig,
    ) -> Self {
        let shard = KinesisShard {
            client,
            stream_name: stream_name.into(),
            stream_arn: stream_arn.into(),
            shard_id: shard_id.into(),
        };
        StreamMapping::on(shard, config)
    }

    fn batch_info(&self, pending: &[Record]) -> BatchInfo {
        let arrival = |r: Option<&Record>| {
            r.and_then(|r| r.approximate_arrival_timestamp())
                .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?))
        };
        BatchInfo {
            stream_arn: self.stream.stream_arn.clone(),
            shard_id: self.stream.shard_id.clone(),
            start_sequence_number: pending
                .first()
                .map(|r| r.sequence_number().to_owned())
                .unwrap_or_default(),
            end_sequence_number: pending
                .last()
                .map(|r| r.sequence_number().to_owned())
                .unwrap_or_default(),
            first_arrival: arrival(pending.first()),
            last_arrival: arrival(pending.last()),
            batch_size: pending.len(),
            bootstrap_servers: None,
        }
    }

    /// The shard.
    pub fn shard_id(&self) -> &str {
        &self.stream.shard_id
    }

    fn error(&self, operation: &'static str, e: impl std::error::Error) -> MappingError {
        MappingError::new(operation, &self.stream.stream_arn, e)
    }

    /// The Lambda event of `records`, read from this shard.
    fn event(&self, records: &[Record]) -> Value {
        let KinesisShard {
            stream_arn,
            shard_id,
            ..
        } = &self.stream;
        kinesis_event(stream_arn, shard_id, "us-east-1", records)
    }

    /// Polls until `stop` turns true and the shard is drained. A reported failure is retried
    /// from the first failed record; an invocation error retries the whole batch.
    pub async fn run(
        &self,
        mut handler: impl Handler,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError> {
        let position = if self.config.trim_horizon {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let mut iterator = self
            .stream
            .client
            .get_shard_iterator()
            .stream_name(&self.stream.stream_name)
            .shard_id(&self.stream.shard_id)
            .shard_iterator_type(position)
            .send()
            .await
            .map_err(|e| self.error("GetShardIterator", e))?
            .shard_iterator;
        let mut stats = MappingStats::default();
        let mut pending: Vec<Record> = Vec::new();
        let mut next_iterator = None;
        let mut attempts = 0u64;
        loop {
            let mut got_records = false;
            if pending.is_empty() {
                if let Some(it) = iterator.clone() {
                    let KinesisShard {
                        client, stream_arn, ..
                    } = &self.stream;
                    let out = get_records!(client, it, self.config.batch_size, stream_arn)?;
                    stats.polls += 1;
                    if out.records().is_empty() {
                        iterator = out.next_shard_iterator;
                    } else {
                        pending = out.records().to_vec();
                        next_iterator = out.next_shard_iterator;
                    }
                }
            } else {
                stats.retries += 1;
            }
            if !pending.is_empty() {
                got_records = true;
                attempts += 1;
                self.invoke(&mut handler, &mut pending, attempts, &mut stats)
                    .await;
                if pending.is_empty() {
                    attempts = 0;
                    iterator = next_iterator.take();
                }
            }
            if *stop.borrow() && !got_records && pending.is_empty() {
                return Ok(stats);
            }
            if !got_records || !pending.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Invokes `handler` with `pending` (its `attempts`-th invocation): what is left pending
    /// after it is what failed, from the first failed record, unless the batch is done with
    /// (delivered, or discarded after its last retry).
    async fn invoke(
        &self,
        handler: &mut impl Handler,
        pending: &mut Vec<Record>,
        attempts: u64,
        stats: &mut MappingStats,
    ) {
        stats.invocations += 1;
        stats.records_delivered += pending.len() as u64;
        let outcome = handler.invoke(self.event(pending)).await;
        match &outcome {
            Invocation::Success => pending.clear(),
            Invocation::PartialFailure(ids) if ids.is_empty() => pending.clear(),
            Invocation::PartialFailure(ids) => {
                if let Some(i) = pending
                    .iter()
                    .position(|r| ids.iter().any(|id| id == r.sequence_number()))
                {
                    pending.drain(..i);
                }
            }
            Invocation::Error(message) => {
                warn!(shard = %self.stream.shard_id, %message, "invocation failed; retrying the batch");
            }
        }
        if !pending.is_empty() && self.exhausted(attempts) {
            let info = self.batch_info(pending);
            let event = self.event(pending);
            let batch = DiscardedBatch {
                kind: StreamKind::Kinesis,
                info: &info,
                payload: &event,
                last: &outcome,
                invoke_count: attempts,
            };
            if self.discard(&batch, stats).await {
                pending.clear();
            }
        }
    }
}

/// An SQS queue's event source mapping: receive, invoke, delete what succeeded; reported
/// messages stay in the queue and come back after the visibility timeout.
#[derive(Debug)]
pub struct SqsMapping {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    queue_arn: String,
    config: MappingConfig,
}

impl SqsMapping {
    /// A mapping on the queue.
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        queue_arn: impl Into<String>,
        config: MappingConfig,
    ) -> Self {
        SqsMapping {
            client,
            queue_url: queue_url.into(),
            queue_arn: queue_arn.into(),
            config,
        }
    }

    /// Polls until `stop` turns true.
    pub async fn run(
        &self,
        mut handler: impl Handler,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError> {
        let mut stats = MappingStats::default();
        while !*stop.borrow() {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.config.batch_size.clamp(1, 10))
                .send()
                .await
                .map_err(|e| MappingError::new("ReceiveMessage", &self.queue_arn, e))?;
            stats.polls += 1;
            let messages = out.messages();
            if !messages.is_empty() {
                stats.invocations += 1;
                stats.records_delivered += messages.len() as u64;
                let failed: Vec<String> = match handler
                    .invoke(sqs_event(&self.queue_arn, "us-east-1", messages))
                    .await
                {
                    Invocation::Success => vec![],
                    Invocation::PartialFailure(ids) => ids,
                    Invocation::Error(message) => {
                        warn!(%message, "invocation failed; the messages return after the visibility timeout");
                        messages
                            .iter()
                            .filter_map(|m| m.message_id().map(str::to_owned))
                            .collect()
                    }
                };
                stats.retries += failed.len() as u64;
                for m in messages {
                    if m.message_id()
                        .is_some_and(|id| failed.iter().any(|f| f == id))
                    {
                        continue;
                    }
                    if let Some(receipt) = m.receipt_handle() {
                        self.client
                            .delete_message()
                            .queue_url(&self.queue_url)
                            .receipt_handle(receipt)
                            .send()
                            .await
                            .map_err(|e| MappingError::new("DeleteMessage", &self.queue_arn, e))?;
                    }
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval.max(Duration::from_millis(50))) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(stats)
    }
}
