//! S3 notifications as the handler receives them: direct, wrapped in SQS messages, or the
//! `s3:TestEvent` that S3 sends when notifications are configured. Pure: no I/O.
//!
//! The payload is parsed generically first and then dispatched on its shape, so each SQS
//! message is judged on its own (one bad message is reported, the others go through).

use std::fmt;

use aws_lambda_events::event::s3::S3EventRecord;
use serde::Deserialize;
use serde_json::Value;
use stream_refdata_protocol::ObjectChange;

/// Why a payload cannot be handled at all.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Neither an S3 event, an SQS event nor an S3 test event.
    #[error("payload is not an S3 notification, an SQS event or an s3:TestEvent: {0}")]
    Unrecognised(String),
    /// A direct S3 event whose record does not parse.
    #[error("S3 notification Records[{index}] is invalid: {reason}")]
    BadRecord {
        /// The record's position.
        index: usize,
        /// What was wrong.
        #[source]
        reason: RecordError,
    },
}

/// Why one notification record cannot be handled.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record does not deserialize as an S3 event record.
    #[error("not an S3 event record: {0}")]
    NotARecord(#[source] serde_json::Error),
    /// Its `eventSource` is not `aws:s3`.
    #[error("eventSource is {0:?}, not aws:s3")]
    OtherSource(Option<String>),
    /// A field it must have is missing (named by its path, e.g. `s3.object.key`).
    #[error("no {0}")]
    Missing(&'static str),
    /// Its object key is not validly URL-encoded.
    #[error("{0}")]
    Key(#[from] KeyDecodeError),
}

/// Why one SQS message's body cannot be handled.
///
/// Its `Debug` is its message (as the `String` it replaced showed), so a logged or printed
/// [`Delivery`] says what was wrong with each message.
#[derive(thiserror::Error)]
pub enum MessageError {
    /// The message has no body.
    #[error("message has no body")]
    NoBody,
    /// The body is not JSON.
    #[error("message body is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON without a `Records` array.
    #[error("message body is not an S3 notification (no Records)")]
    NotANotification,
    /// One of the body's records cannot be handled.
    #[error("Records[{index}]: {reason}")]
    BadRecord {
        /// The record's position in the body.
        index: usize,
        /// What was wrong.
        #[source]
        reason: RecordError,
    },
}

impl fmt::Debug for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// Object keys in notifications are URL-encoded; the strict decoder is shared plumbing (the
/// redrive's notifications need it too).
pub use stream_refdata_aws::{decode_key, KeyDecodeError};

/// What a notification record says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeType {
    /// `ObjectCreated:*`: GET the current object.
    Changed,
    /// `ObjectRemoved:*` or `LifecycleExpiration:*`: its rows go.
    Removed,
    /// Any other event (restore, replication, tagging …): not a content change.
    Other,
}

/// Classifies an S3 event name.
pub fn change_type(event_name: &str) -> ChangeType {
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if name.starts_with("ObjectCreated:") {
        ChangeType::Changed
    } else if name.starts_with("ObjectRemoved:") || name.starts_with("LifecycleExpiration:") {
        ChangeType::Removed
    } else {
        ChangeType::Other
    }
}

/// One notification record, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The object change, with the key decoded.
    pub change: ObjectChange,
    /// Created, removed or other.
    pub change_type: ChangeType,
}

/// One SQS message of a batch.
#[derive(Debug)]
pub struct Message {
    /// The SQS message id (what `batchItemFailures` reports).
    pub message_id: String,
    /// Its notifications, or why its body could not be understood.
    pub content: Result<Body, MessageError>,
}

/// What a notification body holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Notification records.
    Records(Vec<Notification>),
    /// `s3:TestEvent`: nothing to do.
    TestEvent,
}

/// A whole invocation payload.
#[derive(Debug)]
pub enum Delivery {
    /// S3 invoked the function directly.
    Direct(Body),
    /// An SQS event source mapping delivered messages.
    Sqs(Vec<Message>),
}

/// Parses an invocation payload.
pub fn parse_payload(payload: &Value) -> Result<Delivery, EventError> {
    if is_test_event(payload) {
        return Ok(Delivery::Direct(Body::TestEvent));
    }
    let records = payload
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| EventError::Unrecognised("no \"Records\" array".into()))?;
    let source = |r: &Value| {
        r.get("eventSource")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match records.first().map(source) {
        None => Ok(Delivery::Direct(Body::Records(vec![]))),
        Some(Some(s)) if s == "aws:sqs" => records
            .iter()
            .enumerate()
            .map(|(i, r)| parse_sqs_message(i, r))
            .collect::<Result<Vec<_>, _>>()
            .map(Delivery::Sqs),
        Some(Some(s)) if s == "aws:s3" => parse_records(records)
            .map(|n| Delivery::Direct(Body::Records(n)))
            .map_err(|(index, reason)| EventError::BadRecord { index, reason }),
        Some(other) => Err(EventError::Unrecognised(format!(
            "Records[0] has eventSource {other:?}"
        ))),
    }
}

fn is_test_event(v: &Value) -> bool {
    v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
}

