//! Kafka event source mappings (Amazon MSK's and a self-managed cluster's): each partition polled
//! on its own, records batched by size and window, the event built as Lambda builds it, a
//! reported failure retried from its offset, a batch past its retries discarded to the on-failure
//! destination.
//!
//! Lambda's Kafka mapping (AWS Lambda Developer Guide, "Amazon MSK" and "self-managed Apache
//! Kafka" event sources; "Configuring error handling controls for Kafka event sources"): it reads
//! each partition in order and invokes the function when the batching window
//! (`MaximumBatchingWindowInSeconds`, 500 ms by default for Kafka) has passed since the batch's
//! first record, when the batch has `BatchSize` records, or at 6 MB; the event groups records
//! under `"<topic>-<partition>"`, with base64 key and value, the timestamp in ms and its type,
//! and each header as `{name: [bytes]}` (Java's signed bytes). With `ReportBatchItemFailures`
//! the function answers `{"batchItemFailures": [{"itemIdentifier": {"partition": "<topic>-<n>",
//! "offset": n}}]}`: the partition is retried from that offset; an empty answer is a success; an
//! identifier not in the event, or an error, retries the whole batch. Here one mapping polls one
//! partition, so an event holds one partition's records (Lambda may put several partitions in
//! one event; the function handles each on its own either way).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::warn;

use crate::destination::{BatchInfo, DiscardedBatch, StreamKind};
use crate::mapping::{Handler, StreamMapping};
use crate::{Invocation, MappingConfig, MappingError, MappingStats};

/// Which Kafka event source: Amazon MSK (its cluster's ARN) or a self-managed cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KafkaEventSource {
    /// `aws:kafka`, with the cluster's ARN.
    Msk {
        /// The cluster's ARN (`eventSourceArn`).
        cluster_arn: String,
    },
    /// `SelfManagedKafka` (no ARN).
    SelfManaged,
}

/// The Lambda event for `records` of `topic`'s `partition`, as a Kafka mapping on
/// `bootstrap_servers` delivers it.
pub fn kafka_event(
    source: &KafkaEventSource,
    bootstrap_servers: &str,
    topic: &str,
    partition: i32,
    records: &[RecordAndOffset],
) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let records: Vec<Value> = (records.iter())
        .map(|r| {
            // (each header a list of Java's signed bytes, as Lambda sends them)
            let headers: Vec<Value> = (r.record.headers.iter())
                .map(|(name, value)| {
                    let bytes: Vec<i8> = value.iter().map(|b| *b as i8).collect();
                    json!({ name: bytes })
                })
                .collect();
            json!({
                "topic": topic,
                "partition": partition,
                "offset": r.offset,
                "timestamp": r.record.timestamp.timestamp_millis(),
                "timestampType": "CREATE_TIME",
                "key": r.record.key.as_deref().map(b64),
                "value": r.record.value.as_deref().map(b64),
                "headers": headers,
            })
        })
        .collect();
    let mut event = json!({
        "eventSource": match source {
            KafkaEventSource::Msk { .. } => "aws:kafka",
            KafkaEventSource::SelfManaged => "SelfManagedKafka",
        },
        "bootstrapServers": bootstrap_servers,
        "records": { format!("{topic}-{partition}"): records },
    });
    if let KafkaEventSource::Msk { cluster_arn } = source {
        event["eventSourceArn"] = json!(cluster_arn);
    }
    event
}

/// The partition a [`KafkaPartitionMapping`] polls.
#[derive(Debug)]
pub struct KafkaPartition {
    client: Arc<Client>,
    source: KafkaEventSource,
    bootstrap_servers: String,
    topic: String,
    partition: i32,
    batching_window: Duration,
}

/// One Kafka partition's event source mapping: its batches go to their own invocation, in
/// order, one at a time.
pub type KafkaPartitionMapping = StreamMapping<KafkaPartition>;

