//! The feed-compactor: keeps a compacted snapshot of a reference table in the feed bucket, so a
//! new consumer environment starts from one S3 object instead of a consistent Scan of the whole
//! table (`docs/design.md`, feed snapshots).
//!
//! It is itself a follower of the change feed built on the enrichment lifecycle, holding raw
//! items: its first load starts from the latest snapshot (a Scan only the first time, or after a
//! gap file or a new stream), then each run polls the feed, applies the change files since, and,
//! when anything changed (or the last snapshot is older than [`Config::republish_after`]),
//! writes a new snapshot object and then the pointer to it. It never writes a snapshot while its
//! data is not current: a failed refresh or a pending reload fails the run instead, and the
//! previous snapshot stays the latest.
//!
//! Run it on a schedule as a Lambda function (infra/ runs it every 5 minutes), or as a command
//! (the binary without a Lambda Runtime API runs once and prints what it did).

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stream_refdata::sources::{FeedSource, TableSource};
use stream_refdata::{FeedSettings, NotCurrent, RefreshReport, TableConfig, TableEnricher};
use stream_refdata_aws::{
    key_attributes_var, number_var, optional_var, required_var, validate_bucket, Clock,
    ConfigError, ObjectStore, SharedClock,
};
use stream_refdata_protocol::{
    snapshot_key, snapshot_pointer_key, Item, SnapshotPointer, DEFAULT_DAILY_SNAPSHOT_PREFIX,
    DEFAULT_SNAPSHOT_PREFIX,
};
use tracing::info;

mod deploy;
pub use deploy::{deployed, deployed_with_clock, DeployedCompactor};

/// The compactor's settings, from the environment of the function or the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `REFERENCE_TABLE`: the table to keep a snapshot of.
    pub table: String,
    /// `REFERENCE_KEY_ATTRIBUTES`: its key attributes, hash key first (default `item,price`);
    /// consumers refuse a snapshot keyed otherwise.
    pub key_attributes: Vec<String>,
    /// `CHANGE_BUCKET`: the feed's bucket; the snapshots are written there too.
    pub change_bucket: String,
    /// `CHANGE_PREFIX`: the feed's prefix (default `change_flags/`).
    pub change_prefix: String,
    /// `SNAPSHOT_PREFIX`: where snapshots go (default `feed-snapshots/`: beside the feed, so its
    /// listings never return them and the change files' expiry rule never touches them).
    pub snapshot_prefix: String,
    /// `WRITE_WINDOW_SECS`: the producers' write window W (default 20).
    pub write_window: Duration,
    /// `FEED_RETENTION_DAYS`: how long change files live (default 7).
    pub feed_retention: Duration,
    /// `REPUBLISH_AFTER_SECS`: write a snapshot even without a change once the last one is this
    /// old (default 3600), so the latest snapshot's feed position stays recent.
    pub republish_after: Duration,
    /// `DAILY_SNAPSHOT_PREFIX`: where the first snapshot of each UTC day is kept as well
    /// (default `feed-snapshots-daily/`; `none` keeps none): as-of answers start from the latest
    /// snapshot at or before their time, so the daily snapshots' lifecycle rule (infra/'s
    /// `HistoryRetentionDays`) sets how far back they reach, with the change files'.
    pub daily_prefix: Option<String>,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    /// Reads the settings through `get`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let or =
            |var: &str, default: &str| optional_var(get, var).unwrap_or_else(|| default.to_owned());
        let number = |var: &'static str, default: u64, min: u64| {
            number_var(
                get,
                var,
                default,
                min..,
                &format!("a whole number, at least {min}"),
            )
        };
        let key_attributes = key_attributes_var(get)?;
        let change_bucket = required_var(get, "CHANGE_BUCKET")?;
        validate_bucket("CHANGE_BUCKET", &change_bucket)?;
        let change_prefix = or("CHANGE_PREFIX", "change_flags/");
        let snapshot_prefix = or("SNAPSHOT_PREFIX", DEFAULT_SNAPSHOT_PREFIX);
        if snapshot_prefix.starts_with(&change_prefix)
            || change_prefix.starts_with(&snapshot_prefix)
        {
            return Err(ConfigError::Invalid {
                var: "SNAPSHOT_PREFIX",
                value: snapshot_prefix,
                reason: format!(
                    "overlaps CHANGE_PREFIX={change_prefix:?}: the feed's listings would return \
                     snapshots and its expiry rule would delete them"
                ),
            });
        }
        let daily_prefix = match or("DAILY_SNAPSHOT_PREFIX", DEFAULT_DAILY_SNAPSHOT_PREFIX) {
            p if p.trim() == "none" => None,
            p if p.starts_with(&change_prefix)
                || change_prefix.starts_with(&p)
                || p.starts_with(&snapshot_prefix)
                || snapshot_prefix.starts_with(&p) =>
            {
                return Err(ConfigError::Invalid {
                    var: "DAILY_SNAPSHOT_PREFIX",
                    value: p,
                    reason: format!(
                        "overlaps CHANGE_PREFIX={change_prefix:?} or SNAPSHOT_PREFIX={snapshot_prefix:?}: \
                         their expiry rules would delete the daily snapshots"
                    ),
                })
            }
            p => Some(p),
        };
        Ok(Config {
            daily_prefix,
            table: required_var(get, "REFERENCE_TABLE")?,
            key_attributes,
            change_bucket,
            change_prefix,
            snapshot_prefix,
            write_window: Duration::from_secs(number("WRITE_WINDOW_SECS", 20, 1)?),
            feed_retention: Duration::from_secs(number("FEED_RETENTION_DAYS", 7, 2)? * 24 * 3600),
            republish_after: Duration::from_secs(number("REPUBLISH_AFTER_SECS", 3600, 1)?),
        })
    }
}

