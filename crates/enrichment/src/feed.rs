//! Following the change feed: which keys to list, which files are new.
//!
//! The listing looks back from the start of the previous complete listing, never from the last
//! applied key or from "now": `StartAfter = key(L − W − margin)`, where `L` is when the previous
//! complete listing started (initially the feed position taken before the full load) and `W` the
//! largest write window seen. Files already applied within that window are skipped by key.
//! Between listings, a conditional GET of the `_head` pointer (one cheap request) tells whether
//! anything was written; a full listing still runs at least once a minute as a safety net.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stream_refdata_protocol::{format_key_time, head_key, ChangeFile, ChangeKey, DecodeError};
use tokio::time::Instant;
use tracing::debug;

use crate::metrics::Metrics;
use crate::sources::{Conditional, FeedSource, SourceError};

#[cfg(test)]
mod tests;

/// How the feed is followed.
#[derive(Clone, Debug)]
pub struct FeedSettings {
    /// The feed's key prefix (`change_flags/`).
    pub prefix: String,
    /// This consumer's write window W (default 20 s); the larger of it and any W seen in a file
    /// is used.
    pub write_window: Duration,
    /// Clock margin: producers' clock lag plus this consumer's clock lead (5 s on AWS).
    pub clock_margin: Duration,
    /// Poll at most this often per [`crate::ReferenceEnricher::refresh`] (flags poll regardless).
    pub poll_interval: Duration,
    /// List with look-back at least this often even if the pointer did not change.
    pub safety_listing: Duration,
    /// Use the `_head` pointer's conditional GET to skip listings when nothing changed.
    pub use_head_pointer: bool,
    /// How long change files live (the bucket's lifecycle rule). A consumer whose last complete
    /// listing is older than this minus a day may have missed expired files: it reloads fully.
    pub retention: Duration,
    /// Where the feed-compactor keeps snapshots of tables (in the feed's bucket); `None` never
    /// looks for one. A first load, or a reload past the retention, starts from the table's
    /// latest snapshot when it passes the checks (`docs/design.md`, feed snapshots), else Scans.
    pub snapshot_prefix: Option<String>,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            prefix: "change_flags/".into(),
            write_window: Duration::from_millis(stream_refdata_protocol::DEFAULT_WRITE_WINDOW_MS),
            clock_margin: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            safety_listing: Duration::from_secs(60),
            use_head_pointer: true,
            retention: Duration::from_secs(7 * 24 * 3600),
            snapshot_prefix: Some(stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX.into()),
        }
    }
}

/// A change file found by a poll.
#[derive(Debug)]
#[allow(unreachable_pub)] // part of the sealed `Loader` trait's signature
pub struct Fetched {
    pub(crate) key: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) content: Result<ChangeFile, DecodeError>,
}

/// What one poll found; applied, then committed with [`FeedFollower::commit`].
#[derive(Debug, Default)]
pub(crate) struct Polled {
    pub(crate) files: Vec<Fetched>,
    listing_started: Option<DateTime<Utc>>,
    etag: Option<String>,
    /// When what the poll found was taken at the earliest (the poll's start, or the start of a
    /// shared feed's round): the data is confirmed current as of then.
    pub(crate) taken: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct FeedFollower {
    settings: FeedSettings,
    max_window: Duration,
    listing_start: Option<DateTime<Utc>>,
    applied: BTreeMap<String, DateTime<Utc>>,
    ignored: HashSet<String>,
    head_etag: Option<String>,
    last_listing: Option<Instant>,
    /// How much older than `last_listing` the position really is: after a load from a feed
    /// snapshot, its position L is as old as the snapshot (the retention rule counts from L).
    listing_age: Duration,
    /// The clock margin the loaded data was taken with, when larger than ours: after a load from
    /// a feed snapshot, its R, read stamps and position L are on the feed-compactor's clock. Zero
    /// after a load of our own.
    margin_floor: Duration,
    /// Whether the position is still the feed snapshot's L (the look-back from it needs the
    /// snapshot's margin), not one of our own listings.
    position_from_snapshot: bool,
    last_poll: Option<Instant>,
}

impl FeedFollower {
    pub(crate) fn new(settings: FeedSettings) -> Self {
        FeedFollower {
            max_window: settings.write_window,
            settings,
            listing_start: None,
            applied: BTreeMap::new(),
            ignored: HashSet::new(),
            head_etag: None,
            last_listing: None,
            listing_age: Duration::ZERO,
            margin_floor: Duration::ZERO,
            position_from_snapshot: false,
            last_poll: None,
        }
    }

    /// Whether the last complete listing (or full load) is so old that change files it did not
    /// see may have expired since.
    pub(crate) fn beyond_retention(&self) -> bool {
        let limit = self
            .settings
            .retention
            .saturating_sub(Duration::from_secs(24 * 3600));
        self.last_listing
            .is_some_and(|t| t.elapsed() + self.listing_age > limit)
    }

    /// Sets the feed position (taken before a full load of our own).
    pub(crate) fn set_position(&mut self, at: DateTime<Utc>) {
        self.listing_start = Some(at);
        self.last_listing = Some(Instant::now());
        self.listing_age = Duration::ZERO;
        self.margin_floor = Duration::ZERO;
        self.position_from_snapshot = false;
    }

