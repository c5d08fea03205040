//! The S3 on-failure destination of a stream event source mapping.
//!
//! When a batch exhausts its retries (`MaximumRetryAttempts`), Lambda discards it and, with an
//! S3 destination, writes an invocation record: metadata about the failed invocation, the
//! batch's position (`DDBStreamBatchInfo` or `KinesisBatchInfo`) and the whole invocation
//! payload as an escaped JSON string (`payload`; SQS and SNS destinations keep only the
//! metadata). The object is named `aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/
//! YYYY-MM-DDTHH.MM.SS-<Random UUID>`. This module writes the same record, so the redrive
//! tooling reads locally what it reads on AWS (AWS Lambda Developer Guide, "Retain discarded
//! batch records" for DynamoDB and Kinesis event sources).

use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::{Invocation, MappingError};

/// Which stream a discarded batch came from: names the record's batch-info field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// A DynamoDB stream (`DDBStreamBatchInfo`).
    DynamoDb,
    /// A Kinesis data stream (`KinesisBatchInfo`).
    Kinesis,
    /// A Kafka topic's partition, MSK's or a self-managed cluster's (`KafkaBatchInfo`).
    Kafka,
}

/// Where a discarded batch was in its stream, as the invocation record states it.
#[derive(Clone, Debug)]
pub struct BatchInfo {
    /// The stream's ARN.
    pub stream_arn: String,
    /// The shard.
    pub shard_id: String,
    /// Sequence number of the batch's first record.
    pub start_sequence_number: String,
    /// Sequence number of the batch's last record.
    pub end_sequence_number: String,
    /// Arrival (DynamoDB: creation) time of the first record.
    pub first_arrival: Option<DateTime<Utc>>,
    /// Arrival time of the last record.
    pub last_arrival: Option<DateTime<Utc>>,
    /// Records in the batch.
    pub batch_size: usize,
    /// Kafka: the cluster's bootstrap servers, as the event names them.
    pub bootstrap_servers: Option<String>,
}

/// A batch that exhausted its retries, as its invocation record states it.
#[derive(Clone, Copy, Debug)]
pub struct DiscardedBatch<'a> {
    /// Which stream it came from.
    pub kind: StreamKind,
    /// Where it was in its stream.
    pub info: &'a BatchInfo,
    /// The last invocation's event.
    pub payload: &'a Value,
    /// What that invocation answered.
    pub last: &'a Invocation,
    /// How often the batch was invoked.
    pub invoke_count: u64,
}

/// An S3 bucket as a mapping's on-failure destination.
#[derive(Clone, Debug)]
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
    mapping_uuid: String,
    function_arn: String,
}

