//! As-of answers: the reference as it was at a time, from a feed snapshot plus the change files
//! after it (`docs/design.md`, "As-of answers").
//!
//! A [`History`] is built once for a window (by [`HistoryBuilder`], from what the caller read:
//! no I/O here) and answers [`History::lookup_as_of`] for any time in it:
//!
//! - **Validity.** Each item's versions are ordered by their sequence numbers (the stream's order
//!   per item). A version is valid from the **start of the second** its change was created in
//!   (DynamoDB Streams round `ApproximateCreationDateTime` down to the second) until the next
//!   version's. So a record stamped within the same second as a change sees that change: the
//!   tie rule, applied everywhere. When sequence order and creation seconds disagree (a later
//!   change stamped in an earlier second), neither can be trusted: the item is unknown from the
//!   earlier second until its next change, so a change seen later never turns an answer into
//!   another value (for disagreements within the clock margin, which finality waits for).
//! - **Start.** A snapshot's values are valid from its position. An entry a read took (a Scan
//!   between the position and its end R, a re-read) holds every change made before the read
//!   began less the margin, and those before it in sequence stamped no later; a change made
//!   within the margin of the read may or may not be in it, so the item is unknown from the
//!   position until that change, and what it made it after. An item a Scan snapshot has no
//!   entry for was not there when the Scan read. Without a snapshot every answer is
//!   [`AsOf::BeforeHistory`] (an item not changed in the window, or another with the same
//!   lookup key, is not seen), unless the table is declared empty at the start
//!   ([`HistoryBuilder::empty_at_start`]: a table created in the window). A time before the start
//!   answers [`AsOf::BeforeHistory`] too.
//! - **No guesses.** A change without its new image (a `KEYS_ONLY` stream, an `OLD_IMAGE` stream,
//!   a record the producer could not type) does not say what the item was: from its time until
//!   the item's next change with an image, the answer is [`AsOf::Unknown`]; since its lookup key
//!   may have changed too, so is every lookup then (likewise while a value in no version holds).
//!   A present-day re-read is never given as a past value. A gap file, a change file that can
//!   never be read, or a second stream (the table's stream switched) inside the window refuse
//!   every answer of the window ([`AsOf::Refused`], with the reason).
//! - **Finality.** An answer for `t` is final once the feed's visibility bound has passed the
//!   end of `t`'s second plus the clock margin, and the snapshot's reads plus the margin (every
//!   change that could still change it is then listed); [`History::is_final`] says whether it
//!   has, [`History::final_at_ms`] when it will.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use stream_refdata_protocol::{
    ChangeFile, ChangeKind, EntryBody, EntryStamp, EventName, Item, SequenceNumber, SnapshotEntry,
    SnapshotHeader,
};

use smallvec::SmallVec;

use crate::key::ItemKey;
use crate::lifecycle::config::{Decoder, LookupKeyFn};
use crate::snapshot::Ambiguity;

/// What the reference held for a lookup key at a time.
#[derive(Debug, PartialEq, Eq)]
pub enum AsOf<'a, T> {
    /// The item valid then.
    Found(&'a Arc<T>),
    /// No item had the key then (never written yet, or removed: a tombstone).
    Missing,
    /// Several items had it then and the policy is [`Ambiguity::Reject`]; how many.
    Ambiguous(usize),
    /// The time is before what the history holds (it starts at `starts_ms`).
    BeforeHistory {
        /// Where the history starts (ms since the epoch).
        starts_ms: i64,
    },
    /// An item with the key changed without saying to what (no new image) at `since_ms`, and
    /// had no change with an image after it by then.
    Unknown {
        /// The change's second (ms since the epoch).
        since_ms: i64,
    },
    /// The window cannot answer: why.
    Refused(&'a str),
}

/// One state of an item.
#[derive(Debug)]
enum State<T> {
    Item(Arc<T>),
    Removed,
    /// Changed without an image, or an image that does not decode: neither its value nor its
    /// lookup key is known (while it lasts, every lookup is unknown).
    Unknown,
    /// One of known values, but which is not known (a change whose order against the snapshot's
    /// read, or against another change, cannot be told): unknown for the lookup keys the item
    /// had or the value here (indexed) has, not for others.
    Uncertain(Option<Arc<T>>),
}

/// `state` made uncertain: a value stays indexed under its lookup key, a state that says
/// nothing stays unknown.
fn uncertain<T>(state: State<T>) -> State<T> {
    match state {
        State::Item(v) => State::Uncertain(Some(v)),
        State::Removed => State::Uncertain(None),
        other => other,
    }
}

/// An item's versions as read (one inline: most items of a day have one).
type Raw<T> = Vec<Version<T>>;

/// The versions read of each item not yet placed in a history, in the order items were first
/// read (a snapshot's order: the build then walks its values as they were decoded).
type Staged<T> = indexmap::IndexMap<ItemKey, Raw<T>, foldhash::fast::RandomState>;

/// One version of an item: valid from `from_ms`.
#[derive(Debug)]
struct Version<T> {
    seq: Option<Seq>,
    from_ms: i64,
    state: State<T>,
    /// Set for a snapshot's entry: how its value was taken, which decides which changes of the
    /// window it already reflects.
    base: Option<Base>,
}

/// A sequence number packed two digits to a byte, zero-padded to its 40 digits: ordered as the
/// numbers are, and kept without an allocation (a version's as-read form keeps one each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seq([u8; 20]);

impl From<&SequenceNumber> for Seq {
    fn from(s: &SequenceNumber) -> Seq {
        let digits = s.as_str().as_bytes();
        let offset = stream_refdata_protocol::SEQUENCE_WIDTH.saturating_sub(digits.len());
        let digit = |i: usize| {
            i.checked_sub(offset)
                .and_then(|j| digits.get(j))
                .map_or(0, |d| d.wrapping_sub(b'0') & 0x0f)
        };
        let mut packed = [0u8; 20];
        for (n, byte) in packed.iter_mut().enumerate() {
            *byte = (digit(2 * n) << 4) | digit(2 * n + 1);
        }
        Seq(packed)
    }
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        match self {
            State::Item(v) => State::Item(Arc::clone(v)),
            State::Removed => State::Removed,
            State::Unknown => State::Unknown,
            State::Uncertain(v) => State::Uncertain(v.clone()),
        }
    }
}

