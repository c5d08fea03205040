//! Kinesis records to the Lambda event a Kinesis event source mapping delivers.

use aws_sdk_kinesis::types::Record;
use base64::Engine;
use serde_json::{json, Value};

/// The Lambda event for `records` read from shard `shard_id` of `stream_arn`: base64 data,
/// `eventID` = `<shard id>:<sequence number>`, arrival time in epoch seconds.
pub fn kinesis_event(stream_arn: &str, shard_id: &str, region: &str, records: &[Record]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let arrival = r
                .approximate_arrival_timestamp()
                .map(|t| t.as_secs_f64())
                .unwrap_or(0.0);
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key(),
                    "sequenceNumber": r.sequence_number(),
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number()),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/orders-consumer",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records })
}
