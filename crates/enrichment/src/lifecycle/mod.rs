//! The enrichment lifecycle, written once for every kind of reference data: load, follow the
//! feed, apply, swap, read; staleness, maximum age, retention, failure handling, metrics, and the
//! batch walk with flags at their position. What is loaded is a [`Loader`]'s business.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use stream_refdata_protocol::ChangeFlag;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::feed::{FeedFollower, Polled};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::policy::Policies;
use crate::snapshot::{Lookup, Snapshot};
use crate::sources::FeedSource;
use loader::{Applied, Cx, Loader};
use outcome::{BatchReport, Classified, Outcome};
use report::{Health, RefreshError, RefreshReport, ReloadReason};
use stream_refdata_aws::{Clock, SharedClock};

mod batch;
pub mod config;
pub(crate) mod loader;
pub(crate) mod outcome;
pub(crate) mod report;

#[cfg(test)]
mod tests;

/// The loader's context for one step (see [`Cx`]): the enricher's policies, clock margin,
/// counters and clock, reporting into `$report`. A macro, not a method: it borrows those fields
/// alone, so the loader can be borrowed mutably beside it.
macro_rules! cx {
    ($enricher:expr, $report:expr) => {
        Cx {
            policies: &$enricher.policies,
            clock_margin: $enricher.follower.clock_margin(),
            metrics: &$enricher.metrics,
            clock: &$enricher.clock,
            report: $report,
        }
    };
}

/// Waits between attempts of a failed full reload: 1 s, doubling, at most a minute. The first
/// load is not held back (there is nothing to serve meanwhile).
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: String,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(60);
    /// The wait after a load refused for a schema change.
    const AFTER_SCHEMA_CHANGE: Duration = Duration::from_secs(600);

    fn wait(&self) -> Option<Duration> {
        self.next_attempt
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn failed(&mut self, error: &RefreshError) {
        let mut delay = Self::FIRST
            .saturating_mul(1 << self.failures.min(6))
            .min(Self::MAX);
        // A schema change is not cured by trying again soon, and each attempt is a whole Scan:
        // the items are fixed (or the type changed and deployed) on a human's time.
        if matches!(error, RefreshError::SchemaChange { .. }) {
            delay = delay.max(Self::AFTER_SCHEMA_CHANGE);
        }
        self.failures += 1;
        self.next_attempt = Some(Instant::now() + delay);
        self.last_error = error.to_string();
    }
}

/// The keys of held records an enricher watches, and the versions that resolved others.
struct Watch<K, V> {
    waiting: std::collections::HashSet<K>,
    resolved: Vec<(K, Arc<V>)>,
}

impl<K, V> Default for Watch<K, V> {
    fn default() -> Self {
        Watch {
            waiting: std::collections::HashSet::new(),
            resolved: Vec::new(),
        }
    }
}

/// An optional value as a log field shows it: its text, or `-` when there is none.
fn or_dash(value: Option<&impl fmt::Display>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// A cheap, cloneable handle for readers: lock-free lookups in the current snapshot, from any
/// task or thread, while the enricher refreshes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
/// use stream_refdata::{TableEnricher, TableConfig, SystemClock};
///
/// #[derive(serde::Deserialize)]
/// struct Product { item: String, priority: String }
///
/// let table = MemoryTable::new(&["item"]);
/// table.put(item(&[("item", "burger"), ("priority", "high")]));
/// let config = TableConfig::new("ProductPriority", &["item"], |p: &Product| Some(p.item.clone()));
/// let mut enricher = TableEnricher::new(config, table, None::<MemoryBucket>, SystemClock);
/// enricher.refresh().await;
///
/// let reader = enricher.reader(); // clone it into as many tasks as you like
/// let found = std::thread::spawn(move || reader.lookup("burger").map(|p| p.priority.clone()));
/// assert_eq!(found.join().unwrap().as_deref(), Some("high"));
/// # }
/// ```
pub struct Reader<T, K: Hash + Eq + Clone> {
    current: Arc<ArcSwap<Snapshot<T, K>>>,
}

impl<T, K: Hash + Eq + Clone> fmt::Debug for Reader<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("version", &self.current.load().version())
            .finish_non_exhaustive()
    }
}

