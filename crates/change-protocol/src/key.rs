//! Change-file keys: ordered by the time the producer wrote them.
//!
//! ```text
//! <prefix><UTC write time, ms>-<source label>-<first seq>-<last seq>[-<unique id>].json   (DynamoDB kind)
//! <prefix><UTC write time, ms>-<source label>-<unique id>.json                            (S3 and gap kinds)
//! change_flags/20261125T234107.123Z-3f2a9c4d5e6f7081-0000…0042-0000…0057.json
//! ```
//!
//! Every part before the optional unique id has a fixed width, so the lexical order of keys (the
//! order ListObjectsV2 returns) is the order of their write times. The time is read by the
//! producer just before its PutObject, never taken from the records: a batch of old records
//! written late (a backlog, a retry) still sorts after everything written before it, so a
//! consumer's look-back listing cannot miss it.

use std::fmt;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::seq::{SequenceNumber, SEQUENCE_WIDTH};

/// The file name extension of change files.
pub const EXTENSION: &str = ".json";
/// Length of the time part, e.g. `20261125T234107.123Z`.
pub const TIME_WIDTH: usize = 20;
/// Length of the source label (hex digits of a 64-bit hash).
pub const LABEL_WIDTH: usize = 16;
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// A fixed-width label for a source (a stream ARN or a bucket name).
///
/// Stream ARNs hold `/` and `:` and vary in length, so keys carry a hash instead: 64-bit FNV-1a
/// in 16 lowercase hex digits. The function is fixed by this crate (unlike `std`'s hasher), so
/// every producer and consumer version computes the same label.
pub fn source_label(source: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = source
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016x}")
}

/// Formats a UTC time the way keys carry it: `20261125T234107.123Z` (always 20 characters
/// for years 1000 to 9999).
pub fn format_key_time(time: DateTime<Utc>) -> String {
    time.format(TIME_FORMAT).to_string()
}

/// Parses the time part of a key.
pub fn parse_key_time(s: &str) -> Option<DateTime<Utc>> {
    if s.len() != TIME_WIDTH || !s.ends_with('Z') {
        return None;
    }
    NaiveDateTime::parse_from_str(&s[..TIME_WIDTH - 1], "%Y%m%dT%H%M%S%.3f")
        .ok()
        .map(|t| Utc.from_utc_datetime(&t))
}

/// The first and last sequence numbers of a DynamoDB batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceRange {
    /// Sequence number of the first record in the batch.
    pub first: SequenceNumber,
    /// Sequence number of the last record in the batch.
    pub last: SequenceNumber,
}

/// The parts of a change-file key (without the prefix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeKey {
    /// When the producer wrote the file (read just before the PutObject), ms precision.
    pub time: DateTime<Utc>,
    /// [`source_label`] of the stream ARN or bucket.
    pub label: String,
    /// The batch's sequence numbers (DynamoDB kind only).
    pub sequences: Option<SequenceRange>,
    /// A unique id (request or message id) so two writers in one millisecond cannot collide;
    /// required when there are no sequence numbers. Only `[A-Za-z0-9_-]`.
    pub unique: Option<String>,
}

/// Why a key is not a change-file key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key that did not parse.
    pub key: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a change-file key: {}",
            self.key, self.reason
        )
    }
}

impl std::error::Error for KeyError {}

