//! The change file: one JSON document per producer batch.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_dynamo::Item;
use serde_json::Value;

use crate::seq::SequenceNumber;

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The default write window W in milliseconds (`docs/design.md` section 1.1, "Bounded write
/// window W").
pub const DEFAULT_WRITE_WINDOW_MS: u64 = 20_000;

/// The part of W kept for clock lag: a producer acknowledges a batch only if its PUT succeeded
/// within `W - WRITE_MARGIN_MS` of reading the key time.
pub const WRITE_MARGIN_MS: u64 = 5_000;

/// What a change file describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Changes read from a DynamoDB stream.
    Dynamodb,
    /// Changes of objects in S3 that hold reference data.
    S3,
    /// A gap: changes were lost (a discarded batch); every consumer does a full reload.
    Gap,
}

/// Where the changes came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// [`crate::source_label`] of the stream ARN (DynamoDB) or bucket (S3); it is in the key too.
    pub label: String,
    /// Table name (DynamoDB kind), taken from the stream ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Stream ARN (DynamoDB kind). A new ARN for a known table means a new stream: a gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_arn: Option<String>,
    /// AWS region of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Bucket (S3 kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
}

/// The DynamoDB stream event name of a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventName {
    /// A new item.
    Insert,
    /// An item was updated.
    Modify,
    /// An item was deleted.
    Remove,
}

impl EventName {
    /// Parses the stream's `eventName`; anything but the three documented names is `None`.
    pub fn parse(s: &str) -> Option<EventName> {
        match s {
            "INSERT" => Some(EventName::Insert),
            "MODIFY" => Some(EventName::Modify),
            "REMOVE" => Some(EventName::Remove),
            _ => None,
        }
    }
}

/// Who made a change, when the stream says (TTL deletions are made by the DynamoDB service).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserIdentity {
    /// `Service` for TTL deletions.
    #[serde(rename = "type")]
    pub kind: String,
    /// `dynamodb.amazonaws.com` for TTL deletions.
    pub principal_id: String,
}

/// One DynamoDB stream record, as a consumer needs it to apply the change without a read.
///
/// Keys and images stay in DynamoDB's typed attribute form (`{"N": "100"}`), so numbers, sets,
/// binary and maps survive exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamChange {
    /// Position of the record in the producer's invocation batch (0-based).
    pub index: usize,
    /// The stream record's `eventID`.
    pub event_id: String,
    /// INSERT, MODIFY or REMOVE.
    pub event_name: EventName,
    /// The stream sequence number; per item, a larger one is a newer change.
    pub sequence_number: SequenceNumber,
    /// `ApproximateCreationDateTime` in milliseconds since the epoch.
    pub approximate_creation_ms: i64,
    /// The stream's view type (`KEYS_ONLY`, `NEW_IMAGE`, `OLD_IMAGE`, `NEW_AND_OLD_IMAGES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_view_type: Option<String>,
    /// The item's primary key.
    pub keys: Item,
    /// The item after the change (NEW_IMAGE / NEW_AND_OLD_IMAGES, not on REMOVE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_image: Option<Item>,
    /// The item before the change (OLD_IMAGE / NEW_AND_OLD_IMAGES, not on INSERT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_image: Option<Item>,
    /// Set for changes made by a service, such as TTL deletions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<UserIdentity>,
}

/// A stream record the producer could not type (unknown attribute type or event name, missing
/// sequence number, …). A retry would not fix it, so it is passed on rather than blocking the
/// shard: consumers re-read `keys`, or do a full reload when there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpaqueRecord {
    /// Position of the record in the producer's invocation batch (0-based).
    pub index: usize,
    /// What was wrong, for logs and alarms.
    pub reason: String,
    /// The record's sequence number as written, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    /// The record's `dynamodb.Keys`, raw, if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Value>,
    /// The whole record as received.
    pub raw: Value,
}

impl OpaqueRecord {
    /// The keys as a typed item, when they are present and parse.
    pub fn typed_keys(&self) -> Option<Item> {
        self.keys
            .as_ref()
            .and_then(|k| serde_json::from_value::<Item>(k.clone()).ok())
            .filter(|item| !item.is_empty())
    }
}

/// A change file: what one producer batch wrote to the feed.
///
/// See the crate docs for an example document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeFile {
    /// [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// What the file describes.
    pub kind: ChangeKind,
    /// The key's time part (when the producer started the write), for humans and checks.
    pub written_at: String,
    /// The producer's write window W in ms: the file was acknowledged only if it became visible
    /// within W of `written_at`. Consumers look back at least the largest W they have seen.
    pub write_window_ms: u64,
    /// Producer name and version, e.g. `change-handler 0.1.0`.
    pub producer: String,
    /// Where the changes came from.
    pub source: Source,
    /// DynamoDB changes in stream order.
    #[serde(default)]
    pub changes: Vec<StreamChange>,
    /// Records the producer could not type, in stream order.
    #[serde(default)]
    pub opaque: Vec<OpaqueRecord>,
    /// S3 object changes (S3 kind), in notification order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<crate::ObjectChange>,
    /// Why the file was written, for `gap` files (e.g. which discarded batch it announces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why bytes are not a change file this crate can apply.
#[derive(Debug)]
pub enum DecodeError {
    /// Not JSON, or not the shape of a change file.
    Malformed(serde_json::Error),
    /// A schema version this crate does not know; the consumer does a full reload.
    UnsupportedVersion(u64),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(e) => write!(f, "malformed change file: {e}"),
            DecodeError::UnsupportedVersion(v) => write!(
                f,
                "change file has schema version {v}, this reader knows {SCHEMA_VERSION}"
            ),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Malformed(e) => Some(e),
            DecodeError::UnsupportedVersion(_) => None,
        }
    }
}

impl ChangeFile {
    /// Decodes a change file, checking the schema version first so that a newer format is
    /// reported as such rather than as malformed.
    pub fn from_slice(bytes: &[u8]) -> Result<ChangeFile, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u64,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if version.schema_version != u64::from(SCHEMA_VERSION) {
            return Err(DecodeError::UnsupportedVersion(version.schema_version));
        }
        serde_json::from_slice(bytes).map_err(DecodeError::Malformed)
    }

    /// Encodes the file as JSON.
    pub fn to_vec(&self) -> Vec<u8> {
        // A struct of strings, numbers and maps with string keys always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The pointer object `<prefix>_head`, overwritten after each change file so that consumers can
/// poll one cheap conditional GET instead of listing. Its content names the newest file, so every
/// write changes its ETag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadPointer {
    /// Full key of the change file just written.
    pub latest: String,
    /// Its write time, as in the key.
    pub written_at: String,
}

/// Name of the pointer object under a feed prefix.
pub fn head_key(prefix: &str) -> String {
    format!("{prefix}_head")
}
