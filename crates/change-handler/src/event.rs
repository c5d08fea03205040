//! From a DynamoDB Streams Lambda event to the content of a change file. Pure: no I/O.
//!
//! Each record is parsed on its own, so one record that does not parse cannot fail the batch:
//! it becomes an [`OpaqueRecord`] (`docs/design.md` section 1.5, "Untypeable records are not
//! a batch failure"). Only a payload that is not a
//! DynamoDB Streams event at all is an error.

use aws_lambda_events::event::dynamodb::EventRecord;
use serde::Deserialize;
use serde_json::Value;
use stream_refdata_protocol::{
    source_label, ChangeFile, ChangeKind, EventName, Item, OpaqueRecord, SequenceError,
    SequenceNumber, SequenceRange, Source, StreamChange, UserIdentity, SCHEMA_VERSION,
};

/// Why a payload is not a DynamoDB Streams event. Retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is not a JSON object.
    #[error("payload is not a DynamoDB Streams event: expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The payload has no `Records` array.
    #[error("payload is not a DynamoDB Streams event: no \"Records\" array")]
    NoRecords,
    /// A record comes from another event source.
    #[error("payload is not a DynamoDB Streams event: Records[{index}] has eventSource {event_source:?}")]
    OtherSource {
        /// The record's position.
        index: usize,
        /// What it said its source was.
        event_source: String,
    },
    /// A record is not a DynamoDB stream record at all (not an object, or no `dynamodb` part).
    #[error(
        "payload is not a DynamoDB Streams event: Records[{index}] is not a stream record ({what})"
    )]
    NotARecord {
        /// The record's position.
        index: usize,
        /// What was there instead.
        what: &'static str,
    },
    /// Records of two streams in one batch (an event source mapping never sends that).
    #[error("records from two streams in one batch: {first} and {other}")]
    MixedStreams {
        /// The first stream ARN seen.
        first: String,
        /// Another one.
        other: String,
    },
}

/// A parsed batch: what the change file will hold, and what the handler reports on failure.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Number of records in the event.
    pub records: usize,
    /// The stream ARN, region and table the records came from.
    pub source: Source,
    /// Records that parsed, in stream order.
    pub changes: Vec<StreamChange>,
    /// Records that did not, in stream order.
    pub opaque: Vec<OpaqueRecord>,
    /// The sequence number of `Records[0]` as written, which `batchItemFailures` reports so the
    /// event source mapping retries the whole batch. `None` when that record had none.
    pub first_record_sequence: Option<String>,
    /// First and last valid sequence numbers, for the key.
    pub sequences: Option<SequenceRange>,
}

impl Batch {
    /// The change file for this batch; the writer fills in time, window and producer.
    pub fn to_change_file(&self) -> ChangeFile {
        ChangeFile {
            schema_version: SCHEMA_VERSION,
            kind: ChangeKind::Dynamodb,
            written_at: String::new(),
            write_window_ms: 0,
            producer: String::new(),
            source: self.source.clone(),
            changes: self.changes.clone(),
            opaque: self.opaque.clone(),
            objects: Vec::new(),
            reason: None,
        }
    }

    /// Counts of INSERT, MODIFY and REMOVE changes.
    pub fn counts_by_event(&self) -> (usize, usize, usize) {
        self.changes
            .iter()
            .fold((0, 0, 0), |(i, m, r), c| match c.event_name {
                EventName::Insert => (i + 1, m, r),
                EventName::Modify => (i, m + 1, r),
                EventName::Remove => (i, m, r + 1),
            })
    }
}

