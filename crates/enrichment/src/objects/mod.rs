//! Reference data kept as objects in S3 (JSON Lines or CSV, optionally gzip).
//!
//! The full load reads every object under a prefix; after it, **one object** is read again when a
//! change flag or an S3-kind change file says it changed (a removal, or a 404, drops its rows).
//! A row's primary key is its object key and line, so an object's rows are replaced as a whole.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use serde::de::DeserializeOwned;
use stream_refdata_protocol::{ChangeFlag, ChangeKind, ObjectChange};
use tracing::{info, warn};

use crate::feed::Fetched;
use crate::key::{ItemKey, KeyValue, LookupKey};
use crate::lifecycle::config::{LookupKeyFn, ObjectConfig, ObjectSpec};
use crate::lifecycle::loader::{self, Applied, Cx, Loader};
use crate::lifecycle::report::{RefreshError, RefreshReport, ReloadReason};
use crate::lifecycle::ReferenceEnricher;
use crate::metrics::Metrics;
use crate::policy::BadRows;
use rows::{parse_keyed_rows, RowError};

pub mod rows;

#[cfg(test)]
mod tests;

use crate::snapshot::Snapshot;
use crate::sources::{FeedSource, ObjectBody, ObjectSource, S3Feed, S3Objects, SourceError};
use stream_refdata_aws::Clock;

/// A parsed row with its lookup key, or why it is a bad row.
type KeyedRow<T, K> = Result<(T, Option<K>), RowError>;

/// An object's rows as the snapshot takes them: item key (object key, line), value, lookup key.
type Rows<T, K> = Vec<(ItemKey, T, Option<K>)>;

/// Reference rows from S3 objects, kept current object by object, with the same lifecycle,
/// policies and counters as the table [`TableEnricher`](crate::TableEnricher).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use stream_refdata::testing::MemoryBucket;
/// use stream_refdata::{ObjectConfig, ObjectEnricher, SystemClock};
///
/// #[derive(serde::Deserialize)]
/// struct Dish { dish: String, category: String }
///
/// // In production: S3Objects and S3Feed on the AWS SDK; here an in-memory bucket.
/// let bucket = MemoryBucket::default();
/// bucket.put("reference/dishes.csv", b"dish,category\nburger,mains\n".to_vec());
/// let config = ObjectConfig::new("ref-bucket", "reference/", |d: &Dish| Some(d.dish.clone()));
/// let mut enricher = ObjectEnricher::new(config, bucket, None::<MemoryBucket>, SystemClock);
/// enricher.refresh().await;
/// assert_eq!(enricher.reader().lookup("burger").unwrap().category, "mains");
/// # }
/// ```
pub type ObjectEnricher<T, K = String, Ob = S3Objects, Fd = S3Feed> =
    ReferenceEnricher<ObjectLoader<T, K, Ob>, Fd>;

