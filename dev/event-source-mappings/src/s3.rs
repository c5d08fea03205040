//! S3 notifications as AWS sends them, and the SQS events that carry them.
//!
//! The local emulator's S3 notifications omit `userIdentity`, `requestParameters`,
//! `responseElements` and `sequencer`, and write `eventTime` without a zone. The functions parse
//! notifications as AWS documents them, so the local pipeline gives them that shape here rather
//! than loosening the functions' parsing.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::types::Message;
use serde_json::{json, Value};

/// Gives one S3 notification body (`{"Records": [...]}`) the shape AWS documents. Bodies that
/// are not notifications (such as `s3:TestEvent`) are returned unchanged.
pub fn normalize_s3_notification(body: &Value) -> Value {
    static SEQUENCER: AtomicU64 = AtomicU64::new(0);
    let mut body = body.clone();
    let Some(records) = body.get_mut("Records").and_then(Value::as_array_mut) else {
        return body;
    };
    for record in records {
        let Some(r) = record.as_object_mut() else {
            continue;
        };
        r.entry("userIdentity")
            .or_insert_with(|| json!({"principalId": "AWS:AIDALOCALPIPELINE"}));
        r.entry("requestParameters")
            .or_insert_with(|| json!({"sourceIPAddress": "127.0.0.1"}));
        r.entry("responseElements").or_insert_with(
            || json!({"x-amz-request-id": "LOCALPIPELINE", "x-amz-id-2": "local-pipeline"}),
        );
        if let Some(Value::String(t)) = r.get_mut("eventTime") {
            if !t.ends_with('Z') && !t.contains('+') {
                t.push('Z');
            }
        }
        if let Some(object) = r
            .get_mut("s3")
            .and_then(|s| s.get_mut("object"))
            .and_then(Value::as_object_mut)
        {
            object.entry("sequencer").or_insert_with(|| {
                // Increasing hex, like S3's per-key sequencers.
                let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
                let n = nanos.max(SEQUENCER.fetch_add(1, Ordering::Relaxed));
                json!(format!("{n:016X}"))
            });
        }
    }
    body
}

/// The Lambda event an SQS event source mapping builds from received `messages`, with S3
/// notification bodies given AWS's shape.
pub fn sqs_event(queue_arn: &str, region: &str, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let body = m.body().unwrap_or_default();
            let body = match serde_json::from_str::<Value>(body) {
                Ok(v) => normalize_s3_notification(&v).to_string(),
                Err(_) => body.to_owned(),
            };
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_notifications_get_the_documented_fields() {
        let moto = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-26T01:00:00.000", "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "x",
                   "bucket": {"name": "b", "arn": "arn:aws:s3:::b"},
                   "object": {"key": "reference/a.csv", "size": 3, "eTag": "e"}}
        }]});
        let fixed = normalize_s3_notification(&moto);
        let r = &fixed["Records"][0];
        assert_eq!(r["eventTime"], "2026-11-26T01:00:00.000Z");
        assert!(r["userIdentity"]["principalId"].is_string());
        assert!(r["requestParameters"]["sourceIPAddress"].is_string());
        assert!(r["responseElements"].is_object());
        assert!(r["s3"]["object"]["sequencer"].is_string());
        let test_event = json!({"Event": "s3:TestEvent"});
        assert_eq!(normalize_s3_notification(&test_event), test_event);
    }
}
