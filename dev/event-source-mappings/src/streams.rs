//! Kinesis shard and SQS queue event source mappings.

use std::future::Future;
use std::time::Duration;

use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use serde_json::Value;
use tokio::sync::watch;
use tracing::warn;

use crate::destination::{BatchInfo, S3Destination, StreamKind};
use crate::mapping::discard_batch;
use crate::{kinesis_event, sqs_event, Invocation, MappingConfig, MappingError, MappingStats};

fn error(operation: &'static str, target: &str, e: impl std::error::Error) -> MappingError {
    MappingError {
        operation,
        stream_arn: target.to_owned(),
        message: aws_sdk_kinesis::error::DisplayErrorContext(e).to_string(),
    }
}

/// One Kinesis shard's event source mapping (Lambda polls each shard once a second): in AWS
/// each shard's batches go to their own invocation, in order, one at a time.
#[derive(Debug)]
pub struct KinesisShardMapping {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    stream_arn: String,
    shard_id: String,
    config: MappingConfig,
    on_failure: Option<S3Destination>,
    /// Records discarded so far (read while the mapping runs).
    discarded_records: std::sync::atomic::AtomicU64,
}

impl KinesisShardMapping {
    /// A mapping on one shard; `config.poll_interval` should be 1 s to match Lambda.
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream_name: impl Into<String>,
        stream_arn: impl Into<String>,
        shard_id: impl Into<String>,
        config: MappingConfig,
    ) -> Self {
        KinesisShardMapping {
            client,
            stream_name: stream_name.into(),
            stream_arn: stream_arn.into(),
            shard_id: shard_id.into(),
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

    fn batch_info(&self, pending: &[Record]) -> BatchInfo {
        let arrival = |r: Option<&Record>| {
            r.and_then(|r| r.approximate_arrival_timestamp())
                .and_then(|t| chrono::DateTime::from_timestamp_millis(t.to_millis().ok()?))
        };
        BatchInfo {
            stream_arn: self.stream_arn.clone(),
            shard_id: self.shard_id.clone(),
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
        }
    }

    /// The shard.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Polls until `stop` turns true and the shard is drained. A reported failure is retried
    /// from the first failed record; an invocation error retries the whole batch.
    pub async fn run<H, Fut>(
        &self,
        mut handler: H,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Invocation>,
    {
        let position = if self.config.trim_horizon {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let mut iterator = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(&self.shard_id)
            .shard_iterator_type(position)
            .send()
            .await
            .map_err(|e| error("GetShardIterator", &self.stream_arn, e))?
            .shard_iterator;
        let mut stats = MappingStats::default();
        let mut pending: Vec<Record> = Vec::new();
        let mut next_iterator = None;
        let mut attempts = 0u64;
        loop {
            let mut got_records = false;
            if pending.is_empty() {
                if let Some(it) = iterator.clone() {
                    let out = self
                        .client
                        .get_records()
                        .shard_iterator(it)
                        .limit(self.config.batch_size)
                        .send()
                        .await
                        .map_err(|e| error("GetRecords", &self.stream_arn, e))?;
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
                let event = kinesis_event(&self.stream_arn, &self.shard_id, "us-east-1", &pending);
                stats.invocations += 1;
                stats.records_delivered += pending.len() as u64;
                attempts += 1;
                let outcome = handler(event).await;
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
                        warn!(shard = %self.shard_id, %message, "invocation failed; retrying the batch");
                    }
                }
                let exhausted = self
                    .config
                    .maximum_retry_attempts
                    .is_some_and(|max| attempts > u64::from(max));
                if !pending.is_empty() && exhausted {
                    let event =
                        kinesis_event(&self.stream_arn, &self.shard_id, "us-east-1", &pending);
                    let info = self.batch_info(&pending);
                    let destination = self.on_failure.as_ref();
                    if discard_batch(
                        destination,
                        StreamKind::Kinesis,
                        &info,
                        &event,
                        &outcome,
                        attempts,
                        &mut stats,
                    )
                    .await
                    {
                        self.discarded_records
                            .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        pending.clear();
                    }
                }
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
    pub async fn run<H, Fut>(
        &self,
        mut handler: H,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError>
    where
        H: FnMut(Value) -> Fut,
        Fut: Future<Output = Invocation>,
    {
        let mut stats = MappingStats::default();
        while !*stop.borrow() {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.config.batch_size.clamp(1, 10))
                .send()
                .await
                .map_err(|e| error("ReceiveMessage", &self.queue_arn, e))?;
            stats.polls += 1;
            let messages = out.messages();
            if !messages.is_empty() {
                stats.invocations += 1;
                stats.records_delivered += messages.len() as u64;
                let failed: Vec<String> = match handler(sqs_event(
                    &self.queue_arn,
                    "us-east-1",
                    messages,
                ))
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
                            .map_err(|e| error("DeleteMessage", &self.queue_arn, e))?;
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