impl<T, K, Ob, Fd> ObjectEnricher<T, K, Ob, Fd>
where
    T: DeserializeOwned + Send + Sync + 'static,
    K: LookupKey,
    Ob: ObjectSource,
    Fd: FeedSource,
{
    /// An enricher on `objects`, following `feed` for S3-kind change files (optional: flags
    /// alone also work). Nothing is loaded until the first refresh.
    pub fn new(
        config: ObjectConfig<T, K>,
        objects: Ob,
        feed: Option<Fd>,
        clock: impl Clock,
    ) -> Self {
        let loader = ObjectLoader {
            spec: config.spec,
            lookup_key: config.lookup_key,
            objects,
            loaded: HashMap::new(),
            unreadable: HashMap::new(),
            rejected: BTreeSet::new(),
        };
        ReferenceEnricher::with_loader(loader, config.policies, feed, clock.shared())
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

/// The [`Loader`] of reference objects: their rows, and which rows each object holds.
#[allow(unreachable_pub)] // named only through `ObjectEnricher`
pub struct ObjectLoader<T, K, Ob> {
    spec: ObjectSpec,
    lookup_key: LookupKeyFn<T, K>,
    objects: Ob,
    loaded: HashMap<String, Loaded>,
    /// Objects rejected because they cannot be read (see [`SourceError::is_permanent`]): when
    /// each is read again.
    unreadable: HashMap<String, Unreadable>,
    /// Objects whose last read was rejected (they did not parse, had bad rows under
    /// [`BadRows::RejectObject`], or could not be read): their previous rows, if any, serve.
    rejected: BTreeSet<String>,
}

/// An object rejected as unreadable: how many reads in a row failed, and when it is read next
/// (after [`FIRST_RETRY`], doubling up to [`LAST_RETRY`]). A notification of it, a flag or a
/// full load reads it earlier.
#[derive(Clone, Debug)]
struct Unreadable {
    attempts: u32,
    retry_at: DateTime<Utc>,
}

/// The first wait before an unreadable object is read again.
const FIRST_RETRY: chrono::Duration = chrono::Duration::seconds(30);
/// The longest wait between two reads of an unreadable object.
const LAST_RETRY: chrono::Duration = chrono::Duration::minutes(30);
/// At most this many unreadable objects are read again in one refresh (the rest at the next),
/// so a prefix of archived objects does not put a burst of GETs into one batch.
const RETRIES_PER_REFRESH: usize = 16;

impl Unreadable {
    /// The schedule after one more failed read at `now`.
    fn after(previous: Option<&Unreadable>, now: DateTime<Utc>) -> Unreadable {
        let attempts = previous.map_or(0, |u| u.attempts) + 1;
        let wait = FIRST_RETRY
            .checked_mul(1 << (attempts - 1).min(16))
            .map_or(LAST_RETRY, |w| w.min(LAST_RETRY));
        Unreadable {
            attempts,
            retry_at: now + wait,
        }
    }
}

impl<T, K, Ob> std::fmt::Debug for ObjectLoader<T, K, Ob> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLoader")
            .field("spec", &self.spec)
            .field("objects_loaded", &self.loaded.len())
            .field("objects_unreadable", &self.unreadable.len())
            .finish_non_exhaustive()
    }
}