/// What a function's Kafka response says about a partition, as a mapping reads it: the offsets
/// it names for `partition_name` (`<topic>-<n>`), or an identifier of another partition (which
/// Lambda takes as a failure of the whole batch).
pub fn kafka_failures(response: &Value, partition_name: &str) -> Vec<String> {
    // (none, or null: a success; anything else that is not a list: a failure of the whole
    // batch, as Lambda takes a response it cannot read)
    let items = match response.get("batchItemFailures") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => return vec![format!("?{other}")],
    };
    (items.iter())
        .map(|item| {
            let id = &item["itemIdentifier"];
            match (id["partition"].as_str(), id["offset"].as_i64()) {
                (Some(p), Some(offset)) if p == partition_name => offset.to_string(),
                // (not of this partition or not an identifier: matches no record)
                _ => format!("?{id}"),
            }
        })
        .collect()
}

impl StreamMapping<KafkaPartition> {
    /// A mapping on `topic`'s `partition` through `client` (of the cluster at
    /// `bootstrap_servers`, as events name it), with Lambda's default batching window for Kafka
    /// (500 ms). `config.poll_interval` is how long a fetch waits for records, and how long a
    /// failed batch waits before its retry.
    pub fn new(
        client: Arc<Client>,
        source: KafkaEventSource,
        bootstrap_servers: impl Into<String>,
        topic: impl Into<String>,
        partition: i32,
        config: MappingConfig,
    ) -> Self {
        let partition = KafkaPartition {
            client,
            source,
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            partition,
            batching_window: KAFKA_DEFAULT_BATCHING_WINDOW,
        };
        StreamMapping::on(partition, config)
    }

    /// The batching window (`MaximumBatchingWindowInSeconds`): a batch is invoked this long
    /// after its first record at the latest.
    pub fn with_batching_window(mut self, window: Duration) -> Self {
        self.stream.batching_window = window;
        self
    }

    /// `<topic>-<partition>`, as events name the partition.
    pub fn partition_name(&self) -> String {
        format!("{}-{}", self.stream.topic, self.stream.partition)
    }

    fn error(&self, operation: &'static str, e: impl std::error::Error) -> MappingError {
        MappingError::new(operation, &self.partition_name(), e)
    }

    fn event(&self, records: &[RecordAndOffset]) -> Value {
        let KafkaPartition {
            source,
            bootstrap_servers,
            topic,
            partition,
            ..
        } = &self.stream;
        kafka_event(source, bootstrap_servers, topic, *partition, records)
    }

    fn batch_info(&self, pending: &[RecordAndOffset]) -> BatchInfo {
        let offset = |r: Option<&RecordAndOffset>| r.map(|r| r.offset.to_string());
        BatchInfo {
            stream_arn: match &self.stream.source {
                KafkaEventSource::Msk { cluster_arn } => cluster_arn.clone(),
                KafkaEventSource::SelfManaged => String::new(),
            },
            shard_id: self.partition_name(),
            start_sequence_number: offset(pending.first()).unwrap_or_default(),
            end_sequence_number: offset(pending.last()).unwrap_or_default(),
            first_arrival: pending.first().map(|r| r.record.timestamp),
            last_arrival: pending.last().map(|r| r.record.timestamp),
            batch_size: pending.len(),
            bootstrap_servers: Some(self.stream.bootstrap_servers.clone()),
        }
    }

    async fn partition_client(&self) -> Result<PartitionClient, MappingError> {
        let KafkaPartition {
            client,
            topic,
            partition,
            ..
        } = &self.stream;
        (client)
            .partition_client(topic.clone(), *partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| self.error("Metadata", e))
    }

