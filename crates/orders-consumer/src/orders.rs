//! Order records and what a stream record can be. Pure.

use serde::{Deserialize, Serialize};
use stream_refdata::Classified;
use stream_refdata_protocol::{ChangeFlag, FLAG_MARKER};

/// An order as the original's data generator writes it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The dish, joined with the reference table's `item`.
    pub dish: String,
    /// The order's cost (a decimal in the original's catalog; kept as the JSON number it was).
    pub cost: serde_json::Number,
    /// The customer (absent in the original generator's template).
    #[serde(default)]
    pub customer_id: Option<i64>,
}

/// A reference item of `ProductPriority`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub(crate) struct Product {
    /// Hash key.
    pub(crate) item: String,
    /// Range key.
    pub(crate) price: serde_json::Number,
    /// What the walkthrough changes.
    pub(crate) priority: String,
}

/// A row of the optional second reference kept as objects in S3 (columns as they are: CSV
/// values are strings, JSON Lines values keep their JSON types).
pub(crate) type ReferenceRow = std::collections::BTreeMap<String, serde_json::Value>;

/// What a stream record is.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// An order.
    Order(Order),
    /// A protocol change flag (from the s3-event-handler).
    Flag(ChangeFlag),
    /// The original design's flag record (`dish == LEGACY_FLAG_DISH`).
    LegacyFlag,
    /// A record with the protocol flag's marker field that does not parse as a flag (a newer
    /// version, or damaged): why. Its barrier is kept as well as can be: it is a flag that names
    /// nothing, so every reference polls the feed at its position (the s3-event-handler writes
    /// the change file before the flags). Reported as a flag problem, never as an order.
    UnreadableFlag(String),
    /// Not an order: why.
    Invalid(String),
    /// An order a reference was too stale for (past the staleness limit and not refreshed):
    /// dead-lettered with that reason and counted as too stale, not as invalid.
    TooStale(String),
    /// An order whose reference as of its time cannot be answered (`ENRICH_AS_OF=arrival`: a
    /// window that refuses, an item changed without saying to what, a time before the feed's
    /// history, no arrival time): dead-lettered with why, counted as not answered.
    NotAnswered(String),
}

impl Record {
    /// What the record is to a reference's batch: an order is looked up by its dish, a protocol
    /// flag refreshes the reference at its position, and the original design's flag is what
    /// `legacy_flag` says it is to that reference.
    pub(crate) fn classified(
        &self,
        legacy_flag: impl FnOnce() -> Classified<String>,
    ) -> Classified<String> {
        match self {
            Record::Order(o) => Classified::Data(o.dish.clone()),
            Record::Flag(f) => Classified::ChangeFlag(f.clone()),
            Record::LegacyFlag => legacy_flag(),
            Record::UnreadableFlag(_) => Classified::Flag,
            Record::Invalid(reason) | Record::TooStale(reason) | Record::NotAnswered(reason) => {
                Classified::Invalid(reason.clone())
            }
        }
    }
}

/// Classifies a record's data. `legacy_flag_dish` is the original's flag dish (`CHANGE_FLAG`).
pub fn classify(data: &[u8], legacy_flag_dish: &str) -> Record {
    // `ChangeFlag::parse` is `None` without the marker; most records are orders, and looking
    // for the marker's first byte first is cheaper than its comparison at every offset.
    let mut flag_error = None;
    if contains(data, FLAG_MARKER.as_bytes()) {
        match serde_json::from_slice::<ChangeFlag>(data) {
            Ok(flag) => return Record::Flag(flag),
            // The marker as a field of the record (not inside an order's text): a flag.
            Err(e) if has_marker_field(data) => {
                return Record::UnreadableFlag(format!("change flag that does not parse: {e}"))
            }
            Err(e) => flag_error = Some(e),
        }
    }
    let order: Order = match serde_json::from_slice(data) {
        Ok(o) => o,
        // With the marker as a field name and neither a flag nor an order (truncated,
        // damaged): a flag that cannot be read keeps its barrier; an order never has that
        // field. (An order that only mentions the marker in a value stays an invalid order.)
        Err(e) if flag_error.is_some() && marker_as_field_name(data) => {
            let flag = flag_error.map(|e| e.to_string()).unwrap_or_default();
            return Record::UnreadableFlag(format!(
                "change flag that does not parse: {flag} (as an order: {e})"
            ));
        }
        Err(e) => return Record::Invalid(format!("not an order: {e}")),
    };
    if order.dish == legacy_flag_dish {
        return Record::LegacyFlag;
    }
    if order.dish.is_empty() {
        return Record::Invalid("not an order: empty dish".into());
    }
    Record::Order(order)
}

