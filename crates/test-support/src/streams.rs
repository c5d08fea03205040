//! Reading DynamoDB stream records from the emulator and shaping them as Lambda delivers them.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{json, Map, Value};

/// Every record currently in the stream, from the start of each shard, in shard order.
pub async fn read_stream_records(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Vec<Record> {
    let described = client
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .expect("DescribeStream");
    let shards = described
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let Some(shard_id) = shard.shard_id() else {
            continue;
        };
        let mut iterator = client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(it) = iterator.take() {
            let out = client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            let got = out.records().to_vec();
            if got.is_empty() {
                break;
            }
            records.extend(got);
            iterator = out.next_shard_iterator;
        }
    }
    records
}

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
pub fn lambda_event_from_stream_records(stream_arn: &str, records: &[Record]) -> Value {
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
