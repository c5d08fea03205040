//! The Lambda handler: a Kinesis batch in, enriched orders and dead letters out.

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use aws_plumbing::{ObjectStore, StoreError};
use enrichment::sources::{FeedSource, ObjectSource, TableSource};
use enrichment::{
    Classified, FeedSettings, MetricsSnapshot, ObjectConfig, ObjectEnricher, Outcome, SystemClock,
    TableConfig, TableEnricher, Unmatched,
};

use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tracing::{error, info};

use crate::catalog::{GlueCatalog, Partition, Registered};
use crate::config::Config;
use crate::kpl::{deaggregate, Deaggregated};
use crate::orders::{classify, Product, Record, ReferenceRow};
use crate::output::{build, BatchOutput, Input, Naming};

/// Why an invocation fails as a whole.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not a Kinesis event.
    #[error("payload is not a Kinesis event: {0}")]
    InvalidEvent(String),
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

/// The second reference's enricher: rows of objects in S3, read through `Fd`.
type Objects<Fd> = ObjectEnricher<ReferenceRow, String, Fd, Fd>;

/// The orders consumer: an enricher kept warm across invocations, and the output store.
pub struct OrdersConsumer<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S> {
    config: Config,
    enricher: Mutex<TableEnricher<Product, String, Tb, Fd>>,
    /// The second reference (objects in S3), when configured.
    objects: Option<Mutex<Objects<Fd>>>,
    store: S,
    emf: bool,
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

impl<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S: ObjectStore>
    OrdersConsumer<Tb, Fd, S>
{
    /// A consumer reading the reference table through `table`, the change feed through `feed`,
    /// and writing through `store`. Nothing is loaded until the first batch.
    pub fn new(config: Config, table: Tb, feed: Fd, store: S) -> Self {
        let keys: Vec<&str> = config.key_attributes.iter().map(String::as_str).collect();
        let enricher_config =
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
            });
        OrdersConsumer {
            enricher: Mutex::new(TableEnricher::new(
                enricher_config,
                table,
                Some(feed),
                SystemClock,
            )),
            config,
            objects: None,
            store,
            emf: false,
            catalog: None,
            catalog_errors: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Joins the second reference configured by `REFERENCE_OBJECTS_*` (see [`Config`]), read
    /// through `objects` (a source for that bucket) and kept current from the same change feed
    /// and the flags in the stream. Without that configuration this changes nothing.
    pub fn with_reference_objects(mut self, objects: Fd, feed: Fd) -> Self {
        let Some(r) = self.config.reference_objects.clone() else {
            return self;
        };
        let key = r.key.clone();
        let config = ObjectConfig::new(r.bucket, r.prefix, move |row: &ReferenceRow| {
            row.get(&key).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
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
            Some(feed),
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
    /// (namespace `StreamRefdata`, dimension `Function=orders-consumer`): in Lambda, CloudWatch
    /// turns those log lines into metrics, such as `ReferenceStalenessSeconds` for the alarm.
    pub fn with_embedded_metrics(mut self, on: bool) -> Self {
        self.emf = on;
        self
    }

    /// The policies the enricher follows (from the configuration).
    pub async fn policies(&self) -> enrichment::Policies {
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
        let event = InvocationFields::deserialize(payload)
            .map_err(|e| HandlerError::InvalidEvent(e.to_string()))?;
        self.handle_invocation(event.into()).await
    }

    /// Handles one invocation given as its JSON text and says what it did; see
    /// [`OrdersConsumer::handle_invocation`].
    pub async fn handle_batch_raw(
        &self,
        payload: &str,
    ) -> Result<(KinesisEventResponse, BatchSummary), HandlerError> {
        let event: InvocationFields =
            serde_json::from_str(payload).map_err(|e| HandlerError::InvalidEvent(e.to_string()))?;
        self.handle_invocation(event.into()).await
    }

    /// Handles one invocation as the runtime parsed it (the binary does this) and says what it
    /// did. If any output object cannot be written, or the reference data was never loaded, the
    /// batch's **first** record is reported, so the whole batch is retried from it and rewrites
    /// the same object names. Bad records never fail the invocation: they are dead-lettered.
    pub async fn handle_invocation(
        &self,
        event: KinesisInvocation,
    ) -> Result<(KinesisEventResponse, BatchSummary), HandlerError> {
        let Records { shard, records } = event.records;
        if let Some(other) = records.iter().find_map(|r| match &r.event_source {
            Some(EventSource::Other(s)) => Some(s),
            _ => None,
        }) {
            return Err(HandlerError::InvalidEvent(format!(
                "a record has eventSource {other:?}"
            )));
        }
        let Some(first) = records.first() else {
            return Ok((KinesisEventResponse::default(), BatchSummary::default()));
        };
        let first_sequence = first.kinesis.sequence_number.clone();
        let shard = shard.unwrap_or_else(|| "unknown-shard".to_owned());
        let mut inputs: Vec<Input> = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let data = r.kinesis.data.0.map_err(|e| {
                HandlerError::InvalidEvent(format!("Records[{i}].kinesis.data is not base64: {e}"))
            })?;
            let sequence_number = r.kinesis.sequence_number;
            match deaggregate(&data) {
                Ok(Deaggregated::Plain) => inputs.push(Input {
                    record: classify(&data, &self.config.legacy_flag_dish),
                    sequence_number,
                    sub_sequence: None,
                    reference_object: None,
                    data,
                }),
                // Each user record is one input, named by its record's sequence number and its
                // sub-sequence number; failures reported to the mapping still name the batch's
                // first Kinesis record, so an aggregate is retried whole.
                Ok(Deaggregated::Aggregated(users)) => {
                    inputs.extend(users.into_iter().map(|u| Input {
                        record: classify(&u.data, &self.config.legacy_flag_dish),
                        sequence_number: sequence_number.clone(),
                        sub_sequence: Some(u.sub_sequence),
                        reference_object: None,
                        data: u.data,
                    }))
                }
                // Never skipped: the whole Kinesis record is dead-lettered with the reason.
                Err(e) => inputs.push(Input {
                    record: Record::Invalid(e.to_string()),
                    sequence_number,
                    sub_sequence: None,
                    reference_object: None,
                    data,
                }),
            }
        }
        let records = inputs.len();
        let first_sub_sequence = inputs.first().and_then(|i| i.sub_sequence);
        let flags_at: Vec<String> = inputs
            .iter()
            .filter(|i| matches!(i.record, Record::Flag(_)))
            .map(|i| i.sequence_number.clone())
            .collect();
        if let Some(objects) = &self.objects {
            if let Err(reason) = join_objects(&mut *objects.lock().await, &mut inputs).await {
                error!(%shard, first_sequence, %reason, "reference objects not current for this batch; reporting it for retry");
                let summary = BatchSummary {
                    records,
                    failed: Some(reason),
                    ..BatchSummary::default()
                };
                return Ok((failure(&first_sequence), summary));
            }
        }

        let mut enricher = self.enricher.lock().await;
        let (outcomes, report) = enricher
            .process_batch(inputs, |i| match &i.record {
                Record::Order(o) => Classified::Data(o.dish.clone()),
                Record::Flag(f) => Classified::ChangeFlag(f.clone()),
                Record::LegacyFlag => Classified::Flag,
                Record::Invalid(reason) => Classified::Invalid(reason.clone()),
            })
            .await;
        let never_loaded = !enricher.is_loaded();
        drop(enricher);
        let mut summary = BatchSummary {
            records,
            flags_at,
            ..BatchSummary::default()
        };
        if never_loaded || report.retry.is_some() {
            let reason = report.retry.clone().unwrap_or_else(|| {
                report
                    .refreshes
                    .iter()
                    .find_map(|r| r.error.clone())
                    .unwrap_or_else(|| "reference data not loaded".into())
            });
            error!(%shard, first_sequence, %reason, "reference data not current for this batch; reporting it for retry");
            if self.emf {
                // The staleness alarm must see a consumer that cannot load or refresh.
                let metrics = self.enricher.lock().await.metrics();
                println!("{}", embedded_metrics(&BatchOutput::default(), &metrics));
            }
            summary.failed = Some(reason);
            return Ok((failure(&first_sequence), summary));
        }

        let naming = Naming {
            shard: &shard,
            first_sequence: &first_sequence,
            first_sub_sequence,
            reference_object_field: self
                .config
                .reference_objects
                .as_ref()
                .map(|r| (r.field.as_str(), r.key.as_str())),
            output_prefix: &self.config.output_prefix,
            dead_letter_prefix: &self.config.dead_letter_prefix,
        };
        let output = build(&naming, outcomes);
        if let Err(e) = self.write(&output).await {
            error!(%shard, first_sequence, error = %e, "output not written; reporting the batch for retry");
            summary.failed = Some(e.to_string());
            summary.output = output;
            return Ok((failure(&first_sequence), summary));
        }
        if let Some((catalog, registered)) = &self.catalog {
            let base = format!(
                "s3://{}/{}",
                self.config.output_bucket, self.config.output_prefix
            );
            let partitions = output
                .partition_values
                .iter()
                .map(|(path, (item, priority))| Partition {
                    values: vec![item.clone(), priority.clone()],
                    location: format!("{base}{path}"),
                })
                .collect();
            // Never a batch failure: the orders are written; the next batch tries again.
            if let Err(e) = registered.register_new(catalog, partitions).await {
                self.catalog_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                error!(%shard, first_sequence, error = %e, "output partitions not registered in the catalog; the batch is written");
                summary.catalog_error = Some(e.to_string());
            }
        }
        info!(
            %shard,
            records,
            enriched = output.enriched,
            passed = output.passed,
            unmatched_dead_lettered = output.unmatched_dead_lettered,
            dropped = output.dropped,
            invalid = output.invalid,
            flags = output.flags,
            objects = output.objects.len(),
            "batch written"
        );
        if self.emf {
            let metrics = self.enricher.lock().await.metrics();
            println!("{}", embedded_metrics(&output, &metrics));
        }
        summary.output = output;
        Ok((KinesisEventResponse::default(), summary))
    }

    /// Writes the batch's objects, up to [`CONCURRENT_WRITES`] at a time. Any failure fails
    /// the batch (which is retried whole and rewrites the same names).
    async fn write(&self, output: &BatchOutput) -> Result<(), StoreError> {
        futures_util::stream::iter(&output.objects)
            .map(|(key, body)| {
                self.store
                    .put(&self.config.output_bucket, key, body.clone())
            })
            .buffer_unordered(CONCURRENT_WRITES)
            .try_collect::<()>()
            .await
    }
}

/// Enriches `inputs` in order with the second reference (flags at their position): a matched
/// order gets its row; an order the reference is too stale for is dead-lettered with that reason.
/// `Err` when the batch must be retried (never loaded, or a flag's refresh failed).
async fn join_objects<Fd: FeedSource + ObjectSource + Clone>(
    objects: &mut Objects<Fd>,
    inputs: &mut [Input],
) -> Result<(), String> {
    let indices: Vec<usize> = (0..inputs.len()).collect();
    let (outcomes, report) = objects
        .process_batch(indices, |i| match &inputs[*i].record {
            Record::Order(o) => Classified::Data(o.dish.clone()),
            Record::Flag(f) => Classified::ChangeFlag(f.clone()),
            // The original's flag means "the table changed": not the objects' business (a
            // failed poll there must not hold a batch that only the table concerns).
            Record::LegacyFlag => Classified::Invalid("legacy flag (table)".into()),
            Record::Invalid(reason) => Classified::Invalid(reason.clone()),
        })
        .await;
    if let Some(retry) = report.retry {
        return Err(format!("reference objects: {retry}"));
    }
    if !objects.is_loaded() {
        let error = report.refreshes.iter().find_map(|r| r.error.clone());
        return Err(format!(
            "reference objects not loaded: {}",
            error.unwrap_or_default()
        ));
    }
    for outcome in outcomes {
        match outcome {
            Outcome::Enriched { record, item } => inputs[record].reference_object = Some(item),
            Outcome::Rejected { record, reason } => {
                inputs[record].record = Record::Invalid(format!("reference objects: {reason}"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Output objects written at once per batch: a batch spans a few dozen partitions, and writing
/// them one after the other made S3 latency the larger part of the handler time.
pub const CONCURRENT_WRITES: usize = 16;

/// A Kinesis Lambda event as the consumer reads it, parsed straight from the invocation's
/// bytes (the binary's payload type): each record's data base64-decoded as it is parsed, its
/// sequence number, its event source checked, and the first record's shard; every other field
/// skipped. (`aws_lambda_events::KinesisEvent` copies every string and parses every timestamp
/// of every record.)
///
/// Its `Deserialize` takes the event's text as the deserializer lends it (a borrowed
/// [`RawValue`](serde_json::value::RawValue), no copy: `serde_json::from_slice` or `from_str`,
/// as `lambda_runtime` uses) and parses that text with serde_json alone. `lambda_runtime` wraps
/// every payload's parse in `serde_path_to_error`, which copies each object key into a
/// `String` as it goes (13 a record here) to name the field of an error; the one skipping pass
/// of the borrowed `RawValue` costs less (docs/perf/floor-run.md, round 6). A payload that is
/// JSON but not a Kinesis event fails with the same message as before (the runtime's, with the
/// field's path): the text is parsed again through `serde_path_to_error` for it. (Its line and
/// column count from the value's first character, which is the body's first for every event
/// Lambda sends.) A payload that is not well-formed JSON (a syntax error anywhere, or invalid
/// UTF-8 even in a field this type skips) fails in the skipping pass, with serde_json's error
/// and its line and column but not the field's path; Lambda sends only well-formed JSON, so
/// only a hand-made invocation meets that. A deserializer that cannot lend its input
/// (`serde_json::from_reader`, a `Value`)
/// cannot produce this type: use [`OrdersConsumer::handle`] or [`OrdersConsumer::handle_raw`]
/// there.
#[derive(Debug, Default)]
pub struct KinesisInvocation {
    records: Records,
}

/// The fields of [`KinesisInvocation`], parsed by serde's derive (the other entries, and the
/// binary's payload type underneath).
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "KinesisInvocation", expecting = "struct KinesisInvocation")]
struct InvocationFields {
    #[serde(rename = "Records")]
    records: Records,
}

impl From<InvocationFields> for KinesisInvocation {
    fn from(fields: InvocationFields) -> Self {
        KinesisInvocation {
            records: fields.records,
        }
    }
}

impl<'de> Deserialize<'de> for KinesisInvocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        KinesisInvocation::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl KinesisInvocation {
    /// The event of the JSON text `text`, or the message `lambda_runtime` gives when its own
    /// parse (through `serde_path_to_error`) fails: `[path] path: error` (`error` alone for an
    /// error at the top level). Put inside the runtime's message, whose path is then the top
    /// level, that gives the runtime's message of a failed parse of the same text.
    fn from_json(text: &str) -> Result<KinesisInvocation, String> {
        let plain = match serde_json::from_str::<InvocationFields>(text) {
            Ok(fields) => return Ok(fields.into()),
            Err(e) => e,
        };
        let tracked = &mut serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, InvocationFields>(tracked) {
            Err(e) => {
                let path = e.path().to_string();
                Err(if path == "." {
                    e.to_string()
                } else {
                    format!("[{path}] {e}")
                })
            }
            // (never: both parses read the same text)
            Ok(_) => Err(plain.to_string()),
        }
    }
}

/// The event's records, and the shard named by the first one's `eventID` (`shard:sequence`).
#[derive(Debug, Default)]
struct Records {
    shard: Option<String>,
    records: Vec<InvocationRecord>,
}

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Records;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of Kinesis records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Records, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                // Only the first record's eventID is kept (the batch's shard).
                let Some(first) = seq.next_element::<InvocationRecord<Option<EventId>>>()? else {
                    return Ok(Records::default());
                };
                let InvocationRecord {
                    event_source,
                    event_id,
                    kinesis,
                } = first;
                records.push(InvocationRecord {
                    event_source,
                    event_id: serde::de::IgnoredAny,
                    kinesis,
                });
                while let Some(r) = seq.next_element::<InvocationRecord>()? {
                    records.push(r);
                }
                Ok(Records {
                    shard: event_id.map(|e| e.0),
                    records,
                })
            }
        }
        d.deserialize_seq(Visitor)
    }
}

#[derive(Debug, Deserialize)]
struct InvocationRecord<Id = serde::de::IgnoredAny> {
    #[serde(rename = "eventSource", default)]
    event_source: Option<EventSource>,
    #[serde(rename = "eventID", default)]
    event_id: Id,
    kinesis: InvocationData,
}

#[derive(Debug, Deserialize)]
struct InvocationData {
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
    data: Base64Data,
}

/// A record's `eventSource`: only another source than Kinesis is kept (for the error).
#[derive(Debug)]
enum EventSource {
    Kinesis,
    Other(String),
}

/// The shard of an `eventID` (`shardId-…:sequence`).
#[derive(Debug)]
struct EventId(String);

/// A record's data, decoded from base64 as it is parsed (the error kept for the handler).
#[derive(Debug)]
struct Base64Data(Result<Vec<u8>, base64::DecodeError>);

/// A visitor of one string, mapped by `f` (so that a borrowed, copied or escaped string alike
/// is read without a copy of its own).
struct StrVisitor<F>(F, &'static str);

impl<'de, T, F: FnOnce(&str) -> T> serde::de::Visitor<'de> for StrVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

impl<'de> Deserialize<'de> for EventSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| match s {
                "aws:kinesis" => EventSource::Kinesis,
                other => EventSource::Other(other.to_owned()),
            },
            "an event source",
        ))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| EventId(s.split(':').next().unwrap_or(s).to_owned()),
            "an event id",
        ))
    }
}

