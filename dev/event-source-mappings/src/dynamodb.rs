//! DynamoDB Streams records to the Lambda event a DynamoDB event source mapping delivers.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record};
use serde_json::{json, Map, Value};

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