impl<T, K: Hash + Eq + Clone> Clone for Reader<T, K> {
    fn clone(&self) -> Self {
        Reader {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T, K: Hash + Eq + Clone> Reader<T, K> {
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

/// Holds one consumer's reference data and keeps it current: the lifecycle, generic over what is
/// loaded. Use it through its two names, [`TableEnricher`](crate::TableEnricher) (a DynamoDB table) and
/// [`ObjectEnricher`](crate::ObjectEnricher) (objects in S3).
///
/// Call [`refresh`](Self::refresh) (or [`process_batch`](Self::process_batch), which does) once
/// per micro-batch; look records up synchronously through [`reader`](Self::reader) or
/// [`enrich`](Self::enrich).
pub struct ReferenceEnricher<L: Loader, Fd> {
    loader: L,
    policies: Policies,
    feed: Option<Fd>,
    clock: SharedClock,
    current: Arc<ArcSwap<Snapshot<L::Value, L::Key>>>,
    metrics: Arc<Metrics>,
    follower: FeedFollower,
    /// A full reload that was asked for and has not succeeded yet: it is never forgotten.
    pending: Option<ReloadReason>,
    /// The poll that asked for the pending reload: committed when the reload succeeds.
    pending_poll: Option<Polled>,
    backoff: Backoff,
    last_full_load: Option<Instant>,
    last_current: Option<Instant>,
    last_error: Option<String>,
    /// Keys of held records ([`Unmatched::Hold`](crate::Unmatched::Hold)) whose row has not
    /// arrived, and the versions that resolved the others, in order.
    watch: std::sync::Mutex<Watch<L::Key, L::Value>>,
    /// This enricher's share of the maximum age left out, drawn anew at each full load: it
    /// reloads at a random moment in the last [`MAX_AGE_JITTER`] of the maximum age, so
    /// consumers that loaded together (one snapshot, one deployment) do not Scan together.
    max_age_jitter: f64,
}

/// The share of the maximum age over which consumers' maximum-age reloads are spread.
pub(crate) const MAX_AGE_JITTER: f64 = 0.1;

/// A random share of the maximum age in `[0, MAX_AGE_JITTER)` (std's per-instance random hash
/// keys: no generator to seed or share).
fn draw_jitter() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::collections::hash_map::RandomState::new().hash_one(0u8) >> 11;
    MAX_AGE_JITTER * bits as f64 / (1u64 << 53) as f64
}

impl<L: Loader, Fd> fmt::Debug for ReferenceEnricher<L, Fd> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferenceEnricher")
            .field("policies", &self.policies)
            .field("version", &self.current.load().version())
            .field("pending", &self.pending)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl<L: Loader, Fd: FeedSource> ReferenceEnricher<L, Fd> {
    /// The lifecycle around `loader`. Nothing is loaded until the first refresh.
    pub(crate) fn with_loader(
        loader: L,
        policies: Policies,
        feed: Option<Fd>,
        clock: SharedClock,
    ) -> Self {
        ReferenceEnricher {
            loader,
            follower: FeedFollower::new(policies.feed.clone()),
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty(policies.ambiguity))),
            policies,
            feed,
            clock,
            metrics: Arc::new(Metrics::default()),
            pending: None,
            pending_poll: None,
            backoff: Backoff::default(),
            last_full_load: None,
            last_current: None,
            last_error: None,
            max_age_jitter: draw_jitter(),
            watch: std::sync::Mutex::new(Watch::default()),
        }
    }

    /// Watches `keys` (of held records): the first published snapshot that has an item for one
    /// records that version for [`ReferenceEnricher::take_resolved`]. A key already in the
    /// current snapshot resolves at once, with the current version.
    pub fn watch(&self, keys: impl IntoIterator<Item = L::Key>) {
        let current = self.current.load();
        let mut w = self.watched();
        for key in keys {
            if w.waiting.contains(&key) || w.resolved.iter().any(|(k, _)| *k == key) {
                continue;
            }
            match current.lookup(&key) {
                Lookup::Found(item) => w.resolved.push((key, Arc::clone(item))),
                _ => {
                    w.waiting.insert(key);
                }
            }
        }
    }

    /// The watched keys that resolved since the last call, each with the version of its item
    /// that resolved it (the first published snapshot that had one), in the order they
    /// resolved. They are no longer watched.
    pub fn take_resolved(&self) -> Vec<(L::Key, Arc<L::Value>)> {
        std::mem::take(&mut self.watched().resolved)
    }

    /// How many watched keys are still waiting for their row.
    pub fn waiting_keys(&self) -> usize {
        self.watched().waiting.len()
    }

    fn watched(&self) -> std::sync::MutexGuard<'_, Watch<L::Key, L::Value>> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A handle for lock-free lookups from other tasks.
    pub fn reader(&self) -> Reader<L::Value, L::Key> {
        Reader {
            current: Arc::clone(&self.current),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot<L::Value, L::Key>> {
        self.current.load_full()
    }

    /// Whether a full load has succeeded (before that, every record is unmatched).
    pub fn is_loaded(&self) -> bool {
        self.last_full_load.is_some()
    }

    /// The policies in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The counters, with the current staleness.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot(self.staleness())
    }

    /// Time since the data was last confirmed current; `None` before the first load.
    pub fn staleness(&self) -> Option<Duration> {
        self.last_current.map(|t| t.elapsed())
    }

    /// The error of the last failed refresh, until a refresh succeeds.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// This reference's health now: its name, loaded or not, staleness, the last error, what
    /// it rejects, and its counters (see [`Health`]).
    pub fn health(&self) -> Health {
        Health {
            reference: self.loader.name(),
            loaded: self.is_loaded(),
            staleness: self.staleness(),
            too_stale: self.is_too_stale(),
            last_error: self.last_error.clone(),
            pending_reload: self.pending.as_ref().map(ToString::to_string),
            rejected: self.loader.rejected(),
            metrics: self.metrics(),
        }
    }

    /// The full reload that was asked for (a gap file, a new stream, an unreadable file, …) and
    /// has not succeeded yet. Meanwhile the data is not confirmed current: staleness grows.
    pub fn pending_reload(&self) -> Option<&ReloadReason> {
        self.pending.as_ref()
    }

    /// Whether the staleness limit is exceeded (records are then rejected as stale).
    pub fn is_too_stale(&self) -> bool {
        match (self.policies.max_staleness, self.staleness()) {
            (Some(limit), Some(s)) => s > limit,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// The per-micro-batch step: a full load the first time (or past the maximum age or the
    /// feed's retention), else a poll of the feed and a delta. Never fails: on error the last
    /// good snapshot keeps serving, the error is logged, counted and reported, and the next call
    /// tries again.
    pub async fn refresh(&mut self) -> RefreshReport {
        self.refresh_with(false, None).await
    }

    /// [`refresh`](Self::refresh), then [`enrich`](Self::enrich): the one call per
    /// micro-batch.
    pub async fn process_batch<R>(
        &mut self,
        records: Vec<R>,
        classify: impl Fn(&R) -> Classified<L::Key>,
    ) -> (Vec<Outcome<R, L::Value>>, BatchReport) {
        let refresh = self.refresh().await;
        let (outcomes, mut report) = self.enrich(records, classify).await;
        report.refreshes.insert(0, refresh);
        (outcomes, report)
    }

    /// The refresh a flag asks for: `flag` is the protocol's flag, `None` the original kind.
    pub(crate) async fn refresh_at_flag(&mut self, flag: Option<&ChangeFlag>) -> RefreshReport {
        self.refresh_with(true, flag).await
    }

    pub(crate) fn counters(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn loader(&self) -> &L {
        &self.loader
    }

    /// The clock margin the loaded data was taken with (see [`Cx::clock_margin`]).
    pub(crate) fn clock_margin(&self) -> Duration {
        self.follower.clock_margin()
    }

    /// The feed position L and the largest W seen, when a feed is followed.
    pub(crate) fn follower_position(&self) -> Option<(chrono::DateTime<chrono::Utc>, Duration)> {
        self.feed.as_ref()?;
        self.follower.position()
    }

    async fn refresh_with(&mut self, at_flag: bool, flag: Option<&ChangeFlag>) -> RefreshReport {
        let started = Instant::now();
        let mut report = RefreshReport::default();
        match self.refresh_inner(at_flag, flag, &mut report).await {
            Ok(()) => self.last_error = None,
            Err(e) => {
                Metrics::add(&self.metrics.refresh_errors, 1);
                warn!(
                    error = %e,
                    staleness_ms = self.staleness().map(|s| s.as_millis() as u64),
                    "refresh failed; serving the last good snapshot"
                );
                self.last_error = Some(e.to_string());
                report.error = Some(e);
            }
        }
        if report.did_work() {
            Metrics::set(
                &self.metrics.last_refresh_micros,
                started.elapsed().as_micros() as u64,
            );
            info!(
                full_reload = %or_dash(report.full_reload.as_ref()),
                files = report.files,
                applied = report.applied,
                reread = report.reread,
                problems = report.problems.len(),
                error = %or_dash(report.error.as_ref()),
                items = self.current.load().len(),
                "reference data refreshed"
            );
        }
        report
    }

    /// Why everything must be loaded now, before looking at the feed.
    fn reload_due(&self) -> Option<ReloadReason> {
        let Some(last) = self.last_full_load else {
            return Some(ReloadReason::FirstLoad);
        };
        // Before the maximum age: past the retention the feed cannot be followed at all, so this
        // reload must not be taken for the optional one (which keeps following the feed).
        if self.feed.is_some() && self.follower.beyond_retention() {
            return Some(ReloadReason::BeyondRetention);
        }
        if self
            .policies
            .max_age
            .is_some_and(|max| last.elapsed() > max.mul_f64(1.0 - self.max_age_jitter))
        {
            return Some(ReloadReason::MaximumAge);
        }
        None
    }

    async fn refresh_inner(
        &mut self,
        at_flag: bool,
        flag: Option<&ChangeFlag>,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        if let Some(f) = flag {
            if !self.loader.concerns(f) {
                Metrics::add(&self.metrics.ignored_flags, 1);
                return Ok(());
            }
        }
        // A failed maximum-age reload does not stop the feed being followed (the data stays
        // current): it is reported in `reload_error`, counted, and tried again after the backoff.
        match self.pending.clone().or_else(|| self.reload_due()) {
            None => {}
            // Without a feed nothing else confirms the data: the reload is not optional.
            Some(ReloadReason::MaximumAge) if self.feed.is_none() => {
                return self
                    .pending_reload_now(ReloadReason::MaximumAge, report)
                    .await
            }
            Some(ReloadReason::MaximumAge) if self.backoff.wait().is_some() => {}
            Some(ReloadReason::MaximumAge) => {
                match self.full_reload(ReloadReason::MaximumAge, report).await {
                    Ok(()) => return self.catch_up(report).await,
                    Err(e) => {
                        Metrics::add(&self.metrics.refresh_errors, 1);
                        warn!(error = %e, "maximum-age reload failed; following the feed, retrying after a backoff");
                        self.backoff.failed(&e);
                        report.reload_error = Some(e);
                    }
                }
            }
            Some(reason) => {
                self.pending_reload_now(reason, report).await?;
                return self.catch_up(report).await;
            }
        }
        self.follow(at_flag, flag, report).await?;
        self.retry_unreadable(report).await;
        Ok(())
    }

    /// Reads again what the loader rejected as unreadable, once its wait has passed: after the
    /// feed is followed, so an unreadable object never holds a poll, a flag or a load.
    async fn retry_unreadable(&mut self, report: &mut RefreshReport) {
        if !self.loader.retry_due(self.clock.now()) {
            return;
        }
        let current = self.current.load_full();
        let mut cx = cx!(self, report);
        if let Some(next) = self.loader.retry(&current, &mut cx).await {
            self.publish(next);
        }
    }

    /// After a load from a feed snapshot, the feed is followed from its position at once, before
    /// anything is served from it (a reload that poll asks for is done by the source itself).
    async fn catch_up(&mut self, report: &mut RefreshReport) -> Result<(), RefreshError> {
        if report.snapshot.is_none() {
            return Ok(());
        }
        self.follow(true, None, report).await
    }

    /// A reload the data cannot do without: kept pending until it succeeds, attempted at once
    /// the first time and after the backoff when attempts fail.
    async fn pending_reload_now(
        &mut self,
        reason: ReloadReason,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        if reason != ReloadReason::FirstLoad {
            self.pending = Some(reason.clone());
            if let Some(retry_in) = self.backoff.wait() {
                return Err(RefreshError::ReloadPending {
                    reason,
                    retry_in,
                    last_error: self.backoff.last_error.clone(),
                });
            }
        }
        let result = self.full_reload(reason, report).await;
        if let Err(e) = &result {
            if self.pending.is_some() {
                self.backoff.failed(e);
            }
        }
        result
    }

    /// Follows the feed (or applies a flag's own change): a delta, or a reload a file asks for.
    async fn follow(
        &mut self,
        at_flag: bool,
        flag: Option<&ChangeFlag>,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let current = self.current.load_full();
        if let Some(flag) = flag {
            let mut cx = cx!(self, report);
            match self.loader.apply_flag(flag, &current, &mut cx).await? {
                None => {}
                Some(Applied::Delta(next)) => {
                    if let Some(next) = next {
                        self.publish(next);
                    }
                    return Ok(());
                }
                Some(Applied::Reload(reason)) => {
                    return self.pending_reload_now(reason, report).await
                }
            }
        }
        let Some(feed) = &self.feed else {
            if at_flag {
                return self
                    .pending_reload_now(ReloadReason::FlagWithoutFeed, report)
                    .await;
            }
            // Nothing confirms the data between loads: a flag that never arrives would leave
            // it stale while staleness read 0. Staleness counts from the last load.
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
        let applied = if polled.files.is_empty() {
            Applied::Delta(None)
        } else {
            let mut cx = cx!(self, report);
            self.loader.apply(&polled.files, &current, &mut cx).await?
        };
        match applied {
            // The poll counts as done only together with the reload it asked for: if the reload
            // fails, the reason stays pending and the data is not confirmed current.
            Applied::Reload(reason) => {
                self.pending_poll = Some(polled);
                self.pending_reload_now(reason, report).await?;
            }
            Applied::Delta(next) => {
                self.follower.commit(&polled);
                self.last_current = Some(polled.taken.unwrap_or_else(Instant::now));
                if let Some(next) = next {
                    self.publish(next);
                }
                if report.files > 0 {
                    Metrics::add(&self.metrics.delta_refreshes, 1);
                }
            }
        }
        Ok(())
    }

    /// Loads everything now, then follows the feed from the position taken before the load.
    async fn full_reload(
        &mut self,
        reason: ReloadReason,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let position = self.clock.now();
        let started = Instant::now();
        let mut cx = cx!(self, report);
        let current = self.current.load_full();
        let loaded = self
            .loader
            .full_load(&reason, self.feed.as_ref(), &current, &mut cx)
            .await?;
        Metrics::add(&self.metrics.full_refreshes, 1);
        let items = loaded.snapshot.len();
        self.publish(loaded.snapshot);
        self.last_full_load = Some(started);
        self.max_age_jitter = draw_jitter();
        self.pending = None;
        self.backoff = Backoff::default();
        match loaded.from_feed_snapshot {
            None => {
                self.last_current = Some(started);
                if let Some(polled) = self.pending_poll.take() {
                    // Its files are covered by the load that followed them.
                    self.follower.commit(&polled);
                }
                // Then the position taken before the load: the feed is followed from there, not
                // from the earlier poll's listing (which would fetch again what the load covers).
                self.follower.set_position(position);
            }
            Some(from) => {
                // The data is as current as the snapshot's position, and the feed is followed
                // from there: nothing applied before counts (the snapshot may be older), and a
                // poll that asked for a reload is listed again from the snapshot's position.
                let age = (position - from.position).to_std().unwrap_or_default();
                self.last_current = Some(started.checked_sub(age).unwrap_or(started));
                // The maximum age counts from the Scan the snapshot descends from.
                if let Some(scanned) = from.scanned_at {
                    let since = (position - scanned).to_std().unwrap_or_default();
                    self.last_full_load = Some(started.checked_sub(since).unwrap_or(started));
                }
                self.pending_poll = None;
                self.follower
                    .restart_at(from.position, from.write_window, from.clock_margin, age);
                report.snapshot = Some(from.key);
            }
        }
        info!(%reason, items, snapshot = report.snapshot.as_deref().unwrap_or("-"), "full reload");
        report.full_reload = Some(reason);
        Ok(())
    }

    /// Publishes `next` as the next version.
    fn publish(&self, mut next: Snapshot<L::Value, L::Key>) {
        next.set_version(self.current.load().version() + 1);
        // The watched keys this version resolves: it is the version that resolved them.
        {
            let mut w = self.watched();
            if !w.waiting.is_empty() {
                let Watch { waiting, resolved } = &mut *w;
                waiting.retain(|key| match next.lookup(key) {
                    Lookup::Found(item) => {
                        resolved.push((key.clone(), Arc::clone(item)));
                        false
                    }
                    _ => true,
                });
            }
        }
        self.current.store(Arc::new(next));
    }
}