impl<'de> Deserialize<'de> for Base64Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(
            |s: &str| Base64Data(base64::engine::general_purpose::STANDARD.decode(s.as_bytes())),
            "base64 data",
        ))
    }
}

/// The staleness reported when the reference data was never loaded (and the cap of any other):
/// a year, far above any alarm threshold, and inside the range CloudWatch accepts for a metric
/// value (an unbounded value such as `f64::MAX` is rejected and the metric is dropped).
pub const STALENESS_UNKNOWN_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// One CloudWatch embedded-metric-format log line for a batch.
pub fn embedded_metrics(output: &BatchOutput, m: &MetricsSnapshot) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let metric = |name: &str, unit: &str| serde_json::json!({"Name": name, "Unit": unit});
    serde_json::json!({
        "_aws": {
            "Timestamp": now,
            "CloudWatchMetrics": [{
                "Namespace": "StreamRefdata",
                "Dimensions": [["Function"]],
                "Metrics": [
                    metric("ReferenceStalenessSeconds", "Seconds"),
                    metric("EnrichedOrders", "Count"),
                    metric("UnmatchedOrders", "Count"),
                    metric("InvalidRecords", "Count"),
                    metric("ChangeFlags", "Count"),
                ],
            }],
        },
        "Function": "orders-consumer",
        "ReferenceStalenessSeconds": m
            .staleness
            .map_or(STALENESS_UNKNOWN_SECS, |s| s.as_secs_f64().min(STALENESS_UNKNOWN_SECS)),
        "EnrichedOrders": output.enriched,
        "UnmatchedOrders": output.unmatched_dead_lettered + output.passed + output.dropped,
        "InvalidRecords": output.invalid,
        "ChangeFlags": output.flags,
        "RefreshErrors": m.refresh_errors,
        "FullRefreshes": m.full_refreshes,
        "DynamoDbItemsRead": m.items_read,
    })
}

