//! Feed snapshots (`docs/design.md`, feed snapshots): a compacted copy of a table as a follower
//! of the feed holds it, so a new consumer starts from one S3 object instead of a Scan.
//!
//! A snapshot is JSON Lines (compressed by its writer; this crate knows only the lines): one
//! [`SnapshotHeader`], then one [`SnapshotEntry`] per item or tombstone. A small pointer
//! ([`SnapshotPointer`], at [`snapshot_pointer_key`]) names the latest snapshot of a table. The
//! header carries everything a consumer needs to apply exactly the rules it would after its own
//! Scan: the table and its stream, the feed position L to follow from, the end R of the Scan the
//! snapshot descends from, and per item the applied sequence number and how current the value is.

use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::key::format_key_time;
use crate::{Item, SequenceNumber};

/// The snapshot format this crate writes: 2, where an item's entry carries no separate copy of
/// its key attributes (they are among the item's own) and only a tombstone's entry carries them.
/// Schema 1 (every entry with its keys) is still read ([`snapshot_schema_readable`]); a consumer
/// refuses any other.
pub const SNAPSHOT_SCHEMA: u32 = 2;

/// Whether this version reads snapshots of `schema`: the current [`SNAPSHOT_SCHEMA`] and schema 1,
/// the format of compactors before it.
pub fn snapshot_schema_readable(schema: u32) -> bool {
    schema == 1 || schema == SNAPSHOT_SCHEMA
}

/// The `kind` of a snapshot header and pointer.
pub const SNAPSHOT_KIND: &str = "feed-snapshot";

/// The default prefix of snapshots in the feed bucket: beside the feed prefix, not under it, so
/// the feed's listings never return them and the change files' expiry rule never touches them.
pub const DEFAULT_SNAPSHOT_PREFIX: &str = "feed-snapshots/";

/// Where the feed-compactor keeps the first snapshot of each UTC day as well, by default: beside
/// the others (not under their prefix), so a lifecycle rule of its own keeps them longer, and
/// as-of answers reach as far back as they are kept.
pub const DEFAULT_DAILY_SNAPSHOT_PREFIX: &str = "feed-snapshots-daily/";

/// The first line of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Always [`SNAPSHOT_KIND`].
    pub kind: String,
    /// [`SNAPSHOT_SCHEMA`] when written by this version.
    pub schema: u32,
    /// The table.
    pub table: String,
    /// The table's key attributes, in the order the follower keys items by.
    pub key_attributes: Vec<String>,
    /// The table's stream the data follows (its DescribeTable `LatestStreamArn` at the Scan).
    pub stream_arn: Option<String>,
    /// L: the feed position (ms since the epoch, the follower's clock) of the last complete
    /// listing whose files the snapshot includes. A consumer follows the feed from here.
    pub position_ms: i64,
    /// R: when the last page of the Scan the snapshot descends from returned (ms). Changes
    /// stamped before R plus the clock margin are applied by a consistent re-read.
    pub full_load_end_ms: Option<i64>,
    /// When that Scan began (ms, the follower's clock; absent from snapshots written before it
    /// was recorded): with R, the interval its reads ran in, which as-of answers place changes
    /// against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_load_start_ms: Option<i64>,
    /// The largest write window W the follower had seen (ms).
    pub write_window_ms: u64,
    /// The clock margin the follower took L, R and its read stamps with (ms): they are on its
    /// clock, so a consumer uses the larger of this and its own margin with them.
    #[serde(default)]
    pub clock_margin_ms: u64,
    /// When the snapshot was written (ms).
    pub created_ms: i64,
    /// Entries with an item.
    pub items: u64,
    /// Entries without an item (removed items whose sequence number is still needed).
    pub tombstones: u64,
}

/// How current an entry's value is: the follower's per-item stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStamp {
    /// Applied from the image of a change created at this time (ms).
    Change {
        /// The change's approximate creation time (ms).
        created_ms: i64,
    },
    /// Read from the table by a consistent read between these times (ms).
    Read {
        /// The first request was sent.
        from_ms: i64,
        /// The last answer came.
        to_ms: i64,
    },
}

