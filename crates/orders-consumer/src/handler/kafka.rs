//! The invocation's payload when the orders stream is Kafka: Lambda's event for an Amazon MSK
//! (`aws:kafka`) or a self-managed Kafka (`SelfManagedKafka`) event source mapping, parsed once
//! into the fields the consumer reads, and each topic-partition's records decoded into a batch
//! of its own (the [`decode`](super::decode) step's counterpart).
//!
//! The event's shape (AWS's documented one, and `aws_lambda_events::kafka::KafkaEvent`'s): records
//! grouped under `"<topic>-<partition>"`, each with its topic, partition, offset, timestamp (ms)
//! and its type, base64 key and value, and headers as lists of `{name: [bytes]}`. The consumer
//! does not parse it with `KafkaEvent`: there one header that is not a list of bytes fails the
//! whole event, where here it dead-letters its record alone (the tests check both parse AWS's
//! samples alike).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::orders::{classify, Record};
use crate::output::Input;

use super::decode::Batch;
use base64::Engine;

/// Lambda's Kafka event as the consumer reads it: its event source and its topic-partitions'
/// records, in the order of their `"<topic>-<partition>"` names.
#[derive(Debug, Default)]
pub struct KafkaInvocation {
    /// `aws:kafka` (Amazon MSK) or `SelfManagedKafka`.
    pub(super) event_source: String,
    pub(super) partitions: BTreeMap<String, Vec<KafkaRecord>>,
}

/// The two event sources of Lambda's Kafka events.
pub(super) const KAFKA_SOURCES: [&str; 2] = ["aws:kafka", "SelfManagedKafka"];

/// The top-level fields of a Kafka event the consumer reads (the others skipped).
#[derive(Debug, Deserialize)]
pub(super) struct KafkaFields {
    #[serde(rename = "eventSource")]
    pub(super) event_source: String,
    pub(super) records: BTreeMap<String, Vec<KafkaRecord>>,
}

impl From<KafkaFields> for KafkaInvocation {
    fn from(fields: KafkaFields) -> Self {
        KafkaInvocation {
            event_source: fields.event_source,
            partitions: fields.records,
        }
    }
}

/// One Kafka record of the event.
#[derive(Debug, Deserialize)]
pub(super) struct KafkaRecord {
    pub(super) topic: String,
    pub(super) partition: i64,
    pub(super) offset: i64,
    /// Milliseconds since the epoch: the producer's (`CREATE_TIME`) or the broker's
    /// (`LOG_APPEND_TIME`), as the topic is configured; -1 for a record without one.
    #[serde(default)]
    pub(super) timestamp: Option<i64>,
    /// `None` for a null value (a tombstone).
    #[serde(default)]
    pub(super) value: Option<KafkaValue>,
    #[serde(default)]
    pub(super) headers: Headers,
}

/// A record's value, decoded from base64 as it is parsed; its text kept when it is not base64
/// (for its dead letter).
#[derive(Debug)]
pub(super) struct KafkaValue(Result<Vec<u8>, (String, base64::DecodeError)>);

impl<'de> Deserialize<'de> for KafkaValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = KafkaValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 value")
            }
            // (the text as the deserializer has it: borrowed, or unescaped, never copied first)
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<KafkaValue, E> {
                Ok(KafkaValue(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.as_bytes())
                        .map_err(|e| (text.to_owned(), e)),
                ))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A record's headers: only whether they decode is kept (the consumer reads none of them).
#[derive(Debug, Default)]
pub(super) struct Headers(pub(super) Option<String>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // (any JSON here: a header that does not decode is its record's problem, not the
        // event's)
        let value = serde_json::Value::deserialize(d)?;
        Ok(Headers(header_error(&value)))
    }
}

/// Why `headers` are not Lambda's list of `{name: [bytes]}` (each byte a Java byte, -128 to
/// 127, or 0 to 255), if they are not.
fn header_error(headers: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let list = match headers {
        Value::Array(list) => list,
        Value::Null => return None,
        other => return Some(format!("the headers are not a list: {other}")),
    };
    for (n, header) in list.iter().enumerate() {
        let Value::Object(entries) = header else {
            return Some(format!(
                "header {n} is not an object of name to bytes: {header}"
            ));
        };
        for (name, bytes) in entries {
            let ok = bytes.as_array().is_some_and(|b| {
                b.iter()
                    .all(|x| x.as_i64().is_some_and(|x| (-128..=255).contains(&x)))
            });
            if !ok {
                return Some(format!(
                    "header {n} ({name:?}) is not a list of bytes: {bytes}"
                ));
            }
        }
    }
    None
}