impl<T, K, Ob> Loader for ObjectLoader<T, K, Ob>
where
    T: DeserializeOwned + Send + Sync + 'static,
    K: LookupKey,
    Ob: ObjectSource,
{
    type Value = T;
    type Key = K;

    fn name(&self) -> String {
        format!("s3://{}/{}", self.spec.bucket, self.spec.prefix)
    }

    fn rejected(&self) -> Vec<String> {
        self.rejected.iter().cloned().collect()
    }

    /// Objects have no feed snapshot: a full load lists and reads them.
    async fn full_load<F: FeedSource>(
        &mut self,
        _reason: &ReloadReason,
        _feed: Option<&F>,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<loader::Loaded<Snapshot<T, K>>, RefreshError> {
        let mut keys = BTreeSet::new();
        let mut token = None;
        loop {
            let page = self.objects.list(&self.spec.prefix, token.take()).await?;
            keys.extend(page.keys.into_iter().filter(|k| !k.ends_with('/')));
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        // Every object's rows are read first and the snapshot built from them in bulk (one
        // flat base, as a table's full load), not row by row.
        let mut rows = Vec::new();
        let mut kept = Vec::new();
        let mut loaded = HashMap::new();
        let mut unreadable = HashMap::new();
        let mut rejected = BTreeSet::new();
        for key in keys {
            let parsed = match self.get(&key).await {
                Ok(None) => continue,
                Ok(Some(body)) => {
                    Metrics::add(&cx.metrics.objects_read, 1);
                    self.parse_object(&key, body, cx)
                }
                // Rejected like an object with bad rows; it never holds the others' load.
                Err(e) if e.is_permanent() => {
                    unreadable.insert(key.clone(), self.reject_unreadable(&key, &e, cx));
                    None
                }
                Err(e) => return Err(e.into()),
            };
            match parsed {
                Some((l, object_rows)) => {
                    rows.extend(object_rows);
                    loaded.insert(key, l);
                }
                // Rejected: the rows it had keep serving, across full loads too.
                None => {
                    rejected.insert(key.clone());
                    if let Some(previous) = self.loaded.get(&key) {
                        loaded.insert(key.clone(), previous.clone());
                        kept.push(key);
                    }
                }
            }
        }
        let mut next = Snapshot::from_entries(cx.policies.ambiguity, rows);
        for row in kept.iter().flat_map(|key| &loaded[key].rows) {
            next.copy_from(current, row);
        }
        self.loaded = loaded;
        self.unreadable = unreadable;
        self.rejected = rejected;
        info!(
            objects = self.loaded.len(),
            "full load of reference objects"
        );
        Ok(loader::Loaded::direct(next))
    }

    async fn apply(
        &mut self,
        files: &[Fetched],
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Applied<Snapshot<T, K>>, RefreshError> {
        let mut keys = BTreeSet::new();
        let mut gap = None;
        for fetched in files {
            match &fetched.content {
                Err(e) => {
                    gap = Some(ReloadReason::UnreadableFile {
                        file: fetched.key.clone(),
                        error: e.to_string(),
                    })
                }
                Ok(f) if f.kind == ChangeKind::Gap => {
                    gap = Some(ReloadReason::Gap {
                        file: fetched.key.clone(),
                    })
                }
                Ok(f) if f.kind == ChangeKind::S3 => {
                    for c in f.objects.iter().filter(|c| self.ours(c)) {
                        if !self.applied(c) {
                            keys.insert(c.key.clone());
                        }
                    }
                }
                Ok(_) => Metrics::add(&cx.metrics.ignored_files, 1),
            }
        }
        if let Some(reason) = gap {
            return Ok(Applied::Reload(reason));
        }
        if keys.is_empty() {
            return Ok(Applied::Delta(None));
        }
        Ok(Applied::Delta(Some(self.reload(keys, current, cx).await?)))
    }

    fn concerns(&self, flag: &ChangeFlag) -> bool {
        self.ours(&flag.change)
    }

    /// A flag names its object: a change already applied (a duplicate notification) needs
    /// nothing; else that object is read again.
    async fn apply_flag(
        &mut self,
        flag: &ChangeFlag,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Option<Applied<Snapshot<T, K>>>, RefreshError> {
        let change = &flag.change; // ours: the lifecycle asked `concerns` first
        if self.applied(change) {
            return Ok(Some(Applied::Delta(None)));
        }
        let keys = BTreeSet::from([change.key.clone()]);
        Ok(Some(Applied::Delta(Some(
            self.reload(keys, current, cx).await?,
        ))))
    }

    fn retry_due(&self, now: DateTime<Utc>) -> bool {
        self.unreadable.values().any(|u| u.retry_at <= now)
    }

    /// Reads the unreadable objects that are due again; a failure of any kind now only moves
    /// the next read further out.
    async fn retry(&mut self, current: &Snapshot<T, K>, cx: &mut Cx<'_>) -> Option<Snapshot<T, K>> {
        let now = cx.clock.now();
        let due: BTreeSet<String> = (self.unreadable.iter())
            .filter(|(_, u)| u.retry_at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut reads = Vec::new();
        for key in due.into_iter().take(RETRIES_PER_REFRESH) {
            match self.get(&key).await {
                // Not the object's fault: read again at the next refresh, the wait unchanged.
                Err(e) if !e.is_permanent() => cx.report.problems.push(format!(
                    "{key}: reading it again failed ({e}); tried again at the next refresh"
                )),
                read => reads.push((key, read)),
            }
        }
        (!reads.is_empty()).then(|| self.apply_reads(reads, current, cx))
    }
}

impl<T, K, Ob> ObjectLoader<T, K, Ob>
where
    T: DeserializeOwned + Send + Sync + 'static,
    K: LookupKey,
    Ob: ObjectSource,
{
    fn ours(&self, c: &ObjectChange) -> bool {
        c.bucket == self.spec.bucket && c.key.starts_with(&self.spec.prefix)
    }

    /// Whether the snapshot already holds the object `c` names, by ETag (a duplicate
    /// notification). Removals are never taken as applied, even of an object not held: in a
    /// versioned bucket, removing a delete marker (an undelete) is reported as a removal, and
    /// only a GET tells.
    fn applied(&self, c: &ObjectChange) -> bool {
        if c.removed {
            return false;
        }
        match (
            self.loaded.get(&c.key).and_then(|l| l.etag.as_deref()),
            &c.etag,
        ) {
            (Some(a), Some(b)) => bare_etag(a) == bare_etag(b),
            _ => false,
        }
    }

    /// A GET of `key` as the loader takes it. A permanent failure of a key that a listing no
    /// longer shows is its removal: S3 answers 403, not 404, for a missing key to a caller that
    /// may not list the bucket (a prefix-conditioned `ListBucket`), and a deleted object's rows
    /// must go, not stay as an unreadable object's do.
    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
        match self.objects.get(key).await {
            Err(e) if e.is_permanent() => match self.objects.list(key, None).await {
                Ok(page) if !page.keys.iter().any(|k| k == key) => Ok(None),
                _ => Err(e),
            },
            read => read,
        }
    }

    /// Reads the given objects again (removing the rows of those that are gone) into a copy of
    /// `current`. Every GET happens before anything changes, so a failed read changes nothing;
    /// an object that cannot be read (a permanent failure) is rejected, its rows kept.
    async fn reload(
        &mut self,
        keys: BTreeSet<String>,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Result<Snapshot<T, K>, RefreshError> {
        let mut reads = Vec::new();
        for key in keys {
            match self.get(&key).await {
                Err(e) if !e.is_permanent() => return Err(e.into()),
                read => reads.push((key, read)),
            }
        }
        Ok(self.apply_reads(reads, current, cx))
    }

    /// Applies what GETs of objects found to a copy of `current`: an object's rows replaced, a
    /// missing object's rows removed, a rejected or unreadable object's rows kept.
    fn apply_reads(
        &mut self,
        reads: Vec<(String, Result<Option<ObjectBody>, SourceError>)>,
        current: &Snapshot<T, K>,
        cx: &mut Cx<'_>,
    ) -> Snapshot<T, K> {
        let mut next = current.clone();
        for (key, read) in reads {
            cx.report.reread += 1;
            let body = match read {
                Ok(body) => {
                    self.unreadable.remove(&key);
                    body
                }
                Err(e) => {
                    let retry = self.reject_unreadable(&key, &e, cx);
                    self.unreadable.insert(key.clone(), retry);
                    self.rejected.insert(key);
                    continue;
                }
            };
            let previous = self.loaded.get(&key).cloned();
            match body {
                None => {
                    for row in previous.iter().flat_map(|l| &l.rows) {
                        next.remove(row);
                    }
                    self.loaded.remove(&key);
                    self.rejected.remove(&key);
                }
                Some(body) => {
                    Metrics::add(&cx.metrics.objects_read, 1);
                    // Rejected: its previous rows stay.
                    if let Some((l, rows)) = self.parse_object(&key, body, cx) {
                        for row in previous.iter().flat_map(|l| &l.rows) {
                            next.remove(row);
                        }
                        for (item_key, value, lookup) in rows {
                            next.upsert(item_key, value, lookup);
                        }
                        self.loaded.insert(key.clone(), l);
                        self.rejected.remove(&key);
                    } else {
                        self.rejected.insert(key);
                    }
                }
            }
        }
        next
    }

    /// Reports an object that could not be read (its rows, if any, keep serving) and returns
    /// when to read it again.
    fn reject_unreadable(&self, key: &str, e: &SourceError, cx: &mut Cx<'_>) -> Unreadable {
        Metrics::add(&cx.metrics.bad_objects, 1);
        Metrics::add(&cx.metrics.unreadable_objects, 1);
        let retry = Unreadable::after(self.unreadable.get(key), cx.clock.now());
        warn!(
            key,
            error = %e,
            retry_at = %retry.retry_at,
            "reference object unreadable; its previous rows stay"
        );
        cx.report.problems.push(format!(
            "{key} unreadable ({e}); its previous rows stay, read again at {}",
            retry
                .retry_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        retry
    }

    /// Parses one object: what is kept of it and its rows (item key, value, lookup key).
    /// `None` when it is rejected: an object that does not parse, or with
    /// [`BadRows::RejectObject`] one with a bad row (its previous rows then stay).
    fn parse_object(
        &self,
        key: &str,
        body: ObjectBody,
        cx: &mut Cx<'_>,
    ) -> Option<(Loaded, Rows<T, K>)> {
        let report: &mut RefreshReport = cx.report;
        let key_column = self.spec.key_column.as_deref();
        let encoding = body.content_encoding.as_deref();
        let rows = match parse_keyed_rows::<T>(key, &body.bytes, encoding, key_column) {
            Ok(rows) => rows,
            Err(e) => {
                Metrics::add(&cx.metrics.bad_objects, 1);
                warn!(key, error = %e, "reference object rejected; its previous rows stay");
                report.problems.push(e.to_string());
                return None;
            }
        };
        // Each row with its lookup key; with a key column, a row without one is a bad row.
        let rows: Vec<(u64, KeyedRow<T, K>)> = (rows.into_iter())
            .map(|(line, row)| {
                let keyed = row.and_then(|value| {
                    let lookup = (self.lookup_key)(&value);
                    match (&lookup, key_column) {
                        (None, Some(column)) => Err(RowError {
                            key: key.to_owned(),
                            line,
                            reason: format!("no value in the key column `{column}`"),
                        }),
                        _ => Ok((value, lookup)),
                    }
                });
                (line, keyed)
            })
            .collect();
        let bad: Vec<String> = rows
            .iter()
            .filter_map(|(_, r)| r.as_ref().err().map(ToString::to_string))
            .collect();
        if !bad.is_empty() {
            Metrics::add(&cx.metrics.bad_rows, bad.len() as u64);
            for b in &bad {
                warn!(row = %b, "reference row does not parse");
            }
            // Most rows bad is a schema change (a renamed or retyped column), not a few bad
            // rows: the object is rejected whole under either policy, its last good rows kept.
            let most = bad.len() as f64 > crate::table::MOST_ITEMS * rows.len() as f64;
            if self.spec.bad_rows == BadRows::RejectObject || most {
                Metrics::add(&cx.metrics.bad_objects, 1);
                warn!(
                    key,
                    bad_rows = bad.len(),
                    first = %bad[0],
                    "reference object rejected for its bad rows; its previous rows stay"
                );
                report.problems.push(format!(
                    "{key} rejected ({} bad rows; first: {})",
                    bad.len(),
                    bad[0]
                ));
                return None;
            }
            report.problems.extend(bad);
        }
        let mut keys = Vec::new();
        let mut entries = Vec::new();
        for (line, row) in rows {
            if let Ok((value, lookup)) = row {
                let item_key = ItemKey::from_iter([
                    KeyValue::S(key.to_owned()),
                    KeyValue::N(line.to_string()),
                ]);
                keys.push(item_key.clone());
                entries.push((item_key, value, lookup));
            }
        }
        Some((
            Loaded {
                etag: body.etag,
                rows: keys,
            },
            entries,
        ))
    }
}
