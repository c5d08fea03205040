//! The change feed's wire format, shared by producers and consumers.
//!
//! Producers (the `change-handler` Lambda on a DynamoDB stream, the `s3-event-handler` Lambda on
//! S3 notifications) write **change files** to S3 under a feed prefix; any number of consumers
//! list the prefix and apply what they find. This crate knows only the format: no AWS SDK, no
//! producer or consumer logic. It depends on serde, serde_json, serde_dynamo (the DynamoDB
//! attribute form, one item type for stream events and SDK reads) and chrono (the key's UTC time).
//!
//! # The contract (`docs/design.md`, section 1)
//! - **Keys are ordered by write time** ([`ChangeKey`]): the producer reads the UTC time just
//!   before its PutObject; never the records' creation time.
//! - **Bounded write window W** ([`ChangeFile::write_window_ms`], default
//!   [`DEFAULT_WRITE_WINDOW_MS`]): a producer acknowledges its batch only if the PUT succeeded
//!   within `W - 5 s` of reading the key time, so a file never becomes visible later than W after
//!   its key time. Consumers list with a look-back of at least W plus a clock margin from their
//!   previous listing.
//! - **Per item, newest wins**: a retried invocation may write the same changes again under a
//!   later key. Consumers keep per item the last applied [`SequenceNumber`] (compared as numbers)
//!   and tombstones for removals.
//! - **Nothing is skipped**: stream records the producer cannot type are passed on as
//!   [`OpaqueRecord`]s; consumers re-read their keys, or reload fully when there are none.
//! - **A pointer object** ([`head_key`], content [`HeadPointer`]) is overwritten after every
//!   change file so idle consumers can poll it with a conditional GET.
//!
//! # Example
//! A change file as the change-handler writes it for the original walkthrough's update (burger:
//! medium to high) plus one record it could not type:
//! ```
//! use stream_refdata_protocol::{ChangeFile, ChangeKind, EventName};
//!
//! let json = include_str!("../tests/data/example-change-file.json");
//! let file = ChangeFile::from_slice(json.as_bytes()).unwrap();
//! assert_eq!(file.kind, ChangeKind::Dynamodb);
//! let change = &file.changes[0];
//! assert_eq!(change.event_name, EventName::Modify);
//! let new = change.new_image.as_ref().unwrap();
//! assert_eq!(new["priority"], serde_dynamo::AttributeValue::S("high".into()));
//! assert_eq!(file.opaque[0].typed_keys().unwrap().len(), 2);
//! ```
//! ```json
#![doc = include_str!("../tests/data/example-change-file.json")]
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod file;
mod flag;
mod key;
mod seq;
mod snapshot;

pub use file::{
    head_key, ChangeFile, ChangeKind, DecodeError, EventName, HeadPointer, OpaqueRecord, Source,
    StreamChange, UserIdentity, DEFAULT_WRITE_WINDOW_MS, SCHEMA_VERSION, WRITE_MARGIN_MS,
};
pub use flag::{compare_sequencers, ChangeFlag, ObjectChange, FLAG_MARKER};
pub use key::{
    format_key_time, parse_key_time, sanitize_unique_id, source_label, ChangeKey, KeyError,
    SequenceRange, EXTENSION, LABEL_WIDTH, TIME_WIDTH,
};
pub use seq::{SequenceError, SequenceNumber, SEQUENCE_WIDTH};
/// Re-exported so producers and consumers name the same item type.
pub use serde_dynamo::{AttributeValue, Item};
pub use snapshot::{
    snapshot_key, snapshot_pointer_key, snapshot_schema_readable, write_snapshot, EntryBody,
    EntryStamp, SnapshotEntry, SnapshotError, SnapshotHeader, SnapshotPointer, SnapshotReader,
    SnapshotWriter, DEFAULT_DAILY_SNAPSHOT_PREFIX, DEFAULT_SNAPSHOT_PREFIX, SNAPSHOT_KIND,
    SNAPSHOT_SCHEMA,
};