fn parse_sqs_message(index: usize, raw: &Value) -> Result<Message, EventError> {
    if raw.get("eventSource").and_then(Value::as_str) != Some("aws:sqs") {
        return Err(EventError::Unrecognised(format!(
            "Records[{index}] is not an SQS message"
        )));
    }
    let message_id = raw
        .get("messageId")
        .and_then(Value::as_str)
        .ok_or_else(|| EventError::Unrecognised(format!("Records[{index}] has no messageId")))?
        .to_owned();
    let content = match raw.get("body").and_then(Value::as_str) {
        None => Err(MessageError::NoBody),
        Some(body) => match serde_json::from_str::<Value>(body) {
            Err(e) => Err(MessageError::NotJson(e)),
            Ok(v) if is_test_event(&v) => Ok(Body::TestEvent),
            Ok(v) => match v.get("Records").and_then(Value::as_array) {
                None => Err(MessageError::NotANotification),
                Some(records) => parse_records(records)
                    .map(Body::Records)
                    .map_err(|(index, reason)| MessageError::BadRecord { index, reason }),
            },
        },
    };
    Ok(Message {
        message_id,
        content,
    })
}

fn parse_records(records: &[Value]) -> Result<Vec<Notification>, (usize, RecordError)> {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| parse_record(r).map_err(|e| (i, e)))
        .collect()
}

fn parse_record(raw: &Value) -> Result<Notification, RecordError> {
    let record = S3EventRecord::deserialize(raw).map_err(RecordError::NotARecord)?;
    if record.event_source.as_deref() != Some("aws:s3") {
        return Err(RecordError::OtherSource(record.event_source));
    }
    let event_name = record.event_name.ok_or(RecordError::Missing("eventName"))?;
    let bucket = record
        .s3
        .bucket
        .name
        .ok_or(RecordError::Missing("s3.bucket.name"))?;
    let raw_key = record
        .s3
        .object
        .key
        .ok_or(RecordError::Missing("s3.object.key"))?;
    let key = decode_key(&raw_key)?;
    let change_type = change_type(&event_name);
    Ok(Notification {
        change: ObjectChange {
            bucket,
            key,
            removed: change_type == ChangeType::Removed,
            event_name,
            event_time: record
                .event_time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            version_id: record.s3.object.version_id.filter(|v| !v.is_empty()),
            etag: record.s3.object.e_tag.filter(|v| !v.is_empty()),
            sequencer: record.s3.object.sequencer.filter(|v| !v.is_empty()),
        },
        change_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_plus_first_then_strictly() {
        assert_eq!(decode_key("menu+2026.csv").unwrap(), "menu 2026.csv");
        assert_eq!(decode_key("a%2Bb").unwrap(), "a+b");
        assert_eq!(decode_key("caf%C3%A9+menu.csv").unwrap(), "café menu.csv");
        assert_eq!(
            decode_key("reference/prices.csv").unwrap(),
            "reference/prices.csv"
        );
        assert!(decode_key("bad%zz")
            .unwrap_err()
            .to_string()
            .contains("%zz"));
        assert!(decode_key("trailing%4").is_err());
        assert!(decode_key("not-utf8%FF").is_err());
    }

    fn s3_record(key: &str) -> Value {
        serde_json::json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-26T01:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "A"}, "requestParameters": {"sourceIPAddress": "1.2.3.4"},
            "responseElements": {}, "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "b"},
            "object": {"key": key, "size": 1, "eTag": "e", "sequencer": "01"}}})
    }

    #[test]
    fn a_record_that_cannot_be_handled_keeps_why_as_its_source() {
        use std::error::Error as _;
        let err =
            parse_payload(&serde_json::json!({"Records": [s3_record("bad%zz")]})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("S3 notification Records[0] is invalid: object key \"bad%zz\""),
            "{err}"
        );
        let record = err.source().expect("the record's error");
        assert!(
            record.source().is_some_and(|s| s.is::<KeyDecodeError>()),
            "{err}"
        );
    }

    #[test]
    fn a_message_that_cannot_be_handled_keeps_why_and_shows_it_in_debug() {
        use std::error::Error as _;
        let sqs = |body: &str| serde_json::json!({"Records": [{"eventSource": "aws:sqs", "messageId": "m1", "body": body}]});
        let Delivery::Sqs(messages) = parse_payload(&sqs("{oops")).unwrap() else {
            panic!("an SQS delivery");
        };
        let err = messages[0].content.as_ref().unwrap_err();
        assert!(
            err.source().is_some_and(|s| s.is::<serde_json::Error>()),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("message body is not JSON: "),
            "{err}"
        );
        assert_eq!(format!("{err:?}"), format!("{:?}", err.to_string()));
        let body = serde_json::json!({"Records": [s3_record("ok"), {"eventSource": "aws:sqs"}]});
        let Delivery::Sqs(messages) = parse_payload(&sqs(&body.to_string())).unwrap() else {
            panic!("an SQS delivery");
        };
        let err = messages[0].content.as_ref().unwrap_err();
        assert!(
            matches!(
                err,
                MessageError::BadRecord {
                    index: 1,
                    reason: RecordError::NotARecord(_)
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("Records[1]: not an S3 event record: "),
            "{err}"
        );
    }

    #[test]
    fn event_names() {
        assert_eq!(change_type("ObjectCreated:Put"), ChangeType::Changed);
        assert_eq!(
            change_type("ObjectCreated:CompleteMultipartUpload"),
            ChangeType::Changed
        );
        assert_eq!(change_type("ObjectRemoved:Delete"), ChangeType::Removed);
        assert_eq!(
            change_type("ObjectRemoved:DeleteMarkerCreated"),
            ChangeType::Removed
        );
        assert_eq!(
            change_type("LifecycleExpiration:Delete"),
            ChangeType::Removed
        );
        assert_eq!(change_type("s3:ObjectRestore:Completed"), ChangeType::Other);
    }
}
