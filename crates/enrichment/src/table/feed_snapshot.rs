//! Feed snapshots of a table (`docs/design.md`, feed snapshots): a consumer's full load starts
//! from the latest one instead of a Scan when it passes every check, and a follower of raw items
//! (the feed-compactor) writes one from what it holds.
//!
//! A snapshot carries the follower's whole per-item state (sequence numbers, stamps,
//! tombstones), the Scan end R it descends from, the table's stream, and the feed position L, so
//! a consumer started from it applies exactly the rules it would after its own Scan, and follows
//! the feed from L at once, before serving.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stream_refdata_protocol::{
    snapshot_pointer_key, snapshot_schema_readable, EntryBody, EntryStamp, Item, SnapshotHeader,
    SnapshotPointer, SnapshotReader, SnapshotWriter, SNAPSHOT_KIND, SNAPSHOT_SCHEMA,
};

use super::ordering::{ItemState, Stamp};
use super::{TableEnricher, TableLoader};
use crate::key::{ItemKey, KeyError, LookupKey};
use crate::lifecycle::loader::{Cx, FromFeedSnapshot, Loaded};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::sources::{Conditional, FeedSource, SourceError, TableSource};

/// A decoded item: its key, value and lookup key.
type Decoded<T, K> = (ItemKey, T, Option<K>);

/// Why a table's latest feed snapshot is not loaded (the full load Scans instead). Each says
/// which snapshot and what was wrong; an underlying error stays the `source()`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SnapshotRefused {
    /// Reading the pointer or the snapshot from the feed failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The table has no snapshot pointer.
    #[error("no snapshot pointer at {0}")]
    NoPointer(String),
    /// The pointer is not the JSON the format says.
    #[error("snapshot pointer {key} is not valid: {source}")]
    BadPointer {
        /// The pointer's key.
        key: String,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The pointer names a kind or schema this version does not read.
    #[error("snapshot {key} is {kind:?} schema {schema}; this version reads {SNAPSHOT_KIND:?} schemas 1 and {SNAPSHOT_SCHEMA}")]
    Schema {
        /// The snapshot's key.
        key: String,
        /// The pointer's kind.
        kind: String,
        /// The pointer's schema.
        schema: u32,
    },
    /// The pointer is of another table.
    #[error("snapshot {key} is of table {found}, not {expected}")]
    OtherTable {
        /// The snapshot's key.
        key: String,
        /// The table the pointer names.
        found: String,
        /// This consumer's table.
        expected: String,
    },
    /// The snapshot follows another stream than the table's current one.
    #[error(
        "snapshot {key} follows stream {}, the table's stream is {} (a new stream: its changes were never in that snapshot)",
        found.as_deref().unwrap_or("none"),
        described.as_deref().unwrap_or("none")
    )]
    OtherStream {
        /// The snapshot's key.
        key: String,
        /// The stream the snapshot follows.
        found: Option<String>,
        /// The table's stream, as described.
        described: Option<String>,
    },
    /// A change file came from a newer stream than the snapshot's.
    #[error("a change file came from stream {seen}, newer than snapshot {key}'s")]
    NewerStreamSeen {
        /// The snapshot's key.
        key: String,
        /// The newer stream.
        seen: String,
    },
    /// A time in the pointer or header is not representable.
    #[error("time {0} ms is out of range")]
    TimeOutOfRange(i64),
    /// The position is older than the change files' retention minus a day.
    #[error("snapshot {key} is {} s old, beyond the change files' retention minus a day ({} s)", age.as_secs(), limit.as_secs())]
    BeyondRetention {
        /// The snapshot's key.
        key: String,
        /// The position's age.
        age: Duration,
        /// The retention minus a day.
        limit: Duration,
    },
    /// The snapshot's header does not say what its pointer says.
    #[error("snapshot {0} does not match its pointer (table, stream or position)")]
    NotItsPointer(String),
    /// The snapshot keys items by other attributes than this consumer.
    #[error("snapshot {key} keys items by {found:?}, this consumer by {expected:?}")]
    KeyAttributes {
        /// The snapshot's key.
        key: String,
        /// The snapshot's key attributes.
        found: Vec<String>,
        /// This consumer's key attributes.
        expected: Vec<String>,
    },
    /// The snapshot descends from a Scan older than the maximum age (or of unknown age).
    #[error(
        "snapshot {key} descends from a Scan {} old, beyond the maximum age ({} s)",
        scanned.map_or("of unknown age".to_owned(), |a| format!("{} s", a.as_secs())),
        max_age.as_secs()
    )]
    BeyondMaximumAge {
        /// The snapshot's key.
        key: String,
        /// The age of its Scan, when known.
        scanned: Option<Duration>,
        /// The maximum age.
        max_age: Duration,
    },
    /// Most of the snapshot's items no longer decode into the user's type while a snapshot is
    /// loaded (a schema change): the Scan instead refuses or keeps the last good versions.
    #[error("snapshot {key}: {undecodable} of {read} items no longer decode")]
    SchemaChange {
        /// The snapshot's key.
        key: String,
        /// Items that did not decode.
        undecodable: usize,
        /// Items read.
        read: usize,
    },
    /// The snapshot's header or entries cannot be read.
    #[error("snapshot {key}: {source}")]
    Unreadable {
        /// The snapshot's key.
        key: String,
        /// What was wrong.
        source: BadEntry,
    },
}

