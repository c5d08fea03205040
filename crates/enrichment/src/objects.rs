//! Reference data kept as objects in S3 (JSON Lines or CSV, optionally gzip).
//!
//! [`ObjectEnricher`] loads every object under a prefix, then reloads **one object** when a
//! change flag or an S3-kind change file says it changed (a removal drops its rows). It shares
//! the snapshot, the batch walk, the policies and the counters with the DynamoDB [`Enricher`].
//!
//! [`Enricher`]: crate::Enricher

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use change_protocol::{ChangeFlag, ChangeKind, ObjectChange};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::batch::{walk, BatchCore, BatchReport, Classified, Outcome, Unmatched, UnmatchedReason};
use crate::clock::Clock;
use crate::enricher::{LookupKeyFn, Reader, RefreshError, RefreshReport};
use crate::feed::{FeedFollower, FeedSettings};
use crate::key::{ItemKey, KeyValue};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::rows::parse_rows;
use crate::snapshot::{Ambiguity, Snapshot};
use crate::sources::{FeedSource, ListPage, SourceError};

/// What to do with a row that does not parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadRows {
    /// Reject the whole object and keep its previous rows (default): a half-read price list is
    /// worse than the last good one.
    #[default]
    RejectObject,
    /// Skip the row, count it and log it with the object key and line.
    SkipRow,
}

/// An object's body and metadata.
#[derive(Clone, Debug, Default)]
pub struct ObjectBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Its ETag (with or without quotes).
    pub etag: Option<String>,
    /// Its `Content-Encoding`, if any.
    pub content_encoding: Option<String>,
}

/// Reads reference objects.
pub trait ObjectSource: Send + Sync + 'static {
    /// One page of the keys under `prefix`.
    fn list(
        &self,
        prefix: &str,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, SourceError>> + Send;
    /// The current object at `key`; `None` when there is none (404).
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectBody>, SourceError>> + Send;
}

/// [`ObjectSource`] on the SDK's S3 client, for one bucket.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Objects {
    /// Reads objects of `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Objects {
            client,
            bucket: bucket.into(),
        }
    }
}

fn sdk_error(operation: &'static str, e: impl std::error::Error) -> SourceError {
    SourceError {
        operation,
        message: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
    }
}

impl ObjectSource for S3Objects {
    async fn list(&self, prefix: &str, token: Option<String>) -> Result<ListPage, SourceError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| sdk_error("ListObjectsV2", e))?;
        Ok(ListPage {
            keys: out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
            next: if out.is_truncated().unwrap_or(false) {
                out.next_continuation_token().map(str::to_owned)
            } else {
                None
            },
        })
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_owned);
                let content_encoding = out.content_encoding().map(str::to_owned);
                let bytes = out.body.collect().await.map_err(|e| SourceError {
                    operation: "GetObject",
                    message: format!("reading the body of {key}: {e}"),
                })?;
                Ok(Some(ObjectBody {
                    bytes: bytes.into_bytes().to_vec(),
                    etag,
                    content_encoding,
                }))
            }
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(sdk_error("GetObject", e)),
        }
    }
}

/// How an [`ObjectEnricher`] is set up.
pub struct ObjectConfig<T, K> {
    /// The bucket that holds the reference objects (flags and change files of other buckets
    /// are ignored).
    pub bucket: String,
    /// Only objects under this prefix are reference data.
    pub prefix: String,
    /// Row to lookup key.
    pub lookup_key: LookupKeyFn<T, K>,
    /// Rows that do not parse.
    pub bad_rows: BadRows,
    /// Several rows per lookup key (the lowest object key and line wins by default).
    pub ambiguity: Ambiguity,
    /// Records without a reference row.
    pub unmatched: Unmatched,
    /// How the change feed is followed (S3-kind change files).
    pub feed: FeedSettings,
    /// Reload everything when the last full load is older than this.
    pub max_age: Option<Duration>,
    /// Reject records as stale past this.
    pub max_staleness: Option<Duration>,
}

impl<T, K> fmt::Debug for ObjectConfig<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("bad_rows", &self.bad_rows)
            .field("unmatched", &self.unmatched)
            .finish_non_exhaustive()
    }
}