/// Makes a unique id safe for a key: keeps `[A-Za-z0-9_-]`, turns anything else into `_`.
pub fn sanitize_unique_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ChangeKey {
    /// The full object key under `prefix`.
    pub fn to_key(&self, prefix: &str) -> String {
        let mut key = format!("{prefix}{}-{}", format_key_time(self.time), self.label);
        if let Some(range) = &self.sequences {
            key.push('-');
            key.push_str(&range.first.padded());
            key.push('-');
            key.push_str(&range.last.padded());
        }
        if let Some(unique) = &self.unique {
            key.push('-');
            key.push_str(&sanitize_unique_id(unique));
        }
        key.push_str(EXTENSION);
        key
    }

    /// Parses a full object key listed under `prefix`. Keys that do not have the format (such
    /// as the legacy marker `change_flags/CHANGE_FLAG` or the `_head` pointer) are an error,
    /// which consumers count and skip.
    pub fn parse(prefix: &str, key: &str) -> Result<ChangeKey, KeyError> {
        let err = |reason| KeyError {
            key: key.to_owned(),
            reason,
        };
        let rest = key
            .strip_prefix(prefix)
            .ok_or_else(|| err("not under the prefix"))?;
        let rest = rest
            .strip_suffix(EXTENSION)
            .ok_or_else(|| err("does not end in .json"))?;
        if rest.len() < TIME_WIDTH + 1 + LABEL_WIDTH || !rest.is_char_boundary(TIME_WIDTH) {
            return Err(err("too short"));
        }
        let time = parse_key_time(&rest[..TIME_WIDTH]).ok_or_else(|| err("bad time"))?;
        let rest = rest[TIME_WIDTH..]
            .strip_prefix('-')
            .ok_or_else(|| err("no '-' after the time"))?;
        if !rest.is_char_boundary(LABEL_WIDTH) {
            return Err(err("bad source label"));
        }
        let (label, rest) = rest.split_at(LABEL_WIDTH);
        if !label
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("bad source label"));
        }
        let mut sequences = None;
        let mut unique = None;
        if !rest.is_empty() {
            let rest = rest
                .strip_prefix('-')
                .ok_or_else(|| err("no '-' after the label"))?;
            let seq_part = 2 * SEQUENCE_WIDTH + 1;
            let is_seqs = rest.len() >= seq_part
                && rest.as_bytes()[SEQUENCE_WIDTH] == b'-'
                && rest.as_bytes()[..seq_part]
                    .iter()
                    .enumerate()
                    .all(|(i, b)| i == SEQUENCE_WIDTH || b.is_ascii_digit());
            let tail = if is_seqs {
                let first = SequenceNumber::parse(&rest[..SEQUENCE_WIDTH])
                    .map_err(|_| err("bad first sequence number"))?;
                let last = SequenceNumber::parse(&rest[SEQUENCE_WIDTH + 1..seq_part])
                    .map_err(|_| err("bad last sequence number"))?;
                sequences = Some(SequenceRange { first, last });
                match rest[seq_part..].strip_prefix('-') {
                    Some(t) => t,
                    None if rest.len() == seq_part => "",
                    None => return Err(err("no '-' after the sequence numbers")),
                }
            } else {
                rest
            };
            if !tail.is_empty() {
                if sanitize_unique_id(tail) != tail {
                    return Err(err("bad unique id"));
                }
                unique = Some(tail.to_owned());
            }
        }
        if sequences.is_none() && unique.is_none() {
            return Err(err("neither sequence numbers nor a unique id"));
        }
        Ok(ChangeKey {
            time,
            label: label.to_owned(),
            sequences,
            unique,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn dynamo_key(ms: i64, first: &str, last: &str) -> ChangeKey {
        ChangeKey {
            time: at(ms),
            label: source_label("arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-11-25T00:00:00.000"),
            sequences: Some(SequenceRange {
                first: seq(first),
                last: seq(last),
            }),
            unique: None,
        }
    }

    #[test]
    fn key_has_the_documented_form() {
        let key = dynamo_key(1_795_650_067_123, "42", "57").to_key("change_flags/");
        assert_eq!(
            key,
            format!(
                "change_flags/20261125T234107.123Z-{}-{}-{}.json",
                source_label("arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-11-25T00:00:00.000"),
                seq("42").padded(),
                seq("57").padded()
            )
        );
    }

    #[test]
    fn label_is_fixed_width_hex_and_stable() {
        let label = source_label("arn:aws:dynamodb:eu-west-1:1:table/T/stream/x");
        assert_eq!(label.len(), LABEL_WIDTH);
        assert!(label.bytes().all(|b| b.is_ascii_hexdigit()));
        // FNV-1a test vectors: the label must never change between versions.
        assert_eq!(source_label(""), "cbf29ce484222325");
        assert_eq!(source_label("a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn later_write_with_older_records_sorts_later() {
        // A backlog batch holding old records (small sequence numbers) written after a batch of
        // newer records must still sort after it: key order is write order.
        let newer_records_written_first = dynamo_key(1_000, "900", "950").to_key("p/");
        let older_records_written_later = dynamo_key(1_001, "100", "150").to_key("p/");
        assert!(newer_records_written_first < older_records_written_later);
    }

    #[test]
    fn legacy_marker_and_head_pointer_are_not_keys() {
        assert!(ChangeKey::parse("change_flags/", "change_flags/CHANGE_FLAG").is_err());
        assert!(ChangeKey::parse("change_flags/", "change_flags/_head").is_err());
        assert!(ChangeKey::parse("change_flags/", "other/x.json").is_err());
    }

    #[test]
    fn parses_s3_kind_keys_with_uuid() {
        let key = ChangeKey {
            time: at(5),
            label: source_label("reference-bucket"),
            sequences: None,
            unique: Some("0b1c8e0e-51e8-4a5a-9d0c-3e2f6d5a7b8c".into()),
        };
        let text = key.to_key("feed/");
        assert_eq!(ChangeKey::parse("feed/", &text).unwrap(), key);
    }

    #[test]
    fn key_time_round_trips() {
        let t = at(1_795_650_067_123);
        assert_eq!(format_key_time(t), "20261125T234107.123Z");
        assert_eq!(parse_key_time("20261125T234107.123Z"), Some(t));
        assert_eq!(parse_key_time("20261125T234107Z"), None);
    }

    fn any_key() -> impl Strategy<Value = ChangeKey> {
        (
            0i64..253_402_300_799_000, // up to year 9999
            "[a-z:/0-9-]{0,40}",
            proptest::option::of((any::<u128>(), any::<u128>())),
            proptest::option::of("[A-Za-z0-9_-]{1,40}"),
        )
            .prop_filter("needs seqs or an id", |(_, _, s, u)| {
                s.is_some() || u.is_some()
            })
            .prop_map(|(ms, src, seqs, unique)| ChangeKey {
                time: at(ms),
                label: source_label(&src),
                sequences: seqs.map(|(a, b)| SequenceRange {
                    first: seq(&a.to_string()),
                    last: seq(&b.to_string()),
                }),
                unique,
            })
    }

    proptest! {
        #[test]
        fn keys_round_trip(key in any_key()) {
            let text = key.to_key("change_flags/");
            prop_assert_eq!(ChangeKey::parse("change_flags/", &text).unwrap(), key);
        }

        #[test]
        fn key_order_is_time_order(a in any_key(), b in any_key()) {
            let (ka, kb) = (a.to_key("p/"), b.to_key("p/"));
            if a.time < b.time {
                prop_assert!(ka < kb);
            }
        }

        #[test]
        fn time_part_is_fixed_width(ms in 0i64..253_402_300_799_000) {
            prop_assert_eq!(format_key_time(at(ms)).len(), TIME_WIDTH);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,160}") {
            let _ = ChangeKey::parse("", &s);
        }
    }
}