    /// Follows from a feed snapshot's position `at` (taken `age` ago, on a clock within
    /// `margin`) from now on: what was applied before does not count (the data is the
    /// snapshot's, which may be older), the pointer is checked afresh, the snapshot's write
    /// window and margin widen the look-back, and the retention rule counts from `at`.
    pub(crate) fn restart_at(
        &mut self,
        at: DateTime<Utc>,
        write_window: Duration,
        margin: Duration,
        age: Duration,
    ) {
        self.applied.clear();
        self.head_etag = None;
        self.last_poll = None;
        self.max_window = self.max_window.max(write_window);
        self.set_position(at);
        self.listing_age = age;
        self.margin_floor = margin;
        self.position_from_snapshot = true;
    }

    /// The clock margin the loaded data needs: ours, or the feed snapshot's it was loaded from
    /// when larger (until the next load of our own). Changes stamped before R plus this margin
    /// are re-read, and a feed snapshot written from this data records it.
    pub(crate) fn clock_margin(&self) -> Duration {
        self.settings.clock_margin.max(self.margin_floor)
    }

    /// The position to follow from (the start of the last complete listing, or of the full load)
    /// and the largest write window seen: what a feed snapshot records.
    pub(crate) fn position(&self) -> Option<(DateTime<Utc>, Duration)> {
        self.listing_start.map(|at| (at, self.max_window))
    }

    /// The look-back: the largest W seen plus the clock margin the position was taken with.
    fn look_back(&self) -> chrono::Duration {
        let margin = if self.position_from_snapshot {
            self.clock_margin()
        } else {
            self.settings.clock_margin
        };
        chrono::Duration::from_std(self.max_window + margin).unwrap_or(chrono::Duration::MAX)
    }

    /// Lists (or checks the pointer) and fetches new change files. Nothing is marked applied
    /// here: a failed poll is simply repeated from the same position.
    pub(crate) async fn poll<F: FeedSource>(
        &mut self,
        source: &F,
        now: DateTime<Utc>,
        force: bool,
        metrics: &Metrics,
    ) -> Result<Option<Polled>, SourceError> {
        // A shared feed's answers may be older than this call: count from when they were taken.
        let (now, mono) = match source.taken_at() {
            Some((wall, at)) => (now.min(wall), Instant::now().min(at)),
            None => (now, Instant::now()),
        };
        if !force
            && self
                .last_poll
                .is_some_and(|t| mono.duration_since(t) < self.settings.poll_interval)
        {
            return Ok(None);
        }
        let mut polled = Polled {
            taken: Some(mono),
            ..Polled::default()
        };
        let safety_due = self
            .last_listing
            .is_none_or(|t| mono.duration_since(t) >= self.settings.safety_listing);
        if self.settings.use_head_pointer {
            Metrics::add(&metrics.head_polls, 1);
            match source
                .head_state(&head_key(&self.settings.prefix), self.head_etag.as_deref())
                .await?
            {
                Conditional::NotModified if !safety_due => {
                    Metrics::add(&metrics.head_not_modified, 1);
                    self.last_poll = Some(mono);
                    return Ok(Some(polled));
                }
                Conditional::NotModified => Metrics::add(&metrics.head_not_modified, 1),
                Conditional::Changed(etag) => polled.etag = Some(etag),
                Conditional::Missing => {}
            }
        }

        let keys = self.list_since(source, now, metrics).await?;
        for key in keys {
            if self.applied.contains_key(&key) || self.ignored.contains(&key) {
                continue;
            }
            let Ok(parsed) = ChangeKey::parse(&self.settings.prefix, &key) else {
                debug!(key, "not a change file; skipped");
                Metrics::add(&metrics.ignored_keys, 1);
                self.ignored.insert(key);
                continue;
            };
            Metrics::add(&metrics.feed_gets, 1);
            let bytes = source.get(&key).await?;
            let content = ChangeFile::from_slice(&bytes);
            if let Ok(file) = &content {
                self.max_window = self
                    .max_window
                    .max(Duration::from_millis(file.write_window_ms));
            }
            polled.files.push(Fetched {
                key,
                time: parsed.time,
                content,
            });
        }
        Metrics::add(&metrics.change_files_read, polled.files.len() as u64);
        polled.listing_started = Some(now);
        Ok(Some(polled))
    }

    /// Every key after the look-back from the position (`now` before the first listing), all
    /// pages of it.
    async fn list_since<F: FeedSource>(
        &self,
        source: &F,
        now: DateTime<Utc>,
        metrics: &Metrics,
    ) -> Result<Vec<String>, SourceError> {
        let position = self.listing_start.unwrap_or(now);
        let start_after = format!(
            "{}{}",
            self.settings.prefix,
            format_key_time(position - self.look_back())
        );
        let mut token = None;
        let mut keys = Vec::new();
        loop {
            Metrics::add(&metrics.feed_lists, 1);
            let page = source
                .list(&self.settings.prefix, &start_after, token.take())
                .await?;
            keys.extend(page.keys);
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    /// Marks what a poll found as applied and moves the position forward.
    pub(crate) fn commit(&mut self, polled: &Polled) {
        // (when the poll's answers were taken: the poll's start, or its shared feed's round's)
        let mono = polled.taken.unwrap_or_else(Instant::now);
        self.last_poll = Some(mono);
        for f in &polled.files {
            self.applied.insert(f.key.clone(), f.time);
        }
        if let Some(started) = polled.listing_started {
            // A position on our own clock, when the listing was taken.
            self.listing_start = Some(started);
            self.last_listing = Some(mono);
            self.listing_age = Duration::ZERO;
            self.position_from_snapshot = false;
            if polled.etag.is_some() {
                self.head_etag.clone_from(&polled.etag);
            }
            // Keys older than the next look-back will not be listed again.
            let horizon = started - self.look_back() - chrono::Duration::seconds(1);
            self.applied.retain(|_, t| *t >= horizon);
        }
    }
}