/// Why a Kafka event cannot be read as one (the invocation fails: Lambda never sends it).
#[derive(Debug, thiserror::Error)]
pub enum KafkaEventError {
    /// A record grouped under another topic-partition than its own.
    #[error(
        "records[{group:?}][{index}] is of topic {topic:?} partition {partition}, not of {group:?}"
    )]
    Misgrouped {
        /// The group's name.
        group: String,
        /// The record's index in it.
        index: usize,
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i64,
    },
}

/// Each topic-partition's records of `event` as a batch of its own: named by the topic-partition
/// (the batch's "shard") and its first record's offset; each record's value decoded and
/// classified with `legacy_flag_dish` as the original's flag dish. A value that is null (a
/// tombstone) or not base64, or headers that do not decode, make their record an invalid input
/// (dead-lettered with why); the batch's other records go on.
pub(super) fn decode_kafka(
    event: KafkaInvocation,
    legacy_flag_dish: &str,
) -> Result<Vec<Batch>, KafkaEventError> {
    let mut batches = Vec::with_capacity(event.partitions.len());
    for (group, records) in event.partitions {
        let Some(first) = records.first() else {
            continue;
        };
        let first_sequence = first.offset.to_string();
        let mut inputs = Vec::with_capacity(records.len());
        for (index, r) in records.into_iter().enumerate() {
            if format!("{}-{}", r.topic, r.partition) != group {
                return Err(KafkaEventError::Misgrouped {
                    group,
                    index,
                    topic: r.topic,
                    partition: r.partition,
                });
            }
            // (a record without a timestamp has -1)
            let arrival_ms = r.timestamp.filter(|t| *t >= 0);
            // (what cannot be read is dead-lettered with why, and with the value as it came:
            // decoded, or its text when it is not base64)
            let (record, data) = match (r.value.map(|v| v.0), r.headers.0) {
                (None, _) => (
                    Record::Invalid("a tombstone: the record's value is null".into()),
                    Vec::new(),
                ),
                (Some(Err((text, e))), _) => (
                    Record::Invalid(format!("the record's value is not base64: {e}")),
                    text.into_bytes(),
                ),
                (Some(Ok(data)), Some(why)) => (Record::Invalid(why), data),
                (Some(Ok(data)), None) => (classify(&data, legacy_flag_dish), data),
            };
            inputs.push(Input {
                record,
                sequence_number: r.offset.to_string(),
                sub_sequence: None,
                reference_object: None,
                arrival_ms,
                as_of: None,
                data,
            });
        }
        batches.push(Batch {
            shard: group,
            first_sequence,
            inputs,
        });
    }
    Ok(batches)
}

/// The response to a Kafka event: the partitions to retry, each from the record given
/// (Lambda's partial batch response for Kafka event source mappings; empty when every
/// partition's batch completed).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct KafkaEventResponse {
    /// One failure per partition to retry.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

/// A partition to retry, from a record of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct KafkaBatchItemFailure {
    /// The record to retry the partition from.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: KafkaItemIdentifier,
}

/// A Kafka record as a partial batch response names it: its topic-partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct KafkaItemIdentifier {
    /// The record's topic-partition, as the event groups it (`<topic>-<partition>`).
    pub partition: String,
    /// The record's offset.
    pub offset: i64,
}