impl<T, K> ObjectConfig<T, K> {
    /// Objects of `bucket` under `prefix`, rows indexed by `lookup_key`; other settings as
    /// [`crate::EnricherConfig::new`].
    pub fn new(
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        lookup_key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        ObjectConfig {
            bucket: bucket.into(),
            prefix: prefix.into(),
            lookup_key: Arc::new(lookup_key),
            bad_rows: BadRows::default(),
            ambiguity: Ambiguity::default(),
            unmatched: Unmatched::default(),
            feed: FeedSettings::default(),
            max_age: Some(Duration::from_secs(6 * 3600)),
            max_staleness: Some(Duration::from_secs(15 * 60)),
        }
    }

    /// Sets the bad-row policy.
    pub fn with_bad_rows(mut self, b: BadRows) -> Self {
        self.bad_rows = b;
        self
    }
    /// Sets the feed settings.
    pub fn with_feed(mut self, f: FeedSettings) -> Self {
        self.feed = f;
        self
    }
    /// Sets the unmatched-record policy.
    pub fn with_unmatched(mut self, u: Unmatched) -> Self {
        self.unmatched = u;
        self
    }
}

#[derive(Clone, Debug)]
struct Loaded {
    etag: Option<String>,
    rows: Vec<ItemKey>,
}

fn bare_etag(e: &str) -> &str {
    e.trim_matches('"')
}

/// Reference rows from S3 objects, kept current object by object.
pub struct ObjectEnricher<T, K: Hash + Eq + Clone, Ob, Fd, C> {
    config: ObjectConfig<T, K>,
    objects: Ob,
    feed: Option<Fd>,
    clock: C,
    current: Arc<ArcSwap<Snapshot<T, K>>>,
    metrics: Arc<Metrics>,
    follower: FeedFollower,
    loaded: HashMap<String, Loaded>,
    last_full_load: Option<Instant>,
    last_current: Option<Instant>,
    last_error: Option<String>,
}