/// Why a run wrote no snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The follower's refresh failed: what it holds may miss changes.
    #[error("refresh failed, no snapshot written: {0}")]
    Refresh(#[source] stream_refdata::RefreshError),
    /// The follower's data is not current (a reload pending, nothing loaded).
    #[error("no snapshot written: {0}")]
    NotCurrent(#[from] NotCurrent),
    /// Compressing failed.
    #[error("compressing the snapshot failed: {0}")]
    Compress(#[from] std::io::Error),
    /// Writing the snapshot or its pointer failed (the previous snapshot stays the latest).
    #[error(transparent)]
    Write(#[from] stream_refdata_aws::StoreError),
}

/// A snapshot that was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// Its key.
    pub key: String,
    /// Items in it.
    pub items: u64,
    /// Tombstones in it.
    pub tombstones: u64,
    /// Compressed size.
    pub bytes: usize,
    /// Its feed position L (RFC 3339).
    pub position: String,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// Whether the follower reloaded, and why (first run, gap, new stream, …).
    pub full_reload: Option<String>,
    /// The feed snapshot the reload started from, if it did.
    pub started_from: Option<String>,
    /// Change files the poll found, changes applied, items re-read.
    pub files: usize,
    /// Changes applied from their images.
    pub applied: usize,
    /// Items re-read from the table.
    pub reread: usize,
    /// Items read from the table by this run (Scan and re-reads).
    pub items_read: u64,
    /// The snapshot written, if one was.
    pub published: Option<Published>,
    /// The key of the day's snapshot kept as well (`DAILY_SNAPSHOT_PREFIX`), if this run wrote
    /// it.
    pub daily: Option<String>,
    /// Why the day's snapshot could not be kept as well, if it could not (the run's snapshot
    /// and pointer are written all the same).
    pub daily_error: Option<String>,
    /// Why none was written although the run succeeded (nothing changed, recently published).
    pub skipped: Option<String>,
}

/// The compactor: a follower of raw items, and where its snapshots go.
pub struct Compactor<Tb: TableSource, Fd, S> {
    config: Config,
    follower: TableEnricher<Item, String, Tb, Fd>,
    store: S,
    clock: SharedClock,
    /// The follower's snapshot version and time of the last snapshot written.
    last_published: Option<(u64, DateTime<Utc>)>,
    latest_position: Option<DateTime<Utc>>,
    /// The UTC day whose daily snapshot this compactor wrote last.
    daily_written: Option<chrono::NaiveDate>,
}

impl<Tb: TableSource, Fd, S> std::fmt::Debug for Compactor<Tb, Fd, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("config", &self.config)
            .field("last_published", &self.last_published)
            .finish_non_exhaustive()
    }
}