fn failure(sequence: &str) -> KinesisEventResponse {
    let mut f = KinesisBatchItemFailure::default();
    f.item_identifier = Some(sequence.to_owned());
    let mut r = KinesisEventResponse::default();
    r.batch_item_failures.push(f);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use enrichment::testing::{MemoryBucket, MemoryTable};
    use std::time::Duration;

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
            test_support::MemoryStore::new(),
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
            let mut product = enrichment::testing::item(&[("item", item), ("priority", priority)]);
            product.insert(
                "price".into(),
                change_protocol::AttributeValue::N("100".into()),
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
        let store = test_support::MemoryStore::new();
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
            .get(
                "out-bucket",
                &format!("dead-letter/shardId-000000000002-{}-0.jsonl", first_seq()),
            )
            .unwrap();
        let dead = String::from_utf8(dead).unwrap();
        assert!(dead.contains("wrong MD5 checksum"), "{dead}");
        // Each line names its record and sub-sequence number; (sequence, sub-sequence) is unique.
        let mut seen = std::collections::HashSet::new();
        for key in consumer.store.put_keys() {
            let body = consumer.store.get("out-bucket", &key).unwrap();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line).unwrap();
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
        }
        assert_eq!(seen.len(), 200);
        assert!(seen.iter().all(|(_, sub)| *sub < 40));
    }

    /// A flag record as the s3-event-handler puts it, for `key` of `bucket` now holding `body`.
    fn flag_record(bucket: &MemoryBucket, key: &str) -> String {
        let flag = change_protocol::ChangeFlag::new(
            change_protocol::ObjectChange {
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
        let consumer = OrdersConsumer::new(
            config(&[
                ("REFERENCE_OBJECTS_PREFIX", "reference/"),
                ("REFERENCE_OBJECTS_BUCKET", "ref-bucket"),
            ]),
            products(),
            MemoryBucket::default(),
            test_support::MemoryStore::new(),
        )
        .with_reference_objects(objects.clone(), MemoryBucket::default());
        // (a first batch loads both references; the next batch's objects have the same names)
        consumer
            .handle_batch(&kinesis_event(&[order("salad", 1)]))
            .await
            .unwrap();
        objects.put(
            "reference/menu.csv",
            b"item,category,allergens\nburger,mains,gluten\nsalad,salads,\n".to_vec(),
        );
        // WHEN the object changes (salad: starters -> salads) and its flag sits mid-batch
        let flag = (
            "flag".to_owned(),
            flag_record(&objects, "reference/menu.csv"),
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
        let mut lines: Vec<Value> = Vec::new();
        for key in consumer.store.put_keys() {
            let body = consumer.store.get("out-bucket", &key).unwrap();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                lines.push(serde_json::from_slice(line).unwrap());
            }
        }
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
        objects.put(
            "reference/menu.csv",
            b"item,category\nsalad,bowls\n".to_vec(),
        );
        let flag_again = (
            "flag".to_owned(),
            flag_record(&objects, "reference/menu.csv"),
        );
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
        assert!(template.contains("Action: glue:BatchCreatePartition"));
        // And the second reference: the objects the s3-event-handler watches, readable.
        assert!(template.contains("REFERENCE_OBJECTS_BUCKET: !Ref ReferenceBucket"));
        assert!(template.contains("REFERENCE_OBJECTS_PREFIX: !Ref ReferencePrefix"));
        assert!(template.contains("Resource: !Sub \"${ReferenceBucket.Arn}/${ReferencePrefix}*\""));
    }

    /// `lambda_runtime`'s parse of a payload (`serde_path_to_error` around `from_slice`) and
    /// its message when it fails, as the runtime's `DeserializeError` words it after its context.
    fn runtime_parse<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
        let jd = &mut serde_json::Deserializer::from_slice(body.as_bytes());
        serde_path_to_error::deserialize::<_, T>(jd).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("{e}")
            } else {
                format!("[{path}] {e}")
            }
        })
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
            assert_eq!(ours, derived, "{body}");
        }
        // (the message names the field, and the type as before)
        let message = runtime_parse::<KinesisInvocation>(r#"{"Records":5}"#).unwrap_err();
        assert!(
            message.starts_with("[Records] Records: invalid type"),
            "{message}"
        );
        let message = runtime_parse::<KinesisInvocation>("5").unwrap_err();
        assert!(
            message.contains("expected struct KinesisInvocation"),
            "{message}"
        );
        // A body that is not well-formed JSON (never sent by Lambda): serde_json's syntax error
        // with its position, without the field's path.
        let message = runtime_parse::<KinesisInvocation>(r#"{"Records":[{"kinesis":{"data":"ab"#)
            .unwrap_err();
        assert_eq!(message, "EOF while parsing a string at line 1 column 34");
    }

    #[test]
    fn unknown_staleness_is_a_bounded_metric_value() {
        // CloudWatch accepts values up to 2^360 (about 1.17e108); a larger one drops the metric.
        let never_loaded = MetricsSnapshot::default();
        let line = embedded_metrics(&BatchOutput::default(), &never_loaded);
        let value = line["ReferenceStalenessSeconds"].as_f64().unwrap();
        assert_eq!(value, STALENESS_UNKNOWN_SECS);
        assert!(value.is_finite() && value < 1.17e108);
        let ancient = MetricsSnapshot {
            staleness: Some(Duration::from_secs(u64::MAX / 2)),
            ..MetricsSnapshot::default()
        };
        let line = embedded_metrics(&BatchOutput::default(), &ancient);
        assert_eq!(line["ReferenceStalenessSeconds"], STALENESS_UNKNOWN_SECS);
    }
}