impl<T> Clone for Version<T> {
    fn clone(&self) -> Self {
        Version {
            seq: self.seq,
            from_ms: self.from_ms,
            state: self.state.clone(),
            base: self.base,
        }
    }
}

/// How a snapshot's entry took its value (the follower's stamp, `docs/design.md` 1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// Applied from the image of a change made in this second (its sequence number is the
    /// entry's).
    Change(i64),
    /// Read from the table between these times (ms), or by the Scan that ended at R (both the
    /// same time then); `None` when the snapshot does not say when (no R).
    Read(Option<(i64, i64)>),
}

/// One version of an item as a built history keeps it: from when, and what (with the value's
/// lookup key, computed once); with its sequence number and whether it is the snapshot's entry,
/// so that an item whose versions as read settle into themselves keeps them once ([`Held`]).
#[derive(Debug)]
struct Kept<T> {
    from_ms: i64,
    /// The value (of [`Kind::Item`] only).
    value: Option<Arc<T>>,
    /// The value's lookup key's number in [`History::by_lookup`] ([`NO_KEY`] for none): one
    /// number per key, not a copy of the key per version.
    lookup: u32,
    seq: Option<Seq>,
    kind: Kind,
    entry: bool,
}

/// No lookup key (the value has none, or the version has no value). (A history with 2^32 lookup
/// keys would number its last one so: far past what fits in memory.)
const NO_KEY: u32 = u32::MAX;

/// What a kept version says of its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Item,
    Removed,
    Unknown,
}

/// An item's versions as read, where the kept ones do not already say them.
#[derive(Debug)]
enum Held<T> {
    /// The versions as read are the kept ones, one for one (a settling that changed nothing:
    /// most items): not held twice. The base of the one that is the snapshot's entry, if any.
    Same(Option<Base>),
    /// The versions as read, apart from the kept ones (which settling made of them).
    Apart(Raw<T>),
}

/// The versions of every item of a window, and the lookup keys that reach them.
pub struct History<T, K> {
    /// Everything read (kept to settle an item again when a later file touches it).
    inputs: HistoryBuilder<T, K>,
    final_through_ms: i64,
    /// Each item's index (its place in `keys` and `versions`).
    /// (made by the first [`History::extend`]: a history never extended does not need it)
    index: Option<HashMap<ItemKey, u32, foldhash::fast::RandomState>>,
    /// Each item's key.
    keys: Vec<ItemKey>,
    /// Each item's versions as read (kept to settle it again when a later file touches it).
    raw: Vec<Held<T>>,
    /// Each item's versions, oldest first (an item is its index here; exactly sized: a
    /// version more costs one `Kept`).
    versions: Vec<Box<[Kept<T>]>>,
    /// Each lookup key's number, and the items any of whose versions had it, in primary-key
    /// order.
    by_lookup: HashMap<K, (u32, SmallVec<[u32; 2]>), foldhash::fast::RandomState>,
    /// Items never seen with a value in the window (only changes without images): their lookup
    /// key is unknown, so while one is unknown, every lookup is.
    unkeyed: Vec<u32>,
    /// Set while a build settles every item: the lists above are appended to, and sorted once
    /// after.
    bulk: bool,
}

impl<T, K> std::fmt::Debug for History<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("starts_ms", &self.inputs.starts_ms)
            .field("final_through_ms", &self.final_through_ms)
            .field("refusal", &self.inputs.refusal)
            .field("items", &self.versions.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`History`]: a snapshot (optional), then change files in any order (late and
/// duplicate files included: changes are placed by their sequence numbers).
pub struct HistoryBuilder<T, K> {
    key_attributes: Vec<String>,
    decode: Decoder<T>,
    lookup_key: LookupKeyFn<T, K>,
    ambiguity: Ambiguity,
    starts_ms: i64,
    /// The table (set by [`HistoryBuilder::table`] or a snapshot): change files of others are
    /// skipped.
    table: Option<String>,
    /// The snapshot's clock margin (at least the producers' write margin), for its read times.
    margin_ms: i64,
    /// The snapshot's write window plus its margin: how far before its position files are read.
    pub(crate) snapshot_look_back_ms: i64,
    /// What the table held at the start is known (a snapshot, or a table known empty then).
    based: bool,
    stream: Option<String>,
    /// Why the window refuses, with the key of the file that says so ("" for the snapshot
    /// and the window itself): the lowest key's reason, whatever order files came in.
    refusal: Option<(String, String)>,
    /// (the snapshots' fast hasher: item keys are the table's, not attacker-chosen floods)
    changes: Staged<T>,
    /// A snapshot from a Scan (its start and end R): an item it has no entry for was not there
    /// when the Scan read, as if it held a tombstone read then.
    scan_read: Option<(i64, i64)>,
    /// The latest time the snapshot's reads ran until (a Scan's R, a re-read's end): a change
    /// made before it plus the margin may yet turn an answer from the position on unknown.
    reads_until_ms: i64,
    /// The look-back its files were listed with (set by a read).
    look_back_ms: i64,
    /// The largest write window a change file states, plus the margin: a producer with a
    /// larger W than the reader's makes files visible later.
    file_look_back_ms: i64,
    /// The change files a read listed (handed to [`Followed`]).
    listed: Vec<String>,
}

impl<T, K> std::fmt::Debug for HistoryBuilder<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryBuilder")
            .field("key_attributes", &self.key_attributes)
            .field("starts_ms", &self.starts_ms)
            .field("refusal", &self.refusal)
            .field("items", &self.changes.len())
            .finish_non_exhaustive()
    }
}

