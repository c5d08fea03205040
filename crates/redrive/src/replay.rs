//! Replay: a range of an archived orders stream enriched again, **as of each record's arrival**,
//! into a new output prefix (`orders-replay`): after a bug fix, for a new output, or to rebuild
//! a lost one. Run twice, it writes the same bytes (the same batches, the same answers).
//!
//! Two archives:
//! - a Kinesis data stream ([`KinesisArchive`]), read from a timestamp (`AT_TIMESTAMP`) on every
//!   shard (closed ones too, while the stream keeps them), cut into batches of a fixed number of
//!   records from the first record at or after the start: the same batches, so the same object
//!   names, each run;
//! - objects in S3 in the consumer's input format ([`S3Archive`]): each object one Kinesis
//!   Lambda event (`{"Records": […]}`, as a mapping delivers it or a Firehose transform keeps
//!   it), replayed as one batch, in key order.
//!
//! Records outside `[from, to]` (their arrival) are left out. Each batch goes through the orders
//! consumer's own code ([`OrdersConsumer::handle_batch`]) with its configuration, except: as of
//! arrival always (`ENRICH_AS_OF=arrival`), the output under the replay's prefix, no catalog
//! registration (the function's table describes its own prefix), and unmatched orders
//! dead-lettered rather than held ([`replay_config`]). A batch the consumer reports for retry is
//! tried again (up to 3 times), then the replay stops with the error: nothing is skipped.

use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime as KinesisTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use base64::Engine;
use orders_consumer::{BatchSummary, OrdersConsumer};
use serde::Serialize;
use serde_json::{json, Value};
use stream_refdata::sources::{FeedSource, ObjectSource, TableSource};

use stream_refdata_aws::ObjectKeeper;

/// One record of an archived stream.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchivedRecord {
    /// Its sequence number.
    pub sequence_number: String,
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
    /// When it arrived in the stream (ms since the epoch).
    pub arrival_ms: i64,
}

/// A batch to replay: the shard its records come from, the stream's ARN, its records in order.
#[derive(Clone, Debug)]
pub struct ArchivedBatch {
    /// The shard (`shardId-…`).
    pub shard: String,
    /// The stream's ARN (the event's `eventSourceARN`).
    pub stream_arn: String,
    /// Its records.
    pub records: Vec<ArchivedRecord>,
}

impl ArchivedBatch {
    /// The Kinesis Lambda event of this batch, as a mapping delivers it.
    pub fn event(&self, region: &str) -> Value {
        let records: Vec<Value> = (self.records.iter())
            .map(|r| {
                json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key,
                        "sequenceNumber": r.sequence_number,
                        "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                        "approximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("{}:{}", self.shard, r.sequence_number),
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "",
                    "awsRegion": region,
                    "eventSourceARN": self.stream_arn,
                })
            })
            .collect();
        json!({ "Records": records })
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayStop {
    /// The archive could not be read.
    #[error("reading the archive: {0}")]
    Archive(String),
    /// The consumer kept reporting a batch for retry.
    #[error("the batch of {shard} from {first} failed {attempts} times: {why}")]
    Batch {
        /// Its shard.
        shard: String,
        /// Its first record's sequence number.
        first: String,
        /// How often it was tried.
        attempts: u32,
        /// The consumer's reason.
        why: String,
    },
    /// The event was refused by the consumer.
    #[error("the consumer refused a batch of {shard}: {why}")]
    Refused {
        /// Its shard.
        shard: String,
        /// Why.
        why: String,
    },
}

