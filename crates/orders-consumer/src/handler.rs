//! The Lambda handler: a Kinesis batch in, enriched orders and dead letters out.
//!
//! A batch goes through a pipeline of named steps, each a function in its own module under
//! `handler/` (the log lines stay in this module, under its target):
//!
//! 1. decode (`decode::decode`): the event's records (their data base64-decoded as the
//!    [`KinesisInvocation`] was parsed, in `event`) into the batch's inputs, KPL aggregates
//!    de-aggregated into their user records, each classified (order, flag, or invalid);
//! 2. join the objects reference (`join::join_objects`, when configured): each order's row of the
//!    second reference (objects in S3), flags at their position;
//! 3. enrich (`enrich::enrich`): each order's item of the reference table, flags at their
//!    position;
//! 4. build the output (`crate::output::build_with`): the objects, named from the batch's shard and
//!    first record;
//! 5. write (`write::write`): the objects put, a few at a time;
//! 6. register the partitions (`register::register_partitions`, when configured): new output
//!    partitions in the Glue Data Catalog;
//! 7. report (`report`): the response, the batch's log line and its embedded metrics.
//!
//! A step that cannot complete (a reference not current, an object not written) reports the
//! batch's **first** record for retry; a bad record never fails the invocation (it is
//! dead-lettered), only a payload that is not a Kinesis event does ([`HandlerError`]).

mod as_of;
mod decode;
mod enrich;
mod event;
mod hold;
mod join;
mod kafka;
mod register;
mod report;
mod served;
mod sweep;
mod write;

use aws_lambda_events::event::streams::KinesisEventResponse;
use std::sync::Arc;

use stream_refdata::sources::{FeedSource, ObjectSource, SharedFeed, TableSource};
use stream_refdata::{
    FeedSettings, Health, MetricsSnapshot, ObjectConfig, ObjectEnricher, Outcome, SystemClock,
    TableConfig, TableEnricher, Unmatched,
};
use stream_refdata_aws::ObjectKeeper;

use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use crate::catalog::{GlueCatalog, Registered};
use crate::config::Config;
use crate::hold::{Hold, HoldCounts};
use crate::orders::Record;
use crate::orders::{Product, ReferenceRow};
use crate::output::{build_with, BatchOutput, Input, Naming};

use as_of::{enrich_as_of, AsOfTable};
use decode::{decode, Batch};
use enrich::enrich;
use event::InvocationFields;
pub use event::{Invocation, KinesisInvocation};
use hold::{forget_held, hold_step, merge_released, own_held, still_held, write_held, HoldPlan};
use join::join_objects;
use kafka::{decode_kafka, KafkaFields};
pub use kafka::{
    KafkaBatchItemFailure, KafkaEventError, KafkaEventResponse, KafkaInvocation,
    KafkaItemIdentifier,
};
use register::register_partitions;
pub use report::{batch_metrics, batch_metrics_with, reference_metrics, NAMESPACE};
use report::{failure, MetricsOut};
use write::write;

/// Why an invocation fails as a whole: its payload is not a Kinesis event. The runtime reports
/// each as an `InvalidEvent`; the cause, when there is one, is the error's `source`.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not a Kinesis event: the payload does not parse as one.
    #[error("payload is not a Kinesis event: {0}")]
    InvalidEvent(#[source] serde_json::Error),
    /// A record of the event comes from another event source.
    #[error("payload is not a Kinesis event: a record has eventSource {0:?}")]
    OtherEventSource(String),
    /// Not a Kafka event, though its event source says it is one.
    #[error("payload is not a Kafka event: {0}")]
    InvalidKafkaEvent(#[source] serde_json::Error),
    /// A Kafka event whose records are not grouped as Lambda groups them.
    #[error("payload is not a Kafka event as Lambda sends it: {0}")]
    KafkaEvent(#[from] KafkaEventError),
    /// A record's data is not base64.
    #[error(
        "payload is not a Kinesis event: Records[{index}].kinesis.data is not base64: {source}"
    )]
    InvalidData {
        /// The record's index in the event.
        index: usize,
        /// Why its data does not decode.
        #[source]
        source: base64::DecodeError,
    },
}

/// The response to an invocation, as its event source mapping reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    /// A Kinesis event's: the record to retry the shard's batch from, if any.
    Kinesis(KinesisEventResponse),
    /// A Kafka event's: the partitions to retry, each from a record.
    Kafka(KafkaEventResponse),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: e.to_string(),
        }
    }
}

/// What one batch did, for logs, metrics and the local pipeline's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Records in the batch: user records, once KPL aggregates are de-aggregated.
    pub records: usize,
    /// What was written (and counted).
    pub output: BatchOutput,
    /// Why the batch was reported for retry, if it was.
    pub failed: Option<String>,
    /// Sequence numbers of the protocol change flags in the batch (where each took effect).
    pub flags_at: Vec<String>,
    /// The catalog registration failed (the batch was written all the same).
    pub catalog_error: Option<String>,
}

impl BatchSummary {
    /// Adds `other` (another partition's batch of the same invocation) to this summary.
    fn absorb(&mut self, other: BatchSummary) {
        self.records += other.records;
        self.output.absorb(other.output);
        self.failed = match (self.failed.take(), other.failed) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        self.flags_at.extend(other.flags_at);
        self.catalog_error = self.catalog_error.take().or(other.catalog_error);
    }
}

/// The reference table's enricher: `Product` items read through `Tb`, following the feed in `Fd`
/// (shared with the second reference).
type Table<Tb, Fd> = TableEnricher<Product, String, Tb, SharedFeed<Fd>>;

/// The second reference's enricher: rows of objects in S3, read through `Fd`, following the
/// same shared feed.
type Objects<Fd> = ObjectEnricher<ReferenceRow, String, Fd, SharedFeed<Fd>>;

/// The reference table as `config` describes it: `Product` items by dish, followed through the
/// change feed (the live enricher's configuration, and the as-of history's).
fn table_config(config: &Config) -> stream_refdata::TableConfig<Product, String> {
    let keys: Vec<&str> = config.key_attributes.iter().map(String::as_str).collect();
    TableConfig::new(config.reference_table.clone(), &keys, |p: &Product| {
        Some(p.item.clone())
    })
    .with_unmatched(config.unmatched)
    .with_max_staleness(Some(config.max_staleness))
    .with_feed(FeedSettings {
        prefix: config.change_prefix.clone(),
        write_window: config.write_window,
        poll_interval: config.feed_poll_interval,
        retention: config.feed_retention,
        snapshot_prefix: config.snapshot_prefix.clone(),
        ..FeedSettings::default()
    })
}

/// The orders consumer: an enricher kept warm across invocations, and the output store.
pub struct OrdersConsumer<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S> {
    config: Config,
    enricher: Mutex<Table<Tb, Fd>>,
    /// The second reference (objects in S3), when configured.
    objects: Option<Mutex<Objects<Fd>>>,
    /// The change feed, followed once per batch for both references: a round per batch.
    feed: SharedFeed<Fd>,
    /// The held orders (`UNMATCHED=hold`), when on.
    hold: Option<Hold>,
    /// The table's history, when orders are enriched as of their arrival
    /// (`ENRICH_AS_OF=arrival`).
    as_of: Option<Mutex<AsOfTable<Fd>>>,
    store: S,
    /// Where the metric lines go, when they are on.
    metrics_out: Option<MetricsOut>,
    /// The Glue table whose partitions this environment registers, and those it did.
    catalog: Option<(GlueCatalog, Registered)>,
    catalog_errors: std::sync::atomic::AtomicU64,
}

