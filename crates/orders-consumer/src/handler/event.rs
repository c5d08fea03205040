//! The invocation's payload: a Kinesis Lambda event, parsed once into the fields the consumer
//! reads (each record's data base64-decoded as it is parsed). The pipeline's first step
//! ([`decode`](super::decode)) takes it from here.

use base64::Engine;
use serde::Deserialize;

use super::kafka::{KafkaFields, KafkaInvocation, KafkaRecord, KAFKA_SOURCES};

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
/// cannot produce this type: use [`OrdersConsumer::handle`](crate::OrdersConsumer::handle) or
/// [`OrdersConsumer::handle_raw`](crate::OrdersConsumer::handle_raw) there.
///
/// An EventBridge "Scheduled Event" (`source` `aws.events`) is taken too, as the sweep of the
/// held orders (no records).
#[derive(Debug, Default)]
pub struct KinesisInvocation {
    pub(super) records: Records,
    /// A scheduled invocation: the sweep of the held orders, not a batch.
    pub(super) sweep: bool,
}

/// An invocation's payload: a Kinesis event (or the scheduled sweep of the held orders), or a
/// Kafka event (Amazon MSK's or a self-managed cluster's), told apart by their fields (Kinesis'
/// `Records` list, Kafka's `eventSource` and `records` map) in the one parse. Parsed as
/// [`KinesisInvocation`] is, from the borrowed text; a payload that is neither fails as a
/// Kinesis event does, a Kafka event that does not parse with the field's path.
#[derive(Debug)]
pub enum Invocation {
    /// A Kinesis event, or the scheduled sweep.
    Kinesis(KinesisInvocation),
    /// A Kafka event.
    Kafka(KafkaInvocation),
}

/// The fields that tell the two events apart, each parsed as its own event's type.
#[derive(Deserialize)]
struct AnyFields {
    #[serde(rename = "Records", default)]
    kinesis: Option<Records>,
    #[serde(default)]
    records: Option<std::collections::BTreeMap<String, Vec<KafkaRecord>>>,
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
}

impl<'de> Deserialize<'de> for Invocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        Invocation::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

impl Invocation {
    /// The event of the JSON text `text`, or why it is not one.
    fn from_json(text: &str) -> Result<Invocation, PayloadError> {
        match serde_json::from_str::<AnyFields>(text) {
            Ok(AnyFields {
                kinesis: Some(records),
                ..
            }) => {
                return Ok(Invocation::Kinesis(KinesisInvocation {
                    records,
                    sweep: false,
                }))
            }
            Ok(AnyFields {
                records: Some(records),
                event_source: Some(event_source),
                ..
            }) if KAFKA_SOURCES.contains(&event_source.as_str()) => {
                return Ok(Invocation::Kafka(KafkaInvocation {
                    event_source,
                    partitions: records,
                }))
            }
            _ => {}
        }
        // (a Kafka event that does not parse: why, with the field's path)
        if let Ok(peek) = serde_json::from_str::<EventSourceField>(text) {
            if peek
                .event_source
                .is_some_and(|s| KAFKA_SOURCES.contains(&s.as_str()))
            {
                let tracked = &mut serde_json::Deserializer::from_str(text);
                return match serde_path_to_error::deserialize::<_, KafkaFields>(tracked) {
                    Err(e) if e.path().to_string() == "." => Err(PayloadError::TopLevel(e)),
                    Err(e) => Err(PayloadError::AtField(e)),
                    Ok(fields) => Ok(Invocation::Kafka(fields.into())),
                };
            }
        }
        KinesisInvocation::from_json(text).map(Invocation::Kinesis)
    }
}

/// An event's top-level `eventSource`, alone.
#[derive(Deserialize)]
struct EventSourceField {
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
}

/// The fields of an EventBridge scheduled event that say it is one.
#[derive(Deserialize)]
struct ScheduledFields<'a> {
    source: &'a str,
    #[serde(rename = "detail-type")]
    detail_type: &'a str,
}