impl<T, K, Ob, Fd, C> ObjectEnricher<T, K, Ob, Fd, C>
where
    T: DeserializeOwned + Send + Sync + 'static,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    Ob: ObjectSource,
    Fd: FeedSource,
    C: Clock,
{
    /// An enricher on `objects`, following `feed` for S3-kind change files (optional: flags
    /// alone also work).
    pub fn new(config: ObjectConfig<T, K>, objects: Ob, feed: Option<Fd>, clock: C) -> Self {
        let follower = FeedFollower::new(config.feed.clone());
        ObjectEnricher {
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty(config.ambiguity))),
            config,
            objects,
            feed,
            clock,
            metrics: Arc::new(Metrics::default()),
            follower,
            loaded: HashMap::new(),
            last_full_load: None,
            last_current: None,
            last_error: None,
        }
    }

    /// A handle for lock-free lookups.
    pub fn reader(&self) -> Reader<T, K> {
        Reader::new(Arc::clone(&self.current))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot<T, K>> {
        self.current.load_full()
    }

    /// The counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot(self.staleness())
    }

    /// Time since the data was last confirmed current.
    pub fn staleness(&self) -> Option<Duration> {
        self.last_current.map(|t| t.elapsed())
    }

    fn too_stale(&self) -> bool {
        match (self.config.max_staleness, self.staleness()) {
            (Some(limit), Some(s)) => s > limit,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn ours(&self, c: &ObjectChange) -> bool {
        c.bucket == self.config.bucket && c.key.starts_with(&self.config.prefix)
    }

    /// Whether the snapshot already reflects `c` (a duplicate notification).
    fn applied(&self, c: &ObjectChange) -> bool {
        match (self.loaded.get(&c.key), c.removed) {
            (None, true) => true,
            (Some(l), false) => match (&l.etag, &c.etag) {
                (Some(a), Some(b)) => bare_etag(a) == bare_etag(b),
                _ => false,
            },
            _ => false,
        }
    }

    /// The per-micro-batch step: a full load the first time (or past the maximum age), else a
    /// poll of the feed; the objects named by new change files are reloaded. Never fails: the
    /// last good data keeps serving.
    pub async fn refresh(&mut self) -> RefreshReport {
        self.refresh_with(false, None).await
    }

    async fn refresh_with(&mut self, at_flag: bool, flag: Option<&ChangeFlag>) -> RefreshReport {
        let started = Instant::now();
        let mut report = RefreshReport::default();
        match self.refresh_inner(at_flag, flag, &mut report).await {
            Ok(()) => self.last_error = None,
            Err(e) => {
                Metrics::add(&self.metrics.refresh_errors, 1);
                warn!(error = %e, "refresh of reference objects failed; serving the last good data");
                report.error = Some(e.to_string());
                self.last_error = Some(e.to_string());
            }
        }
        if report.did_work() {
            Metrics::set(
                &self.metrics.last_refresh_micros,
                started.elapsed().as_micros() as u64,
            );
            info!(
                full_reload = report.full_reload.as_deref().unwrap_or("-"),
                files = report.files,
                reloaded = report.reread,
                problems = report.problems.len(),
                rows = self.current.load().len(),
                "reference objects refreshed"
            );
        }
        report
    }

    async fn refresh_inner(
        &mut self,
        at_flag: bool,
        flag: Option<&ChangeFlag>,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let too_old = self
            .config
            .max_age
            .zip(self.last_full_load)
            .is_some_and(|(max, t)| t.elapsed() > max);
        if self.last_full_load.is_none() || too_old {
            let reason = if too_old {
                "maximum age reached"
            } else {
                "first load"
            };
            return self.full_load(reason, report).await;
        }
        if let Some(change) = flag.map(|f| &f.change) {
            // A flag names its object: another bucket's or prefix's change is not ours, and a
            // change already applied (a duplicate notification) needs nothing.
            if !self.ours(change) || self.applied(change) {
                return Ok(());
            }
            let mut keys = BTreeSet::new();
            keys.insert(change.key.clone());
            return self.reload(keys, report).await;
        }
        let Some(feed) = &self.feed else {
            if at_flag {
                return self
                    .full_load("change flag (no change feed configured)", report)
                    .await;
            }
            self.last_current = Some(Instant::now());
            return Ok(());
        };
        let now = self.clock.now();
        let Some(polled) = self
            .follower
            .poll(feed, now, at_flag, &self.metrics)
            .await?
        else {
            return Ok(());
        };
        report.files = polled.files.len();
        let mut keys = BTreeSet::new();
        let mut gap = None;
        for fetched in &polled.files {
            match &fetched.content {
                Err(e) => gap = Some(format!("unreadable change file {}: {e}", fetched.key)),
                Ok(f) if f.kind == ChangeKind::Gap => {
                    gap = Some(format!("gap announced by {}", fetched.key))
                }
                Ok(f) if f.kind == ChangeKind::S3 => {
                    for c in f.objects.iter().filter(|c| self.ours(c)) {
                        if !self.applied(c) {
                            keys.insert(c.key.clone());
                        }
                    }
                }
                Ok(_) => Metrics::add(&self.metrics.ignored_files, 1),
            }
        }
        if let Some(reason) = gap {
            self.follower.commit(&polled);
            return self.full_load(&reason, report).await;
        }
        if !keys.is_empty() {
            self.reload(keys, report).await?;
            Metrics::add(&self.metrics.delta_refreshes, 1);
        }
        self.follower.commit(&polled);
        self.last_current = Some(Instant::now());
        Ok(())
    }

    /// Loads every object under the prefix into a new snapshot.
    async fn full_load(
        &mut self,
        reason: &str,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let position = self.clock.now();
        let mono = Instant::now();
        let mut keys = BTreeSet::new();
        let mut token = None;
        loop {
            let page = self.objects.list(&self.config.prefix, token.take()).await?;
            keys.extend(page.keys.into_iter().filter(|k| !k.ends_with('/')));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut next = Snapshot::empty(self.config.ambiguity);
        let mut loaded = HashMap::new();
        for key in keys {
            if let Some(body) = self.objects.get(&key).await? {
                Metrics::add(&self.metrics.objects_read, 1);
                if let Some(l) = self.load_object(&mut next, &key, body, None, report) {
                    loaded.insert(key, l);
                }
            }
        }
        self.loaded = loaded;
        next.set_version(self.current.load().version() + 1);
        self.current.store(Arc::new(next));
        Metrics::add(&self.metrics.full_refreshes, 1);
        self.follower.set_position(position);
        self.last_full_load = Some(mono);
        self.last_current = Some(mono);
        report.full_reload = Some(reason.to_owned());
        info!(
            reason,
            objects = self.loaded.len(),
            "full load of reference objects"
        );
        Ok(())
    }

    /// Reloads the given objects (removing the rows of those that are gone) and publishes.
    async fn reload(
        &mut self,
        keys: BTreeSet<String>,
        report: &mut RefreshReport,
    ) -> Result<(), RefreshError> {
        let mut next = (**self.current.load()).clone();
        let mut changes = Vec::new();
        for key in keys {
            let body = self.objects.get(&key).await?;
            changes.push((key, body));
        }
        for (key, body) in changes {
            report.reread += 1;
            let previous = self.loaded.get(&key).cloned();
            match body {
                None => {
                    for row in previous.iter().flat_map(|l| &l.rows) {
                        next.remove(row);
                    }
                    self.loaded.remove(&key);
                }
                Some(body) => {
                    Metrics::add(&self.metrics.objects_read, 1);
                    if let Some(l) =
                        self.load_object(&mut next, &key, body, previous.as_ref(), report)
                    {
                        self.loaded.insert(key, l);
                    }
                }
            }
        }
        next.set_version(next.version() + 1);
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Parses one object into `next`, replacing its previous rows. With [`BadRows::RejectObject`]
    /// a bad row leaves the previous rows in place and returns `None`.
    fn load_object(
        &self,
        next: &mut Snapshot<T, K>,
        key: &str,
        body: crate::objects::ObjectBody,
        previous: Option<&Loaded>,
        report: &mut RefreshReport,
    ) -> Option<Loaded> {
        let rows = match parse_rows::<T>(key, &body.bytes, body.content_encoding.as_deref()) {
            Ok(rows) => rows,
            Err(e) => {
                Metrics::add(&self.metrics.bad_objects, 1);
                warn!(error = %e, "reference object rejected; its previous rows stay");
                report.problems.push(e.to_string());
                return None;
            }
        };
        let bad: Vec<String> = rows
            .iter()
            .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
            .collect();
        if !bad.is_empty() {
            Metrics::add(&self.metrics.bad_rows, bad.len() as u64);
            for b in &bad {
                warn!(row = %b, "reference row does not parse");
            }
            if self.config.bad_rows == BadRows::RejectObject {
                Metrics::add(&self.metrics.bad_objects, 1);
                report.problems.push(format!(
                    "{key} rejected ({} bad rows; first: {})",
                    bad.len(),
                    bad[0]
                ));
                return None;
            }
            report.problems.extend(bad);
        }
        for row in previous.iter().flat_map(|l| &l.rows) {
            next.remove(row);
        }
        let mut keys = Vec::new();
        for (line, row) in rows {
            if let Ok(value) = row {
                let item_key = ItemKey(vec![
                    KeyValue::S(key.to_owned()),
                    KeyValue::N(line.to_string()),
                ]);
                let lookup = (self.config.lookup_key)(&value);
                next.upsert(item_key.clone(), value, lookup);
                keys.push(item_key);
            }
        }
        Some(Loaded {
            etag: body.etag,
            rows: keys,
        })
    }

    /// Enriches `records` in order; a [`Classified::ChangeFlag`] for one of this enricher's
    /// objects reloads that object at its position (unless the change is already applied).
    pub async fn enrich<R>(
        &mut self,
        records: Vec<R>,
        classify: impl Fn(&R) -> Classified<K>,
    ) -> (Vec<Outcome<R, T>>, BatchReport) {
        walk(self, records, classify).await
    }

    /// [`ObjectEnricher::refresh`], then [`ObjectEnricher::enrich`].
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

impl<T, K, Ob, Fd, C> BatchCore<T, K> for ObjectEnricher<T, K, Ob, Fd, C>
where
    T: DeserializeOwned + Send + Sync + 'static,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    Ob: ObjectSource,
    Fd: FeedSource,
    C: Clock,
{
    fn current(&self) -> Arc<Snapshot<T, K>> {
        self.current.load_full()
    }
    fn too_stale(&self) -> bool {
        ObjectEnricher::too_stale(self)
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
    async fn refresh_at_flag(&mut self, flag: Option<&ChangeFlag>) -> RefreshReport {
        self.refresh_with(true, flag).await
    }
}