    /// Polls until `stop` turns true and the partition is drained: batches of up to
    /// `batch_size` records, each invoked when it is full or its window has passed since its
    /// first record (or at the stop). A reported failure is retried from its offset; an
    /// invocation error, or a failure naming no record of the batch, retries the whole batch.
    pub async fn run(
        &self,
        mut handler: impl Handler,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError> {
        let pc = self.partition_client().await?;
        let at = if self.config.trim_horizon {
            OffsetAt::Earliest
        } else {
            OffsetAt::Latest
        };
        let mut next = (pc.get_offset(at).await).map_err(|e| self.error("ListOffsets", e))?;
        let mut stats = MappingStats::default();
        let mut pending: Vec<RecordAndOffset> = Vec::new();
        let mut window_start: Option<tokio::time::Instant> = None;
        let mut attempts = 0u64;
        let size = usize::try_from(self.config.batch_size).unwrap_or(1).max(1);
        let wait_ms = i32::try_from(self.config.poll_interval.as_millis()).unwrap_or(1_000);
        loop {
            let stopping = *stop.borrow();
            // Fill the batch (a retried one is not added to: it is retried as it was).
            let mut fetched = 0;
            if attempts == 0 && pending.len() < size {
                let (records, _high) = (pc.fetch_records(next, 1..1_048_576, wait_ms).await)
                    .map_err(|e| self.error("Fetch", e))?;
                stats.polls += 1;
                for r in records {
                    if r.offset < next {
                        continue;
                    }
                    next = r.offset + 1;
                    fetched += 1;
                    if pending.is_empty() {
                        window_start = Some(tokio::time::Instant::now());
                    }
                    pending.push(r);
                }
            }
            let window_over =
                window_start.is_some_and(|t| t.elapsed() >= self.stream.batching_window);
            let due = !pending.is_empty()
                && (attempts > 0 || pending.len() >= size || window_over || stopping);
            if due {
                let take = pending.len().min(size);
                let mut batch: Vec<RecordAndOffset> = pending.drain(..take).collect();
                if attempts > 0 {
                    stats.retries += 1;
                }
                attempts += 1;
                self.invoke(&mut handler, &mut batch, attempts, &mut stats)
                    .await;
                if batch.is_empty() {
                    attempts = 0;
                    window_start = (!pending.is_empty()).then(tokio::time::Instant::now);
                } else {
                    // (what failed goes first, to be retried as the next batch, after a pause)
                    batch.append(&mut pending);
                    pending = batch;
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                        _ = stop.changed() => {}
                    }
                }
                continue;
            }
            if stopping && pending.is_empty() && fetched == 0 {
                return Ok(stats);
            }
            if fetched == 0 && (pending.is_empty() || attempts > 0) {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.poll_interval) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Invokes `handler` with `batch` (its `attempts`-th invocation): what is left in it after
    /// is what failed, from the first failed record, unless the batch is done with (delivered,
    /// or discarded after its last retry).
    async fn invoke(
        &self,
        handler: &mut impl Handler,
        batch: &mut Vec<RecordAndOffset>,
        attempts: u64,
        stats: &mut MappingStats,
    ) {
        stats.invocations += 1;
        stats.records_delivered += batch.len() as u64;
        let outcome = handler.invoke(self.event(batch)).await;
        match &outcome {
            Invocation::Success => batch.clear(),
            Invocation::PartialFailure(ids) if ids.is_empty() => batch.clear(),
            Invocation::PartialFailure(ids) => {
                // (from the lowest offset named; none of the batch: all of it again)
                if let Some(i) = (batch.iter()).position(|r| ids.contains(&r.offset.to_string())) {
                    batch.drain(..i);
                }
            }
            Invocation::Error(message) => {
                warn!(partition = %self.partition_name(), %message, "invocation failed; retrying the batch");
            }
        }
        if !batch.is_empty() && self.exhausted(attempts) {
            let info = self.batch_info(batch);
            let event = self.event(batch);
            let discarded = DiscardedBatch {
                kind: StreamKind::Kafka,
                info: &info,
                payload: &event,
                last: &outcome,
                invoke_count: attempts,
            };
            if self.discard(&discarded, stats).await {
                batch.clear();
            }
        }
    }
}

/// How long Lambda's Kafka mappings wait for a batch by default (`MaximumBatchingWindowInSeconds`
/// unset).
pub const KAFKA_DEFAULT_BATCHING_WINDOW: Duration = Duration::from_millis(500);
