//! Reference data kept in a DynamoDB table, followed through the change-handler's change files.
//!
//! The full load is a consistent, parallel Scan; R, the time its last page returned, bounds the
//! changes it may have missed. Per item the loader keeps the last applied sequence number (a
//! removal keeps it as a tombstone), so each change applies once and newest wins. A change
//! applies from its new image when its sequence number is newer and its creation second is not
//! older than the applied change's; a change without an image, one whose creation time
//! disagrees with sequence order, an `opaque` entry, or a change stamped before R plus the clock
//! margin is applied by a consistent re-read (BatchGetItem). A gap file, an unreadable file, a
//! new stream or an entry without keys asks for a full reload. The rules are stated in
//! `docs/design.md` (the change feed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use stream_refdata_protocol::{
    ChangeFile, ChangeFlag, ChangeKind, EventName, Item, SequenceNumber, StreamChange,
};
use tracing::warn;

use crate::feed::Fetched;
use crate::key::{ItemKey, LookupKey};
use crate::lifecycle::config::{LookupKeyFn, TableConfig, TableSpec};
use crate::lifecycle::loader::{Applied, Cx, Loaded, Loader};
use crate::lifecycle::report::{RefreshError, ReloadReason};
use crate::lifecycle::ReferenceEnricher;
use ordering::{split_stream_arn, stream_order, verdict, ItemState, Stamp, StreamOrder, Verdict};

mod feed_snapshot;
pub(crate) mod ordering;

#[cfg(test)]
mod tests;

use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::sources::{DynamoDbTable, FeedSource, S3Feed, SourceError, TableSource};
pub use feed_snapshot::NotCurrent;
use stream_refdata_aws::Clock;

/// Reference data from a DynamoDB table, kept current from the change feed. The common case
/// needs only the item type: `TableEnricher<Product>` reads the table through the AWS SDK, follows
/// the feed in S3 and positions it with the system clock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
/// use stream_refdata::{Classified, TableEnricher, TableConfig, Outcome, SystemClock};
///
/// #[derive(serde::Deserialize)]
/// struct Product { item: String, priority: String }
///
/// // In production: DynamoDbTable and S3Feed on the AWS SDK; here their in-memory stand-ins.
/// let table = MemoryTable::new(&["item"]);
/// table.put(item(&[("item", "burger"), ("priority", "medium")]));
/// let feed = MemoryBucket::default();
/// let config = TableConfig::new("ProductPriority", &["item"], |p: &Product| Some(p.item.clone()));
/// let mut enricher = TableEnricher::new(config, table, Some(feed), SystemClock);
///
/// let (outcomes, report) = enricher
///     .process_batch(vec!["burger", "donut"], |dish| Classified::Data(dish.to_string()))
///     .await;
/// assert!(report.reconciles());
/// assert!(matches!(&outcomes[0], Outcome::Enriched { item, .. } if item.priority == "medium"));
/// assert!(matches!(&outcomes[1], Outcome::Rejected { .. })); // no reference item: dead-letter it
/// # }
/// ```
pub type TableEnricher<T, K = String, Tb = DynamoDbTable, Fd = S3Feed> =
    ReferenceEnricher<TableLoader<T, K, Tb>, Fd>;

impl<T, K, Tb, Fd> TableEnricher<T, K, Tb, Fd>
where
    T: Send + Sync + 'static,
    K: LookupKey,
    Tb: TableSource,
    Fd: FeedSource,
{
    /// An enricher reading `table` and following `feed` (without a feed, only flags and the
    /// maximum age refresh it, by full reloads: the original design's behaviour). Nothing is
    /// loaded until the first refresh.
    pub fn new(config: TableConfig<T, K>, table: Tb, feed: Option<Fd>, clock: impl Clock) -> Self {
        let loader = TableLoader {
            spec: config.spec,
            lookup_key: config.lookup_key,
            table,
            states: HashMap::new(),
            stream_arn: None,
            newest_seen: None,
            full_load_end: None,
            full_load_start: None,
            undecodable: BTreeMap::new(),
            staged_undecodable: std::sync::Mutex::new(Vec::new()),
        };
        ReferenceEnricher::with_loader(loader, config.policies, feed, clock.shared())
    }
}

/// Items re-read by key, with the newest sequence number that asked for it (none for an opaque
/// entry).
type Rereads = BTreeMap<ItemKey, Option<SequenceNumber>>;