/// The fields of [`KinesisInvocation`], parsed by serde's derive (the other entries, and the
/// binary's payload type underneath).
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "KinesisInvocation", expecting = "struct KinesisInvocation")]
pub(super) struct InvocationFields {
    #[serde(rename = "Records")]
    records: Records,
}

impl From<InvocationFields> for KinesisInvocation {
    fn from(fields: InvocationFields) -> Self {
        KinesisInvocation {
            records: fields.records,
            sweep: false,
        }
    }
}

impl<'de> Deserialize<'de> for KinesisInvocation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        KinesisInvocation::from_json(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Why a payload's text is not a Kinesis event, worded as `lambda_runtime` words the failure of
/// its own parse (through `serde_path_to_error`): `[path] path: error`, or `error` alone for an
/// error at the top level. Put inside the runtime's message, whose path is then the top level,
/// that gives the runtime's message of a failed parse of the same text.
#[derive(Debug, thiserror::Error)]
enum PayloadError {
    /// At the top level (the path is `.`).
    #[error("{0}")]
    TopLevel(#[source] serde_path_to_error::Error<serde_json::Error>),
    /// At a field, named by its path.
    #[error("[{path}] {0}", path = .0.path())]
    AtField(#[source] serde_path_to_error::Error<serde_json::Error>),
    /// The plain parse failed where the tracked parse of the same text did not (never: both
    /// read the same text).
    #[error("{0}")]
    Untracked(#[source] serde_json::Error),
}

impl KinesisInvocation {
    /// The event of the JSON text `text`, or why it is not one, as the runtime's own parse
    /// would say it ([`PayloadError`]).
    fn from_json(text: &str) -> Result<KinesisInvocation, PayloadError> {
        let plain = match serde_json::from_str::<InvocationFields>(text) {
            Ok(fields) => return Ok(fields.into()),
            Err(e) => e,
        };
        if let Ok(scheduled) = serde_json::from_str::<ScheduledFields<'_>>(text) {
            if scheduled.source == "aws.events" && scheduled.detail_type == "Scheduled Event" {
                return Ok(KinesisInvocation {
                    records: Records::default(),
                    sweep: true,
                });
            }
        }
        let tracked = &mut serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, InvocationFields>(tracked) {
            Err(e) if e.path().to_string() == "." => Err(PayloadError::TopLevel(e)),
            Err(e) => Err(PayloadError::AtField(e)),
            Ok(_) => Err(PayloadError::Untracked(plain)),
        }
    }
}

/// The event's records, and the shard named by the first one's `eventID` (`shard:sequence`).
#[derive(Debug, Default)]
pub(super) struct Records {
    pub(super) shard: Option<String>,
    pub(super) records: Vec<InvocationRecord>,
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
pub(super) struct InvocationRecord<Id = serde::de::IgnoredAny> {
    #[serde(rename = "eventSource", default)]
    pub(super) event_source: Option<EventSource>,
    #[serde(rename = "eventID", default)]
    event_id: Id,
    pub(super) kinesis: InvocationData,
}

#[derive(Debug, Deserialize)]
pub(super) struct InvocationData {
    #[serde(rename = "sequenceNumber")]
    pub(super) sequence_number: String,
    pub(super) data: Base64Data,
    /// When the record arrived in the stream: seconds since the epoch with milliseconds, as
    /// Lambda sends it (`approximateArrivalTimestamp`); the time as-of enrichment uses.
    #[serde(rename = "approximateArrivalTimestamp", default)]
    pub(super) arrival: Option<f64>,
}

/// A record's `eventSource`: only another source than Kinesis is kept (for the error).
#[derive(Debug)]
pub(super) enum EventSource {
    Kinesis,
    Other(String),
}

/// The shard of an `eventID` (`shardId-…:sequence`).
#[derive(Debug)]
struct EventId(String);

/// A record's data, decoded from base64 as it is parsed (the error kept for the handler).
#[derive(Debug)]
pub(super) struct Base64Data(pub(super) Result<Vec<u8>, base64::DecodeError>);

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