/// The start of a Scan whose start a snapshot does not record: its R was carried over from an
/// older snapshot (R before the position), so it may have begun any time before R.
const UNKNOWN_START: i64 = i64::MIN / 4;

/// When a snapshot's Scan began, as far as it says: the start its header records; without one
/// (an older compactor's), its position when R is at least two clock margins after it (the
/// position was then taken before the Scan, even on a compactor whose clock lags or leads by the
/// margin); unknown otherwise (R carried over from an older snapshot, or too close to tell).
fn scan_start(r: i64, position_ms: i64, recorded: Option<i64>, margin_ms: i64) -> i64 {
    match recorded {
        // (a damaged header's start far in the past reads as unknown, never wraps)
        Some(start) => start.min(r).max(UNKNOWN_START),
        None if r >= position_ms.saturating_add(margin_ms.saturating_mul(2)) => position_ms,
        None => UNKNOWN_START,
    }
}

/// The start of the second `ms` is in: a change's creation time as the tie rule uses it.
fn second_of(ms: i64) -> i64 {
    ms.div_euclid(1000) * 1000
}

impl<T, K: Clone + Eq + Hash> HistoryBuilder<T, K> {
    /// A history of the table keyed by `key_attributes` (hash key first), its items decoded by
    /// `decode` and found by `lookup_key`, starting at `starts_ms` (the window's start; a
    /// snapshot moves it to its position).
    pub fn new(
        key_attributes: &[&str],
        decode: Decoder<T>,
        lookup_key: LookupKeyFn<T, K>,
        ambiguity: Ambiguity,
        starts_ms: i64,
    ) -> Self {
        HistoryBuilder {
            key_attributes: key_attributes.iter().map(|s| (*s).to_owned()).collect(),
            decode,
            lookup_key,
            ambiguity,
            starts_ms,
            table: None,
            margin_ms: i64::try_from(stream_refdata_protocol::WRITE_MARGIN_MS).unwrap_or(5_000),
            snapshot_look_back_ms: 0,
            based: false,
            stream: None,
            refusal: None,
            changes: Staged::default(),
            scan_read: None,
            reads_until_ms: i64::MIN,
            look_back_ms: 0,
            file_look_back_ms: 0,
            listed: Vec::new(),
        }
    }

    /// A history of the table `config` describes (its key attributes, its items' decoding and
    /// lookup key, its ambiguity policy), starting at `starts_ms`: the same answers, as of a
    /// time, that its [`TableEnricher`](crate::TableEnricher) gives now.
    pub fn of_table(config: &crate::TableConfig<T, K>, starts_ms: i64) -> Self {
        let keys: Vec<&str> = config
            .spec
            .key_attributes
            .iter()
            .map(String::as_str)
            .collect();
        let mut builder = HistoryBuilder::new(
            &keys,
            Arc::clone(&config.spec.decode),
            Arc::clone(&config.lookup_key),
            config.policies.ambiguity,
            starts_ms,
        );
        builder.table(&config.spec.table_name);
        builder
    }

    /// The table whose history this is: change files of other tables (a shared feed) are
    /// skipped, and a snapshot of another table refuses the window.
    pub fn table(&mut self, name: &str) {
        self.table = Some(name.to_owned());
    }

    /// Declares that the table held nothing at the start (a new table, its feed from its
    /// creation): without this or a [`snapshot`](Self::snapshot), every answer is
    /// [`AsOf::BeforeHistory`] (an item from before the window would not be seen).
    pub fn empty_at_start(&mut self) {
        self.based = true;
    }

    pub(crate) fn refuse(&mut self, why: String) {
        self.refuse_at("", why);
    }

    /// The window refuses because of file `key`: kept if it is the lowest key that refuses.
    fn refuse_at(&mut self, key: &str, why: String) {
        if self.refusal.as_ref().is_none_or(|(k, _)| key < k.as_str()) {
            self.refusal = Some((key.to_owned(), why));
        }
    }

    fn state_of(&self, image: Option<Item>) -> State<T> {
        match image.map(|i| (self.decode)(i)) {
            Some(Ok(value)) => State::Item(Arc::new(value)),
            Some(Err(_)) | None => State::Unknown,
        }
    }