/// The [`Loader`] of a DynamoDB table: the reference items and each one's applied change.
#[allow(unreachable_pub)] // named only through `TableEnricher`
pub struct TableLoader<T, K, Tb> {
    pub(crate) spec: TableSpec<T>,
    lookup_key: LookupKeyFn<T, K>,
    table: Tb,
    pub(crate) states: HashMap<ItemKey, ItemState>,
    /// The table's stream the data follows: recorded at each full load, never moved otherwise.
    pub(crate) stream_arn: Option<String>,
    /// The newest stream of the table seen in a file (a hint for the next full load, in case
    /// DescribeTable still names the previous stream).
    pub(crate) newest_seen: Option<String>,
    /// R: when the last full load's Scan ended (or the Scan a feed snapshot descends from). The
    /// clock margin it was taken with is the feed follower's ([`Cx::clock_margin`]).
    pub(crate) full_load_end: Option<DateTime<Utc>>,
    /// When that Scan began (written into feed snapshots, for as-of answers).
    pub(crate) full_load_start: Option<DateTime<Utc>>,
    /// Items that no longer decode into the user's type (a schema change), and why: each is
    /// served at its last good version, if it had one.
    pub(crate) undecodable: BTreeMap<ItemKey, String>,
    /// What the delta being applied changes in `undecodable` (an item that stopped decoding,
    /// `Some`; one that decodes again or is gone, `None`): taken into it only when the delta
    /// succeeds, so a failed poll changes nothing.
    staged_undecodable: std::sync::Mutex<Vec<(ItemKey, Option<String>)>>,
}

/// Why an item read from the table or the feed is not served as read: it has no usable key, or
/// it does not decode into the user's type.
#[derive(Debug)]
pub(crate) struct Undecodable {
    pub(crate) key: Option<ItemKey>,
    pub(crate) error: String,
}

/// A full load in which more than this share of the items read no longer decode is refused
/// when a snapshot is loaded: a schema change that breaks most items keeps the last good
/// snapshot whole instead of serving a half-empty table.
pub(crate) const MOST_ITEMS: f64 = 0.5;

impl<T, K, Tb> std::fmt::Debug for TableLoader<T, K, Tb> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableLoader")
            .field("spec", &self.spec)
            .field("items_followed", &self.states.len())
            .field("stream_arn", &self.stream_arn)
            .finish_non_exhaustive()
    }
}

/// Which full loads may start from a feed snapshot: those nothing newer than a snapshot asked
/// for. A gap, a new stream, an unreadable file or an entry without keys came after it (or the
/// snapshot may descend from the same loss), and a maximum-age reload exists to check the data
/// against the table itself: those Scan.
fn snapshot_allowed(reason: &ReloadReason) -> bool {
    matches!(
        reason,
        ReloadReason::FirstLoad | ReloadReason::BeyondRetention
    )
}