/// An archive of the orders stream, read batch by batch.
pub trait Archive {
    /// The next batch, `None` at the end.
    fn next_batch(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Option<ArchivedBatch>, ReplayStop>> + Send;
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// Batches replayed.
    pub batches: usize,
    /// Records in them.
    pub records: usize,
    /// Orders enriched.
    pub enriched: usize,
    /// Orders written un-enriched (`UNMATCHED=pass`).
    pub passed: usize,
    /// Records dead-lettered (with why).
    pub dead_lettered: usize,
    /// Orders dropped (`UNMATCHED=drop`).
    pub dropped: usize,
    /// Change flags (not data).
    pub flags: usize,
    /// Objects written.
    pub objects: usize,
}

impl ReplayReport {
    fn add(&mut self, s: &BatchSummary) {
        let o = &s.output;
        self.batches += 1;
        self.records += s.records;
        self.enriched += o.enriched;
        self.passed += o.passed;
        self.dead_lettered += o.unmatched_dead_lettered + o.too_stale + o.not_answered + o.invalid;
        self.dropped += o.dropped;
        self.flags += o.flags;
        self.objects += o.objects.len();
    }
}

/// Replays every batch of `archive` through `consumer` (see the [module](self)), calling
/// `progress` after each with the report so far.
///
/// # Errors
/// [`ReplayStop`] when the archive cannot be read, or a batch keeps failing.
pub async fn replay<Tb, Fd, S>(
    archive: &mut impl Archive,
    consumer: &OrdersConsumer<Tb, Fd, S>,
    region: &str,
    mut progress: impl FnMut(&ArchivedBatch, &ReplayReport),
) -> Result<ReplayReport, ReplayStop>
where
    Tb: TableSource,
    Fd: FeedSource + ObjectSource + Clone,
    S: ObjectKeeper,
{
    let mut report = ReplayReport::default();
    while let Some(batch) = archive.next_batch().await? {
        if batch.records.is_empty() {
            continue;
        }
        let event = batch.event(region);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (response, summary) =
                consumer
                    .handle_batch(&event)
                    .await
                    .map_err(|e| ReplayStop::Refused {
                        shard: batch.shard.clone(),
                        why: e.to_string(),
                    })?;
            if response.batch_item_failures.is_empty() {
                report.add(&summary);
                break;
            }
            let why = summary.failed.unwrap_or_default();
            if attempts >= 3 {
                return Err(ReplayStop::Batch {
                    shard: batch.shard.clone(),
                    first: batch.records[0].sequence_number.clone(),
                    attempts,
                    why,
                });
            }
            tracing::warn!(shard = %batch.shard, attempts, reason = %why, "a replayed batch failed; trying it again");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempts))).await;
        }
        progress(&batch, &report);
    }
    Ok(report)
}

/// The orders consumer's configuration for a replay into `output_prefix`, from its variables
/// `orders` (see the [module](self)): enriched as of arrival, the output under
/// `<output_prefix>enriched/` and `<output_prefix>dead-letter/`, no catalog, no hold.
///
/// # Errors
/// The variables are missing or wrong, or the configuration cannot enrich as of arrival (a
/// second reference).
pub fn replay_config(
    orders: &impl Fn(&str) -> Option<String>,
    output_prefix: &str,
) -> Result<orders_consumer::Config, stream_refdata_aws::ConfigError> {
    // (never into the function's own output: the replay's batches are cut otherwise, so its
    // object names would stand beside the live ones and duplicate their records)
    let own = orders_consumer::Config::from_lookup(orders)?;
    let overlaps = |a: &str, b: &str| a.starts_with(b) || b.starts_with(a);
    if output_prefix.is_empty()
        || overlaps(output_prefix, &own.output_prefix)
        || overlaps(output_prefix, &own.dead_letter_prefix)
    {
        return Err(stream_refdata_aws::ConfigError::Invalid {
            var: "--output-prefix",
            value: output_prefix.to_owned(),
            reason: format!(
                "must be a prefix of its own, apart from the function's OUTPUT_PREFIX {:?} and \
                 DEAD_LETTER_PREFIX {:?}",
                own.output_prefix, own.dead_letter_prefix
            ),
        });
    }
    let enriched = format!("{output_prefix}enriched/");
    let dead = format!("{output_prefix}dead-letter/");
    let vars = |var: &str| match var {
        "ENRICH_AS_OF" => Some("arrival".to_owned()),
        "OUTPUT_PREFIX" => Some(enriched.clone()),
        "DEAD_LETTER_PREFIX" => Some(dead.clone()),
        "GLUE_DATABASE" | "GLUE_TABLE" => None,
        "UNMATCHED" => match orders(var) {
            Some(v) if v.trim() == "hold" => Some("dead-letter".to_owned()),
            other => other,
        },
        other => orders(other),
    };
    orders_consumer::Config::from_lookup(&vars)
}

