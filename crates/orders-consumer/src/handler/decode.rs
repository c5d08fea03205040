//! Step 1, decode: the event's records (their data base64-decoded as the event was parsed) into
//! the batch's inputs, KPL aggregates de-aggregated into their user records, each classified.

use crate::orders::{classify, Record};
use crate::output::Input;
use kpl_deaggregation::{deaggregate, Deaggregated};

use super::event::{EventSource, KinesisInvocation, Records};
use super::HandlerError;

/// A decoded batch: where its output names come from, and its inputs in order.
pub(super) struct Batch {
    /// The shard of the first record's `eventID` (`unknown-shard` without one).
    pub(super) shard: String,
    /// The first Kinesis record's sequence number: the record reported for a retry.
    pub(super) first_sequence: String,
    /// Its inputs: user records, once KPL aggregates are de-aggregated.
    pub(super) inputs: Vec<Input>,
}

impl Batch {
    /// Its first user record's sub-sequence number, when that record is in a KPL aggregate.
    pub(super) fn first_sub_sequence(&self) -> Option<u64> {
        self.inputs.first().and_then(|i| i.sub_sequence)
    }

    /// The sequence numbers of its protocol change flags (where each took effect), those that
    /// do not parse included.
    pub(super) fn flags_at(&self) -> Vec<String> {
        self.inputs
            .iter()
            .filter(|i| matches!(i.record, Record::Flag(_) | Record::UnreadableFlag(_)))
            .map(|i| i.sequence_number.clone())
            .collect()
    }

    /// Its flags that do not parse: sequence number, sub-sequence number and why.
    pub(super) fn unreadable_flags(&self) -> Vec<(&str, Option<u64>, &str)> {
        self.inputs
            .iter()
            .filter_map(|i| match &i.record {
                Record::UnreadableFlag(why) => {
                    Some((i.sequence_number.as_str(), i.sub_sequence, why.as_str()))
                }
                _ => None,
            })
            .collect()
    }
}

/// Decodes `event` into its batch (`None` when it has no records), each record classified with
/// `legacy_flag_dish` as the original's flag dish. A record from another source, or whose data
/// is not base64, fails the invocation; a bad aggregate is an input of its own, dead-lettered.
pub(super) fn decode(
    event: KinesisInvocation,
    legacy_flag_dish: &str,
) -> Result<Option<Batch>, HandlerError> {
    let Records { shard, records } = event.records;
    if let Some(other) = records.iter().find_map(|r| match &r.event_source {
        Some(EventSource::Other(s)) => Some(s),
        _ => None,
    }) {
        return Err(HandlerError::OtherEventSource(other.clone()));
    }
    let Some(first) = records.first() else {
        return Ok(None);
    };
    let first_sequence = first.kinesis.sequence_number.clone();
    let shard = shard.unwrap_or_else(|| "unknown-shard".to_owned());
    let mut inputs: Vec<Input> = Vec::with_capacity(records.len());
    for (index, r) in records.into_iter().enumerate() {
        let data = r
            .kinesis
            .data
            .0
            .map_err(|source| HandlerError::InvalidData { index, source })?;
        // (seconds with milliseconds: rounded to the millisecond it names)
        #[allow(clippy::cast_possible_truncation)]
        let arrival_ms = (r.kinesis.arrival)
            .filter(|s| s.is_finite())
            .map(|s| (s * 1000.0).round() as i64);
        push_inputs(
            &mut inputs,
            data,
            r.kinesis.sequence_number,
            arrival_ms,
            legacy_flag_dish,
        );
    }
    Ok(Some(Batch {
        shard,
        first_sequence,
        inputs,
    }))
}

/// Appends the inputs of one Kinesis record (its `data`, its `sequence_number`, when it
/// arrived) to `inputs`:
/// the record itself, each user record of its KPL aggregate, or the whole record as invalid
/// when it is an aggregate that cannot be read.
fn push_inputs(
    inputs: &mut Vec<Input>,
    data: Vec<u8>,
    sequence_number: String,
    arrival_ms: Option<i64>,
    legacy_flag_dish: &str,
) {
    match deaggregate(&data) {
        Ok(Deaggregated::Plain) => inputs.push(Input {
            record: classify(&data, legacy_flag_dish),
            sequence_number,
            sub_sequence: None,
            reference_object: None,
            arrival_ms,
            as_of: None,
            data,
        }),
        // Each user record is one input, named by its record's sequence number and its
        // sub-sequence number; failures reported to the mapping still name the batch's
        // first Kinesis record, so an aggregate is retried whole.
        Ok(Deaggregated::Aggregated(users)) => inputs.extend(users.into_iter().map(|u| Input {
            record: classify(&u.data, legacy_flag_dish),
            sequence_number: sequence_number.clone(),
            sub_sequence: Some(u.sub_sequence_number),
            reference_object: None,
            arrival_ms,
            as_of: None,
            data: u.data,
        })),
        // Never skipped: the whole Kinesis record is dead-lettered with the reason.
        Err(e) => inputs.push(Input {
            record: Record::Invalid(e.to_string()),
            sequence_number,
            sub_sequence: None,
            reference_object: None,
            arrival_ms,
            as_of: None,
            data,
        }),
    }
}