    /// The snapshot the window starts from: its values are valid from its position (which
    /// becomes the history's start), a tombstone's item is missing.
    pub fn snapshot(
        &mut self,
        header: &SnapshotHeader,
        entries: impl IntoIterator<Item = SnapshotEntry>,
    ) {
        if self.table.as_ref().is_some_and(|t| *t != header.table)
            || header.key_attributes != self.key_attributes
        {
            self.refuse(format!(
                "the snapshot is of table {} keyed by {:?}, not of this one",
                header.table, header.key_attributes
            ));
            return;
        }
        self.table = Some(header.table.clone());
        self.starts_ms = header.position_ms;
        if let Some(r) = header.full_load_end_ms {
            // A Scan that ended before the position (R carried over from an older snapshot):
            // its start is not known. Changes made during it were applied by the position
            // unless the Scan ended within W and twice the margin of it.
            let w = i64::try_from(header.write_window_ms).unwrap_or(i64::MAX);
            let margin = self
                .margin_ms
                .max(i64::try_from(header.clock_margin_ms).unwrap_or(0));
            // (nor, without a recorded start, one that ended less than twice the margin after
            // it: its R may have been carried over all the same, on a clock off by the margin)
            let gap = header.position_ms.saturating_sub(r);
            if header.full_load_start_ms.is_none()
                && r < header.position_ms.saturating_add(margin.saturating_mul(2))
                && gap < w.saturating_add(margin.saturating_mul(2))
            {
                self.refuse(format!(
                    "the snapshot's Scan ended {gap} ms before its position (or less than twice \
                     the margin after it), within the write window and twice the margin, and it \
                     does not record when the Scan began: what it holds of changes made during \
                     the Scan cannot be told"
                ));
            }
            let start = scan_start(r, header.position_ms, header.full_load_start_ms, margin);
            self.scan_read = Some((start, r));
            self.reads_until_ms = self.reads_until_ms.max(r);
        }
        self.based = true;
        let margin = i64::try_from(header.clock_margin_ms).unwrap_or(0);
        self.margin_ms = self.margin_ms.max(margin);
        self.snapshot_look_back_ms =
            i64::try_from(header.write_window_ms).unwrap_or(0) + self.margin_ms;
        if let Some(arn) = &header.stream_arn {
            self.stream = Some(stream_refdata_protocol::source_label(arn));
        }
        // (sized once for the entries the header counts, not grown by doubling)
        let count = header.items.saturating_add(header.tombstones);
        let count = usize::try_from(count).unwrap_or(0).min(1 << 24);
        self.changes.reserve(count);
        for entry in entries {
            let Ok(key) = ItemKey::from_item(&self.key_attributes, entry.keys()) else {
                self.refuse("a snapshot entry without its key attributes".into());
                continue;
            };
            let state = match entry.body {
                EntryBody::Item(item) => self.state_of(Some(item)),
                EntryBody::Tombstone(_) => State::Removed,
            };
            let base = match (entry.stamp, &entry.seq) {
                (Some(EntryStamp::Change { created_ms }), Some(_)) => {
                    Base::Change(second_of(created_ms))
                }
                (Some(EntryStamp::Read { from_ms, to_ms }), _) => {
                    self.reads_until_ms = self.reads_until_ms.max(to_ms);
                    Base::Read(Some((from_ms, to_ms)))
                }
                // (a Scan reads between the position, taken before it began, and its end R; a
                // snapshot that does not say when its Scan ended cannot say what it holds)
                (None, None) => match header.full_load_end_ms {
                    Some(r) => Base::Read(Some((
                        scan_start(
                            r,
                            header.position_ms,
                            header.full_load_start_ms,
                            self.margin_ms,
                        ),
                        r,
                    ))),
                    None => {
                        self.refuse(
                            "the snapshot does not say when its Scan ended (an older \
                             compactor's): its values cannot be placed in time"
                                .into(),
                        );
                        continue;
                    }
                },
                // (a sequence number without a stamp, or a change stamp without one: not what a
                // follower writes)
                _ => {
                    self.refuse("a snapshot entry whose stamp and sequence number disagree".into());
                    continue;
                }
            };
            // A value the follower took after its position (a change made, or a read done, after
            // it): valid from then; between the position and then, the item is unknown.
            let taken_ms = match entry.stamp {
                Some(EntryStamp::Change { created_ms }) => second_of(created_ms),
                Some(EntryStamp::Read { to_ms, .. }) => to_ms,
                None => header.position_ms,
            };
            let versions = self.changes.entry(key).or_default();
            versions.reserve_exact(1 + usize::from(taken_ms > header.position_ms));
            if taken_ms > header.position_ms {
                versions.push(Version {
                    seq: None,
                    from_ms: header.position_ms,
                    // (the value before it is in no version: its lookup key is not known)
                    state: State::Unknown,
                    base: Some(Base::Change(i64::MIN)),
                });
            }
            versions.push(Version {
                seq: entry.seq.as_ref().map(Seq::from),
                from_ms: taken_ms.max(header.position_ms),
                state,
                base: Some(base),
            });
        }
    }

    /// A change file of the window (its key named `key` for the reasons given).
    pub fn file(&mut self, key: &str, file: ChangeFile) {
        let stated = i64::try_from(file.write_window_ms).unwrap_or(i64::MAX);
        self.file_look_back_ms =
            (self.file_look_back_ms).max(stated.saturating_add(self.margin_ms));
        match file.kind {
            ChangeKind::Gap => {
                let why = file.reason.as_deref().unwrap_or("changes were lost");
                self.refuse_at(key, format!("a gap file in the window ({key}): {why}"));
                return;
            }
            ChangeKind::S3 => return,
            ChangeKind::Dynamodb => {}
        }
        // (another table's changes in a shared feed)
        if let (Some(table), Some(of)) = (&self.table, &file.source.table) {
            if table != of {
                return;
            }
        }
        match &self.stream {
            Some(label) if *label != file.source.label => {
                self.refuse_at(
                    key,
                    format!(
                        "the table's stream switched in the window ({key} is of another stream)"
                    ),
                );
                return;
            }
            Some(_) => {}
            None => self.stream = Some(file.source.label.clone()),
        }
        for change in file.changes {
            let Ok(item_key) = ItemKey::from_item(&self.key_attributes, &change.keys) else {
                self.refuse_at(key, format!("a change without its key attributes in {key}"));
                continue;
            };
            let state = match change.event_name {
                EventName::Remove => State::Removed,
                EventName::Insert | EventName::Modify => self.state_of(change.new_image),
            };
            push_version(
                &mut self.changes,
                item_key,
                Version {
                    seq: Some(Seq::from(&change.sequence_number)),
                    from_ms: second_of(change.approximate_creation_ms),
                    state,
                    base: None,
                },
            );
        }
        for opaque in file.opaque {
            // A record the producer could not type says neither when nor what: unless its keys
            // and its creation time are there, the window cannot answer at all.
            let created = (opaque.raw.pointer("/dynamodb/ApproximateCreationDateTime"))
                .and_then(serde_json::Value::as_f64);
            let keys = opaque.typed_keys();
            let seq =
                (opaque.sequence_number.as_deref()).and_then(|s| SequenceNumber::parse(s).ok());
            match (keys, created, seq) {
                (Some(keys), Some(created), Some(seq)) => {
                    let Ok(item_key) = ItemKey::from_item(&self.key_attributes, &keys) else {
                        self.refuse_at(
                            key,
                            format!("an untyped record without its key attributes in {key}"),
                        );
                        continue;
                    };
                    #[allow(clippy::cast_possible_truncation)]
                    let from_ms = second_of((created * 1000.0) as i64);
                    push_version(
                        &mut self.changes,
                        item_key,
                        Version {
                            seq: Some(Seq::from(&seq)),
                            from_ms,
                            state: State::Unknown,
                            base: None,
                        },
                    );
                }
                _ => self.refuse_at(
                    key,
                    format!(
                        "an untyped record without its keys, time or sequence number in {key} ({})",
                        opaque.reason
                    ),
                ),
            }
        }
    }