/// One item, or one tombstone, of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotEntry {
    /// The last sequence number applied to it (none when it was read but never changed).
    pub seq: Option<SequenceNumber>,
    /// How current the value is; `None` for an item as the Scan of R read it, with no change
    /// applied since (the follower keeps no state for those: R decides).
    pub stamp: Option<EntryStamp>,
    /// The item, or the key attributes of a removed one.
    pub body: EntryBody,
}

/// What an entry holds.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryBody {
    /// An item, in DynamoDB JSON; its key attributes are among its attributes.
    Item(Item),
    /// A tombstone: the key attributes of a removed item whose sequence number is still needed.
    Tombstone(Item),
}

impl SnapshotEntry {
    /// The entry's key attributes: the item itself (it holds them among its other attributes),
    /// or the tombstone's keys.
    pub fn keys(&self) -> &Item {
        match &self.body {
            EntryBody::Item(item) | EntryBody::Tombstone(item) => item,
        }
    }

    /// The item; `None` for a tombstone.
    pub fn item(&self) -> Option<&Item> {
        match &self.body {
            EntryBody::Item(item) => Some(item),
            EntryBody::Tombstone(_) => None,
        }
    }
}

/// An entry line as both schemas write it: schema 1 always with `keys`, schema 2 with `keys`
/// only for a tombstone (an entry without `item`).
#[derive(Deserialize)]
struct EntryLine {
    #[serde(default)]
    keys: Option<Item>,
    #[serde(default)]
    seq: Option<SequenceNumber>,
    #[serde(default)]
    stamp: Option<EntryStamp>,
    #[serde(default)]
    item: Option<Item>,
}

impl EntryLine {
    fn into_entry(self, schema: u32) -> Result<SnapshotEntry, &'static str> {
        let body = match (schema, self.keys, self.item) {
            // Schema 1 repeats an item's keys beside it; they must be the item's own (the old
            // writer took both from the item), or the line is refused.
            (1, Some(keys), Some(item)) => {
                if keys.is_empty() || keys.iter().any(|(name, v)| item.get(name) != Some(v)) {
                    return Err("an item entry whose keys are not the item's");
                }
                EntryBody::Item(item)
            }
            (1, None, _) => return Err("an entry without keys"),
            (_, None, Some(item)) => EntryBody::Item(item),
            (_, Some(_), Some(_)) => return Err("an item entry with separate keys"),
            (_, Some(keys), None) => EntryBody::Tombstone(keys),
            (_, None, None) => return Err("an entry with neither an item nor keys"),
        };
        Ok(SnapshotEntry {
            seq: self.seq,
            stamp: self.stamp,
            body,
        })
    }
}

/// The pointer to the latest snapshot of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPointer {
    /// Always [`SNAPSHOT_KIND`].
    pub kind: String,
    /// The snapshot's schema.
    pub schema: u32,
    /// The snapshot object's key.
    pub key: String,
    /// The table.
    pub table: String,
    /// The stream the snapshot follows.
    pub stream_arn: Option<String>,
    /// Its L (ms).
    pub position_ms: i64,
    /// When it was written (ms).
    pub created_ms: i64,
    /// Its entries with an item.
    pub items: u64,
}