impl<T, K, Tb> Loader for TableLoader<T, K, Tb>
where
    T: Send + Sync + 'static,
    K: LookupKey,
    Tb: TableSource,
{
    type Value = T;
    type Key = K;

    fn name(&self) -> String {
        self.spec.table_name.clone()
    }

    fn rejected(&self) -> Vec<String> {
        self.undecodable.keys().map(ToString::to_string).collect()
    }

    async fn full_load<F: FeedSource>(
        &mut self,
        reason: &ReloadReason,
        feed: Option<&F>,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Loaded<Snapshot<T, K>>, RefreshError> {
        let described = self.table.latest_stream_arn().await?;
        let prefix = cx.policies.feed.snapshot_prefix.clone();
        if let (Some(prefix), Some(feed), true) = (prefix, feed, snapshot_allowed(reason)) {
            match self
                .load_feed_snapshot(feed, &prefix, described.as_deref(), current, cx)
                .await
            {
                Ok(loaded) => {
                    Metrics::add(&cx.metrics.snapshot_loads, 1);
                    return Ok(loaded);
                }
                Err(why) => {
                    Metrics::add(&cx.metrics.snapshot_fallbacks, 1);
                    warn!(table = %self.spec.table_name, %why, "no usable feed snapshot; scanning the table");
                    cx.report.snapshot_refused = Some(why.to_string());
                }
            }
        }
        Metrics::add(&cx.metrics.scan_loads, 1);
        let total = self.spec.scan_segments.max(1);
        let start = cx.clock.now();
        let scans = (0..total).map(|segment| scan_segment(self.table.clone(), segment, total));
        let pages = try_join_all(scans).await?;
        let end = cx.clock.now();
        let mut read = 0usize;
        let mut entries = Vec::new();
        let mut undecodable = Vec::new();
        for item in pages.into_iter().flatten() {
            read += 1;
            match self.decode_item(item, cx.metrics) {
                Ok(entry) => entries.push(entry),
                Err(u) => undecodable.push(u),
            }
        }
        Metrics::add(&cx.metrics.items_read, read as u64);
        // A schema change that breaks most items keeps the last good snapshot whole.
        if !current.is_empty() && undecodable.len() as f64 > MOST_ITEMS * read as f64 {
            return Err(RefreshError::SchemaChange {
                undecodable: undecodable.len(),
                read,
                first: undecodable
                    .first()
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
            });
        }
        self.states.clear();
        self.full_load_end = Some(end);
        self.full_load_start = Some(start);
        // The stream the load follows: the table's current one, or a newer one a file already
        // came from (DescribeTable may still name the previous stream for a moment).
        let hint = self.newest_seen.take();
        self.stream_arn = match (described, hint) {
            (Some(d), Some(h)) if stream_order(Some(&d), &h) == StreamOrder::Newer => Some(h),
            (Some(d), _) => Some(d),
            (None, h) => h,
        };
        let mut next = Snapshot::from_entries(cx.policies.ambiguity, entries);
        // An item that stopped decoding keeps its last good version.
        self.undecodable.clear();
        for u in undecodable {
            if let Some(key) = u.key {
                next.copy_from(current, &key);
                self.undecodable.insert(key, u.error);
            }
        }
        Ok(Loaded::direct(next))
    }

    async fn apply(
        &mut self,
        files: &[Fetched],
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Applied<Snapshot<T, K>>, RefreshError> {
        self.staged_undecodable().clear();
        let mut next = current.clone();
        let mut staged: HashMap<ItemKey, ItemState> = HashMap::new();
        let mut rereads = Rereads::new();
        let mut need_full = None;
        // The newest stream of this poll: a file of an older one, even listed later, is ignored.
        let mut stream_arn = self.stream_arn.clone();

        for fetched in files {
            let Some(file) =
                self.file_to_apply(fetched, &mut stream_arn, &mut need_full, cx.metrics)
            else {
                continue;
            };
            self.apply_file(
                file,
                &mut next,
                &mut staged,
                &mut rereads,
                &mut need_full,
                cx,
            );
        }

        if let Some(reason) = need_full {
            return Ok(Applied::Reload(reason));
        }
        if !rereads.is_empty() {
            cx.report.reread = rereads.len();
            self.reread(rereads, &mut next, &mut staged, cx).await?;
        }
        self.states.extend(staged);
        let staged_undecodable = std::mem::take(&mut *self.staged_undecodable());
        for (key, error) in staged_undecodable {
            match error {
                Some(e) => self.undecodable.insert(key, e),
                None => self.undecodable.remove(&key),
            };
        }
        let changed = cx.report.applied > 0 || cx.report.reread > 0;
        Ok(Applied::Delta(changed.then_some(next)))
    }

    /// A protocol flag names an S3 object, never table data (the original kind of flag, which
    /// names nothing, polls the feed at its position).
    fn concerns(&self, _flag: &ChangeFlag) -> bool {
        false
    }

    /// A protocol flag names an S3 object: not table data, so nothing to do (the original
    /// kind of flag, which names nothing, polls the feed at its position).
    async fn apply_flag(
        &mut self,
        _flag: &ChangeFlag,
        _current: &Snapshot<T, K>,
        _cx: &mut Cx<'_>,
    ) -> Result<Option<Applied<Snapshot<T, K>>>, RefreshError> {
        Ok(Some(Applied::Delta(None))) // not reached: `concerns` is false
    }
}

impl<T, K, Tb> TableLoader<T, K, Tb>
where
    T: Send + Sync + 'static,
    K: LookupKey,
    Tb: TableSource,
{
    /// The change file of `fetched` when it is to be applied as a delta: `None` for a file to
    /// ignore (another kind, table or an older or foreign stream: counted) or one that asks for
    /// a full reload (unreadable, a gap, a newer stream: set in `need_full`). `stream_arn` is the
    /// newest stream of the poll so far.
    fn file_to_apply<'f>(
        &mut self,
        fetched: &'f Fetched,
        stream_arn: &mut Option<String>,
        need_full: &mut Option<ReloadReason>,
        metrics: &Metrics,
    ) -> Option<&'f ChangeFile> {
        let file = match &fetched.content {
            Ok(f) => f,
            Err(e) => {
                *need_full = Some(ReloadReason::UnreadableFile {
                    file: fetched.key.clone(),
                    error: e.to_string(),
                });
                return None;
            }
        };
        match file.kind {
            ChangeKind::Gap => {
                *need_full = Some(ReloadReason::Gap {
                    file: fetched.key.clone(),
                });
                return None;
            }
            ChangeKind::S3 => {
                Metrics::add(&metrics.ignored_files, 1);
                return None;
            }
            ChangeKind::Dynamodb => {}
        }
        if file.source.table.as_deref() != Some(self.spec.table_name.as_str()) {
            Metrics::add(&metrics.ignored_files, 1);
            return None;
        }
        let arn = file.source.stream_arn.clone().unwrap_or_default();
        match stream_order(stream_arn.as_deref(), &arn) {
            StreamOrder::Current => Some(file),
            StreamOrder::Older | StreamOrder::Foreign => {
                Metrics::add(&metrics.ignored_files, 1);
                Metrics::add(&metrics.other_stream_files, 1);
                None
            }
            StreamOrder::Newer => {
                *need_full = Some(ReloadReason::NewStream {
                    stream_arn: arn.clone(),
                    table: self.spec.table_name.clone(),
                });
                if split_stream_arn(&arn).is_some() {
                    self.newest_seen = Some(arn.clone());
                    *stream_arn = Some(arn);
                }
                None
            }
        }
    }

    /// Key, value and lookup key of an item, or why not (counted and logged at WARN).
    pub(crate) fn decode_item(
        &self,
        item: Item,
        metrics: &Metrics,
    ) -> Result<(ItemKey, T, Option<K>), Undecodable> {
        let key = match ItemKey::from_item(&self.spec.key_attributes, &item) {
            Ok(k) => k,
            Err(e) => {
                Metrics::add(&metrics.undecodable_items, 1);
                warn!(error = %e, "reference item without a usable key; left out");
                return Err(Undecodable {
                    key: None,
                    error: e.to_string(),
                });
            }
        };
        match (self.spec.decode)(item) {
            Ok(value) => {
                let lookup = (self.lookup_key)(&value);
                Ok((key, value, lookup))
            }
            Err(e) => {
                Metrics::add(&metrics.undecodable_items, 1);
                warn!(key = %key, error = %e, "reference item does not decode; its last good version stays");
                Err(Undecodable {
                    key: Some(key),
                    error: e.to_string(),
                })
            }
        }
    }

    fn staged_undecodable(&self) -> std::sync::MutexGuard<'_, Vec<(ItemKey, Option<String>)>> {
        self.staged_undecodable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `item` into `snapshot`; an item that no longer decodes keeps its last good version
    /// there (if it had one), and is named as rejected until it decodes again or is removed.
    fn insert_item(&self, snapshot: &mut Snapshot<T, K>, item: &Item, metrics: &Metrics) {
        match self.decode_item(item.clone(), metrics) {
            Ok((key, value, lookup)) => {
                self.staged_undecodable().push((key.clone(), None));
                snapshot.upsert(key, value, lookup);
            }
            Err(Undecodable {
                key: Some(key),
                error,
            }) => self.staged_undecodable().push((key, Some(error))),
            Err(Undecodable { key: None, .. }) => {}
        }
    }

    /// Removes `key` from `snapshot` (a REMOVE, or an item a re-read no longer finds).
    fn remove_item(&self, snapshot: &mut Snapshot<T, K>, key: &ItemKey) {
        self.staged_undecodable().push((key.clone(), None));
        snapshot.remove(key);
    }

    fn apply_file(
        &self,
        file: &ChangeFile,
        next: &mut Snapshot<T, K>,
        staged: &mut HashMap<ItemKey, ItemState>,
        rereads: &mut Rereads,
        need_full: &mut Option<ReloadReason>,
        cx: &mut Cx<'_>,
    ) {
        let margin = chrono::Duration::from_std(cx.clock_margin).unwrap_or_default();
        let reread_before = self.full_load_end.map(|r| (r + margin).timestamp_millis());
        for change in &file.changes {
            let key = match ItemKey::from_item(&self.spec.key_attributes, &change.keys) {
                Ok(k) => k,
                Err(e) => {
                    *need_full = Some(ReloadReason::ChangeWithoutKey {
                        event_id: change.event_id.clone(),
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            let state = staged.get(&key).or_else(|| self.states.get(&key));
            let verdict = verdict(
                state,
                &change.sequence_number,
                change.approximate_creation_ms,
                margin.num_milliseconds(),
            );
            if verdict == Verdict::Skip {
                Metrics::add(&cx.metrics.changes_skipped, 1);
                continue;
            }
            let order_disagrees = verdict == Verdict::Reread;
            let no_image = change.new_image.is_none() && change.event_name != EventName::Remove;
            let around_full_load =
                reread_before.is_some_and(|r| change.approximate_creation_ms < r);
            if order_disagrees || no_image || around_full_load {
                let entry = rereads.entry(key).or_insert(None);
                if entry.as_ref().is_none_or(|s| change.sequence_number > *s) {
                    *entry = Some(change.sequence_number.clone());
                }
                continue;
            }
            self.apply_change(change, key, next, staged, cx.metrics);
            cx.report.applied += 1;
            Metrics::add(&cx.metrics.changes_applied, 1);
        }
        for opaque in &file.opaque {
            match opaque
                .typed_keys()
                .and_then(|k| ItemKey::from_item(&self.spec.key_attributes, &k).ok())
            {
                Some(key) => {
                    rereads.entry(key).or_insert(None);
                }
                None => {
                    *need_full = Some(ReloadReason::OpaqueWithoutKeys {
                        reason: opaque.reason.clone(),
                    });
                }
            }
        }
    }

    fn apply_change(
        &self,
        change: &StreamChange,
        key: ItemKey,
        next: &mut Snapshot<T, K>,
        staged: &mut HashMap<ItemKey, ItemState>,
        metrics: &Metrics,
    ) {
        match (&change.event_name, &change.new_image) {
            (EventName::Remove, _) => self.remove_item(next, &key),
            (_, Some(image)) => self.insert_item(next, image, metrics),
            (_, None) => {}
        }
        staged.insert(
            key,
            ItemState {
                seq: Some(change.sequence_number.clone()),
                stamp: Stamp::Change(change.approximate_creation_ms),
            },
        );
    }

    async fn reread(
        &self,
        keys: Rereads,
        next: &mut Snapshot<T, K>,
        staged: &mut HashMap<ItemKey, ItemState>,
        cx: &mut Cx<'_>,
    ) -> Result<(), RefreshError> {
        let metrics = cx.metrics;
        let names = &self.spec.key_attributes;
        let mut found: HashSet<ItemKey> = HashSet::new();
        let all: Vec<ItemKey> = keys.keys().cloned().collect();
        let read_from = cx.clock.now().timestamp_millis();
        for chunk in all.chunks(100) {
            let mut pending: Vec<Item> = chunk.iter().map(|k| k.to_item(names)).collect();
            let mut attempts = 0;
            while !pending.is_empty() {
                attempts += 1;
                if attempts > 8 {
                    return Err(RefreshError::Unprocessed(pending.len()));
                }
                if attempts > 1 {
                    tokio::time::sleep(Duration::from_millis(50 << attempts.min(6))).await;
                }
                let got = self.table.batch_get(std::mem::take(&mut pending)).await?;
                Metrics::add(&metrics.items_read, got.items.len() as u64);
                for item in &got.items {
                    if let Ok(k) = ItemKey::from_item(names, item) {
                        found.insert(k);
                    }
                    self.insert_item(next, item, metrics);
                }
                pending = got.unprocessed;
            }
        }
        Metrics::add(&metrics.items_reread, keys.len() as u64);
        // A read item is as new as the read (see `verdict`).
        let read_at = cx.clock.now().timestamp_millis();
        for (key, seq) in keys {
            if !found.contains(&key) {
                self.remove_item(next, &key);
            }
            let previous = staged.get(&key).or_else(|| self.states.get(&key)).cloned();
            let seq = match (seq, previous.and_then(|p| p.seq)) {
                (Some(s), Some(p)) => Some(s.max(p)),
                (s, p) => s.or(p),
            };
            staged.insert(
                key,
                ItemState {
                    seq,
                    stamp: Stamp::Read {
                        from: read_from,
                        to: read_at,
                    },
                },
            );
        }
        Ok(())
    }
}

async fn scan_segment<Tb: TableSource>(
    table: Tb,
    segment: i32,
    total: i32,
) -> Result<Vec<Item>, SourceError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = table.scan_page(segment, total, start.take()).await?;
        items.extend(page.items);
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(items),
        }
    }
}

impl std::fmt::Display for Undecodable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: {}", self.error),
            None => write!(f, "an item without a usable key: {}", self.error),
        }
    }
}