/// A random version-4 UUID in its usual text form (the record's names and request ids).
pub(crate) fn random_uuid() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl S3Destination {
    /// Records of discarded batches go to `bucket`, under this mapping's (random) UUID;
    /// `function_arn` is the mapped function, as the record names it.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        function_arn: impl Into<String>,
    ) -> S3Destination {
        S3Destination {
            client,
            bucket: bucket.into(),
            mapping_uuid: random_uuid(),
            function_arn: function_arn.into(),
        }
    }

    /// The destination bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The invocation record of a discarded `batch`, written at `now`.
    pub fn record(&self, batch: &DiscardedBatch<'_>, now: DateTime<Utc>) -> Value {
        let DiscardedBatch {
            kind,
            info,
            payload,
            last,
            invoke_count,
        } = *batch;
        let time = |t: &Option<DateTime<Utc>>| {
            t.map(|t| match kind {
                // DynamoDB's creation times are whole seconds.
                StreamKind::DynamoDb => t.to_rfc3339_opts(SecondsFormat::Secs, true),
                StreamKind::Kinesis | StreamKind::Kafka => {
                    t.to_rfc3339_opts(SecondsFormat::Millis, true)
                }
            })
        };
        let mut response = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
        if matches!(last, Invocation::Error(_)) {
            response["functionError"] = json!("Unhandled");
        }
        let request = json!({
            "requestId": random_uuid(),
            "functionArn": self.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invoke_count,
        });
        let field = match kind {
            StreamKind::DynamoDb => "DDBStreamBatchInfo",
            StreamKind::Kinesis => "KinesisBatchInfo",
            // (Kafka's: the batch's partition and offsets under `recordsInfo`, offsets as
            // strings, and the whole event as `payload`, as for the others)
            StreamKind::Kafka => {
                let payload_text = payload.to_string();
                let mut batch_info = json!({
                    "batchSize": info.batch_size,
                    "bootstrapServers": info.bootstrap_servers,
                    "payloadSize": payload_text.len(),
                    "recordsInfo": {
                        info.shard_id.clone(): {
                            "firstRecordOffset": info.start_sequence_number,
                            "lastRecordOffset": info.end_sequence_number,
                            "firstRecordTimestamp": time(&info.first_arrival),
                            "lastRecordTimestamp": time(&info.last_arrival),
                        }
                    },
                });
                if !info.stream_arn.is_empty() {
                    batch_info["eventSourceArn"] = json!(info.stream_arn);
                }
                return json!({
                    "requestContext": request,
                    "responseContext": response,
                    "version": "1.0",
                    "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
                    "KafkaBatchInfo": batch_info,
                    "payload": payload_text,
                });
            }
        };
        json!({
            "requestContext": request,
            "responseContext": response,
            "version": "1.0",
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            field: {
                "shardId": info.shard_id,
                "startSequenceNumber": info.start_sequence_number,
                "endSequenceNumber": info.end_sequence_number,
                "approximateArrivalOfFirstRecord": time(&info.first_arrival),
                "approximateArrivalOfLastRecord": time(&info.last_arrival),
                "batchSize": info.batch_size,
                "streamArn": info.stream_arn,
            },
            "payload": payload.to_string(),
        })
    }

    /// The record's object key, as Lambda names it.
    pub fn key(&self, shard_id: &str, now: DateTime<Utc>) -> String {
        format!(
            "aws/lambda/{}/{shard_id}/{}/{}-{}",
            self.mapping_uuid,
            now.format("%Y/%m/%d"),
            now.format("%Y-%m-%dT%H.%M.%S"),
            random_uuid()
        )
    }

    /// Writes the record of a discarded `batch`; returns its key.
    pub async fn send(&self, batch: &DiscardedBatch<'_>) -> Result<String, MappingError> {
        let now = Utc::now();
        let key = self.key(&batch.info.shard_id, now);
        let body = self.record(batch, now).to_string();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .body(ByteStream::from(body.into_bytes()))
            .send()
            .await
            .map_err(|e| {
                let operation = "PutObject (on-failure destination)";
                MappingError::new(operation, &batch.info.stream_arn, e)
            })?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> S3Destination {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        S3Destination::new(
            aws_sdk_s3::Client::from_conf(config),
            "failures",
            "arn:aws:lambda:us-east-1:123456789012:function:change-handler",
        )
    }

    #[test]
    fn the_record_has_the_documented_fields_and_the_payload_as_a_string() {
        let d = destination();
        let at = DateTime::parse_from_rfc3339("2019-11-14T00:13:19Z")
            .unwrap()
            .with_timezone(&Utc);
        let info = BatchInfo {
            stream_arn:
                "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2019-11-14T00:04:06.388"
                    .into(),
            shard_id: "shardId-00000001573689847184-864758bb".into(),
            start_sequence_number: "800000000003126276362".into(),
            end_sequence_number: "800000000003126276363".into(),
            first_arrival: Some(at),
            last_arrival: Some(at),
            batch_size: 2,
            bootstrap_servers: None,
        };
        let payload = json!({"Records": [{"eventID": "1"}, {"eventID": "2"}]});
        let last = Invocation::Error("boom".into());
        let batch = DiscardedBatch {
            kind: StreamKind::DynamoDb,
            info: &info,
            payload: &payload,
            last: &last,
            invoke_count: 4,
        };
        let r = d.record(&batch, at);
        assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 4);
        assert_eq!(r["responseContext"]["functionError"], "Unhandled");
        assert_eq!(r["version"], "1.0");
        let b = &r["DDBStreamBatchInfo"];
        assert_eq!(b["shardId"], info.shard_id.as_str());
        assert_eq!(b["startSequenceNumber"], "800000000003126276362");
        assert_eq!(b["approximateArrivalOfFirstRecord"], "2019-11-14T00:13:19Z");
        assert_eq!(b["batchSize"], 2);
        let text = r["payload"]
            .as_str()
            .expect("payload is an escaped JSON string");
        assert_eq!(serde_json::from_str::<Value>(text).unwrap(), payload);
        let partial = Invocation::PartialFailure(vec!["x".into()]);
        let kinesis = DiscardedBatch {
            kind: StreamKind::Kinesis,
            last: &partial,
            invoke_count: 1,
            ..batch
        };
        let k = d.record(&kinesis, at);
        assert!(k["responseContext"].get("functionError").is_none());
        assert!(k["KinesisBatchInfo"].is_object() && k.get("DDBStreamBatchInfo").is_none());

        let key = d.key(&info.shard_id, at);
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(&parts[..2], ["aws", "lambda"]);
        assert_eq!(parts[2], d.mapping_uuid);
        assert_eq!(&parts[3..7], [info.shard_id.as_str(), "2019", "11", "14"]);
        assert!(parts[7].starts_with("2019-11-14T00.13.19-"), "{key}");
    }

    #[test]
    fn uuids_are_version_4_and_differ() {
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4', "{a}");
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
    }
}