/// Why snapshot lines cannot be read.
#[derive(Debug)]
pub enum SnapshotError {
    /// Reading failed (for a compressed snapshot, also a damaged compressed stream).
    Io(std::io::Error),
    /// Line `line` (1-based) is not the JSON the format says.
    Line {
        /// The line number.
        line: usize,
        /// Why it does not parse.
        error: serde_json::Error,
    },
    /// Line `line` (1-based) parses but is not a valid entry (keys and item do not agree).
    Entry {
        /// The line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The snapshot is empty (no header).
    Empty,
    /// The header says another kind or schema.
    Schema {
        /// The header's kind.
        kind: String,
        /// The header's schema.
        schema: u32,
    },
    /// Fewer or more entries than the header counts (a truncated or padded object).
    Count {
        /// Items and tombstones the header counts.
        expected: u64,
        /// Entries read.
        found: u64,
    },
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io(e) => Some(e),
            SnapshotError::Line { error, .. } => Some(error),
            SnapshotError::Entry { .. }
            | SnapshotError::Empty
            | SnapshotError::Schema { .. }
            | SnapshotError::Count { .. } => None,
        }
    }
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::Io(e) => write!(f, "snapshot unreadable: {e}"),
            SnapshotError::Line { line, error } => {
                write!(f, "snapshot line {line} is not valid: {error}")
            }
            SnapshotError::Entry { line, reason } => {
                write!(f, "snapshot line {line} is not valid: {reason}")
            }
            SnapshotError::Empty => write!(f, "snapshot is empty (no header line)"),
            SnapshotError::Schema { kind, schema } => write!(
                f,
                "snapshot is {kind:?} schema {schema}; this version reads {SNAPSHOT_KIND:?} schemas 1 and {SNAPSHOT_SCHEMA}"
            ),
            SnapshotError::Count { expected, found } => write!(
                f,
                "snapshot holds {found} entries, its header counts {expected} (truncated?)"
            ),
        }
    }
}

impl SnapshotPointer {
    /// The pointer to the snapshot at `key` with this `header`.
    pub fn to(key: impl Into<String>, header: &SnapshotHeader) -> SnapshotPointer {
        SnapshotPointer {
            kind: header.kind.clone(),
            schema: header.schema,
            key: key.into(),
            table: header.table.clone(),
            stream_arn: header.stream_arn.clone(),
            position_ms: header.position_ms,
            created_ms: header.created_ms,
            items: header.items,
        }
    }
}

impl SnapshotHeader {
    /// Whether this version can read the snapshot.
    pub fn check_schema(&self) -> Result<(), SnapshotError> {
        if self.kind == SNAPSHOT_KIND && snapshot_schema_readable(self.schema) {
            Ok(())
        } else {
            Err(SnapshotError::Schema {
                kind: self.kind.clone(),
                schema: self.schema,
            })
        }
    }
}

/// The key of a table's snapshot written at `time`:
/// `<prefix><table>/<UTC time, fixed width>.jsonl.gz` (keys sort by time).
pub fn snapshot_key(prefix: &str, table: &str, time: DateTime<Utc>) -> String {
    format!("{prefix}{table}/{}.jsonl.gz", format_key_time(time))
}

/// The key of a table's pointer to its latest snapshot: `<prefix><table>/latest.json`.
pub fn snapshot_pointer_key(prefix: &str, table: &str) -> String {
    format!("{prefix}{table}/latest.json")
}

/// Writes a snapshot's lines one entry at a time (entries are borrowed, never collected): the
/// header first, then [`push_item`](Self::push_item) or [`push_tombstone`](Self::push_tombstone)
/// per entry, then [`finish`](Self::finish), which checks the header's counts (the reader checks
/// them too, so a truncated object is never taken for a small table). Always writes the current
/// [`SNAPSHOT_SCHEMA`].
pub struct SnapshotWriter<W> {
    out: W,
    key_attributes: Vec<String>,
    expected: u64,
    written: u64,
}