/// A Kinesis data stream read from `from_ms` to `to_ms` (arrival, both included), every shard,
/// in batches of `batch_size` records.
pub struct KinesisArchive {
    client: aws_sdk_kinesis::Client,
    stream: String,
    stream_arn: Option<String>,
    from_ms: i64,
    to_ms: i64,
    batch_size: usize,
    /// The shards not read yet (in the order ListShards gives them).
    shards: Option<Vec<String>>,
    /// The shard being read: its id, the next iterator (`None`: its end), records read ahead.
    current: Option<(String, Option<String>, Vec<ArchivedRecord>)>,
}

impl std::fmt::Debug for KinesisArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisArchive")
            .field("stream", &self.stream)
            .field("from_ms", &self.from_ms)
            .field("to_ms", &self.to_ms)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

fn kinesis_error(e: impl std::error::Error) -> ReplayStop {
    ReplayStop::Archive(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
}

impl KinesisArchive {
    /// The records of `stream` that arrived from `from_ms` through `to_ms`, `batch_size` to a
    /// batch (at least 1).
    pub fn new(
        client: aws_sdk_kinesis::Client,
        stream: impl Into<String>,
        from_ms: i64,
        to_ms: i64,
        batch_size: usize,
    ) -> Self {
        KinesisArchive {
            client,
            stream: stream.into(),
            stream_arn: None,
            from_ms,
            to_ms,
            batch_size: batch_size.max(1),
            shards: None,
            current: None,
        }
    }

    async fn list_shards(&mut self) -> Result<Vec<String>, ReplayStop> {
        let described = (self.client.describe_stream_summary())
            .stream_name(&self.stream)
            .send()
            .await
            .map_err(kinesis_error)?;
        self.stream_arn = described
            .stream_description_summary()
            .map(|d| d.stream_arn().to_owned());
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let call = self.client.list_shards();
            let call = match &token {
                Some(t) => call.next_token(t),
                None => call.stream_name(&self.stream),
            };
            let page = call.send().await.map_err(kinesis_error)?;
            shards.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
            match page.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        shards.reverse();
        Ok(shards)
    }

    async fn iterator(&self, shard: &str) -> Result<Option<String>, ReplayStop> {
        let at = KinesisTime::from_millis(self.from_ms);
        let out = (self.client.get_shard_iterator())
            .stream_name(&self.stream)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(at)
            .send()
            .await
            .map_err(kinesis_error)?;
        Ok(out.shard_iterator().map(str::to_owned))
    }
}

impl Archive for KinesisArchive {
    async fn next_batch(&mut self) -> Result<Option<ArchivedBatch>, ReplayStop> {
        if self.shards.is_none() {
            self.shards = Some(self.list_shards().await?);
        }
        loop {
            if self.current.is_none() {
                let Some(shard) = self.shards.as_mut().and_then(Vec::pop) else {
                    return Ok(None);
                };
                let iterator = self.iterator(&shard).await?;
                self.current = Some((shard, iterator, Vec::new()));
            }
            let Some((shard, iterator, ahead)) = self.current.as_mut() else {
                continue;
            };
            // Read until a batch is full, the records pass `to`, or the shard's end (or its
            // present: nothing behind the latest).
            while ahead.len() < self.batch_size {
                let Some(it) = iterator.clone() else { break };
                let out = (self.client.get_records())
                    .shard_iterator(it)
                    .limit(i32::try_from(self.batch_size.min(10_000)).unwrap_or(10_000))
                    .send()
                    .await
                    .map_err(kinesis_error)?;
                let mut past_end = false;
                for r in out.records() {
                    let arrival = r
                        .approximate_arrival_timestamp()
                        .map(|t| t.to_millis().unwrap_or(i64::MAX))
                        .unwrap_or(i64::MAX);
                    if arrival > self.to_ms {
                        past_end = true;
                        break;
                    }
                    ahead.push(ArchivedRecord {
                        sequence_number: r.sequence_number().to_owned(),
                        partition_key: r.partition_key().unwrap_or_default().to_owned(),
                        data: r.data().as_ref().to_vec(),
                        arrival_ms: arrival,
                    });
                }
                let caught_up = out.records().is_empty() && out.millis_behind_latest() == Some(0);
                *iterator = if past_end || caught_up {
                    None
                } else {
                    out.next_shard_iterator().map(str::to_owned)
                };
            }
            if ahead.is_empty() {
                self.current = None;
                continue;
            }
            let take = ahead.len().min(self.batch_size);
            let records: Vec<ArchivedRecord> = ahead.drain(..take).collect();
            let batch = ArchivedBatch {
                shard: shard.clone(),
                stream_arn: self.stream_arn.clone().unwrap_or_default(),
                records,
            };
            return Ok(Some(batch));
        }
    }
}

/// Objects under a prefix of a bucket, each a Kinesis Lambda event, replayed one batch each in
/// key order, records outside `[from_ms, to_ms]` left out.
#[derive(Debug)]
pub struct S3Archive {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    from_ms: i64,
    to_ms: i64,
    keys: Option<Vec<String>>,
}

impl S3Archive {
    /// The events under `prefix` of `bucket`.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        from_ms: i64,
        to_ms: i64,
    ) -> Self {
        S3Archive {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
            from_ms,
            to_ms,
            keys: None,
        }
    }

    async fn list(&self) -> Result<Vec<String>, ReplayStop> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = (self.client.list_objects_v2())
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    ReplayStop::Archive(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        keys.sort();
        keys.reverse();
        Ok(keys)
    }
}