impl<Tb, Fd, S> Compactor<Tb, Fd, S>
where
    Tb: TableSource,
    Fd: FeedSource,
    S: ObjectStore,
{
    /// A compactor following `feed` for `table`, writing through `store`. Nothing is read until
    /// the first run.
    pub fn new(config: Config, table: Tb, feed: Fd, store: S, clock: impl Clock) -> Self {
        let clock = clock.shared();
        let keys: Vec<&str> = config.key_attributes.iter().map(String::as_str).collect();
        let follower_config = TableConfig::raw(config.table.clone(), &keys, |_: &Item| {
            None::<String> // no lookups: the compactor only holds and writes the items
        })
        .with_feed(FeedSettings {
            prefix: config.change_prefix.clone(),
            write_window: config.write_window,
            retention: config.feed_retention,
            poll_interval: Duration::ZERO,
            snapshot_prefix: Some(config.snapshot_prefix.clone()),
            ..FeedSettings::default()
        })
        // The compactor is the consumers' Scan: no staleness policy of its own.
        .with_max_staleness(None);
        Compactor {
            follower: TableEnricher::new(follower_config, table, Some(feed), clock.clone()),
            config,
            store,
            clock,
            last_published: None,
            latest_position: None,
            daily_written: None,
        }
    }

    /// The feed position of the latest snapshot this compactor wrote (the EMF age is taken
    /// from it; a failing compactor lets it grow until the alarm fires).
    pub fn latest_position(&self) -> Option<DateTime<Utc>> {
        self.latest_position
    }

    /// The follower's counters (items read, files applied, snapshot loads).
    pub fn metrics(&self) -> stream_refdata::MetricsSnapshot {
        self.follower.metrics()
    }

    /// One run: refresh the follower, then write a snapshot and its pointer if anything changed
    /// since the last one (or it is older than [`Config::republish_after`]).
    pub async fn run_once(&mut self) -> Result<RunReport, CompactError> {
        let read_before = self.follower.metrics().items_read;
        let refresh = self.follower.refresh().await;
        let mut report = run_report(&refresh);
        report.items_read = self.follower.metrics().items_read - read_before;
        if let Some(e) = &refresh.error {
            return Err(CompactError::Refresh(e.clone()));
        }
        let version = self.follower.snapshot().version();
        let now = self.clock.now();
        if let Some((published, at)) = self.last_published {
            let age = (now - at).to_std().unwrap_or_default();
            if published == version && age < self.config.republish_after {
                report.skipped = Some(format!(
                    "nothing changed since the snapshot written {} s ago",
                    age.as_secs()
                ));
                return Ok(report);
            }
        }
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let (mut encoder, header) = self.follower.write_feed_snapshot(encoder, now)?;
        encoder.flush()?;
        let body = encoder.finish()?;
        let bytes = body.len();
        let key = snapshot_key(&self.config.snapshot_prefix, &self.config.table, now);
        let bucket = &self.config.change_bucket;
        // The day's first snapshot kept as well (below, after the pointer: a daily copy that
        // cannot be written never holds the consumers' snapshot back).
        let today = now.date_naive();
        let daily = (self.config.daily_prefix.as_ref())
            .filter(|_| self.daily_written != Some(today))
            .map(|prefix| (snapshot_key(prefix, &self.config.table, now), body.clone()));
        // The object first, then the pointer: a pointer never names a snapshot that is not there.
        self.store.put(bucket, &key, body).await?;
        let pointer = SnapshotPointer::to(key.clone(), &header);
        let pointer_body = serde_json::to_vec(&pointer).map_err(std::io::Error::other)?;
        self.store
            .put(
                bucket,
                &snapshot_pointer_key(&self.config.snapshot_prefix, &self.config.table),
                pointer_body,
            )
            .await?;
        self.last_published = Some((version, now));
        // The daily copy, under its own prefix and lifecycle rule: once per day per environment
        // (a cold start the same day writes one more); one that fails is reported and tried
        // again by the next run that publishes.
        if let Some((daily_key, daily_body)) = daily {
            match self.store.put(bucket, &daily_key, daily_body).await {
                Ok(()) => {
                    self.daily_written = Some(today);
                    report.daily = Some(daily_key);
                }
                Err(e) => {
                    tracing::warn!(key = daily_key, error = %e, "the day's snapshot was not kept under the daily prefix; the next run tries again");
                    report.daily_error = Some(e.to_string());
                }
            }
        }
        let at = DateTime::from_timestamp_millis(header.position_ms);
        self.latest_position = at;
        let position = at.map(|t| t.to_rfc3339()).unwrap_or_default();
        info!(key, items = header.items, tombstones = header.tombstones, bytes, %position, "snapshot written");
        report.published = Some(Published {
            key,
            items: header.items,
            tombstones: header.tombstones,
            bytes,
            position,
        });
        Ok(report)
    }
}

fn run_report(r: &RefreshReport) -> RunReport {
    RunReport {
        full_reload: r.full_reload.as_ref().map(ToString::to_string),
        started_from: r.snapshot.clone(),
        files: r.files,
        applied: r.applied,
        reread: r.reread,
        ..RunReport::default()
    }
}

/// One CloudWatch embedded-metric-format line for a run: `SnapshotAgeSeconds` (how old the
/// latest snapshot's feed position is; the alarm watches it, and its absence), items and bytes.
pub fn embedded_metrics(report: &RunReport, latest_position: Option<DateTime<Utc>>) -> String {
    const UNKNOWN: f64 = 365.0 * 24.0 * 3600.0; // never written: far above any alarm threshold
    let now = Utc::now();
    let age = latest_position.map_or(UNKNOWN, |p| {
        ((now - p).num_milliseconds() as f64 / 1000.0).min(UNKNOWN)
    });
    let (items, bytes) = report
        .published
        .as_ref()
        .map_or((0, 0), |p| (p.items, p.bytes));
    serde_json::json!({
        "_aws": {
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "StreamRefdata",
                "Dimensions": [["Function"]],
                "Metrics": [
                    {"Name": "SnapshotAgeSeconds", "Unit": "Seconds"},
                    {"Name": "SnapshotItems", "Unit": "Count"},
                    {"Name": "SnapshotBytes", "Unit": "Bytes"},
                    {"Name": "SnapshotTableItemsRead", "Unit": "Count"},
                ],
            }],
        },
        "Function": "feed-compactor",
        "SnapshotAgeSeconds": age,
        "SnapshotItems": items,
        "SnapshotBytes": bytes,
        "SnapshotTableItemsRead": report.items_read,
    })
    .to_string()
}

#[cfg(test)]
mod tests;