impl<W> std::fmt::Debug for SnapshotWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("expected", &self.expected)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EntryRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<&'a Item>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<&'a SequenceNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stamp: Option<EntryStamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a Item>,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the header; an error if it names another kind or schema than this writer's.
    pub fn new(mut out: W, header: &SnapshotHeader) -> std::io::Result<Self> {
        if header.kind != SNAPSHOT_KIND || header.schema != SNAPSHOT_SCHEMA {
            return Err(std::io::Error::other(format!(
                "this writer writes {SNAPSHOT_KIND:?} schema {SNAPSHOT_SCHEMA}, the header says {:?} schema {}",
                header.kind, header.schema
            )));
        }
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(SnapshotWriter {
            out,
            key_attributes: header.key_attributes.clone(),
            expected: header.items + header.tombstones,
            written: 0,
        })
    }

    /// Writes an item's entry; an error if the item lacks one of the header's key attributes
    /// (its keys are read from the item).
    pub fn push_item(
        &mut self,
        item: &Item,
        seq: Option<&SequenceNumber>,
        stamp: Option<EntryStamp>,
    ) -> std::io::Result<()> {
        if let Some(missing) = self.key_attributes.iter().find(|k| !item.contains_key(*k)) {
            return Err(std::io::Error::other(format!(
                "a snapshot item without its key attribute {missing:?}"
            )));
        }
        self.line(&EntryRef {
            keys: None,
            seq,
            stamp,
            item: Some(item),
        })
    }

    /// Writes a tombstone's entry: the removed item's key attributes.
    pub fn push_tombstone(
        &mut self,
        keys: &Item,
        seq: Option<&SequenceNumber>,
        stamp: Option<EntryStamp>,
    ) -> std::io::Result<()> {
        self.line(&EntryRef {
            keys: Some(keys),
            seq,
            stamp,
            item: None,
        })
    }

    /// Writes one entry.
    pub fn push(&mut self, entry: &SnapshotEntry) -> std::io::Result<()> {
        match &entry.body {
            EntryBody::Item(item) => self.push_item(item, entry.seq.as_ref(), entry.stamp),
            EntryBody::Tombstone(keys) => {
                self.push_tombstone(keys, entry.seq.as_ref(), entry.stamp)
            }
        }
    }

    fn line(&mut self, entry: &EntryRef<'_>) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, entry)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Flushes and returns the output; an error if the entries do not match the header's counts.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.written != self.expected {
            return Err(std::io::Error::other(format!(
                "{} snapshot entries written, the header counts {}",
                self.written, self.expected
            )));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a whole snapshot (a convenience over [`SnapshotWriter`]).
pub fn write_snapshot<'a, W: Write>(
    out: W,
    header: &SnapshotHeader,
    entries: impl IntoIterator<Item = &'a SnapshotEntry>,
) -> std::io::Result<W> {
    let mut w = SnapshotWriter::new(out, header)?;
    for e in entries {
        w.push(e)?;
    }
    w.finish()
}

/// Reads a snapshot's lines one at a time (nothing but the current line is held): the header
/// first, then the entries, each checked; the end checks the header's counts.
pub struct SnapshotReader<R> {
    input: R,
    line: String,
    number: usize,
    header: SnapshotHeader,
    read: u64,
}

impl<R> std::fmt::Debug for SnapshotReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("header", &self.header)
            .field("line", &self.number)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R: BufRead> SnapshotReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, SnapshotError> {
        let mut line = String::new();
        if input.read_line(&mut line).map_err(SnapshotError::Io)? == 0 {
            return Err(SnapshotError::Empty);
        }
        let header: SnapshotHeader = serde_json::from_str(line.trim_end())
            .map_err(|error| SnapshotError::Line { line: 1, error })?;
        header.check_schema()?;
        Ok(SnapshotReader {
            input,
            line,
            number: 1,
            header,
            read: 0,
        })
    }

    /// The header.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// The next entry; `None` at the end (after checking the header's counts).
    pub fn next_entry(&mut self) -> Result<Option<SnapshotEntry>, SnapshotError> {
        self.line.clear();
        if self
            .input
            .read_line(&mut self.line)
            .map_err(SnapshotError::Io)?
            == 0
        {
            let expected = self.header.items + self.header.tombstones;
            if self.read != expected {
                return Err(SnapshotError::Count {
                    expected,
                    found: self.read,
                });
            }
            return Ok(None);
        }
        self.number += 1;
        let line = self.number;
        let entry = serde_json::from_str::<EntryLine>(self.line.trim_end())
            .map_err(|error| SnapshotError::Line { line, error })?
            .into_entry(self.header.schema)
            .map_err(|reason| SnapshotError::Entry { line, reason })?;
        self.read += 1;
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_dynamo::AttributeValue;

    fn header(items: u64, tombstones: u64) -> SnapshotHeader {
        SnapshotHeader {
            kind: SNAPSHOT_KIND.into(),
            schema: SNAPSHOT_SCHEMA,
            table: "ProductPriority".into(),
            key_attributes: vec!["item".into()],
            stream_arn: Some(
                "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2026-12-01T00:00:00.000".into(),
            ),
            position_ms: 1_000,
            full_load_end_ms: Some(900),
            full_load_start_ms: Some(800),
            write_window_ms: 20_000,
            clock_margin_ms: 5_000,
            created_ms: 1_100,
            items,
            tombstones,
        }
    }

    fn keys(item: &str) -> Item {
        let map: std::collections::HashMap<String, AttributeValue> =
            [("item".to_owned(), AttributeValue::S(item.into()))].into();
        Item::from(map)
    }

    fn entries() -> Vec<SnapshotEntry> {
        let mut burger = keys("burger");
        burger.insert("priority".into(), AttributeValue::S("high".into()));
        vec![
            SnapshotEntry {
                seq: Some(SequenceNumber::parse("000123").unwrap()),
                stamp: Some(EntryStamp::Change { created_ms: 950 }),
                body: EntryBody::Item(burger),
            },
            SnapshotEntry {
                seq: Some(SequenceNumber::parse("000124").unwrap()),
                stamp: Some(EntryStamp::Read {
                    from_ms: 960,
                    to_ms: 970,
                }),
                body: EntryBody::Tombstone(keys("donut")),
            },
            SnapshotEntry {
                seq: None,
                stamp: None,
                body: EntryBody::Item(keys("pizza")),
            },
        ]
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<SnapshotEntry>, SnapshotError> {
        let mut r = SnapshotReader::new(bytes)?;
        let mut got = Vec::new();
        while let Some(e) = r.next_entry()? {
            got.push(e);
        }
        Ok(got)
    }

    /// `entries()` as a schema-1 snapshot (the format before schema 2): every entry with its
    /// keys, an item's beside the item.
    fn schema_1_bytes() -> Vec<u8> {
        let mut h = header(2, 1);
        h.schema = 1;
        let mut out = serde_json::to_vec(&h).unwrap();
        out.push(b'\n');
        for e in entries() {
            let AttributeValue::S(name) = &e.keys()["item"] else {
                unreachable!()
            };
            let mut line = serde_json::json!({ "keys": keys(name) });
            if let Some(seq) = &e.seq {
                line["seq"] = serde_json::to_value(seq).unwrap();
            }
            if let Some(stamp) = &e.stamp {
                line["stamp"] = serde_json::to_value(stamp).unwrap();
            }
            if let Some(item) = e.item() {
                line["item"] = serde_json::to_value(item).unwrap();
            }
            serde_json::to_writer(&mut out, &line).unwrap();
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn lines_round_trip_with_header_and_tombstones() {
        let bytes = write_snapshot(Vec::new(), &header(2, 1), &entries()).unwrap();
        let r = SnapshotReader::new(bytes.as_slice()).unwrap();
        assert_eq!(r.header(), &header(2, 1));
        assert_eq!(read_all(&bytes).unwrap(), entries());
    }

    #[test]
    fn only_a_tombstone_carries_separate_keys() {
        let bytes = write_snapshot(Vec::new(), &header(2, 1), &entries()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(lines[0].get("keys").is_none() && lines[0].get("item").is_some());
        assert!(lines[1].get("keys").is_some() && lines[1].get("item").is_none());
    }

    #[test]
    fn a_schema_1_snapshot_reads_as_the_same_entries() {
        let bytes = schema_1_bytes();
        assert_eq!(
            SnapshotReader::new(bytes.as_slice())
                .unwrap()
                .header()
                .schema,
            1
        );
        assert_eq!(read_all(&bytes).unwrap(), entries());
        // Schema 1 requires every entry's keys.
        let text = String::from_utf8(bytes).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut first: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        first.as_object_mut().unwrap().remove("keys").unwrap();
        lines[1] = first.to_string();
        let e = read_all((lines.join("\n") + "\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        // … and keys that are the item's own: other keys, or none, are refused.
        for bad in [
            serde_json::json!({"item": {"S": "not-this-one"}}),
            serde_json::json!({}),
        ] {
            let mut line: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
            line["keys"] = bad;
            let mut changed = lines.clone();
            changed[1] = line.to_string();
            let e = read_all((changed.join("\n") + "\n").as_bytes()).unwrap_err();
            assert!(e.to_string().contains("not the item's"), "{e}");
        }
    }

    #[test]
    fn a_line_that_is_not_json_keeps_the_parse_error_as_its_source() {
        use std::error::Error as _;
        let mut out = serde_json::to_vec(&header(1, 0)).unwrap();
        out.extend_from_slice(b"\n{oops\n");
        let e = read_all(&out).unwrap_err();
        assert!(matches!(e, SnapshotError::Line { line: 2, .. }), "{e}");
        let source = e.source().expect("the JSON error");
        assert!(source.is::<serde_json::Error>(), "{source:?}");
        assert!(e.to_string().contains(&source.to_string()), "{e}");
        let e = SnapshotReader::new(&b"{oops\n"[..]).err().unwrap();
        assert!(
            e.source().is_some_and(|s| s.is::<serde_json::Error>()),
            "{e}"
        );
    }

    #[test]
    fn a_schema_2_entry_has_either_an_item_or_keys() {
        let mut out = serde_json::to_vec(&header(1, 0)).unwrap();
        out.extend_from_slice(b"\n{\"seq\":\"000001\"}\n");
        let e = read_all(&out).unwrap_err();
        assert!(e.to_string().contains("neither an item nor keys"), "{e}");
        let mut out = serde_json::to_vec(&header(1, 0)).unwrap();
        out.extend_from_slice(
            b"\n{\"keys\":{\"item\":{\"S\":\"a\"}},\"item\":{\"item\":{\"S\":\"a\"}}}\n",
        );
        let e = read_all(&out).unwrap_err();
        assert!(e.to_string().contains("separate keys"), "{e}");
    }

    #[test]
    fn the_writer_refuses_an_item_without_its_keys_and_another_schema() {
        let mut w = SnapshotWriter::new(Vec::new(), &header(1, 0)).unwrap();
        let mut no_key = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
        no_key.insert("priority".into(), AttributeValue::S("high".into()));
        assert!(w.push_item(&no_key, None, None).is_err());
        let mut h = header(0, 0);
        h.schema = 1;
        assert!(SnapshotWriter::new(Vec::new(), &h).is_err());
    }

    #[test]
    fn the_writer_refuses_counts_that_do_not_match() {
        assert!(write_snapshot(Vec::new(), &header(5, 0), &entries()).is_err());
    }

    #[test]
    fn a_truncated_snapshot_is_refused() {
        let bytes = write_snapshot(Vec::new(), &header(2, 1), &entries()).unwrap();
        let cut = bytes.iter().rposition(|b| *b == b'\n').unwrap();
        let cut = bytes[..cut].iter().rposition(|b| *b == b'\n').unwrap() + 1;
        let mut r = SnapshotReader::new(&bytes[..cut]).unwrap();
        assert!(r.next_entry().unwrap().is_some());
        assert!(r.next_entry().unwrap().is_some());
        let e = r.next_entry().unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn another_schema_is_refused_with_a_reason() {
        let mut h = header(0, 0);
        h.schema = 3;
        let mut bytes = serde_json::to_vec(&h).unwrap();
        bytes.push(b'\n');
        let e = SnapshotReader::new(bytes.as_slice()).err().unwrap();
        assert!(e.to_string().contains("schema 3"), "{e}");
        assert!(matches!(
            SnapshotReader::new(&b""[..]).err(),
            Some(SnapshotError::Empty)
        ));
    }

    #[test]
    fn keys_sort_by_time_and_stay_out_of_the_feed_prefix() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let a = snapshot_key(DEFAULT_SNAPSHOT_PREFIX, "T", t("2026-12-01T09:00:00Z"));
        let b = snapshot_key(DEFAULT_SNAPSHOT_PREFIX, "T", t("2026-12-01T10:00:00Z"));
        assert!(a < b);
        assert!(a.starts_with("feed-snapshots/T/") && a.ends_with(".jsonl.gz"));
        assert_eq!(
            snapshot_pointer_key(DEFAULT_SNAPSHOT_PREFIX, "T"),
            "feed-snapshots/T/latest.json"
        );
    }
}