impl KafkaBatchItemFailure {
    /// The failure that retries `partition` (`<topic>-<partition>`) from `offset` (the batch's
    /// first record's, as the batch names it).
    pub(super) fn new(partition: &str, offset: &str) -> Self {
        KafkaBatchItemFailure {
            item_identifier: KafkaItemIdentifier {
                partition: partition.to_owned(),
                // (the batch's own offsets, written from an i64)
                offset: offset.parse().unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn decoded(name: &str) -> Vec<Batch> {
        let fields: KafkaFields = serde_json::from_str(&sample(name)).unwrap();
        decode_kafka(fields.into(), "CHANGE_FLAG").unwrap()
    }

    #[test]
    fn the_samples_parse_as_aws_lambda_events_parses_them() {
        // (AWS's own example from aws_lambda_events, and the project's samples)
        let aws = std::fs::read_to_string(format!(
            "{}/../../events/example-msk-aws-documented.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for text in [
            aws,
            sample("example-msk-orders.json"),
            sample("example-self-managed-kafka-orders.json"),
        ] {
            let theirs: aws_lambda_events::event::kafka::KafkaEvent =
                serde_json::from_str(&text).unwrap();
            let ours: KafkaFields = serde_json::from_str(&text).unwrap();
            assert_eq!(
                theirs.event_source.as_deref(),
                Some(ours.event_source.as_str())
            );
            let names: Vec<&String> = ours.records.keys().collect();
            let mut theirs_names: Vec<&String> = theirs.records.keys().collect();
            theirs_names.sort();
            assert_eq!(names, theirs_names);
            for (name, records) in &ours.records {
                let theirs = &theirs.records[name];
                assert_eq!(records.len(), theirs.len());
                for (o, t) in records.iter().zip(theirs) {
                    assert_eq!(Some(&o.topic), t.topic.as_ref());
                    assert_eq!((o.partition, o.offset), (t.partition, t.offset));
                    // (aws_lambda_events reads the milliseconds through a float: it may be one
                    // off, where this parse keeps the integer as sent)
                    let theirs = t.timestamp.0.timestamp_millis();
                    assert!(o.timestamp.is_some_and(|ms| (ms - theirs).abs() <= 1));
                    let value = t.value.as_ref().map(|v| {
                        use base64::Engine;
                        base64::engine::general_purpose::STANDARD.decode(v).unwrap()
                    });
                    let ours = o.value.as_ref().map(|v| v.0.as_ref().unwrap().clone());
                    assert_eq!(ours, value);
                    assert!(o.headers.0.is_none());
                }
            }
        }
    }

    #[test]
    fn each_partition_is_a_batch_named_by_its_topic_partition_and_first_offset() {
        let batches = decoded("example-msk-orders.json");
        let names: Vec<(&str, &str, usize)> = (batches.iter())
            .map(|b| (b.shard.as_str(), b.first_sequence.as_str(), b.inputs.len()))
            .collect();
        assert_eq!(names, [("orders-0", "15", 4), ("orders-1", "7", 3)]);
        let b = &batches[0];
        assert!(matches!(b.inputs[0].record, Record::Order(_)));
        assert!(matches!(b.inputs[2].record, Record::LegacyFlag));
        assert_eq!(b.inputs[1].sequence_number, "16");
        // (as-of time: the record's timestamp)
        assert_eq!(b.inputs[0].arrival_ms, Some(1_795_650_067_123));
    }

    #[test]
    fn a_record_that_cannot_be_read_is_an_input_of_its_own_with_why() {
        let batches = decoded("example-msk-bad-records.json");
        assert_eq!(batches.len(), 1);
        let why: Vec<(String, String)> = (batches[0].inputs.iter())
            .map(|i| {
                let what = match &i.record {
                    Record::Invalid(why) => why.clone(),
                    Record::Order(_) => "order".into(),
                    other => format!("{other:?}"),
                };
                (i.sequence_number.clone(), what)
            })
            .collect();
        let expect = |offset: &str, what: &str| {
            let got = &why.iter().find(|(o, _)| o == offset).unwrap().1;
            assert!(got.contains(what), "{offset}: {got}");
        };
        expect("40", "order");
        expect("41", "not base64");
        expect("42", "tombstone");
        expect("43", "tombstone");
        expect("44", "header 0 (\"bad\") is not a list of bytes");
        expect("45", "not an order");
        expect("46", "order");
        assert_eq!(why.len(), 7);
        // (the value that is not base64 is kept as it came, for its dead letter)
        assert_eq!(batches[0].inputs[1].data, b"not base64!");
    }

    #[test]
    fn records_grouped_under_another_partition_are_not_a_kafka_event() {
        let mut event: serde_json::Value =
            serde_json::from_str(&sample("example-msk-orders.json")).unwrap();
        event["records"]["orders-1"][0]["partition"] = 5.into();
        let fields: KafkaFields = serde_json::from_value(event).unwrap();
        let Err(err) = decode_kafka(fields.into(), "CHANGE_FLAG") else {
            panic!("decoded");
        };
        assert!(
            err.to_string().contains("partition 5, not of \"orders-1\""),
            "{err}"
        );
    }

    #[test]
    fn a_partial_batch_response_is_shaped_as_lambda_reads_it() {
        let mut r = KafkaEventResponse::default();
        r.batch_item_failures
            .push(KafkaBatchItemFailure::new("orders-1", "7"));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"batchItemFailures": [
                {"itemIdentifier": {"partition": "orders-1", "offset": 7}}
            ]})
        );
    }
}
