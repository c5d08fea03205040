//! The enricher: owns the snapshot, refreshes it from the feed, enriches batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use change_protocol::{
    ChangeFile, ChangeFlag, ChangeKind, EventName, Item, SequenceNumber, StreamChange,
};
use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::batch::{walk, BatchCore, BatchReport, Classified, Outcome, Unmatched, UnmatchedReason};
use crate::clock::Clock;
use crate::feed::{FeedFollower, FeedSettings, Polled};
use crate::key::ItemKey;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::snapshot::{Ambiguity, Lookup, Snapshot};
use crate::sources::{FeedSource, SourceError, TableSource};

/// Turns a DynamoDB item into the user's type.
pub type Decoder<T> = Arc<dyn Fn(&Item) -> Result<T, String> + Send + Sync>;
/// Extracts the lookup key from an item; `None` leaves the item out of the lookup index.
pub type LookupKeyFn<T, K> = Arc<dyn Fn(&T) -> Option<K> + Send + Sync>;

/// How an [`Enricher`] is set up. Build it with [`EnricherConfig::new`] and the `with_*` methods.
pub struct EnricherConfig<T, K> {
    /// The reference table's name; change files of other tables are ignored.
    pub table_name: String,
    /// The table's key attributes, hash key first (`["item", "price"]`).
    pub key_attributes: Vec<String>,
    /// Item to user type.
    pub decode: Decoder<T>,
    /// User type to lookup key.
    pub lookup_key: LookupKeyFn<T, K>,
    /// Several items per lookup key.
    pub ambiguity: Ambiguity,
    /// What happens to records without a reference item.
    pub unmatched: Unmatched,
    /// Parallel Scan segments for the full load.
    pub scan_segments: i32,
    /// How the change feed is followed.
    pub feed: FeedSettings,
    /// A full reload happens when the last one is older than this, change or not (a safety net
    /// against missed notifications). `None`: never.
    pub max_age: Option<Duration>,
    /// When the snapshot has not been confirmed current for longer than this (refreshes keep
    /// failing), records are rejected as stale instead of enriched with old data. `None`: never.
    pub max_staleness: Option<Duration>,
}

impl<T, K> fmt::Debug for EnricherConfig<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnricherConfig")
            .field("table_name", &self.table_name)
            .field("key_attributes", &self.key_attributes)
            .field("ambiguity", &self.ambiguity)
            .field("unmatched", &self.unmatched)
            .field("scan_segments", &self.scan_segments)
            .field("feed", &self.feed)
            .field("max_age", &self.max_age)
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

impl<T: serde::de::DeserializeOwned, K> EnricherConfig<T, K> {
    /// A configuration that decodes items into `T` with serde_dynamo and indexes them by
    /// `lookup_key`. Defaults: lowest key wins among several items, unmatched records rejected,
    /// 4 Scan segments, feed `change_flags/` with W = 20 s, reload at least every 6 h, records
    /// rejected as stale after 15 min without a confirmed refresh.
    pub fn new(
        table_name: impl Into<String>,
        key_attributes: &[&str],
        lookup_key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        EnricherConfig {
            table_name: table_name.into(),
            key_attributes: key_attributes.iter().map(|s| (*s).to_owned()).collect(),
            decode: Arc::new(|item: &Item| {
                serde_dynamo::from_item(item.clone()).map_err(|e| e.to_string())
            }),
            lookup_key: Arc::new(lookup_key),
            ambiguity: Ambiguity::default(),
            unmatched: Unmatched::default(),
            scan_segments: 4,
            feed: FeedSettings::default(),
            max_age: Some(Duration::from_secs(6 * 3600)),
            max_staleness: Some(Duration::from_secs(15 * 60)),
        }
    }
}

impl<K> EnricherConfig<Item, K> {
    /// A configuration that keeps items as raw attribute maps (no user type), indexed by
    /// `lookup_key`; other defaults as [`EnricherConfig::new`].
    pub fn raw(
        table_name: impl Into<String>,
        key_attributes: &[&str],
        lookup_key: impl Fn(&Item) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        EnricherConfig::new(table_name, key_attributes, lookup_key)
            .with_decoder(Arc::new(|item: &Item| Ok(item.clone())))
    }
}