impl<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S> std::fmt::Debug
    for OrdersConsumer<Tb, Fd, S>
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrdersConsumer")
            .field("config", &self.config)
            .field("objects", &self.objects.is_some())
            .finish_non_exhaustive()
    }
}

impl<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S: ObjectKeeper>
    OrdersConsumer<Tb, Fd, S>
{
    /// A consumer reading the reference table through `table`, the change feed through `feed`,
    /// and writing through `store`. Nothing is loaded until the first batch. Both references
    /// follow the feed through one [`SharedFeed`]: one pointer GET and one listing per batch,
    /// each change file read once.
    pub fn new(config: Config, table: Tb, feed: Fd, store: S) -> Self {
        let as_of = (config.as_of.clone()).map(|settings| {
            Mutex::new(AsOfTable::new(
                &config,
                settings,
                table_config(&config),
                feed.clone(),
            ))
        });
        let feed = SharedFeed::new(feed, config.change_prefix.clone(), SystemClock);
        OrdersConsumer {
            enricher: Mutex::new(TableEnricher::new(
                table_config(&config),
                table,
                Some(feed.clone()),
                SystemClock,
            )),
            feed,
            hold: config.hold.clone().map(Hold::new),
            as_of,
            config,
            objects: None,
            store,
            metrics_out: None,
            catalog: None,
            catalog_errors: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Joins the second reference configured by `REFERENCE_OBJECTS_*` (see [`Config`]), read
    /// through `objects` (a source for that bucket) and kept current from the consumer's change
    /// feed (followed once for both references) and the flags in the stream. Without that
    /// configuration this changes nothing.
    pub fn with_reference_objects(mut self, objects: Fd) -> Self {
        let Some(r) = self.config.reference_objects.clone() else {
            return self;
        };
        let key = r.key.clone();
        let config = ObjectConfig::new(r.bucket, r.prefix, move |row: &ReferenceRow| {
            // An empty cell or a JSON null is no key (a bad row), never the key "" or "null".
            match row.get(&key)? {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        })
        // An object without the join column is rejected by name, not loaded without keys.
        .with_key_column(r.key.clone())
        // An order without a row is still written (with the table's data); counted.
        .with_unmatched(Unmatched::Pass)
        .with_max_staleness(Some(self.config.max_staleness))
        .with_feed(FeedSettings {
            prefix: self.config.change_prefix.clone(),
            write_window: self.config.write_window,
            poll_interval: self.config.feed_poll_interval,
            retention: self.config.feed_retention,
            ..FeedSettings::default()
        });
        self.objects = Some(Mutex::new(ObjectEnricher::new(
            config,
            objects,
            Some(self.feed.clone()),
            SystemClock,
        )));
        self
    }

    /// Registers each new output partition in the Glue Data Catalog through `catalog`
    /// (`GLUE_DATABASE`/`GLUE_TABLE`): the first time this environment writes to it.
    pub fn with_catalog(mut self, catalog: GlueCatalog) -> Self {
        self.catalog = Some((catalog, Registered::default()));
        self
    }

    /// Catalog registrations that failed so far (each logged; the batches were written).
    pub fn catalog_errors(&self) -> u64 {
        self.catalog_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Also print each batch's metrics to stdout in CloudWatch embedded metric format
    /// (namespace `StreamRefdata`): a line for the batch (dimension `Function=orders-consumer`)
    /// and a line per reference with its health (dimensions `Function` and `Reference`, see
    /// [`reference_metrics`]). In Lambda, CloudWatch turns those log lines into the metrics that
    /// infra/'s alarms and dashboard watch. A batch that fails prints them too.
    pub fn with_embedded_metrics(mut self, on: bool) -> Self {
        self.metrics_out = on.then(MetricsOut::stdout);
        self
    }

    /// Sends each embedded-metric-format line to `sink` instead of stdout (in-process callers
    /// that collect them).
    pub fn with_metrics_sink(mut self, sink: impl Fn(&Value) + Send + Sync + 'static) -> Self {
        self.metrics_out = Some(MetricsOut::new(sink));
        self
    }

    /// The held orders' counters (`UNMATCHED=hold`; `None` when off), and how many are held now.
    pub fn hold_counts(&self) -> Option<(HoldCounts, usize)> {
        self.hold
            .as_ref()
            .map(|h| (h.counts(), h.now(crate::hold::now_ms()).0))
    }

    /// The health of each reference the consumer holds: the table, then the objects prefix
    /// when configured. Enriching as of arrival (`ENRICH_AS_OF=arrival`), the consumer holds
    /// no reference live: none (its history's failures fail the batch, and the orders it
    /// cannot answer for are counted as `NotAnsweredOrders`).
    pub async fn health(&self) -> Vec<Health> {
        if self.as_of.is_some() {
            return Vec::new();
        }
        let mut all = vec![self.enricher.lock().await.health()];
        if let Some(objects) = &self.objects {
            all.push(objects.lock().await.health());
        }
        all
    }

    /// The policies the enricher follows (from the configuration).
    pub async fn policies(&self) -> stream_refdata::Policies {
        self.enricher.lock().await.policies().clone()
    }

    /// The enricher's counters (requests, refreshes, staleness).
    pub async fn metrics(&self) -> MetricsSnapshot {
        self.enricher.lock().await.metrics()
    }

    /// Handles one invocation given as a parsed JSON value (in-process callers and tests): the
    /// Lambda response. The same as [`OrdersConsumer::handle_raw`] on its text.
    pub async fn handle(&self, payload: &Value) -> Result<KinesisEventResponse, HandlerError> {
        let (response, _) = self.handle_batch(payload).await?;
        Ok(response)
    }

    /// Handles one invocation given as its JSON text (in-process callers): the Lambda response.
    /// The same as the binary's [`OrdersConsumer::handle_invocation`] on the parsed event.
    pub async fn handle_raw(&self, payload: &str) -> Result<KinesisEventResponse, HandlerError> {
        let (response, _) = self.handle_batch_raw(payload).await?;
        Ok(response)
    }

    /// Handles one invocation given as a parsed JSON value and says what it did; see
    /// [`OrdersConsumer::handle_invocation`].
    pub async fn handle_batch(
        &self,
        payload: &Value,
    ) -> Result<(KinesisEventResponse, BatchSummary), HandlerError> {
        let event = InvocationFields::deserialize(payload).map_err(HandlerError::InvalidEvent)?;
        self.handle_invocation(event.into()).await
    }

    /// Handles one invocation given as its JSON text and says what it did; see
    /// [`OrdersConsumer::handle_invocation`].
    pub async fn handle_batch_raw(
        &self,
        payload: &str,
    ) -> Result<(KinesisEventResponse, BatchSummary), HandlerError> {
        let event: InvocationFields =
            serde_json::from_str(payload).map_err(HandlerError::InvalidEvent)?;
        self.handle_invocation(event.into()).await
    }

    /// Handles one invocation as the runtime parsed it (the binary does this) and says what it
    /// did: the batch through the pipeline's steps (see the [module](self)). If any output
    /// object cannot be written, or the reference data is not current, the batch's **first**
    /// record is reported, so the whole batch is retried from it and rewrites the same object
    /// names. Bad records never fail the invocation: they are dead-lettered.
    pub async fn handle_invocation(
        &self,
        event: KinesisInvocation,
    ) -> Result<(KinesisEventResponse, BatchSummary), HandlerError> {
        // (a scheduled invocation: the sweep of the held orders, no batch)
        if event.sweep {
            return Ok((KinesisEventResponse::default(), self.sweep().await));
        }
        // 1. decode
        let Some(batch) = decode(event, &self.config.legacy_flag_dish)? else {
            return Ok((KinesisEventResponse::default(), BatchSummary::default()));
        };
        let (retry, summary) = self.handle_decoded(batch).await;
        let response = match retry {
            Some(first_sequence) => failure(&first_sequence),
            None => KinesisEventResponse::default(),
        };
        Ok((response, summary))
    }

    /// Handles one invocation of either kind (the binary does this): a Kinesis event as
    /// [`OrdersConsumer::handle_invocation`] does, a Kafka event as
    /// [`OrdersConsumer::handle_kafka_invocation`] does. The response is the one its event
    /// source mapping reads.
    pub async fn handle_any(
        &self,
        event: Invocation,
    ) -> Result<(Response, BatchSummary), HandlerError> {
        match event {
            Invocation::Kinesis(event) => {
                let (response, summary) = self.handle_invocation(event).await?;
                Ok((Response::Kinesis(response), summary))
            }
            Invocation::Kafka(event) => {
                let (response, summary) = self.handle_kafka_invocation(event).await?;
                Ok((Response::Kafka(response), summary))
            }
        }
    }

    /// Handles a Kafka event given as a parsed JSON value (in-process callers and tests); see
    /// [`OrdersConsumer::handle_kafka_invocation`].
    pub async fn handle_kafka_batch(
        &self,
        payload: &Value,
    ) -> Result<(KafkaEventResponse, BatchSummary), HandlerError> {
        let event = KafkaFields::deserialize(payload).map_err(HandlerError::InvalidKafkaEvent)?;
        self.handle_kafka_invocation(event.into()).await
    }

    /// Handles a Kafka event (Amazon MSK's or a self-managed cluster's) and says what it did:
    /// each topic-partition's records are a batch of their own, through the same steps as a
    /// Kinesis batch (see the [module](self)), one after another in the order of their names.
    /// A partition's objects are named from its topic, partition and first offset
    /// (`<topic>-<partition>-<offset>.jsonl`), so a retry rewrites the same names. A partition
    /// whose batch cannot complete is reported with every record of its batch, from its first
    /// (Lambda retries that partition from there); the others are acknowledged. The summary adds the partitions'
    /// up.
    pub async fn handle_kafka_invocation(
        &self,
        event: KafkaInvocation,
    ) -> Result<(KafkaEventResponse, BatchSummary), HandlerError> {
        let source = event.event_source.clone();
        let batches = decode_kafka(event, &self.config.legacy_flag_dish)?;
        info!(event_source = %source, partitions = batches.len(), "a Kafka event");
        let mut response = KafkaEventResponse::default();
        let mut all = BatchSummary::default();
        for batch in batches {
            let shard = batch.shard.clone();
            // (every record of the partition's batch is reported when it fails, from its first:
            // Lambda retries the partition from the lowest offset named, and a reading of the
            // response that retried only the records named would still retry them all)
            let mut offsets: Vec<String> = (batch.inputs.iter())
                .map(|i| i.sequence_number.clone())
                .collect();
            offsets.dedup();
            let (retry, summary) = self.handle_decoded(batch).await;
            if retry.is_some() {
                (response.batch_item_failures).extend(
                    offsets
                        .iter()
                        .map(|o| KafkaBatchItemFailure::new(&shard, o)),
                );
            }
            all.absorb(summary);
        }
        Ok((response, all))
    }

    /// Steps 2 to 7 for one decoded batch (a Kinesis shard's, or a Kafka topic-partition's):
    /// the record to retry the batch from when it could not complete, and what it did.
    async fn handle_decoded(&self, batch: Batch) -> (Option<String>, BatchSummary) {
        // Every record of the batch is in the stream by now: the feed's answers from here on
        // serve both references, at any position in the batch.
        self.feed.new_round();
        let records = batch.inputs.len();
        let first_sub_sequence = batch.first_sub_sequence();
        let flags_at = batch.flags_at();
        let unreadable_flags: Vec<Input> = (batch.inputs.iter())
            .filter(|i| matches!(i.record, Record::UnreadableFlag(_)))
            .cloned()
            .collect();
        for (sequence_number, sub_sequence, why) in batch.unreadable_flags() {
            warn!(shard = %batch.shard, sequence_number, sub_sequence, reason = why, "a change flag does not parse; every reference polls the feed at its position instead");
        }
        let Batch {
            shard,
            first_sequence,
            mut inputs,
        } = batch;
        // 2. join the objects reference
        if let Some(objects) = &self.objects {
            let joined = join_objects(&mut *objects.lock().await, &mut inputs).await;
            if let Err(e) = joined {
                error!(%shard, first_sequence, reason = %e, "reference objects not current for this batch; reporting it for retry");
                // The alarms must see a reference that cannot load or refresh.
                self.report_metrics(&BatchOutput::default()).await;
                let summary = BatchSummary {
                    records,
                    failed: Some(e.to_string()),
                    ..BatchSummary::default()
                };
                return (Some(first_sequence), summary);
            }
        }
        let mut summary = BatchSummary {
            records,
            flags_at,
            ..BatchSummary::default()
        };
        // 3a. the held orders of this shard known (a cold start lists them once), their dishes
        // watched
        let mut own_tags = std::collections::HashMap::new();
        if let Some(hold) = &self.hold {
            if let Err(e) = hold
                .load(&self.store, &self.config.output_bucket, &shard)
                .await
            {
                error!(%shard, first_sequence, error = %e, "held orders not read; reporting the batch for retry");
                summary.failed = Some(format!("held orders not read: {e}"));
                return (Some(first_sequence), summary);
            }
            // (a retry or redelivery: what other environments decided about its held orders)
            let bucket = &self.config.output_bucket;
            if let Err(e) = own_held(
                &self.store,
                bucket,
                hold,
                &shard,
                &first_sequence,
                &inputs,
                &mut own_tags,
            )
            .await
            {
                error!(%shard, first_sequence, error = %e, "held orders not read; reporting the batch for retry");
                summary.failed = Some(format!("held orders not read: {e}"));
                return (Some(first_sequence), summary);
            }
            // (versions the watch finds at once are learned now, before the batch's refresh:
            // not taken as brought by this batch, which may delete the row)
            let table = self.enricher.lock().await;
            table.watch(hold.dishes(&shard));
            hold.resolved(table.take_resolved());
        }
        // 3. enrich (the table's lock is released before a failure's metrics take it again)
        let enriched = match &self.as_of {
            // (as of each order's arrival: the history, not the table as it is now)
            Some(table) => {
                let unmatched = self.config.unmatched;
                let now = crate::hold::now_ms;
                enrich_as_of(&mut *table.lock().await, inputs, unmatched, now).await
            }
            None => enrich(&mut *self.enricher.lock().await, inputs).await,
        };
        let outcomes = match enriched {
            Ok(outcomes) => outcomes,
            Err(e) => {
                error!(%shard, first_sequence, reason = %e, "reference data not current for this batch; reporting it for retry");
                // The alarms must see a reference that cannot load or refresh.
                self.report_metrics(&BatchOutput::default()).await;
                summary.failed = Some(e.to_string());
                return (Some(first_sequence), summary);
            }
        };
        // 3b. hold: the orders still without a row held (or dead-lettered when the hold is
        // full), those held earlier released or expired
        let (outcomes, mut plan) = match &self.hold {
            Some(hold) => {
                let (resolved, stale) = {
                    let table = self.enricher.lock().await;
                    (table.take_resolved(), table.is_too_stale())
                };
                let first = (first_sequence.as_str(), first_sub_sequence);
                let (outcomes, mut plan) =
                    hold_step(hold, &shard, first, outcomes, resolved, stale);
                plan.tags.extend(own_tags);
                (outcomes, Some(plan))
            }
            None => (outcomes, None),
        };
        let mut outcomes = outcomes;
        if let (Some(hold), Some(plan)) = (&self.hold, plan.as_mut()) {
            // (the held objects first: durable before the batch is acknowledged; and each
            // ending claimed in its order's object)
            let bucket = &self.config.output_bucket;
            let held = match still_held(&self.store, bucket, hold, &shard, plan).await {
                Ok(()) => write_held(&self.store, bucket, hold, &shard, plan)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("held orders not read: {e}")),
            };
            if let Err(e) = held {
                error!(%shard, first_sequence, error = %e, "held orders not written or read; reporting the batch for retry");
                summary.failed = Some(e);
                return (Some(first_sequence), summary);
            }
            // (an order whose held object could not be written: dead-lettered with why)
            if !plan.cannot_hold.is_empty() {
                let ids: std::collections::HashMap<(String, Option<u64>), String> =
                    (std::mem::take(&mut plan.cannot_hold).into_iter())
                        .map(|(h, why)| (h.id(), why))
                        .collect();
                let mut kept = Vec::with_capacity(outcomes.len());
                for outcome in outcomes {
                    match outcome {
                        Outcome::Waiting { record } => {
                            let id = (record.sequence_number.clone(), record.sub_sequence);
                            match ids.get(&id) {
                                Some(why) => plan.hold_full.push((record, why.clone())),
                                None => kept.push(Outcome::Waiting { record }),
                            }
                        }
                        other => kept.push(other),
                    }
                }
                outcomes = kept;
            }
        }
        // 4. build the output
        let naming = self.naming(&shard, &first_sequence, first_sub_sequence);
        let hold_full = plan.as_ref().map(|p| p.hold_full.as_slice()).unwrap_or(&[]);
        let mut output = build_with(&naming, outcomes, &unreadable_flags, hold_full);
        if let (Some(hold), Some(plan)) = (&self.hold, plan.as_mut()) {
            // (the second reference's row of each released order, as it is now)
            let menu = match &self.objects {
                Some(objects) => Some(objects.lock().await.reader()),
                None => None,
            };
            let again = self.ended_again(hold, &shard, plan, menu.as_ref()).await;
            if let Err(e) = again {
                error!(%shard, first_sequence, error = %e, "held orders not read; reporting the batch for retry");
                summary.failed = Some(e);
                summary.output = output;
                return (Some(first_sequence), summary);
            }
            let again = again.unwrap_or_default();
            crate::output::merge_into(&mut output, again);
            self.add_releases(hold, &shard, plan, menu.as_ref(), &mut output);
            output.already_ended = plan.already_ended;
        }
        // 5. write (then the released orders merged into their first attempts' objects)
        let bucket = &self.config.output_bucket;
        let written = match write(&self.store, bucket, &output).await {
            Ok(()) => merge_released(&self.store, bucket, &output.merges).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            error!(%shard, first_sequence, error = %e, "output not written; reporting the batch for retry");
            self.report_metrics(&BatchOutput::default()).await;
            summary.failed = Some(e.to_string());
            summary.output = output;
            return (Some(first_sequence), summary);
        }
        // 5b. the released and expired orders leave the hold (a crash before this releases
        // them again, under the same names)
        if let (Some(hold), Some(plan)) = (&self.hold, &plan) {
            forget_held(&self.store, &self.config.output_bucket, hold, &shard, plan).await;
        }
        // 6. register the partitions: never a batch failure (the orders are written; the next
        // batch tries again)
        if let Some((catalog, registered)) = &self.catalog {
            if let Err(e) = register_partitions(catalog, registered, &self.config, &output).await {
                self.catalog_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                error!(%shard, first_sequence, error = %e, owed = registered.owed(), "output partitions not registered in the catalog; the batch is written, and the next batch tries them again");
                summary.catalog_error = Some(e.to_string());
            }
        }
        // 7. report
        self.report(&shard, records, &output).await;
        summary.output = output;
        (None, summary)
    }

    /// Adds to `output` the lines of the orders `plan` releases, to merge into the objects of
    /// their first attempts (each with the version that resolved its dish, in that version's
    /// partition: the names the first attempt would have had), and the dead letters of those
    /// past the grace (each under a name of its own).
    fn add_releases(
        &self,
        hold: &Hold,
        shard: &str,
        plan: &HoldPlan,
        menu: Option<&stream_refdata::Reader<ReferenceRow, String>>,
        output: &mut BatchOutput,
    ) {
        let released = self.released_lines(shard, plan.released.iter(), menu);
        output.released += released.enriched;
        let now_ms = crate::hold::now_ms();
        output.longest_held_ms = (plan.released.iter())
            .map(|(h, _)| u64::try_from(now_ms - h.held_at_ms).unwrap_or(0))
            .max();
        output.merges.extend(released.objects);
        output.partition_values.extend(released.partition_values);
        let grace = hold.settings.grace.as_secs();
        for held in &plan.expired {
            let waited = (now_ms - held.held_at_ms).max(0) / 1000;
            let reason = format!(
                "unmatched after {grace} s: no reference item for dish {:?} (held {waited} s; first attempt: the batch of {shard} from {})",
                held.dish, held.first_sequence
            );
            let input = held.input(&self.config.legacy_flag_dish);
            output.objects.push(crate::output::own_dead_letter(
                &self.config.dead_letter_prefix,
                shard,
                &input,
                reason,
            ));
            output.expired += 1;
        }
    }

    /// The lines of `released` held orders of `shard` (each with its version), under the names
    /// of their first attempts' objects: by first attempt, then that version's partition.
    fn released_lines<'h>(
        &self,
        shard: &str,
        released: impl Iterator<Item = &'h (crate::hold::Held, Arc<Product>)>,
        menu: Option<&stream_refdata::Reader<ReferenceRow, String>>,
    ) -> BatchOutput {
        // By first attempt: its batch's first record (and sub-sequence number).
        type ByFirstAttempt<'a> =
            std::collections::BTreeMap<(&'a str, Option<u64>), Vec<Outcome<Input, Product>>>;
        let mut groups = ByFirstAttempt::new();
        for (held, item) in released {
            groups
                .entry((held.first_sequence.as_str(), held.first_sub_sequence))
                .or_default()
                .push(Outcome::Enriched {
                    record: {
                        let mut input = held.input(&self.config.legacy_flag_dish);
                        input.reference_object = menu.and_then(|m| m.lookup(held.dish.as_str()));
                        input
                    },
                    item: Arc::clone(item),
                });
        }
        let mut all = BatchOutput::default();
        for ((first, first_sub), outcomes) in groups {
            let naming = self.naming(shard, first, first_sub);
            let lines = crate::output::build(&naming, outcomes);
            all.enriched += lines.enriched;
            all.objects.extend(lines.objects);
            all.partition_values.extend(lines.partition_values);
        }
        all
    }

    /// The lines of this batch's orders that were released before (a redelivery, a redrive),
    /// as their ended markers keep them (the version they were released with): this batch
    /// rewrites its objects, and these lines must stay in them. (An expired order's marker is
    /// empty: it stays in its own dead letter.) One GET per such order.
    async fn ended_again(
        &self,
        hold: &Hold,
        shard: &str,
        plan: &HoldPlan,
        menu: Option<&stream_refdata::Reader<ReferenceRow, String>>,
    ) -> Result<BatchOutput, String> {
        let mut released = Vec::new();
        for input in &plan.ended_again {
            let marker = hold.ended_key(shard, input);
            let body = (self.store)
                .read_object(&self.config.output_bucket, &marker)
                .await
                .map_err(|e| format!("ended marker {marker} not read: {e}"))?;
            let Some(body) = body.filter(|b| !b.is_empty()) else {
                continue;
            };
            match serde_json::from_slice::<crate::hold::Held>(&body) {
                Ok(h) if h.id() == (input.sequence_number.clone(), input.sub_sequence) => {
                    if let Some(item) = h.resolved_with.clone() {
                        released.push((h, Arc::new(item)));
                    }
                }
                _ => warn!(marker, "an ended marker does not hold the order it names; its line is not written again"),
            }
        }
        Ok(self.released_lines(shard, released.iter(), menu))
    }

    /// How the objects of the batch from `shard` whose first record is `first_sequence` (and
    /// `first_sub_sequence`) are named, and where they go.
    fn naming<'a>(
        &'a self,
        shard: &'a str,
        first_sequence: &'a str,
        first_sub_sequence: Option<u64>,
    ) -> Naming<'a> {
        Naming {
            shard,
            first_sequence,
            first_sub_sequence,
            reference_object_field: self
                .config
                .reference_objects
                .as_ref()
                .map(|r| (r.field.as_str(), r.key.as_str())),
            output_prefix: &self.config.output_prefix,
            dead_letter_prefix: &self.config.dead_letter_prefix,
        }
    }

    /// Reports a written batch of `records` records from `shard` that produced `output`: its
    /// log line, and its metrics.
    async fn report(&self, shard: &str, records: usize, output: &BatchOutput) {
        info!(
            %shard,
            records,
            enriched = output.enriched,
            passed = output.passed,
            unmatched_dead_lettered = output.unmatched_dead_lettered,
            too_stale = output.too_stale,
            not_answered = output.not_answered,
            dropped = output.dropped,
            invalid = output.invalid,
            flags = output.flags,
            unreadable_flags = output.unreadable_flags,
            held = output.held,
            hold_full = output.hold_full,
            released = output.released,
            expired = output.expired,
            objects = output.objects.len(),
            "batch written"
        );
        self.report_metrics(output).await;
    }

    /// Writes the metric lines of a batch that produced `output` (nothing, when it failed) and
    /// of each reference's health, when embedded metrics are on.
    async fn report_metrics(&self, output: &BatchOutput) {
        if let Some(out) = &self.metrics_out {
            let held = self.hold.as_ref().map(|h| h.now(crate::hold::now_ms()));
            out.write(output, &self.health().await, held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::report::STALENESS_UNKNOWN_SECS;
    use super::*;
    use base64::Engine;
    use std::time::Duration;
    use stream_refdata::testing::{MemoryBucket, MemoryTable};
    use test_support::MemoryStore;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut all = vec![
            ("REFERENCE_TABLE", "ProductPriority"),
            ("CHANGE_BUCKET", "feed-bucket"),
            ("OUTPUT_BUCKET", "out-bucket"),
        ];
        all.extend_from_slice(pairs);
        Config::from_lookup(&|k: &str| {
            all.iter()
                .rev()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap()
    }

    #[tokio::test]
    async fn the_feed_retention_reaches_the_enricher() {
        let consumer = OrdersConsumer::new(
            config(&[("FEED_RETENTION_DAYS", "30")]),
            MemoryTable::new(&["item", "price"]),
            MemoryBucket::default(),
            MemoryStore::new(),
        );
        assert_eq!(
            consumer.policies().await.feed.retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        // infra/ sets it from the change files' lifecycle rule.
        let template = include_str!("../../../infra/template.yaml");
        assert!(template.contains("FEED_RETENTION_DAYS: !Ref ChangeFileRetentionDays"));
        assert!(template.contains("ExpirationInDays: !Ref ChangeFileRetentionDays"));
        // And the allocator's settings.
        for (name, value) in crate::ALLOCATOR_ENVIRONMENT {
            assert!(template.contains(&format!("{name}: \"{value}\"")), "{name}");
        }
    }

    /// Kinesis records made by AWS's own aggregation library (`aws-kinesis-agg`, pinned in
    /// requirements-dev.txt and installed into `.venv` by scripts/setup): `aggregates` records of
    /// `per` orders each, as (partition key, base64 data).
    fn kpl_records(aggregates: usize, per: usize) -> Vec<(String, String)> {
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
        let script = r#"
import base64, json, sys
from aws_kinesis_agg.aggregator import RecordAggregator
aggregates, per = int(sys.argv[1]), int(sys.argv[2])
dishes = ["burger", "pizza", "salad", "donut"]
out = []
for a in range(aggregates):
    agg = RecordAggregator()
    for i in range(per):
        n = a * per + i
        order = {"dish": dishes[n % 4], "cost": n, "customer_id": 1000 + n}
        assert agg.add_user_record(str(1000 + n), json.dumps(order).encode()) is None
    key, _, data = agg.clear_and_get().get_contents()
    out.append([key, base64.b64encode(data).decode()])
print(json.dumps(out))
"#;
        let run = std::process::Command::new(python)
            .args(["-c", script, &aggregates.to_string(), &per.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("{python}: {e} (scripts/setup installs aws-kinesis-agg)"));
        assert!(
            run.status.success(),
            "aws-kinesis-agg failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        serde_json::from_slice(&run.stdout).unwrap()
    }

    fn kinesis_event(records: &[(String, String)]) -> Value {
        let records: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, (key, data))| {
                let seq = format!("4959033827149025660855969253836157109592157598913658{:04}", i);
                serde_json::json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": key,
                        "sequenceNumber": seq,
                        "data": data,
                        "approximateArrivalTimestamp": 1795650067.123
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("shardId-000000000002:{seq}"),
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::123456789012:role/orders-consumer",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream"
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }

    fn products() -> MemoryTable {
        let table = MemoryTable::new(&["item", "price"]);
        for (item, priority) in [("burger", "medium"), ("pizza", "low"), ("salad", "high")] {
            let mut product =
                stream_refdata::testing::item(&[("item", item), ("priority", priority)]);
            product.insert(
                "price".into(),
                stream_refdata_protocol::AttributeValue::N("100".into()),
            );
            table.put(product);
        }
        table
    }

    #[tokio::test]
    async fn records_aggregated_by_the_kpl_are_enriched_one_by_one() {
        // GIVEN 200 orders in five records aggregated by AWS's library, and one aggregate whose
        // MD5 trailer was damaged in transit
        let mut records = kpl_records(6, 40);
        let damaged = &mut records[5].1;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(damaged.as_bytes())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        *damaged = base64::engine::general_purpose::STANDARD.encode(bytes);
        let store = MemoryStore::new();
        let consumer = OrdersConsumer::new(config(&[]), products(), MemoryBucket::default(), store);
        // WHEN the consumer handles them
        let (response, summary) = consumer
            .handle_batch(&kinesis_event(&records))
            .await
            .unwrap();
        // THEN every user record is one input: 150 enriched, 50 donuts dead-lettered as
        // unmatched, and the damaged aggregate dead-lettered whole with the reason
        assert!(response.batch_item_failures.is_empty());
        let out = &summary.output;
        assert_eq!(summary.records, 200 + 1);
        assert_eq!(
            (out.enriched, out.unmatched_dead_lettered, out.invalid),
            (150, 50, 1)
        );
        assert_eq!(out.accounted(), summary.records);
        let dead = consumer
            .store
            .object(
                "out-bucket",
                &format!("dead-letter/shardId-000000000002-{}-0.jsonl", first_seq()),
            )
            .unwrap();
        let dead = String::from_utf8(dead).unwrap();
        assert!(dead.contains("wrong MD5 checksum"), "{dead}");
        // Each line names its record and sub-sequence number; (sequence, sub-sequence) is unique.
        let mut seen = std::collections::HashSet::new();
        for v in written_lines(&consumer.store) {
            if v.get("reason")
                .is_some_and(|r| r.as_str().unwrap().contains("MD5"))
            {
                continue;
            }
            let id = (
                v["sequence_number"].as_str().unwrap().to_owned(),
                v["sub_sequence_number"]
                    .as_u64()
                    .expect("a sub-sequence number"),
            );
            assert!(seen.insert(id), "{v}");
        }
        assert_eq!(seen.len(), 200);
        assert!(seen.iter().all(|(_, sub)| *sub < 40));
    }

    /// A flag record as the s3-event-handler puts it, for `key` of `bucket` now holding `body`.
    fn flag_record(bucket: &MemoryBucket, key: &str) -> String {
        let flag = stream_refdata_protocol::ChangeFlag::new(
            stream_refdata_protocol::ObjectChange {
                bucket: "ref-bucket".into(),
                key: key.into(),
                event_name: "ObjectCreated:Put".into(),
                removed: false,
                event_time: "2026-12-01T10:00:00.000Z".into(),
                version_id: None,
                etag: bucket.etag(key).map(|e| e.trim_matches('"').to_owned()),
                sequencer: None,
            },
            None,
        );
        base64::engine::general_purpose::STANDARD.encode(flag.to_vec())
    }

    /// Writes `csv` as the menu object and returns the flag record of that change.
    fn change_menu(objects: &MemoryBucket, csv: &[u8]) -> (String, String) {
        objects.put("reference/menu.csv", csv.to_vec());
        (
            "flag".to_owned(),
            flag_record(objects, "reference/menu.csv"),
        )
    }

    fn order(dish: &str, n: usize) -> (String, String) {
        let json = format!("{{\"dish\":\"{dish}\",\"cost\":{n},\"customer_id\":{n}}}");
        (
            n.to_string(),
            base64::engine::general_purpose::STANDARD.encode(json),
        )
    }

    #[tokio::test]
    async fn reference_objects_in_s3_are_joined_and_a_flag_switches_them_at_its_position() {
        // GIVEN the menu kept as a CSV object, joined on the dish
        let objects = MemoryBucket::default();
        objects.put(
            "reference/menu.csv",
            b"item,category,allergens\nburger,mains,gluten\nsalad,starters,\n".to_vec(),
        );
        let consumer = menu_consumer(&objects, &MemoryBucket::default(), &[]);
        // (a first batch loads both references; the next batch's objects have the same names)
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 1)]))
            .await
            .unwrap();
        // WHEN the object changes (salad: starters -> salads) and its flag sits mid-batch
        let flag = change_menu(
            &objects,
            b"item,category,allergens\nburger,mains,gluten\nsalad,salads,\n",
        );
        let batch = [
            order("salad", 2),
            flag,
            order("salad", 3),
            order("pizza", 4),
        ];
        let (response, summary) = consumer.handle_batch(&kinesis_event(&batch)).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{summary:?}");
        // THEN orders before the flag carry the old row, every order after it the new one,
        // and an order without a row (pizza) is still written, without the menu field
        let lines = written_lines(&consumer.store);
        let category = |customer: i64| {
            lines
                .iter()
                .rev()
                .find(|l| l["customer_id"] == customer)
                .map(|l| l["menu"]["category"].clone())
        };
        assert_eq!(
            category(2),
            Some(Value::from("starters")),
            "before the flag"
        );
        assert_eq!(category(3), Some(Value::from("salads")), "after the flag");
        assert_eq!(category(4), Some(Value::Null), "no menu row: no menu field");
        let salad = lines.iter().find(|l| l["customer_id"] == 3).unwrap();
        assert_eq!(salad["menu"]["allergens"], "");
        assert!(
            salad["menu"].get("item").is_none(),
            "the join column is not repeated"
        );
        assert_eq!(summary.output.accounted(), summary.records);

        // AND when the object cannot be read at a flag, the batch is retried, not enriched
        // with the old row
        let flag_again = change_menu(&objects, b"item,category\nsalad,bowls\n");
        objects.set_failing(true);
        let (response, summary) = consumer
            .handle_batch(&kinesis_event(&[
                order("salad", 5),
                flag_again,
                order("salad", 6),
            ]))
            .await
            .unwrap();
        assert_eq!(response.batch_item_failures.len(), 1, "{summary:?}");
        assert!(summary.failed.unwrap().contains("reference objects"));
    }

    #[tokio::test]
    async fn both_references_follow_the_feed_once_per_batch() {
        // GIVEN a consumer of the table and the menu objects, warm, its feed idle (a producer
        // wrote its pointer once)
        let feed = MemoryBucket::default();
        let pointer = stream_refdata_protocol::HeadPointer {
            latest: "change_flags/x".into(),
            written_at: String::new(),
        };
        feed.put(
            &stream_refdata_protocol::head_key("change_flags/"),
            serde_json::to_vec(&pointer).unwrap(),
        );
        let objects = MemoryBucket::default();
        objects.put(
            "reference/menu.csv",
            b"item,category\nsalad,starters\n".to_vec(),
        );
        let consumer = menu_consumer(&objects, &feed, &[("FEED_POLL_INTERVAL_MS", "0")]);
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 1)]))
            .await
            .unwrap();
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 2)]))
            .await
            .unwrap();
        // WHEN batches come
        let (gets, lists) = (feed.gets(), feed.lists());
        for n in 3..6 {
            consumer
                .handle_batch(&kinesis_event(&[order("salad", n)]))
                .await
                .unwrap();
        }
        // THEN each costs one conditional GET of the pointer for both references
        assert_eq!(
            feed.gets() - gets,
            3,
            "one pointer GET per batch, not one per reference"
        );
        assert_eq!(feed.lists(), lists);
        let polls: u64 = consumer
            .health()
            .await
            .iter()
            .map(|h| h.metrics.head_polls)
            .sum();
        assert!(polls >= 6, "both references polled: {polls}");
    }

    #[tokio::test(start_paused = true)]
    async fn orders_a_reference_is_too_stale_for_are_dead_lettered_as_too_stale_not_invalid() {
        // GIVEN a consumer with a 60 s staleness limit that loaded both references, then lost
        // the objects' bucket (every read fails)
        let objects = MemoryBucket::default();
        objects.put(
            "reference/menu.csv",
            b"item,category\nsalad,starters\n".to_vec(),
        );
        let consumer = menu_consumer(&objects, &objects, &[("MAX_STALENESS_SECS", "60")]);
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 1)]))
            .await
            .unwrap();
        objects.set_failing(true);
        // WHEN a batch comes past the limit
        tokio::time::advance(Duration::from_secs(61)).await;
        let (response, summary) = consumer
            .handle_batch(&kinesis_event(&[order("salad", 2), order("burger", 3)]))
            .await
            .unwrap();
        // THEN its orders are dead-lettered as too stale, counted as such, not as invalid
        assert!(response.batch_item_failures.is_empty(), "{summary:?}");
        let out = &summary.output;
        assert_eq!(
            (out.too_stale, out.invalid, out.enriched),
            (2, 0, 0),
            "{out:?}"
        );
        assert_eq!(out.accounted(), summary.records);
        let dead: Vec<Value> = written_lines(&consumer.store)
            .into_iter()
            .filter(|l| l.get("reason").is_some())
            .collect();
        assert_eq!(dead.len(), 2);
        for line in dead {
            let reason = line["reason"].as_str().unwrap();
            assert!(
                reason.contains("reference objects: reference data too stale"),
                "{reason}"
            );
        }
        let health = consumer.health().await;
        assert_eq!(health[1].state(), "too stale");
    }

    #[tokio::test]
    async fn a_flag_that_does_not_parse_is_a_flag_problem_and_keeps_its_barrier() {
        // GIVEN the menu joined from objects that share their bucket with the feed, loaded
        let objects = MemoryBucket::default();
        objects.put(
            "reference/menu.csv",
            b"item,category\nsalad,starters\n".to_vec(),
        );
        let consumer = menu_consumer(&objects, &objects, &[]);
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 1)]))
            .await
            .unwrap();
        // WHEN the menu changes, the s3-event-handler writes its change file, and its flag
        // reaches the stream in a shape this consumer cannot read (a future version)
        objects.put(
            "reference/menu.csv",
            b"item,category\nsalad,salads\n".to_vec(),
        );
        let change = stream_refdata_protocol::ObjectChange {
            bucket: "ref-bucket".into(),
            key: "reference/menu.csv".into(),
            event_name: "ObjectCreated:Put".into(),
            removed: false,
            event_time: "2026-12-01T10:00:00.000Z".into(),
            version_id: None,
            etag: objects.etag("reference/menu.csv"),
            sequencer: None,
        };
        let file = stream_refdata_protocol::ChangeFile {
            schema_version: 1,
            kind: stream_refdata_protocol::ChangeKind::S3,
            written_at: String::new(),
            write_window_ms: 20_000,
            producer: "s3-event-handler".into(),
            source: stream_refdata_protocol::Source {
                label: stream_refdata_protocol::source_label("s3-event-handler"),
                bucket: Some("ref-bucket".into()),
                ..stream_refdata_protocol::Source::default()
            },
            changes: vec![],
            opaque: vec![],
            objects: vec![change],
            reason: None,
        };
        let key = stream_refdata_protocol::ChangeKey {
            time: chrono::Utc::now(),
            label: stream_refdata_protocol::source_label("s3-event-handler"),
            sequences: None,
            unique: Some("menu-1".into()),
        }
        .to_key("change_flags/");
        objects.put(&key, file.to_vec());
        let future = base64::engine::general_purpose::STANDARD
            .encode(br#"{"stream_refdata_flag":2,"changes":[{"key":"reference/menu.csv"}]}"#);
        // (and an order that merely mentions the marker is still an order: unmatched here)
        let mentions = base64::engine::general_purpose::STANDARD
            .encode(br#"{"dish":"stream_refdata_flag","cost":1,"customer_id":4}"#);
        // (and one cut short in transit: not JSON at all)
        let truncated = base64::engine::general_purpose::STANDARD
            .encode(br#"{"stream_refdata_flag":1,"change":{"bucket":"ref-"#);
        let batch = [
            order("salad", 2),
            ("flag".to_owned(), future),
            order("salad", 3),
            ("n".to_owned(), mentions),
            ("cut".to_owned(), truncated),
        ];
        let (response, summary) = consumer.handle_batch(&kinesis_event(&batch)).await.unwrap();
        // THEN it counts as a flag that did not parse, not an invalid order, and the orders
        // after it carry the new row: the feed was polled at its position
        assert!(response.batch_item_failures.is_empty(), "{summary:?}");
        let out = &summary.output;
        assert_eq!(
            (out.flags, out.unreadable_flags, out.invalid, out.enriched),
            (2, 2, 0, 2),
            "{out:?}"
        );
        assert_eq!(
            out.unmatched_dead_lettered, 1,
            "the order that mentions the marker"
        );
        assert_eq!(out.accounted(), summary.records);
        assert_eq!(summary.flags_at.len(), 2);
        // and both are kept in the dead-letter prefix with the reason, never lost
        let kept: Vec<Value> = written_lines(&consumer.store)
            .into_iter()
            .filter(|l| {
                l["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("change flag that does not parse"))
            })
            .collect();
        assert_eq!(kept.len(), 2, "{kept:?}");
        let lines = written_lines(&consumer.store);
        let category = |customer: i64| {
            lines
                .iter()
                .rev()
                .find(|l| l["customer_id"] == customer)
                .map(|l| l["menu"]["category"].clone())
        };
        assert_eq!(category(3), Some(Value::from("salads")), "after the flag");
    }

    #[tokio::test]
    async fn a_row_with_an_empty_or_null_key_is_a_bad_row_not_the_key_null() {
        let objects = MemoryBucket::default();
        objects.put(
            "reference/a.csv",
            b"item,category\n,orphan\nsalad,starters\n".to_vec(),
        );
        objects.put(
            "reference/b.jsonl",
            b"{\"item\":null,\"category\":\"nothing\"}\n{\"item\":\"burger\",\"category\":\"mains\"}\n"
                .to_vec(),
        );
        let consumer = menu_consumer(&objects, &objects, &[]);
        consumer
            .handle_batch(&kinesis_event(&[order("null", 1), order("salad", 2)]))
            .await
            .unwrap();
        let health = consumer.health().await;
        // Both objects rejected whole (the default policy), each for its keyless row.
        assert_eq!(health[1].metrics.bad_rows, 2, "{:?}", health[1]);
        assert_eq!(health[1].rejected, ["reference/a.csv", "reference/b.jsonl"]);
    }

    /// A consumer of the table and of the menu objects under `reference/` of `objects`
    /// (`ref-bucket`), following the feed in `feed`, with the variables `extra` besides.
    fn menu_consumer(
        objects: &MemoryBucket,
        feed: &MemoryBucket,
        extra: &[(&str, &str)],
    ) -> OrdersConsumer<MemoryTable, MemoryBucket, MemoryStore> {
        let mut vars = vec![
            ("REFERENCE_OBJECTS_PREFIX", "reference/"),
            ("REFERENCE_OBJECTS_BUCKET", "ref-bucket"),
        ];
        vars.extend_from_slice(extra);
        OrdersConsumer::new(config(&vars), products(), feed.clone(), MemoryStore::new())
            .with_reference_objects(objects.clone())
    }

    /// Every line of every object written to the output bucket, as JSON, in the order of the
    /// puts.
    fn written_lines(store: &MemoryStore) -> Vec<Value> {
        let mut lines = Vec::new();
        for key in store.put_keys() {
            let body = store.object("out-bucket", &key).unwrap();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                lines.push(serde_json::from_slice(line).unwrap());
            }
        }
        lines
    }

    fn first_seq() -> String {
        "49590338271490256608559692538361571095921575989136580000".to_owned()
    }

    #[test]
    fn the_templates_catalog_matches_what_the_consumer_registers() {
        // infra/ declares the table the consumer registers partitions in: item and priority as
        // partition keys (in that order), the JSON SerDe, and the consumer's GLUE_* variables.
        let template = include_str!("../../../infra/template.yaml");
        let table = &template[template.find("EnrichedOrdersTable:").unwrap()..];
        let keys = &table[table.find("PartitionKeys:").unwrap()..];
        let item = keys.find("{ Name: item, Type: string }").unwrap();
        let priority = keys.find("{ Name: priority, Type: string }").unwrap();
        assert!(
            item < priority,
            "partition values are registered as [item, priority]"
        );
        assert!(table.contains("SerializationLibrary: org.openx.data.jsonserde.JsonSerDe"));
        assert!(template.contains("GLUE_DATABASE: !Ref OutputDatabase"));
        assert!(template.contains("GLUE_TABLE: !Ref EnrichedOrdersTable"));
        // (it reads the location of a partition that exists, to report one elsewhere)
        assert!(template.contains("Action: [glue:BatchCreatePartition, glue:BatchGetPartition]"));
        // And the second reference: the objects the s3-event-handler watches, readable.
        assert!(template.contains("REFERENCE_OBJECTS_BUCKET: !Ref ReferenceBucket"));
        // (not with as-of enrichment, which the configuration refuses with it)
        assert!(template.contains(
            "REFERENCE_OBJECTS_PREFIX: !If [AsOfOn, !Ref \"AWS::NoValue\", !Ref ReferencePrefix]"
        ));
        assert!(template.contains("ENRICH_AS_OF: !Ref EnrichAsOf"));
        assert!(template.contains("Resource: !Sub \"${ReferenceBucket.Arn}/${ReferencePrefix}*\""));
    }

    /// Why [`runtime_parse`] failed: serde's error at the path of the field it names, worded
    /// as the runtime's `DeserializeError` words it after its context; serde's error is the
    /// source.
    #[derive(Debug)]
    struct RuntimeParseError(serde_path_to_error::Error<serde_json::Error>);

    impl std::fmt::Display for RuntimeParseError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let path = self.0.path().to_string();
            if path == "." {
                write!(f, "{}", self.0)
            } else {
                write!(f, "[{path}] {}", self.0)
            }
        }
    }

    impl std::error::Error for RuntimeParseError {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.inner())
        }
    }

    /// `lambda_runtime`'s parse of a payload (`serde_path_to_error` around `from_slice`).
    fn runtime_parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, RuntimeParseError> {
        let jd = &mut serde_json::Deserializer::from_slice(body.as_bytes());
        serde_path_to_error::deserialize::<_, T>(jd).map_err(RuntimeParseError)
    }

    #[test]
    fn the_payload_type_parses_events_as_the_derive_does_and_fails_with_the_same_message() {
        let records = [order("salad", 1), order("pizza", 2)];
        let event = kinesis_event(&records).to_string();
        let ours = runtime_parse::<KinesisInvocation>(&event).unwrap();
        let derived: KinesisInvocation = runtime_parse::<InvocationFields>(&event).unwrap().into();
        assert_eq!(format!("{ours:?}"), format!("{derived:?}"));
        assert_eq!(ours.records.records.len(), 2);
        assert_eq!(ours.records.shard.as_deref(), Some("shardId-000000000002"));
        for body in [
            "5",
            "[]",
            "{}",
            r#"{"Records":5}"#,
            r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":7}}]}"#,
            r#"{"Records":[{"eventSource":"aws:kinesis","kinesis":{"data":"eyJ9"}}]}"#,
            r#"{"Records":[{"eventID":3,"kinesis":{"sequenceNumber":"1","data":""}}]}"#,
            r#"{"Records":[{"kinesis":{"sequenceNumber":"1","data":""}},{"kinesis":{}}]}"#,
            r#"{"Records":[{"eventSource":["x"],"kinesis":{"sequenceNumber":"1","data":""}}]}"#,
        ] {
            let derived = runtime_parse::<InvocationFields>(body).unwrap_err();
            let ours = runtime_parse::<KinesisInvocation>(body).unwrap_err();
            assert_eq!(ours.to_string(), derived.to_string(), "{body}");
            assert!(
                std::error::Error::source(&ours).is_some_and(|s| s.is::<serde_json::Error>()),
                "{body}"
            );
        }
        // (the message names the field, and the type as before)
        let message = runtime_parse::<KinesisInvocation>(r#"{"Records":5}"#)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("[Records] Records: invalid type"),
            "{message}"
        );
        let message = runtime_parse::<KinesisInvocation>("5")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("expected struct KinesisInvocation"),
            "{message}"
        );
        // A body that is not well-formed JSON (never sent by Lambda): serde_json's syntax error
        // with its position, without the field's path.
        let message = runtime_parse::<KinesisInvocation>(r#"{"Records":[{"kinesis":{"data":"ab"#)
            .unwrap_err()
            .to_string();
        assert_eq!(message, "EOF while parsing a string at line 1 column 34");
    }

    fn health(staleness: Option<Duration>) -> Health {
        Health {
            reference: "ProductPriority".into(),
            loaded: staleness.is_some(),
            staleness,
            too_stale: false,
            last_error: None,
            pending_reload: None,
            rejected: Vec::new(),
            metrics: MetricsSnapshot::default(),
        }
    }

    #[test]
    fn unknown_staleness_is_a_bounded_metric_value() {
        // CloudWatch accepts values up to 2^360 (about 1.17e108); a larger one drops the metric.
        let never_loaded = [health(None)];
        for line in [
            batch_metrics(&BatchOutput::default(), &never_loaded),
            reference_metrics(&never_loaded[0], None),
        ] {
            let value = line["ReferenceStalenessSeconds"].as_f64().unwrap();
            assert_eq!(value, STALENESS_UNKNOWN_SECS);
            assert!(value.is_finite() && value < 1.17e108);
        }
        let ancient = [health(Some(Duration::from_secs(u64::MAX / 2)))];
        let line = batch_metrics(&BatchOutput::default(), &ancient);
        assert_eq!(line["ReferenceStalenessSeconds"], STALENESS_UNKNOWN_SECS);
        let line = reference_metrics(&ancient[0], None);
        assert_eq!(line["ReferenceStalenessSeconds"], STALENESS_UNKNOWN_SECS);
        assert_eq!(line["ReferenceState"], "current");
        assert_eq!(line["Reference"], "ProductPriority");
    }

    #[tokio::test]
    async fn each_metric_line_counts_what_is_new_since_the_last_and_a_failed_batch_prints_them_too()
    {
        // GIVEN a consumer whose metric lines are collected, and a table that fails to load
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
        let sink = lines.clone();
        let table = products();
        table.set_failing(true);
        let consumer = OrdersConsumer::new(
            config(&[]),
            table.clone(),
            MemoryBucket::default(),
            MemoryStore::new(),
        )
        .with_metrics_sink(move |l| sink.lock().unwrap().push(l.clone()));
        // WHEN two batches fail, then the table recovers and a batch is written
        for n in 0..2 {
            let (response, _) = consumer
                .handle_batch(&kinesis_event(&[order("salad", n)]))
                .await
                .unwrap();
            assert_eq!(response.batch_item_failures.len(), 1);
        }
        table.set_failing(false);
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 3)]))
            .await
            .unwrap();
        // THEN each batch printed its line and the table's: never loaded, one refresh error
        // each (not a running total), then loaded and current
        let lines = lines.lock().unwrap();
        let table_lines: Vec<&Value> = lines
            .iter()
            .filter(|l| l["Reference"] == "ProductPriority")
            .collect();
        assert_eq!(table_lines.len(), 3, "{lines:?}");
        let states: Vec<&str> = table_lines
            .iter()
            .map(|l| l["ReferenceState"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["never loaded", "never loaded", "current"]);
        let errors: Vec<u64> = table_lines
            .iter()
            .map(|l| l["RefreshErrors"].as_u64().unwrap())
            .collect();
        assert_eq!(errors, [1, 1, 0]);
        assert!(table_lines[0]["LastError"]
            .as_str()
            .is_some_and(|e| e.contains("injected")));
        assert_eq!(table_lines[2]["ReferenceLoaded"], 1);
        let batches: Vec<&Value> = lines
            .iter()
            .filter(|l| l.get("Reference").is_none())
            .collect();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2]["EnrichedOrders"], 1);
    }
}