/// Parses a Lambda payload from a DynamoDB Streams event source mapping.
pub fn parse_event(payload: &Value) -> Result<Batch, EventError> {
    let object = payload
        .as_object()
        .ok_or_else(|| EventError::NotAnObject(json_kind(payload)))?;
    let records = object
        .get("Records")
        .and_then(Value::as_array)
        .ok_or(EventError::NoRecords)?;

    let mut stream_arn: Option<String> = None;
    let mut region: Option<String> = None;
    let mut changes = Vec::with_capacity(records.len());
    let mut opaque = Vec::new();
    let mut valid_sequences: Vec<SequenceNumber> = Vec::new();

    for (index, raw) in records.iter().enumerate() {
        check_is_dynamodb_record(index, raw)?;
        if let Some(arn) = raw.get("eventSourceARN").and_then(Value::as_str) {
            match &stream_arn {
                None => stream_arn = Some(arn.to_owned()),
                Some(first) if first != arn => {
                    return Err(EventError::MixedStreams {
                        first: first.clone(),
                        other: arn.to_owned(),
                    })
                }
                Some(_) => {}
            }
        }
        if region.is_none() {
            region = raw
                .get("awsRegion")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        match parse_record(index, raw) {
            Ok(change) => {
                valid_sequences.push(change.sequence_number.clone());
                changes.push(change);
            }
            Err(reason) => opaque.push(OpaqueRecord {
                index,
                reason: reason.to_string(),
                sequence_number: raw_sequence(raw).map(str::to_owned),
                keys: raw.get("dynamodb").and_then(|d| d.get("Keys")).cloned(),
                raw: raw.clone(),
            }),
        }
    }

    let first_record_sequence = records.first().and_then(raw_sequence).map(str::to_owned);
    let sequences = match (valid_sequences.first(), valid_sequences.last()) {
        (Some(first), Some(last)) => Some(SequenceRange {
            first: first.clone(),
            last: last.clone(),
        }),
        _ => None,
    };
    let label_of = stream_arn.as_deref().unwrap_or("unknown-stream");
    let source = Source {
        label: source_label(label_of),
        table: stream_arn.as_deref().and_then(table_from_stream_arn),
        region,
        stream_arn,
        bucket: None,
    };
    Ok(Batch {
        records: records.len(),
        source,
        changes,
        opaque,
        first_record_sequence,
        sequences,
    })
}

/// The table name in a stream ARN: `arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>`.
pub fn table_from_stream_arn(arn: &str) -> Option<String> {
    let rest = arn.split_once(":table/")?.1;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn check_is_dynamodb_record(index: usize, raw: &Value) -> Result<(), EventError> {
    let Some(record) = raw.as_object() else {
        return Err(EventError::NotARecord {
            index,
            what: json_kind(raw),
        });
    };
    match record.get("eventSource") {
        Some(Value::String(s)) if s == "aws:dynamodb" => Ok(()),
        Some(Value::String(s)) => Err(EventError::OtherSource {
            index,
            event_source: s.clone(),
        }),
        _ if record.get("dynamodb").is_some_and(Value::is_object) => Ok(()),
        _ => Err(EventError::NotARecord {
            index,
            what: "no eventSource and no \"dynamodb\" object",
        }),
    }
}

fn raw_sequence(raw: &Value) -> Option<&str> {
    raw.get("dynamodb")?.get("SequenceNumber")?.as_str()
}

/// Why one record cannot be typed: its [`OpaqueRecord::reason`] is this error's message.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// The record does not deserialize as a stream record.
    #[error("not a DynamoDB stream record: {0}")]
    NotARecord(#[source] serde_json::Error),
    /// Its `eventName` is not INSERT, MODIFY or REMOVE.
    #[error("unknown eventName {0:?}")]
    UnknownEventName(String),
    /// It has no `dynamodb.SequenceNumber`.
    #[error("no dynamodb.SequenceNumber")]
    NoSequenceNumber,
    /// Its `dynamodb.SequenceNumber` is not a sequence number.
    #[error("dynamodb.SequenceNumber: {0}")]
    BadSequenceNumber(#[source] SequenceError),
    /// It has no (or empty) `dynamodb.Keys`.
    #[error("no dynamodb.Keys")]
    NoKeys,
}

/// Types one record, or says why it cannot be typed.
fn parse_record(index: usize, raw: &Value) -> Result<StreamChange, RecordError> {
    let record = EventRecord::deserialize(raw).map_err(RecordError::NotARecord)?;
    let event_name = EventName::parse(&record.event_name)
        .ok_or_else(|| RecordError::UnknownEventName(record.event_name.clone()))?;
    let stream = record.change;
    let sequence_number = match stream.sequence_number.as_deref() {
        None => return Err(RecordError::NoSequenceNumber),
        Some(s) => SequenceNumber::parse(s).map_err(RecordError::BadSequenceNumber)?,
    };
    if stream.keys.is_empty() {
        return Err(RecordError::NoKeys);
    }
    let image = |item: Item| (!item.is_empty()).then_some(item);
    Ok(StreamChange {
        index,
        event_id: record.event_id,
        event_name,
        sequence_number,
        approximate_creation_ms: stream.approximate_creation_date_time.timestamp_millis(),
        stream_view_type: stream.stream_view_type.map(|v| v.to_string()),
        keys: stream.keys,
        new_image: image(stream.new_image),
        old_image: image(stream.old_image),
        user_identity: record.user_identity.map(|u| UserIdentity {
            kind: u.type_,
            principal_id: u.principal_id,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(name: &str, seq: Option<&str>, new_image: Value) -> Value {
        let mut dynamodb = json!({
            "ApproximateCreationDateTime": 1795650067.0,
            "Keys": {"item": {"S": "burger"}, "price": {"N": "100"}},
            "NewImage": new_image,
            "SizeBytes": 60,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        });
        if let Some(seq) = seq {
            dynamodb["SequenceNumber"] = json!(seq);
        }
        json!({
            "eventID": "1",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": dynamodb,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-11-25T00:00:00.000"
        })
    }

    fn good_image() -> Value {
        json!({"item": {"S": "burger"}, "price": {"N": "100"}, "priority": {"S": "high"}})
    }

    #[test]
    fn table_name_from_arn() {
        assert_eq!(
            table_from_stream_arn(
                "arn:aws:dynamodb:us-east-1:1:table/ProductPriority/stream/2026-11-25T00:00:00.000"
            )
            .as_deref(),
            Some("ProductPriority")
        );
        assert_eq!(table_from_stream_arn("arn:aws:kinesis:x"), None);
    }

    #[test]
    fn a_good_record_becomes_a_change() {
        let batch = parse_event(&json!({"Records": [record("MODIFY", Some("111"), good_image())]}))
            .unwrap();
        assert_eq!(batch.changes.len(), 1);
        assert!(batch.opaque.is_empty());
        assert_eq!(batch.source.table.as_deref(), Some("ProductPriority"));
        assert_eq!(batch.first_record_sequence.as_deref(), Some("111"));
        let c = &batch.changes[0];
        assert_eq!(c.event_name, EventName::Modify);
        assert_eq!(c.approximate_creation_ms, 1_795_650_067_000);
        assert_eq!(c.stream_view_type.as_deref(), Some("NEW_AND_OLD_IMAGES"));
    }

    #[test]
    fn empty_records_is_an_empty_batch() {
        let batch = parse_event(&json!({"Records": []})).unwrap();
        assert_eq!(batch.records, 0);
        assert_eq!(batch.sequences, None);
    }

    #[test]
    fn untypeable_records_become_opaque_not_errors() {
        let bad_type = record("MODIFY", Some("2"), json!({"odd": {"X": 1}}));
        let bad_name = record("UPSERT", Some("3"), good_image());
        let no_seq = record("INSERT", None, good_image());
        let bad_seq = record("INSERT", Some("12ab"), good_image());
        let good = record("REMOVE", Some("5"), json!({}));
        let batch =
            parse_event(&json!({"Records": [bad_type, bad_name, no_seq, bad_seq, good]})).unwrap();
        assert_eq!(batch.records, 5);
        assert_eq!(batch.changes.len(), 1);
        let reasons: Vec<&str> = batch.opaque.iter().map(|o| o.reason.as_str()).collect();
        assert!(
            reasons[0].contains("'X' is not a known DynamoDB prefix"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("unknown eventName \"UPSERT\""),
            "{reasons:?}"
        );
        assert!(
            reasons[2].contains("no dynamodb.SequenceNumber"),
            "{reasons:?}"
        );
        assert!(reasons[3].contains("not a digit"), "{reasons:?}");
        assert_eq!(batch.opaque[0].typed_keys().unwrap().len(), 2);
        assert_eq!(batch.opaque[2].sequence_number, None);
        // The key range comes from the records that had valid numbers.
        let range = batch.sequences.clone().unwrap();
        assert_eq!((range.first.as_str(), range.last.as_str()), ("5", "5"));
        assert_eq!(batch.first_record_sequence.as_deref(), Some("2"));
        assert_eq!(batch.counts_by_event(), (0, 0, 1));
    }

    #[test]
    fn a_record_that_cannot_be_typed_keeps_why_as_its_source() {
        use std::error::Error as _;
        let e =
            parse_record(0, &record("MODIFY", Some("2"), json!({"odd": {"X": 1}}))).unwrap_err();
        assert!(
            e.source().is_some_and(|s| s.is::<serde_json::Error>()),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("not a DynamoDB stream record: "),
            "{e}"
        );
        let e = parse_record(0, &record("INSERT", Some("12ab"), good_image())).unwrap_err();
        assert!(e.source().is_some_and(|s| s.is::<SequenceError>()), "{e}");
        assert_eq!(
            e.to_string(),
            "dynamodb.SequenceNumber: sequence number \"12ab\" has a character that is not a digit"
        );
    }

    #[test]
    fn payloads_that_are_not_dynamodb_events_are_errors() {
        assert_eq!(
            parse_event(&json!([1, 2])),
            Err(EventError::NotAnObject("an array"))
        );
        assert_eq!(
            parse_event(&json!({"records": []})),
            Err(EventError::NoRecords)
        );
        let kinesis = json!({"Records": [{"eventSource": "aws:kinesis", "kinesis": {}}]});
        let err = parse_event(&kinesis).unwrap_err();
        assert!(err.to_string().contains("aws:kinesis"), "{err}");
        let err = parse_event(&json!({"Records": [42]})).unwrap_err();
        assert!(err.to_string().contains("Records[0]"), "{err}");
    }

    #[test]
    fn two_streams_in_one_batch_are_an_error() {
        let a = record("INSERT", Some("1"), good_image());
        let mut b = record("INSERT", Some("2"), good_image());
        b["eventSourceARN"] = json!("arn:aws:dynamodb:us-east-1:1:table/Other/stream/x");
        assert!(matches!(
            parse_event(&json!({"Records": [a, b]})),
            Err(EventError::MixedStreams { .. })
        ));
    }
}