impl<T, K> EnricherConfig<T, K> {
    /// Sets the policy for several items per lookup key.
    pub fn with_ambiguity(mut self, a: Ambiguity) -> Self {
        self.ambiguity = a;
        self
    }
    /// Sets the unmatched-record policy.
    pub fn with_unmatched(mut self, u: Unmatched) -> Self {
        self.unmatched = u;
        self
    }
    /// Sets the feed settings.
    pub fn with_feed(mut self, f: FeedSettings) -> Self {
        self.feed = f;
        self
    }
    /// Sets the number of parallel Scan segments (at least 1).
    pub fn with_scan_segments(mut self, n: i32) -> Self {
        self.scan_segments = n.max(1);
        self
    }
    /// Sets the maximum age of a full load.
    pub fn with_max_age(mut self, d: Option<Duration>) -> Self {
        self.max_age = d;
        self
    }
    /// Sets the staleness limit.
    pub fn with_max_staleness(mut self, d: Option<Duration>) -> Self {
        self.max_staleness = d;
        self
    }
    /// Replaces the decoder (e.g. to keep raw items: `Arc::new(|i| Ok(i.clone()))`).
    pub fn with_decoder(mut self, d: Decoder<T>) -> Self {
        self.decode = d;
        self
    }
}

/// What a refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// A full reload happened, and why.
    pub full_reload: Option<String>,
    /// Change files applied.
    pub files: usize,
    /// Changes applied from images.
    pub applied: usize,
    /// Items re-read from the table.
    pub reread: usize,
    /// The refresh failed; the last good snapshot keeps serving.
    pub error: Option<String>,
    /// Reference data that was rejected (bad rows or objects, with key and line).
    pub problems: Vec<String>,
}

impl RefreshReport {
    /// Whether the snapshot changed or was checked with any request.
    pub fn did_work(&self) -> bool {
        self.full_reload.is_some()
            || self.files > 0
            || self.reread > 0
            || self.error.is_some()
            || !self.problems.is_empty()
    }
}

/// Why a refresh failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    /// A source call failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// BatchGetItem kept returning unprocessed keys.
    #[error("BatchGetItem left {0} keys unprocessed after retries")]
    Unprocessed(usize),
}

#[derive(Clone, Debug)]
struct ItemState {
    seq: Option<SequenceNumber>,
    creation_ms: i64,
}

/// A cheap, cloneable handle for readers: lock-free lookups in the current snapshot.
pub struct Reader<T, K: Hash + Eq + Clone> {
    current: Arc<ArcSwap<Snapshot<T, K>>>,
}

impl<T, K: Hash + Eq + Clone> Clone for Reader<T, K> {
    fn clone(&self) -> Self {
        Reader {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T, K: Hash + Eq + Clone> Reader<T, K> {
    pub(crate) fn new(current: Arc<ArcSwap<Snapshot<T, K>>>) -> Self {
        Reader { current }
    }

    /// The current snapshot; hold it for a run of lookups to see one consistent version.
    pub fn snapshot(&self) -> Arc<Snapshot<T, K>> {
        self.current.load_full()
    }

    /// The item for `key` in the current snapshot.
    pub fn lookup<Q>(&self, key: &Q) -> Option<Arc<T>>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.current.load().lookup(key) {
            Lookup::Found(t) => Some(Arc::clone(t)),
            _ => None,
        }
    }
}

/// Holds the reference data for one consumer and keeps it current.
///
/// Call [`Enricher::refresh`] (or [`Enricher::process_batch`], which does) once per micro-batch;
/// look records up synchronously through [`Enricher::reader`] or [`Enricher::enrich`].
pub struct Enricher<T, K: Hash + Eq + Clone, Tb, Fd, C> {
    config: EnricherConfig<T, K>,
    table: Tb,
    feed: Option<Fd>,
    clock: C,
    current: Arc<ArcSwap<Snapshot<T, K>>>,
    metrics: Arc<Metrics>,
    states: HashMap<ItemKey, ItemState>,
    stream_arn: Option<String>,
    retired_arns: HashSet<String>,
    follower: FeedFollower,
    full_load_end: Option<DateTime<Utc>>,
    last_full_load: Option<Instant>,
    last_current: Option<Instant>,
    last_error: Option<String>,
}

impl<T, K, Tb, Fd, C> Enricher<T, K, Tb, Fd, C>
where
    T: Send + Sync + 'static,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    Tb: TableSource,
    Fd: FeedSource,
    C: Clock,
{
    /// An enricher reading `table` and following `feed` (without a feed, only flags and the
    /// maximum age refresh it, by full reloads: the original design's behaviour).
    /// Nothing is loaded until the first refresh.
    pub fn new(config: EnricherConfig<T, K>, table: Tb, feed: Option<Fd>, clock: C) -> Self {
        let ambiguity = config.ambiguity;
        let follower = FeedFollower::new(config.feed.clone());
        Enricher {
            config,
            table,
            feed,
            clock,
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty(ambiguity))),
            metrics: Arc::new(Metrics::default()),
            states: HashMap::new(),
            stream_arn: None,
            retired_arns: HashSet::new(),
            follower,
            full_load_end: None,
            last_full_load: None,
            last_current: None,
            last_error: None,
        }
    }

