//! S3 object changes: the entries of S3-kind change files and the in-stream change flag.

use serde::{Deserialize, Serialize};

/// The marker field that makes a flag record impossible to mistake for a data record.
pub const FLAG_MARKER: &str = "stream_refdata_flag";

/// A change of one reference object in S3: "object K changed; GET its current version".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    /// The bucket.
    pub bucket: String,
    /// The object key, decoded (spaces and non-ASCII as they are).
    pub key: String,
    /// The S3 event name, e.g. `ObjectCreated:Put`, `ObjectRemoved:Delete`,
    /// `LifecycleExpiration:Delete`.
    pub event_name: String,
    /// Whether the object is gone (a removal or a lifecycle expiration).
    pub removed: bool,
    /// The notification's `eventTime` (RFC 3339).
    pub event_time: String,
    /// Version id, on versioned buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// ETag of the new object (created events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// S3's per-key sequencer (hex): for de-duplication and metrics only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

/// A change flag put into the data stream, on every open shard, when a reference object
/// changes. Consumers reload that object (if they have not yet) before the records after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFlag {
    /// Always 1 for this version; its presence marks the record as a flag.
    #[serde(rename = "stream_refdata_flag")]
    pub flag_version: u32,
    /// The object change.
    pub change: ObjectChange,
    /// Key of the change file that records the same change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_file: Option<String>,
}

impl ChangeFlag {
    /// A version-1 flag for `change`.
    pub fn new(change: ObjectChange, change_file: Option<String>) -> ChangeFlag {
        ChangeFlag {
            flag_version: 1,
            change,
            change_file,
        }
    }

    /// The record's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stream record as a flag. `None` for anything else, cheaply: records that do not
    /// contain the marker are not parsed.
    pub fn parse(bytes: &[u8]) -> Option<ChangeFlag> {
        let marker = FLAG_MARKER.as_bytes();
        if !bytes.windows(marker.len()).any(|w| w == marker) {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }
}

/// Compares two S3 sequencers of the same key: right-pad the shorter with zeros, then compare
/// (as the S3 documentation says). Larger means later. Only for de-duplication and metrics.
pub fn compare_sequencers(a: &str, b: &str) -> std::cmp::Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    fn change() -> ObjectChange {
        ObjectChange {
            bucket: "reference".into(),
            key: "products/menu 2026 é.csv".into(),
            event_name: "ObjectCreated:Put".into(),
            removed: false,
            event_time: "2026-11-26T01:00:00.000Z".into(),
            version_id: Some("v1".into()),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            sequencer: Some("0055AED6DCD90281E5".into()),
        }
    }

    #[test]
    fn flags_round_trip_and_are_recognised() {
        let flag = ChangeFlag::new(change(), Some("change_flags/x.json".into()));
        let bytes = flag.to_vec();
        assert!(String::from_utf8_lossy(&bytes).starts_with("{\"stream_refdata_flag\":1"));
        assert_eq!(ChangeFlag::parse(&bytes), Some(flag));
    }

    #[test]
    fn data_records_are_not_flags() {
        for record in [
            &br#"{"dish":"burger","cost":12,"customer_id":7}"#[..],
            br#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#,
            br#"{"stream_refdata_flag": "yes"}"#,
            b"not json at all",
            b"",
        ] {
            assert_eq!(ChangeFlag::parse(record), None);
        }
    }

    #[test]
    fn sequencers_compare_after_right_padding() {
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        // Right-padding: a shorter sequencer is compared as if followed by zeros.
        assert_eq!(
            compare_sequencers("0056", "0055AED6DCD90281E5"),
            Ordering::Greater
        );
        assert_eq!(compare_sequencers("0055AE", "0055AE00"), Ordering::Equal);
        assert_eq!(compare_sequencers("00ab", "00AB"), Ordering::Equal);
    }
}