    /// A change file of the window that could not be read or decoded: the window refuses.
    pub fn unreadable_file(&mut self, key: &str, why: &str) {
        self.refuse_at(
            key,
            format!("a change file in the window could not be read ({key}): {why}"),
        );
    }

    /// The history, final for times at or before `final_through_ms` (the feed's visibility
    /// bound when the files were listed).
    pub fn build(mut self, final_through_ms: i64) -> History<T, K> {
        // (the versions as read move out of the map: later files are staged in it, then moved
        // to their item; items are numbered in the map's order, and a lookup key's items are
        // kept in primary-key order by `index_key`, whatever their numbers)
        let (keys, raw): (Vec<ItemKey>, Vec<Raw<T>>) =
            std::mem::take(&mut self.changes).into_iter().unzip();
        let keys_len = keys.len();
        let mut history = History {
            inputs: self,
            final_through_ms,
            index: None,
            versions: Vec::with_capacity(keys.len()),
            keys,
            raw: raw.into_iter().map(Held::Apart).collect(),
            // (the fast hasher the snapshots use: lookup keys are not attacker-chosen floods)
            by_lookup: HashMap::with_capacity_and_hasher(keys_len, Default::default()),
            unkeyed: Vec::new(),
            bulk: false,
        };
        // (each lookup key's items, and the unkeyed ones, appended as they come, then put in
        // primary-key order once: items come in the order they were read, and a key many items
        // share would cost a shift per insert)
        history.bulk = true;
        for i in 0..history.keys.len() {
            let kept = history.settle(u32::try_from(i).unwrap_or(u32::MAX));
            history.versions.push(kept);
        }
        history.bulk = false;
        let keys = &history.keys;
        let by_key = |a: &u32, b: &u32| keys[*a as usize].cmp(&keys[*b as usize]);
        for (_, items) in history.by_lookup.values_mut() {
            if items.len() > 1 {
                items.sort_unstable_by(by_key);
            }
        }
        history.unkeyed.sort_unstable_by(by_key);
        history
    }
}

/// Adds a version of item `key`.
fn push_version<T>(changes: &mut Staged<T>, key: ItemKey, version: Version<T>) {
    let list = changes.entry(key).or_default();
    // (grown one at a time while short: most items have a few versions, and a version is
    // large; a busy item's list grows as vectors do past eight, not by a copy per version)
    if list.len() < 8 {
        list.reserve_exact(1);
    }
    list.push(version);
}