    /// A handle for lock-free lookups from other tasks.
    pub fn reader(&self) -> Reader<T, K> {
        Reader {
            current: Arc::clone(&self.current),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot<T, K>> {
        self.current.load_full()
    }

    /// The counters, with the current staleness.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot(self.staleness())
    }

    /// Time since the snapshot was last confirmed current; `None` before the first load.
    pub fn staleness(&self) -> Option<Duration> {
        self.last_current.map(|t| t.elapsed())
    }

    /// The error of the last failed refresh, until a refresh succeeds.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Whether the staleness limit is exceeded (records are then rejected as stale).
    pub fn is_too_stale(&self) -> bool {
        match (self.config.max_staleness, self.staleness()) {
            (Some(limit), Some(s)) => s > limit,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The per-micro-batch step: a full load the first time (or when the maximum age has
    /// passed), else a poll of the feed and a delta. Never fails: on error the last good
    /// snapshot keeps serving, the error is logged, counted and reported, and the next call
    /// tries again.
    pub async fn refresh(&mut self) -> RefreshReport {
        self.refresh_with(false).await
    }

    async fn refresh_with(&mut self, at_flag: bool) -> RefreshReport {
        let started = Instant::now();
        let mut report = RefreshReport::default();
        let result = self.refresh_inner(at_flag, &mut report).await;
        if let Err(e) = result {
            Metrics::add(&self.metrics.refresh_errors, 1);
            warn!(error = %e, staleness_ms = self.staleness().map(|s| s.as_millis() as u64), "refresh failed; serving the last good snapshot");
            self.last_error = Some(e.to_string());
            report.error = Some(e.to_string());
        } else {
            self.last_error = None;
        }
        if report.did_work() {
            Metrics::set(
                &self.metrics.last_refresh_micros,
                started.elapsed().as_micros() as u64,
            );
            info!(
                full_reload = report.full_reload.as_deref().unwrap_or("-"),
                files = report.files,
                applied = report.applied,
                reread = report.reread,
                error = report.error.as_deref().unwrap_or("-"),
                items = self.current.load().len(),
                "reference data refreshed"
            );
        }
        report
    }

    async fn refresh_inner(
        &mut self,
        at_flag: bool,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let first = self.last_full_load.is_none();
        let too_old = self
            .config
            .max_age
            .zip(self.last_full_load)
            .is_some_and(|(max, t)| t.elapsed() > max);
        let expired = self.feed.is_some() && self.follower.beyond_retention();
        if first || too_old || expired || (at_flag && self.feed.is_none()) {
            let reason = if first {
                "first load"
            } else if too_old {
                "maximum age reached"
            } else if expired {
                "last listing older than the change files' retention minus a day"
            } else {
                "change flag (no change feed configured)"
            };
            return self.full_reload(reason, report).await;
        }
        let Some(feed) = &self.feed else {
            self.last_current = Some(Instant::now());
            return Ok(());
        };
        let now = self.clock.now();
        let Some(polled) = self
            .follower
            .poll(feed, now, at_flag, &self.metrics)
            .await?
        else {
            return Ok(()); // polled recently
        };
        report.files = polled.files.len();
        let need_full = self.apply(&polled, report).await?;
        self.follower.commit(&polled);
        if polled.listed() || polled.files.is_empty() {
            self.last_current = Some(Instant::now());
        }
        if let Some(reason) = need_full {
            self.full_reload(&reason, report).await?;
        } else if report.files > 0 {
            Metrics::add(&self.metrics.delta_refreshes, 1);
        }
        Ok(())
    }

    /// Reloads the whole table now (a consistent, parallel Scan), then follows the feed from
    /// the position taken before the Scan.
    pub async fn full_reload(
        &mut self,
        reason: &str,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let position = self.clock.now();
        let mono_start = Instant::now();
        let total = self.config.scan_segments.max(1);
        let scans = (0..total).map(|segment| scan_segment(self.table.clone(), segment, total));
        let pages = try_join_all(scans).await?;
        let end = self.clock.now();
        let mut read = 0u64;
        let mut entries = Vec::new();
        for item in pages.into_iter().flatten() {
            read += 1;
            if let Some(entry) = self.decode_entry(&item) {
                entries.push(entry);
            }
        }
        let mut next = Snapshot::from_entries(self.config.ambiguity, entries);
        Metrics::add(&self.metrics.items_read, read);
        Metrics::add(&self.metrics.full_refreshes, 1);
        next.set_version(self.current.load().version() + 1);
        self.current.store(Arc::new(next));
        self.states.clear();
        self.full_load_end = Some(end);
        self.last_full_load = Some(mono_start);
        self.last_current = Some(mono_start);
        self.follower.set_position(position);
        report.full_reload = Some(reason.to_owned());
        info!(reason, items = read, "full reload");
        Ok(())
    }

    /// Key, value and lookup key of an item, or `None` (counted and logged) when it has no usable
    /// key or does not decode.
    fn decode_entry(&self, item: &Item) -> Option<(ItemKey, T, Option<K>)> {
        let key = match ItemKey::from_item(&self.config.key_attributes, item) {
            Ok(k) => k,
            Err(e) => {
                Metrics::add(&self.metrics.undecodable_items, 1);
                warn!(error = %e, "reference item without a usable key; left out");
                return None;
            }
        };
        match (self.config.decode)(item) {
            Ok(value) => {
                let lookup = (self.config.lookup_key)(&value);
                Some((key, value, lookup))
            }
            Err(e) => {
                Metrics::add(&self.metrics.undecodable_items, 1);
                warn!(key = %key, error = %e, "reference item does not decode; left out");
                None
            }
        }
    }

    fn insert_item(&self, snapshot: &mut Snapshot<T, K>, item: &Item) {
        let key = match ItemKey::from_item(&self.config.key_attributes, item) {
            Ok(k) => k,
            Err(e) => {
                Metrics::add(&self.metrics.undecodable_items, 1);
                warn!(error = %e, "reference item without a usable key; left out");
                return;
            }
        };
        match (self.config.decode)(item) {
            Ok(value) => {
                let lookup = (self.config.lookup_key)(&value);
                snapshot.upsert(key, value, lookup);
            }
            Err(e) => {
                Metrics::add(&self.metrics.undecodable_items, 1);
                warn!(key = %key, error = %e, "reference item does not decode; left out");
                snapshot.remove(&key);
            }
        }
    }

    /// Applies what a poll found to a copy of the snapshot and publishes it. Returns the reason
    /// for a full reload when a file asks for one (then nothing is published: the reload covers
    /// it). Per-item state changes are staged and kept only if everything succeeded.
    async fn apply(
        &mut self,
        polled: &Polled,
        report: &mut RefreshReport,
    ) -> Result<Option<String>, RefreshError> {
        if polled.files.is_empty() {
            return Ok(None);
        }
        let mut next = (**self.current.load()).clone();
        let mut staged: HashMap<ItemKey, ItemState> = HashMap::new();
        let mut rereads: BTreeMap<ItemKey, Option<(SequenceNumber, i64)>> = BTreeMap::new();
        let mut need_full = None;
        let mut stream_arn = self.stream_arn.clone();
        let mut retire = Vec::new();

        for fetched in &polled.files {
            let file = match &fetched.content {
                Ok(f) => f,
                Err(e) => {
                    need_full = Some(format!("unreadable change file {}: {e}", fetched.key));
                    continue;
                }
            };
            match file.kind {
                ChangeKind::Gap => {
                    need_full = Some(format!("gap announced by {}", fetched.key));
                    continue;
                }
                ChangeKind::S3 => {
                    Metrics::add(&self.metrics.ignored_files, 1);
                    continue;
                }
                ChangeKind::Dynamodb => {}
            }
            if file.source.table.as_deref() != Some(self.config.table_name.as_str()) {
                Metrics::add(&self.metrics.ignored_files, 1);
                continue;
            }
            let arn = file.source.stream_arn.clone().unwrap_or_default();
            if self.retired_arns.contains(&arn) {
                Metrics::add(&self.metrics.ignored_files, 1);
                continue;
            }
            match &stream_arn {
                None => stream_arn = Some(arn),
                Some(known) if *known == arn => {}
                Some(known) => {
                    need_full = Some(format!(
                        "new stream {arn} for table {}",
                        self.config.table_name
                    ));
                    retire.push(known.clone());
                    stream_arn = Some(arn);
                    continue;
                }
            }
            self.apply_file(
                file,
                &mut next,
                &mut staged,
                &mut rereads,
                &mut need_full,
                report,
            );
        }

        self.stream_arn = stream_arn;
        self.retired_arns.extend(retire);
        if need_full.is_some() {
            return Ok(need_full);
        }
        if !rereads.is_empty() {
            report.reread = rereads.len();
            self.reread(rereads, &mut next, &mut staged).await?;
        }
        if report.applied > 0 || report.reread > 0 {
            next.set_version(next.version() + 1);
            self.current.store(Arc::new(next));
        }
        self.states.extend(staged);
        Ok(None)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_file(
        &self,
        file: &ChangeFile,
        next: &mut Snapshot<T, K>,
        staged: &mut HashMap<ItemKey, ItemState>,
        rereads: &mut BTreeMap<ItemKey, Option<(SequenceNumber, i64)>>,
        need_full: &mut Option<String>,
        report: &mut RefreshReport,
    ) {
        let margin = chrono::Duration::from_std(self.config.feed.clock_margin).unwrap_or_default();
        let reread_before = self.full_load_end.map(|r| (r + margin).timestamp_millis());
        for change in &file.changes {
            let key = match ItemKey::from_item(&self.config.key_attributes, &change.keys) {
                Ok(k) => k,
                Err(e) => {
                    *need_full = Some(format!("change {} has no usable key: {e}", change.event_id));
                    continue;
                }
            };
            let state = staged.get(&key).or_else(|| self.states.get(&key));
            if let Some(applied) = state.and_then(|s| s.seq.as_ref()) {
                if change.sequence_number <= *applied {
                    Metrics::add(&self.metrics.changes_skipped, 1);
                    continue;
                }
            }
            let order_disagrees = state.is_some_and(|s| {
                change.approximate_creation_ms.div_euclid(1000) < s.creation_ms.div_euclid(1000)
            });
            let no_image = change.new_image.is_none() && change.event_name != EventName::Remove;
            let around_full_load =
                reread_before.is_some_and(|r| change.approximate_creation_ms < r);
            if order_disagrees || no_image || around_full_load {
                let entry = rereads.entry(key).or_insert(None);
                let newer = entry
                    .as_ref()
                    .is_none_or(|(s, _)| change.sequence_number > *s);
                if newer {
                    *entry = Some((
                        change.sequence_number.clone(),
                        change.approximate_creation_ms,
                    ));
                }
                continue;
            }
            self.apply_change(change, key, next, staged);
            report.applied += 1;
            Metrics::add(&self.metrics.changes_applied, 1);
        }
        for opaque in &file.opaque {
            match opaque
                .typed_keys()
                .and_then(|k| ItemKey::from_item(&self.config.key_attributes, &k).ok())
            {
                Some(key) => {
                    rereads.entry(key).or_insert(None);
                }
                None => {
                    *need_full = Some(format!(
                        "opaque record without usable keys ({})",
                        opaque.reason
                    ));
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
    ) {
        match (&change.event_name, &change.new_image) {
            (EventName::Remove, _) => next.remove(&key),
            (_, Some(image)) => self.insert_item(next, image),
            (_, None) => {}
        }
        staged.insert(
            key,
            ItemState {
                seq: Some(change.sequence_number.clone()),
                creation_ms: change.approximate_creation_ms,
            },
        );
    }

    async fn reread(
        &self,
        keys: BTreeMap<ItemKey, Option<(SequenceNumber, i64)>>,
        next: &mut Snapshot<T, K>,
        staged: &mut HashMap<ItemKey, ItemState>,
    ) -> Result<(), RefreshError> {
        let names = &self.config.key_attributes;
        let mut found: HashSet<ItemKey> = HashSet::new();
        let all: Vec<ItemKey> = keys.keys().cloned().collect();
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
                Metrics::add(&self.metrics.items_read, got.items.len() as u64);
                for item in &got.items {
                    if let Ok(k) = ItemKey::from_item(names, item) {
                        found.insert(k);
                    }
                    self.insert_item(next, item);
                }
                pending = got.unprocessed;
            }
        }
        Metrics::add(&self.metrics.items_reread, keys.len() as u64);
        for (key, seq) in keys {
            if !found.contains(&key) {
                next.remove(&key);
            }
            let previous = staged.get(&key).or_else(|| self.states.get(&key)).cloned();
            let (seq, creation_ms) = match (seq, previous) {
                (Some((s, c)), Some(p)) => {
                    if p.seq.as_ref().is_some_and(|ps| *ps > s) {
                        (p.seq, p.creation_ms.max(c))
                    } else {
                        (Some(s), p.creation_ms.max(c))
                    }
                }
                (Some((s, c)), None) => (Some(s), c),
                (None, Some(p)) => (p.seq, p.creation_ms),
                (None, None) => (None, 0),
            };
            staged.insert(key, ItemState { seq, creation_ms });
        }
        Ok(())
    }

    /// Enriches `records` in order against the current snapshot, without refreshing first.
    /// A record classified as a flag refreshes at its position (a forced poll of the feed, or
    /// a full reload without a feed): records after it see the change, records before it the
    /// data as it was at the start of the call.
    pub async fn enrich<R>(
        &mut self,
        records: Vec<R>,
        classify: impl Fn(&R) -> Classified<K>,
    ) -> (Vec<Outcome<R, T>>, BatchReport) {
        walk(self, records, classify).await
    }

    /// [`Enricher::refresh`], then [`Enricher::enrich`]: the one call per micro-batch.
    pub async fn process_batch<R>(
        &mut self,
        records: Vec<R>,
        classify: impl Fn(&R) -> Classified<K>,
    ) -> (Vec<Outcome<R, T>>, BatchReport) {
        let refresh = self.refresh().await;
        let (outcomes, mut report) = self.enrich(records, classify).await;
        report.refreshes.insert(0, refresh);
        (outcomes, report)
    }
}

impl<T, K, Tb, Fd, C> BatchCore<T, K> for Enricher<T, K, Tb, Fd, C>
where
    T: Send + Sync + 'static,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    Tb: TableSource,
    Fd: FeedSource,
    C: Clock,
{
    fn current(&self) -> Arc<Snapshot<T, K>> {
        self.current.load_full()
    }
    fn too_stale(&self) -> bool {
        self.is_too_stale()
    }
    fn stale_reason(&self) -> UnmatchedReason {
        UnmatchedReason::Stale {
            staleness: self.staleness(),
            error: self.last_error.clone(),
        }
    }
    fn unmatched_policy(&self) -> Unmatched {
        self.config.unmatched
    }
    fn counters(&self) -> &Metrics {
        &self.metrics
    }
    async fn refresh_at_flag(&mut self, _flag: Option<&ChangeFlag>) -> RefreshReport {
        self.refresh_with(true).await
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
