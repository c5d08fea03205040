//! The invocation record Lambda writes to an S3 on-failure destination.

use serde::Deserialize;

/// Which function's mapping discarded the batch, from the record's batch-info field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Function {
    /// A DynamoDB stream batch (`DDBStreamBatchInfo`): the change-handler's.
    ChangeHandler,
    /// A Kinesis batch (`KinesisBatchInfo`) or a Kafka batch (`KafkaBatchInfo`, Amazon MSK or
    /// self-managed): the orders consumer's.
    OrdersConsumer,
}

impl Function {
    /// Whose record `bytes` is by its batch-info field alone, when it is JSON with exactly one
    /// of them (for records that do not parse whole).
    pub fn named_in(bytes: &[u8]) -> Option<Function> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let fields = ["DDBStreamBatchInfo", "KinesisBatchInfo", "KafkaBatchInfo"]
            .map(|f| v.get(f).is_some());
        match fields {
            [true, false, false] => Some(Function::ChangeHandler),
            [false, true, false] | [false, false, true] => Some(Function::OrdersConsumer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Function::ChangeHandler => "change-handler",
            Function::OrdersConsumer => "orders-consumer",
        })
    }
}

/// Where the discarded batch was in its stream.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    /// The shard.
    pub shard_id: String,
    /// Sequence number of the batch's first record.
    pub start_sequence_number: String,
    /// Sequence number of the batch's last record.
    pub end_sequence_number: String,
    /// Records in the batch.
    pub batch_size: u64,
    /// The stream.
    pub stream_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext {
    #[serde(default)]
    function_arn: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    approximate_invoke_count: u64,
}

/// A Kafka batch's position, as Kafka mappings record it: per topic-partition, its first and
/// last offsets (strings).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KafkaBatchInfo {
    batch_size: u64,
    #[serde(default)]
    event_source_arn: Option<String>,
    #[serde(default)]
    bootstrap_servers: Option<String>,
    records_info: std::collections::BTreeMap<String, KafkaRecordsInfo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KafkaRecordsInfo {
    first_record_offset: String,
    last_record_offset: String,
}

impl From<KafkaBatchInfo> for BatchInfo {
    /// As a stream's position: the topic-partitions (comma-separated) as the shard, the first
    /// one's first offset and the last one's last offset, the cluster's ARN (MSK) or its
    /// bootstrap servers (self-managed) as the stream.
    fn from(k: KafkaBatchInfo) -> BatchInfo {
        let first = k.records_info.values().next();
        let last = k.records_info.values().next_back();
        BatchInfo {
            shard_id: k.records_info.keys().cloned().collect::<Vec<_>>().join(","),
            start_sequence_number: first
                .map(|r| r.first_record_offset.clone())
                .unwrap_or_default(),
            end_sequence_number: last
                .map(|r| r.last_record_offset.clone())
                .unwrap_or_default(),
            batch_size: k.batch_size,
            stream_arn: k
                .event_source_arn
                .or(k.bootstrap_servers)
                .unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "requestContext")]
    request_context: RequestContext,
    #[serde(rename = "DDBStreamBatchInfo")]
    ddb: Option<BatchInfo>,
    #[serde(rename = "KinesisBatchInfo")]
    kinesis: Option<BatchInfo>,
    #[serde(rename = "KafkaBatchInfo")]
    kafka: Option<KafkaBatchInfo>,
    payload: Option<String>,
}

/// One discarded batch, as read from its invocation record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    /// Whose batch it was.
    pub function: Function,
    /// The function's ARN as the record names it.
    pub function_arn: String,
    /// Why Lambda discarded it (`RetryAttemptsExhausted`, `RecordAgeExceeded`, …).
    pub condition: String,
    /// How often Lambda invoked it.
    pub invoke_count: u64,
    /// Its position in the stream.
    pub batch: BatchInfo,
    /// The whole invocation payload (the event's JSON text), which only S3 destinations keep.
    pub payload: Option<String>,
}

/// Why a failure record cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// Not the JSON of an invocation record.
    #[error("not an invocation record: {0}")]
    NotARecord(String),
    /// None of `DDBStreamBatchInfo`, `KinesisBatchInfo`, `KafkaBatchInfo` (or more than one):
    /// not a stream mapping's record.
    #[error(
        "no DDBStreamBatchInfo, KinesisBatchInfo or KafkaBatchInfo: not a record of a stream event source mapping"
    )]
    UnknownSource,
}

impl FailureRecord {
    /// Parses the record's bytes.
    pub fn parse(bytes: &[u8]) -> Result<FailureRecord, RecordError> {
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| RecordError::NotARecord(e.to_string()))?;
        let (function, batch) = match (raw.ddb, raw.kinesis, raw.kafka) {
            (Some(b), None, None) => (Function::ChangeHandler, b),
            (None, Some(b), None) => (Function::OrdersConsumer, b),
            (None, None, Some(k)) => (Function::OrdersConsumer, k.into()),
            _ => return Err(RecordError::UnknownSource),
        };
        Ok(FailureRecord {
            function,
            function_arn: raw.request_context.function_arn,
            condition: raw.request_context.condition,
            invoke_count: raw.request_context.approximate_invoke_count,
            batch,
            payload: raw.payload,
        })
    }
}