/// One item's versions as read (any order, duplicates included) settled into what a history
/// answers (see the [module](self)): `starts_ms` the history's start, `margin_ms` the clock
/// margin of a snapshot's read times.
fn settle<T>(
    raw: &[Version<T>],
    starts_ms: i64,
    margin_ms: i64,
    scan_read: Option<(i64, i64)>,
) -> Vec<Version<T>> {
    // (an item only the snapshot's entry speaks of: as it is)
    if let [entry] = raw {
        if entry.base.is_some() && entry.from_ms >= starts_ms {
            return vec![entry.clone()];
        }
    }
    let mut list: Vec<Version<T>> = raw.to_vec();
    // (an item a Scan snapshot has no entry for: not there when the Scan read it)
    if let Some(read) = scan_read {
        if list.iter().all(|v| v.base.is_none()) {
            list.push(Version {
                seq: None,
                from_ms: starts_ms,
                state: State::Removed,
                base: Some(Base::Read(Some(read))),
            });
        }
    }
    // Sequence order per item (a snapshot entry's value first when it has none: it is
    // the value as of the history's start); duplicates (a file listed twice, a change
    // a snapshot already holds) once.
    // Of two with one sequence number, the one kept is the same whatever order they came in:
    // a snapshot's entry, else one that does not say what the change made (an untyped record
    // and a typed one of the same change: unknown, never a guess), else the first.
    list.sort_by_key(|v| {
        let known = !matches!(v.state, State::Unknown | State::Uncertain(_));
        (v.seq, v.base.is_none(), known)
    });
    list.dedup_by(|later, earlier| later.seq.is_some() && later.seq == earlier.seq);
    // What the snapshot's entry already reflects (the follower's order rule): a change
    // at or before its sequence number; after a read, one made before the read began
    // (less the margin), and every change before that one in sequence order. One made
    // during the read (within the margin) may or may not be in it: from the change on the
    // item is what it made it; before it, from the position, the item is unknown.
    // (the entry itself: the last version from the snapshot, after a marker of the time
    // before its value was taken)
    if let Some(i) = list.iter().rposition(|v| v.base.is_some()) {
        let base = list[i].base.unwrap_or(Base::Change(i64::MIN));
        let base_seq = list[i].seq;
        let position = starts_ms;
        let mut kept = Vec::with_capacity(list.len());
        // Older changes the entry may not hold: unknown, placed right after it.
        let mut after_base = Vec::new();
        // A change the entry's read may or may not hold.
        let mut doubtful = false;
        // After a read: the last change (in sequence order) made before the read began, with
        // its second; it and every change before it in sequence whose second is not later are
        // in the read. One before it in sequence but stamped later disagrees: unknown.
        let included: Option<(Seq, i64, i64)> = match base {
            Base::Read(Some((from, _))) => (list.iter())
                .filter(|v| v.base.is_none() && v.from_ms + 1000 <= from - margin_ms)
                .filter_map(|v| v.seq.map(|q| (q, v.from_ms, from - margin_ms)))
                .max_by(|a, b| a.0.cmp(&b.0)),
            _ => None,
        };
        for (n, mut v) in list.into_iter().enumerate() {
            if n == i {
                kept.push(v);
                kept.append(&mut after_base);
                continue;
            }
            if v.base.is_some() {
                kept.push(v);
                continue;
            }
            let older = base_seq.is_some() && v.seq <= base_seq;
            if older && v.seq == base_seq {
                continue;
            }
            if let Some((last, second, lo)) = &included {
                if v.seq.as_ref().is_some_and(|q| q <= last) {
                    // (in the read by its own second too, or stamped no later than the one that
                    // is: in it)
                    if v.from_ms <= *second || v.from_ms + 1000 <= *lo {
                        continue;
                    }
                    v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                    doubtful = true;
                    // (one older than the entry goes after it, as the other older ones)
                    if older {
                        after_base.push(v);
                    } else {
                        kept.push(v);
                    }
                    continue;
                }
            }
            // (the follower's order rule, table/ordering.rs: where sequence and time
            // disagree, or a read may or may not hold a change, it reads the item
            // again; here the item is unknown from then)
            match base {
                Base::Change(second) => {
                    // An older change of an earlier second is in the entry; a newer one
                    // of an earlier second, or an older one of a later second, disagree.
                    match (older, v.from_ms < second, v.from_ms > second) {
                        (true, _, false) => continue,
                        (true, _, true) => {
                            // (after the entry, in its own second: unknown from then)
                            v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                            after_base.push(v);
                            continue;
                        }
                        (false, true, _) => {
                            v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                        }
                        (false, false, _) => {}
                    }
                }
                Base::Read(bounds) => {
                    let (lo, hi) = match bounds {
                        Some((from, to)) => (from - margin_ms, to + margin_ms),
                        // (never built: a Scan without R refuses; were it, nothing could be
                        // placed against it)
                        None => (i64::MIN, i64::MAX),
                    };
                    // (a change happened within [its second, its second + 1 s)): made
                    // before the read began, it is in it; an older one made later, or
                    // any made during the read, may or may not be
                    if v.from_ms + 1000 <= lo {
                        continue;
                    }
                    if older {
                        v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                        after_base.push(v);
                        continue;
                    }
                    if v.from_ms < hi {
                        // Made during the read (or within the margin of it): the read may or
                        // may not hold it. From the change on, the item is what the change
                        // made it either way; before it, the entry's value may already be the
                        // change's (or a later one's): unknown from the position.
                        doubtful = true;
                        // (a Scan whose start is not known: the change may be an old one
                        // replayed in a late file, superseded by one before the window: not
                        // what the item is after it either)
                        // (nor one that may have come before the read began: a later change
                        // the follower saw untyped, before the window, may have been read
                        // over it, and the entry's sequence number does not say so)
                        let read_from = lo.saturating_add(margin_ms);
                        if lo <= UNKNOWN_START || v.from_ms < read_from.saturating_add(margin_ms) {
                            v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                        }
                    }
                }
            }
            kept.push(v);
        }
        if doubtful {
            let at = kept
                .iter()
                .rposition(|v| v.base.is_some())
                .map_or(0, |b| b + 1);
            kept.insert(
                at,
                Version {
                    seq: None,
                    from_ms: position,
                    // (the value the read may have replaced is in no version: its lookup key
                    // is not known)
                    state: State::Unknown,
                    base: Some(Base::Change(i64::MIN)),
                },
            );
        }
        // (older ones come before the entry in sequence order: now after it)
        if !after_base.is_empty() {
            let at = kept
                .iter()
                .rposition(|v| v.base.is_some())
                .map_or(0, |b| b + 1);
            kept.splice(at..at, after_base);
        }
        list = kept;
    }
    // Never back in time, and nothing before the start. A later change stamped in an
    // earlier second than the one before it: sequence and creation order disagree, and
    // the follower would read the item; here it is unknown from then.
    // (a based item has a version from the start: were its first lifted past it, unknown
    // until then rather than missing)
    if list.iter().any(|v| v.base.is_some()) && list.first().is_some_and(|v| v.from_ms > starts_ms)
    {
        list.insert(
            0,
            Version {
                seq: None,
                from_ms: starts_ms,
                state: State::Unknown,
                base: Some(Base::Change(i64::MIN)),
            },
        );
    }
    // Where they disagree, the item is unknown from the earlier of the seconds (neither order
    // can be trusted there), so a change that appears later never turns an answer into another
    // value, only into unknown.
    let mut floor = starts_ms;
    let mut previous_second = i64::MIN;
    for n in 0..list.len() {
        if list[n].base.is_none() {
            let own = list[n].from_ms;
            if own < previous_second {
                let from = own.max(starts_ms);
                for u in &mut list[..n] {
                    if u.from_ms > from {
                        u.state = uncertain(std::mem::replace(&mut u.state, State::Removed));
                        u.from_ms = from;
                    }
                }
                let v = &mut list[n];
                v.state = uncertain(std::mem::replace(&mut v.state, State::Removed));
                floor = floor.min(from.max(starts_ms));
            }
            previous_second = previous_second.max(own);
        }
        let v = &mut list[n];
        v.from_ms = v.from_ms.max(floor);
        floor = v.from_ms;
    }
    list
}