/// The batch of one archived event (`key` names it in errors).
pub fn batch_of_event(
    key: &str,
    body: &[u8],
    from_ms: i64,
    to_ms: i64,
) -> Result<ArchivedBatch, ReplayStop> {
    let bad = |why: String| ReplayStop::Archive(format!("{key} is not a Kinesis event: {why}"));
    let event: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let records = event["Records"]
        .as_array()
        .ok_or_else(|| bad("no Records list".into()))?;
    let mut batch = ArchivedBatch {
        shard: String::new(),
        stream_arn: String::new(),
        records: Vec::new(),
    };
    for (i, r) in records.iter().enumerate() {
        let field = |name: &str| {
            r["kinesis"][name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("Records[{i}].kinesis.{name} is missing")))
        };
        let arrival = r["kinesis"]["approximateArrivalTimestamp"]
            .as_f64()
            .ok_or_else(|| bad(format!("Records[{i}] has no approximateArrivalTimestamp")))?;
        #[allow(clippy::cast_possible_truncation)]
        let arrival_ms = (arrival * 1000.0).round() as i64;
        if batch.shard.is_empty() {
            batch.shard = (r["eventID"].as_str())
                .and_then(|id| id.split(':').next())
                .unwrap_or("unknown-shard")
                .to_owned();
            batch.stream_arn = r["eventSourceARN"].as_str().unwrap_or_default().to_owned();
        }
        if arrival_ms < from_ms || arrival_ms > to_ms {
            continue;
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(field("data")?)
            .map_err(|e| bad(format!("Records[{i}].kinesis.data: {e}")))?;
        batch.records.push(ArchivedRecord {
            sequence_number: field("sequenceNumber")?,
            partition_key: field("partitionKey").unwrap_or_default(),
            data,
            arrival_ms,
        });
    }
    Ok(batch)
}

impl Archive for S3Archive {
    async fn next_batch(&mut self) -> Result<Option<ArchivedBatch>, ReplayStop> {
        if self.keys.is_none() {
            self.keys = Some(self.list().await?);
        }
        let Some(key) = self.keys.as_mut().and_then(Vec::pop) else {
            return Ok(None);
        };
        let object = (self.client.get_object())
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                ReplayStop::Archive(format!(
                    "{key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                ))
            })?;
        let body = (object.body.collect().await)
            .map_err(|e| ReplayStop::Archive(format!("{key}: {e}")))?
            .into_bytes();
        batch_of_event(&key, &body, self.from_ms, self.to_ms).map(Some)
    }
}