/// Why a snapshot's lines cannot be taken: the first bad one.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadEntry {
    /// A line is not readable or not the format's.
    #[error(transparent)]
    Read(#[from] stream_refdata_protocol::SnapshotError),
    /// An entry's keys are not this table's.
    #[error("an entry's keys: {0}")]
    Keys(#[source] KeyError),
    /// An entry has a sequence number but no stamp.
    #[error("entry {0} has a sequence number without a stamp")]
    SeqWithoutStamp(ItemKey),
}

fn ms(t: i64) -> Result<DateTime<Utc>, SnapshotRefused> {
    DateTime::from_timestamp_millis(t).ok_or(SnapshotRefused::TimeOutOfRange(t))
}

impl<T, K, Tb> TableLoader<T, K, Tb>
where
    T: Send + Sync + 'static,
    K: LookupKey,
    Tb: TableSource,
{
    /// Loads the table's latest feed snapshot, or says why not (the caller then Scans). Every
    /// check of the contract: a pointer and a snapshot of this table, schema, key attributes,
    /// the table's current stream (`described`), a position within the change files' retention,
    /// and entry counts that match. The loader's state is replaced only when all of it passed.
    pub(crate) async fn load_feed_snapshot<F: FeedSource>(
        &mut self,
        feed: &F,
        prefix: &str,
        described: Option<&str>,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Loaded<Snapshot<T, K>>, SnapshotRefused> {
        let (pointer, position, now) = self.checked_pointer(feed, prefix, described, cx).await?;

        let body = feed.get(&pointer.key).await?;
        let gz = flate2::bufread::GzDecoder::new(body.as_slice());
        let unreadable = |e: BadEntry| SnapshotRefused::Unreadable {
            key: pointer.key.clone(),
            source: e,
        };
        let reader = SnapshotReader::new(BufReader::new(gz)).map_err(|e| unreadable(e.into()))?;
        let header = reader.header().clone();
        if header.table != pointer.table
            || header.stream_arn != pointer.stream_arn
            || header.position_ms != pointer.position_ms
        {
            return Err(SnapshotRefused::NotItsPointer(pointer.key));
        }
        if header.key_attributes != self.spec.key_attributes {
            return Err(SnapshotRefused::KeyAttributes {
                key: pointer.key,
                found: header.key_attributes,
                expected: self.spec.key_attributes.clone(),
            });
        }
        let full_load_end = header.full_load_end_ms.map(ms).transpose()?;
        let full_load_start = header.full_load_start_ms.map(ms).transpose()?;
        // The maximum age exists to check the data against the table itself: a snapshot that
        // descends from a Scan older than that is not a fresh load (the caller Scans).
        // (within the part of it no consumer's jittered maximum age reaches, so that consumers
        // started from one snapshot do not all Scan again at their next refresh)
        if let Some(max_age) = cx.policies.max_age {
            let max_age = max_age.mul_f64(1.0 - crate::lifecycle::MAX_AGE_JITTER);
            let scanned = full_load_end.map(|r| (now - r).to_std().unwrap_or_default());
            if scanned.is_none_or(|a| a > max_age) {
                return Err(SnapshotRefused::BeyondMaximumAge {
                    key: pointer.key,
                    scanned,
                    max_age,
                });
            }
        }
        let clock_margin = Duration::from_millis(header.clock_margin_ms);
        // One thread, stages in sequence. Reading on a second thread while this one indexed
        // was measured slower (docs/perf/snapshot-bench.md, round 2): every decoded value then
        // crosses cores, and allocations move between the allocator's per-thread arenas.
        // The header's count is checked against the lines at the end; until then it is only a
        // hint, capped so a corrupt header cannot make this reserve without bound.
        let hint = usize::try_from(header.items.min(1 << 22)).unwrap_or(1 << 22);
        let mut entries = Vec::with_capacity(hint);
        let mut undecodable = Vec::new();
        let states = self
            .read_entries(reader, cx.metrics, |e| match e {
                Ok(e) => entries.push(e),
                Err(u) => undecodable.push(u),
            })
            .map_err(unreadable)?;
        // The schema-change policy, as for a Scan (`TableLoader::full_load`).
        let read = entries.len() + undecodable.len();
        if !current.is_empty() && undecodable.len() as f64 > super::MOST_ITEMS * read as f64 {
            return Err(SnapshotRefused::SchemaChange {
                key: pointer.key,
                undecodable: undecodable.len(),
                read,
            });
        }
        let mut snapshot = Snapshot::from_entries(cx.policies.ambiguity, entries);
        self.undecodable.clear();
        for u in undecodable {
            if let Some(key) = u.key {
                snapshot.copy_from(current, &key);
                self.undecodable.insert(key, u.error);
            }
        }
        self.states = states;
        self.stream_arn = header.stream_arn.clone();
        self.newest_seen = None;
        self.full_load_end = full_load_end;
        self.full_load_start = full_load_start;
        Ok(Loaded {
            snapshot,
            from_feed_snapshot: Some(FromFeedSnapshot {
                key: pointer.key,
                position,
                write_window: Duration::from_millis(header.write_window_ms),
                clock_margin,
                scanned_at: full_load_end,
            }),
        })
    }

    /// The table's latest snapshot pointer, if it passes the checks that need only the pointer:
    /// kind and schema, table, the table's current stream (`described`) and any newer stream
    /// seen, and a position within the change files' retention. Returns it with its position L
    /// and the time it was checked at.
    async fn checked_pointer<F: FeedSource>(
        &self,
        feed: &F,
        prefix: &str,
        described: Option<&str>,
        cx: &Cx<'_>,
    ) -> Result<(SnapshotPointer, DateTime<Utc>, DateTime<Utc>), SnapshotRefused> {
        let table = self.spec.table_name.clone();
        let pointer_key = snapshot_pointer_key(prefix, &table);
        match feed.head_state(&pointer_key, None).await? {
            Conditional::Missing => return Err(SnapshotRefused::NoPointer(pointer_key)),
            Conditional::NotModified | Conditional::Changed(_) => {}
        }
        let bytes = feed.get(&pointer_key).await?;
        let pointer: SnapshotPointer =
            serde_json::from_slice(&bytes).map_err(|e| SnapshotRefused::BadPointer {
                key: pointer_key,
                source: e,
            })?;
        if pointer.kind != SNAPSHOT_KIND || !snapshot_schema_readable(pointer.schema) {
            return Err(SnapshotRefused::Schema {
                key: pointer.key,
                kind: pointer.kind,
                schema: pointer.schema,
            });
        }
        if pointer.table != table {
            return Err(SnapshotRefused::OtherTable {
                key: pointer.key,
                found: pointer.table,
                expected: table,
            });
        }
        if pointer.stream_arn.as_deref() != described {
            return Err(SnapshotRefused::OtherStream {
                key: pointer.key,
                found: pointer.stream_arn,
                described: described.map(str::to_owned),
            });
        }
        if let Some(hint) = &self.newest_seen {
            if pointer.stream_arn.as_deref() != Some(hint.as_str()) {
                return Err(SnapshotRefused::NewerStreamSeen {
                    key: pointer.key,
                    seen: hint.clone(),
                });
            }
        }
        let position = ms(pointer.position_ms)?;
        let now = cx.clock.now();
        let age = (now - position).to_std().unwrap_or_default();
        let limit = cx
            .policies
            .feed
            .retention
            .saturating_sub(Duration::from_secs(24 * 3600));
        if age > limit {
            return Err(SnapshotRefused::BeyondRetention {
                key: pointer.key,
                age,
                limit,
            });
        }
        Ok((pointer, position, now))
    }

    /// Reads a snapshot's entries: every entry's state, and every item decoded, given to `out`.
    /// Returns the states; stops at the first bad line (the caller then discards what was
    /// built).
    fn read_entries<R: BufRead>(
        &self,
        mut reader: SnapshotReader<R>,
        metrics: &Metrics,
        mut out: impl FnMut(Result<Decoded<T, K>, super::Undecodable>),
    ) -> Result<HashMap<ItemKey, ItemState>, BadEntry> {
        let mut states = HashMap::new();
        while let Some(entry) = reader.next_entry()? {
            let key = ItemKey::from_item(&self.spec.key_attributes, entry.keys())
                .map_err(BadEntry::Keys)?;
            match (entry.stamp, &entry.seq) {
                (Some(stamp), _) => {
                    let stamp = match stamp {
                        EntryStamp::Change { created_ms } => Stamp::Change(created_ms),
                        EntryStamp::Read { from_ms, to_ms } => Stamp::Read {
                            from: from_ms,
                            to: to_ms,
                        },
                    };
                    states.insert(
                        key,
                        ItemState {
                            seq: entry.seq,
                            stamp,
                        },
                    );
                }
                (None, None) => {}
                (None, Some(_)) => return Err(BadEntry::SeqWithoutStamp(key)),
            }
            if let EntryBody::Item(item) = entry.body {
                out(self.decode_item(item, metrics));
            }
        }
        Ok(states)
    }
}

/// Why a follower cannot write a snapshot now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotCurrent {
    /// Nothing is loaded yet.
    #[error("nothing loaded yet")]
    NotLoaded,
    /// A full reload was asked for and has not succeeded.
    #[error("a full reload is pending: {0}")]
    ReloadPending(String),
    /// The last refresh failed: what is held may miss changes.
    #[error("the last refresh failed: {0}")]
    RefreshFailed(String),
    /// The follower has no feed (nothing to follow from a position).
    #[error("no change feed followed")]
    NoFeed,
    /// Writing failed.
    #[error("writing the snapshot failed: {0}")]
    Write(String),
}

impl<K, Tb, Fd> TableEnricher<Item, K, Tb, Fd>
where
    K: LookupKey,
    Tb: TableSource,
    Fd: FeedSource,
{
    /// Writes what this follower of raw items holds as a feed snapshot into `out` (uncompressed
    /// JSON Lines; the caller compresses), one entry at a time: every item with its state, and
    /// every tombstone. Refused unless the data is current: loaded, no reload pending, the last
    /// refresh succeeded, the feed followed. `created` is the snapshot's time.
    pub fn write_feed_snapshot<W: Write>(
        &self,
        out: W,
        created: DateTime<Utc>,
    ) -> Result<(W, SnapshotHeader), NotCurrent> {
        if !self.is_loaded() {
            return Err(NotCurrent::NotLoaded);
        }
        if let Some(reason) = self.pending_reload() {
            return Err(NotCurrent::ReloadPending(reason.to_string()));
        }
        if let Some(e) = self.last_error() {
            return Err(NotCurrent::RefreshFailed(e.to_owned()));
        }
        let (position, window) = self.follower_position().ok_or(NotCurrent::NoFeed)?;
        let loader = self.loader();
        let snapshot = self.snapshot();
        let tombstones = loader
            .states
            .keys()
            .filter(|k| snapshot.get(k).is_none())
            .count() as u64;
        let header = SnapshotHeader {
            kind: SNAPSHOT_KIND.into(),
            schema: SNAPSHOT_SCHEMA,
            table: loader.spec.table_name.clone(),
            key_attributes: loader.spec.key_attributes.clone(),
            stream_arn: loader.stream_arn.clone(),
            position_ms: position.timestamp_millis(),
            full_load_end_ms: loader.full_load_end.map(|r| r.timestamp_millis()),
            full_load_start_ms: loader.full_load_start.map(|r| r.timestamp_millis()),
            write_window_ms: window.as_millis() as u64,
            clock_margin_ms: self.clock_margin().as_millis() as u64,
            created_ms: created.timestamp_millis(),
            items: snapshot.len() as u64,
            tombstones,
        };
        let names = &loader.spec.key_attributes;
        let write = |e: std::io::Error| NotCurrent::Write(e.to_string());
        let mut w = SnapshotWriter::new(out, &header).map_err(write)?;
        let stamp_of = |key: &ItemKey| {
            loader.states.get(key).map(|s| {
                let stamp = match s.stamp {
                    Stamp::Change(created_ms) => EntryStamp::Change { created_ms },
                    Stamp::Read { from, to } => EntryStamp::Read {
                        from_ms: from,
                        to_ms: to,
                    },
                };
                (s.seq.as_ref(), stamp)
            })
        };
        for key in snapshot.keys() {
            let Some(item) = snapshot.get(key) else {
                continue;
            };
            let (seq, stamp) = match stamp_of(key) {
                Some((seq, stamp)) => (seq, Some(stamp)),
                None => (None, None),
            };
            w.push_item(item.as_ref(), seq, stamp).map_err(write)?;
        }
        for key in loader.states.keys().filter(|k| snapshot.get(k).is_none()) {
            let (seq, stamp) = stamp_of(key).map_or((None, None), |(q, s)| (q, Some(s)));
            w.push_tombstone(&key.to_item(names), seq, stamp)
                .map_err(write)?;
        }
        Ok((w.finish().map_err(write)?, header))
    }
}