/// Whether `settled` (what [`settle`] made of `raw`) is `raw` itself, one for one in sequence
/// order, with at most one snapshot entry: then `Some` of that entry's base, and the versions as
/// read need not be held apart from the kept ones.
fn settled_as_read<T>(raw: &[Version<T>], settled: &[Version<T>]) -> Option<Option<Base>> {
    // (an uncertain state is never kept once: kept versions do not tell it from unknown, and
    // the state match below refuses it)
    if raw.len() != settled.len() || raw.iter().filter(|v| v.base.is_some()).count() > 1 {
        return None;
    }
    // (in the order settling sorts them: a sequence number each, the entry first among none)
    let mut sorted: Vec<&Version<T>> = raw.iter().collect();
    sorted.sort_by_key(|v| (v.seq, v.base.is_none()));
    let same = sorted.iter().zip(settled).all(|(a, b)| {
        a.seq == b.seq
            && a.from_ms == b.from_ms
            && a.base == b.base
            && match (&a.state, &b.state) {
                (State::Item(x), State::Item(y)) => Arc::ptr_eq(x, y),
                (State::Removed, State::Removed) | (State::Unknown, State::Unknown) => true,
                _ => false,
            }
    });
    same.then(|| raw.iter().find_map(|v| v.base))
}

impl<T, K: Clone + Eq + Hash> History<T, K> {
    /// Indexes item `index` under lookup key `k` (in primary-key order: an item added later
    /// goes in its place): the key's number.
    fn index_key(&mut self, k: K, index: u32) -> u32 {
        let next = u32::try_from(self.by_lookup.len()).unwrap_or(u32::MAX);
        let (id, items) = self
            .by_lookup
            .entry(k)
            .or_insert_with(|| (next, SmallVec::new()));
        if self.bulk {
            // (an item's versions are settled together: a repeat is the last one)
            if items.last() != Some(&index) {
                items.push(index);
            }
            return *id;
        }
        let keys = &self.keys;
        let at = items.partition_point(|&j| keys[j as usize] < keys[index as usize]);
        if items.get(at) != Some(&index) {
            items.insert(at, index);
        }
        *id
    }

    /// Item `index`'s versions as read, taken out of the history (to be settled again).
    fn take_raw(&mut self, index: u32) -> Raw<T> {
        let i = index as usize;
        match std::mem::replace(&mut self.raw[i], Held::Apart(Vec::new())) {
            Held::Apart(raw) => raw,
            // (each kept version as it was read: in sequence order, which settling keeps for
            // versions of distinct sequence numbers, whatever order they came in)
            Held::Same(base) => (self.versions[i].iter())
                .map(|k| Version {
                    seq: k.seq,
                    from_ms: k.from_ms,
                    state: match (k.kind, &k.value) {
                        (Kind::Item, Some(value)) => State::Item(Arc::clone(value)),
                        (Kind::Removed, _) => State::Removed,
                        _ => State::Unknown,
                    },
                    base: if k.entry { base } else { None },
                })
                .collect(),
        }
    }

    /// Settles item `index` again from every version read of it, and indexes its lookup keys:
    /// its versions as the history keeps them (and its versions as read, held apart only when
    /// settling changed them).
    fn settle(&mut self, index: u32) -> Box<[Kept<T>]> {
        let raw = self.take_raw(index);
        // (an item only the snapshot's entry speaks of, with its value: as it is; most of a
        // day's items)
        if let [Version {
            state: State::Item(value),
            base: Some(base),
            from_ms,
            seq,
        }] = raw.as_slice()
        {
            if *from_ms >= self.inputs.starts_ms {
                let (value, from_ms, seq, base) = (Arc::clone(value), *from_ms, *seq, *base);
                drop(raw);
                let lookup =
                    (self.inputs.lookup_key)(&value).map_or(NO_KEY, |k| self.index_key(k, index));
                self.raw[index as usize] = Held::Same(Some(base));
                return Box::new([Kept {
                    from_ms,
                    value: Some(value),
                    lookup,
                    seq,
                    kind: Kind::Item,
                    entry: true,
                }]);
            }
        }
        let list = settle(
            &raw,
            self.inputs.starts_ms,
            self.inputs.margin_ms,
            self.inputs.scan_read,
        );
        let same = settled_as_read(&raw, &list);
        let mut unknown = false;
        let mut kept = Vec::with_capacity(list.len());
        for v in list {
            let (kind, value, lookup) = match v.state {
                State::Item(value) => {
                    let k = (self.inputs.lookup_key)(&value);
                    let lookup = k.map_or(NO_KEY, |k| self.index_key(k, index));
                    (Kind::Item, Some(value), lookup)
                }
                State::Removed => (Kind::Removed, None, NO_KEY),
                State::Unknown => {
                    unknown = true;
                    (Kind::Unknown, None, NO_KEY)
                }
                State::Uncertain(value) => {
                    // (its key indexed: a lookup of it is unknown then, not missing)
                    if let Some(k) = value.as_deref().and_then(|v| (self.inputs.lookup_key)(v)) {
                        self.index_key(k, index);
                    }
                    (Kind::Unknown, None, NO_KEY)
                }
            };
            kept.push(Kept {
                from_ms: v.from_ms,
                value,
                lookup,
                seq: v.seq,
                kind,
                entry: v.base.is_some(),
            });
        }
        self.raw[index as usize] = match same {
            Some(base) => Held::Same(base),
            None => Held::Apart(raw),
        };
        // (a change without an image may have changed its lookup key too: while it is unknown,
        // it may have any key; in primary-key order, as a build from all files has them)
        if unknown && self.bulk {
            self.unkeyed.push(index);
        } else if unknown {
            let keys = &self.keys;
            let at = (self.unkeyed).partition_point(|&j| keys[j as usize] < keys[index as usize]);
            if self.unkeyed.get(at) != Some(&index) {
                self.unkeyed.insert(at, index);
            }
        }
        kept.into_boxed_slice()
    }

