//! A DynamoDB Streams event source mapping: the Lambda event it delivers (built from the
//! Streams API's records), and the mapping itself (poll every shard, invoke, retry from the
//! failed record).

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::destination::{BatchInfo, DiscardedBatch, StreamKind};
use crate::mapping::{get_records, Handler, StreamMapping};
use crate::{Invocation, MappingConfig, MappingError, MappingStats};

fn attributes(map: Option<&HashMap<String, AttributeValue>>) -> Option<Value> {
    let map = map?;
    let item: serde_dynamo::Item = map
        .iter()
        .map(|(k, v)| (k.clone(), serde_dynamo::AttributeValue::from(v.clone())))
        .collect::<HashMap<_, _>>()
        .into();
    serde_json::to_value(item).ok()
}

/// The Lambda event that a DynamoDB Streams event source mapping builds from `records`: the
/// Streams API's record shape plus `eventSourceARN`, timestamps as epoch seconds.
pub fn dynamodb_stream_event(stream_arn: &str, records: &[Record]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut dynamodb = Map::new();
            if let Some(s) = r.dynamodb() {
                if let Some(t) = s.approximate_creation_date_time() {
                    dynamodb.insert(
                        "ApproximateCreationDateTime".into(),
                        json!(t.as_secs_f64().floor()),
                    );
                }
                for (name, value) in [
                    ("Keys", attributes(s.keys())),
                    ("NewImage", attributes(s.new_image())),
                    ("OldImage", attributes(s.old_image())),
                ] {
                    if let Some(v) = value {
                        dynamodb.insert(name.into(), v);
                    }
                }
                if let Some(seq) = s.sequence_number() {
                    dynamodb.insert("SequenceNumber".into(), json!(seq));
                }
                dynamodb.insert("SizeBytes".into(), json!(s.size_bytes().unwrap_or(0)));
                if let Some(v) = s.stream_view_type() {
                    dynamodb.insert("StreamViewType".into(), json!(v.as_str()));
                }
            }
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str()),
                "eventVersion": r.event_version(),
                "eventSource": r.event_source().unwrap_or("aws:dynamodb"),
                "awsRegion": r.aws_region(),
                "dynamodb": dynamodb,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The DynamoDB stream a [`DynamoDbStreamMapping`] polls (every shard of it).
#[derive(Debug)]
pub struct DynamoDbStream {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
}

/// Polls one DynamoDB stream and invokes a handler, as Lambda's event source mapping does.
pub type DynamoDbStreamMapping = StreamMapping<DynamoDbStream>;

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

impl Shard {
    /// `pending` is done with (delivered, or discarded): read on after it.
    fn read_on(&mut self) {
        self.pending.clear();
        self.attempts = 0;
        self.iterator = self.next_iterator.take();
    }
}

impl StreamMapping<DynamoDbStream> {
    /// A mapping on `stream_arn`.
    pub fn new(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: impl Into<String>,
        config: MappingConfig,
    ) -> Self {
        let stream_arn = stream_arn.into();
        StreamMapping::on(DynamoDbStream { client, stream_arn }, config)
    }

    fn error(&self, operation: &'static str, e: impl std::error::Error) -> MappingError {
        MappingError::new(operation, &self.stream.stream_arn, e)
    }

    async fn shards(&self) -> Result<Vec<Shard>, MappingError> {
        let DynamoDbStream { client, stream_arn } = &self.stream;
        let described = client
            .describe_stream()
            .stream_arn(stream_arn)
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
            let iterator = client
                .get_shard_iterator()
                .stream_arn(stream_arn)
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
    pub async fn run(
        &self,
        mut handler: impl Handler,
        mut stop: watch::Receiver<bool>,
    ) -> Result<MappingStats, MappingError> {
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
    async fn poll_shard(
        &self,
        shard: &mut Shard,
        handler: &mut impl Handler,
        stats: &mut MappingStats,
    ) -> Result<bool, MappingError> {
        let retry = !shard.pending.is_empty();
        if !retry {
            let Some(iterator) = shard.iterator.clone() else {
                return Ok(false); // a closed shard, read to its end
            };
            let DynamoDbStream { client, stream_arn } = &self.stream;
            let out = get_records!(client, iterator, self.config.batch_size, stream_arn)?;
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
        let event = dynamodb_stream_event(&self.stream.stream_arn, &shard.pending);
        stats.invocations += 1;
        stats.records_delivered += shard.pending.len() as u64;
        shard.attempts += 1;
        let outcome = handler.invoke(event).await;
        match &outcome {
            Invocation::Success => {
                shard.read_on();
                return Ok(true);
            }
            Invocation::PartialFailure(ids) if ids.is_empty() => {
                shard.read_on();
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
        if self.exhausted(shard.attempts) && self.discard_pending(shard, &outcome, stats).await {
            shard.read_on();
            return Ok(true);
        }
        Ok(false)
    }

    /// Discards the shard's pending batch, whose last invocation answered `last`: the event
    /// of the failing suffix, as the next retry would have delivered it.
    async fn discard_pending(
        &self,
        shard: &Shard,
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
            stream_arn: self.stream.stream_arn.clone(),
            shard_id: shard.id.clone(),
            start_sequence_number: seq(shard.pending.first()),
            end_sequence_number: seq(shard.pending.last()),
            first_arrival: created(shard.pending.first()),
            last_arrival: created(shard.pending.last()),
            batch_size: shard.pending.len(),
            bootstrap_servers: None,
        };
        let event = dynamodb_stream_event(&self.stream.stream_arn, &shard.pending);
        let batch = DiscardedBatch {
            kind: StreamKind::DynamoDb,
            info: &info,
            payload: &event,
            last,
            invoke_count: shard.attempts,
        };
        self.discard(&batch, stats).await
    }
}