/// Whether the flag's marker occurs in `data` as a field name (`"stream_refdata_flag"` then a
/// colon), even in text that is not JSON as a whole.
fn marker_as_field_name(data: &[u8]) -> bool {
    let quoted = format!("\"{FLAG_MARKER}\"");
    let quoted = quoted.as_bytes();
    data.windows(quoted.len())
        .enumerate()
        .filter(|(_, w)| *w == quoted)
        .any(|(at, _)| {
            data[at + quoted.len()..]
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| *b == b':')
        })
}

/// Whether `data` is a JSON object with the flag's marker as one of its fields.
fn has_marker_field(data: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data)
        .is_ok_and(|m| m.contains_key(FLAG_MARKER))
}

/// Whether `needle` (not empty) occurs in `haystack`: a full comparison only where its first
/// byte is.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let last_start = match haystack.len().checked_sub(needle.len()) {
        Some(n) => n,
        None => return false,
    };
    haystack[..=last_start]
        .iter()
        .enumerate()
        .any(|(i, &b)| b == first && haystack[i + 1..].starts_with(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_wherever_it_is() {
        let marker = FLAG_MARKER.as_bytes();
        for (hay, found) in [
            (marker.to_vec(), true),
            ([b"x".as_slice(), marker].concat(), true),
            ([marker, b"x".as_slice()].concat(), true),
            ([b"ss".as_slice(), marker, b"s".as_slice()].concat(), true),
            (marker[..marker.len() - 1].to_vec(), false),
            (marker[1..].to_vec(), false),
            (b"".to_vec(), false),
            (br#"{"dish":"salad","cost":1}"#.to_vec(), false),
        ] {
            assert_eq!(
                contains(&hay, marker),
                found,
                "{:?}",
                String::from_utf8_lossy(&hay)
            );
            let slow = hay.windows(marker.len()).any(|w| w == marker);
            assert_eq!(slow, found);
        }
        assert!(contains(b"abc", b""));
    }

    #[test]
    fn orders_flags_and_bad_records() {
        let o = classify(
            br#"{"dish":"burger","cost":12.5,"customer_id":7}"#,
            "CHANGE_FLAG",
        );
        let Record::Order(o) = o else { panic!("{o:?}") };
        assert_eq!(
            (o.dish.as_str(), o.cost.to_string().as_str(), o.customer_id),
            ("burger", "12.5", Some(7))
        );
        assert!(matches!(
            classify(br#"{"dish":"pizza","cost":10}"#, "CHANGE_FLAG"),
            Record::Order(_)
        ));
        assert_eq!(
            classify(
                br#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#,
                "CHANGE_FLAG"
            ),
            Record::LegacyFlag
        );
        for (bad, says) in [
            (&b"not json"[..], "expected"),
            (br#"{"cost":12}"#, "missing field `dish`"),
            (br#"{"dish":"burger","cost":"12"}"#, "invalid type"),
            (br#"{"dish":"","cost":1}"#, "empty dish"),
            (
                br#"{"dish":"burger","cost":1,"extra":true}"#,
                "unknown field",
            ),
        ] {
            let Record::Invalid(reason) = classify(bad, "CHANGE_FLAG") else {
                panic!()
            };
            assert!(reason.contains(says), "{reason}");
        }
    }

    #[test]
    fn only_the_marker_as_a_field_name_makes_a_damaged_record_a_flag() {
        // an invalid order that mentions the marker in a value stays an invalid order, with its
        // own error
        let Record::Invalid(reason) = classify(
            br#"{"dish":"stream_refdata_flag","cost":"12"}"#,
            "CHANGE_FLAG",
        ) else {
            panic!()
        };
        assert!(reason.starts_with("not an order"), "{reason}");
        // a flag cut short is a flag that does not parse, with both errors
        let Record::UnreadableFlag(reason) = classify(
            br#"{"stream_refdata_flag" : 1,"change":{"bucket":"ref-"#,
            "CHANGE_FLAG",
        ) else {
            panic!()
        };
        assert!(reason.contains("as an order"), "{reason}");
    }
}