    /// Adds change files read after the history was built (late and duplicate ones included,
    /// as [`HistoryBuilder::file`] takes them; a gap among them refuses the window), and moves
    /// the visibility bound to `final_through_ms`: the items they touch are settled again,
    /// the others kept as they are. The answers are those of a history built from all the
    /// files at once.
    pub fn extend(
        &mut self,
        files: impl IntoIterator<Item = (String, ChangeFile)>,
        final_through_ms: i64,
    ) {
        for (key, file) in files {
            self.inputs.file(&key, file);
        }
        // (the items they touch, in key order: a new one's place is the same every time)
        let mut staged: Vec<(ItemKey, Raw<T>)> = self.inputs.changes.drain(..).collect();
        staged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let keys = &self.keys;
        let index = self.index.get_or_insert_with(|| {
            (keys.iter().enumerate())
                .map(|(i, k)| (k.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
                .collect()
        });
        let mut indices = Vec::with_capacity(staged.len());
        for (key, versions) in staged {
            let i = match index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
                    self.keys.push(key.clone());
                    index.insert(key, i);
                    self.versions.push(Box::default());
                    self.raw.push(Held::Apart(Vec::new()));
                    i
                }
            };
            indices.push((i, versions));
        }
        for (index, versions) in indices {
            let mut raw = self.take_raw(index);
            raw.extend(versions);
            self.raw[index as usize] = Held::Apart(raw);
            let kept = self.settle(index);
            self.versions[index as usize] = kept;
        }
        self.final_through_ms = self.final_through_ms.max(final_through_ms);
    }
}

impl<T, K: Eq + Hash> History<T, K> {
    /// The version of `item` valid at `t_ms` (the newest from at or before it).
    fn at(&self, item: u32, t_ms: i64) -> Option<&Kept<T>> {
        let list = self.versions.get(item as usize)?;
        let at = list.partition_point(|v| v.from_ms <= t_ms);
        at.checked_sub(1).map(|i| &list[i])
    }

    /// Where the history starts (ms since the epoch).
    pub fn starts_ms(&self) -> i64 {
        self.inputs.starts_ms
    }

    /// Why the window refuses every answer, if it does.
    pub fn refusal(&self) -> Option<&str> {
        self.inputs.refusal.as_ref().map(|(_, why)| why.as_str())
    }

    /// How long after a change the feed may still list it (ms): the largest of the look-back it
    /// was read with, its snapshot's write window plus margin, and any change file's. An answer for `t` is final
    /// once this much has passed after the end of `t`'s second ([`History::is_final`]).
    pub fn look_back_ms(&self) -> i64 {
        (self.inputs.look_back_ms)
            .max(self.inputs.snapshot_look_back_ms)
            .max(self.inputs.file_look_back_ms)
    }

    /// When (ms, on the reader's clock) an answer for `t_ms` becomes final: the end of its
    /// second, the clock margin (a change stamped up to that much later may disagree in order
    /// with one before `t` and turn its answer unknown), then the look-back.
    pub fn final_at_ms(&self, t_ms: i64) -> i64 {
        self.bound_needed(t_ms) + self.look_back_ms()
    }

    /// How far the visibility bound must reach for an answer at `t_ms` to be final: past its
    /// second and the margin, and past the snapshot's reads and the margin (a change made
    /// during a read may yet turn the entry's value unknown from the position).
    fn bound_needed(&self, t_ms: i64) -> i64 {
        let margin = self.inputs.margin_ms;
        (second_of(t_ms) + 1000 + margin).max(self.inputs.reads_until_ms.saturating_add(margin))
    }

    /// Whether an answer for `t_ms` is final: the feed's visibility bound has passed it, so no
    /// change created at or before it can still appear.
    pub fn is_final(&self, t_ms: i64) -> bool {
        // (a change of t's own second counts at t: the whole second must be visible; and one
        // stamped within the margin after it, which may disagree in order with one before)
        self.bound_needed(t_ms) <= self.final_through_ms
    }

    /// The item with lookup key `key` as it was at `t_ms` (see the [module](self) for the rules).
    pub fn lookup_as_of(&self, key: &K, t_ms: i64) -> AsOf<'_, T>
    where
        K: Clone,
    {
        if let Some((_, why)) = &self.inputs.refusal {
            return AsOf::Refused(why);
        }
        // Before the start, or without a base (no snapshot, not declared empty): an item that
        // was not changed in the window, or one with the same lookup key, is not seen; any
        // answer would be a guess.
        if t_ms < self.inputs.starts_ms || !self.inputs.based {
            return AsOf::BeforeHistory {
                starts_ms: self.inputs.starts_ms,
            };
        }
        // An item that may have this key, unknown at t: the answer is too.
        for item in &self.unkeyed {
            if let Some(Kept {
                kind: Kind::Unknown,
                from_ms,
                ..
            }) = self.at(*item, t_ms)
            {
                return AsOf::Unknown { since_ms: *from_ms };
            }
        }
        let missing = AsOf::Missing;
        let Some((id, items)) = self.by_lookup.get(key) else {
            return missing;
        };
        // (in key order: the lowest key first, as `Ambiguity::LowestKey` takes it)
        let (mut first, mut count) = (None, 0);
        for item in items {
            let Some(version) = self.at(*item, t_ms) else {
                continue;
            };
            match (version.kind, &version.value) {
                // (an item whose lookup key changed since is not this key's now)
                (Kind::Item, Some(value)) if version.lookup == *id => {
                    first.get_or_insert(value);
                    count += 1;
                }
                (Kind::Item | Kind::Removed, _) => {}
                (Kind::Unknown, _) => {
                    return AsOf::Unknown {
                        since_ms: version.from_ms,
                    }
                }
            }
        }
        match (first, count, self.inputs.ambiguity) {
            (None, _, _) => missing,
            (Some(value), 1, _) | (Some(value), _, Ambiguity::LowestKey) => AsOf::Found(value),
            (Some(_), n, Ambiguity::Reject) => AsOf::Ambiguous(n),
        }
    }
}

mod read;
pub use read::{Followed, HistorySource};

#[cfg(test)]
mod tests;
