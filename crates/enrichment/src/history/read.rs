//! Reading a window's history from the change feed: the latest snapshot written at or before the
//! window's start, then every change file from its position (less the look-back) through the
//! present.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::time::Duration;

use stream_refdata_protocol::{parse_key_time, ChangeFile, ChangeKey, SnapshotReader};

use super::{History, HistoryBuilder};
use crate::key::LookupKey;
use crate::sources::{FeedSource, SourceError};

/// Where a table's history is read from.
#[derive(Clone, Debug)]
pub struct HistorySource {
    /// The change feed's prefix (`change_flags/`).
    pub feed_prefix: String,
    /// The feed snapshots' prefix (`feed-snapshots/`).
    pub snapshot_prefix: String,
    /// Where the compactor keeps each day's first snapshot as well (`feed-snapshots-daily/`,
    /// kept longer): searched with the others. `None`: not searched.
    pub daily_prefix: Option<String>,
    /// The table (its snapshots are under `<snapshot_prefix><table>/`).
    pub table: String,
    /// How far before a position change files are listed: the largest write window W plus the
    /// clock margin (a file written within W may be listed late). A snapshot's own W and margin
    /// widen it.
    pub look_back: Duration,
    /// How long change files are kept (the feed bucket's lifecycle rule): a window whose files
    /// may have expired refuses rather than answer from what is left. `None`: not checked.
    pub retention: Option<Duration>,
}

impl<T, K: LookupKey> HistoryBuilder<T, K> {
    /// Reads the history of `source` for times from `from_ms` on, as the feed is at `now_ms`:
    /// the latest snapshot written at or before `from_ms` (none: the history starts at
    /// `from_ms` without a base), and every change file from the snapshot's position less the
    /// look-back through the present. A change file that can never be read (a permanent error)
    /// or decoded, or a snapshot that cannot, makes the window refuse (with the key and why);
    /// a listing or a GET that fails otherwise is an error (nothing is answered: try again).
    /// Answers are final up to `now_ms` less the look-back.
    ///
    /// # Errors
    /// [`SourceError`] when a listing or a GET fails and may succeed when tried again.
    pub async fn read<F: FeedSource>(
        self,
        feed: &F,
        source: &HistorySource,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<History<T, K>, SourceError> {
        let snapshot = latest_snapshot(feed, source, from_ms).await?;
        self.read_from(
            feed,
            source,
            snapshot.as_ref().map(|s| s.0.as_str()),
            from_ms,
            now_ms,
        )
        .await
    }

    /// [`read`](Self::read) from the snapshot `snapshot` (a key; `None`: no snapshot).
    async fn read_from<F: FeedSource>(
        mut self,
        feed: &F,
        source: &HistorySource,
        snapshot: Option<&str>,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<History<T, K>, SourceError> {
        let mut look_back = i64::try_from(source.look_back.as_millis()).unwrap_or(i64::MAX);
        self.table(&source.table);
        if let Some(key) = snapshot {
            match read_snapshot(feed, key).await? {
                Ok((header, entries)) => self.snapshot(&header, entries),
                Err(why) => self.unreadable_file(key, &why),
            }
        } else {
            self.starts_ms = from_ms;
        }
        look_back = look_back.max(self.snapshot_look_back_ms);
        // Files older than the retention are gone: a window reaching them cannot answer (a day
        // of slack for the lifecycle rule's timing).
        if let Some(retention) = source.retention {
            let kept = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX) - 86_400_000;
            let oldest = self.starts_ms.saturating_sub(look_back);
            if now_ms.saturating_sub(oldest) > kept {
                self.refuse(format!(
                    "the window needs change files from {} ms, and files are kept {} days: some may have expired",
                    oldest,
                    retention.as_secs() / 86_400
                ));
            }
        }
        // Every change file from the start less the look-back.
        let after = key_at(source, self.starts_ms.saturating_sub(look_back));
        let mut listed = Vec::new();
        for key in list_all(feed, &source.feed_prefix, &after).await? {
            if ChangeKey::parse(&source.feed_prefix, &key).is_err() {
                continue;
            }
            if let Some(file) = read_file(feed, &key, &mut self).await? {
                self.file(&key, file);
            }
            listed.push(key);
        }
        // (a producer's larger W, stated in its files, counts too)
        let look_back = look_back.max(self.file_look_back_ms);
        self.look_back_ms = look_back;
        self.listed = listed;
        Ok(self.build(now_ms.saturating_sub(look_back)))
    }
}

/// The key a listing of the feed starts after to see every file written from `ms` on.
fn key_at(source: &HistorySource, ms: i64) -> String {
    let start = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!(
        "{}{}",
        source.feed_prefix,
        stream_refdata_protocol::format_key_time(start)
    )
}

/// Change file `key`: `Ok(None)` when it can never be read or decoded (`builder`'s window then
/// refuses, with why).
///
/// # Errors
/// A GET that may succeed when tried again (nothing is answered from a window missing a file).
async fn read_file<F: FeedSource, T, K: LookupKey>(
    feed: &F,
    key: &str,
    builder: &mut HistoryBuilder<T, K>,
) -> Result<Option<ChangeFile>, SourceError> {
    match feed.get(key).await {
        Ok(body) => match ChangeFile::from_slice(&body) {
            Ok(file) => Ok(Some(file)),
            Err(e) => {
                builder.unreadable_file(key, &e.to_string());
                Ok(None)
            }
        },
        Err(e) if e.is_permanent() => {
            builder.unreadable_file(key, &e.to_string());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The latest snapshot of `source`'s table written at or before `at_ms`, under the snapshot
/// prefix or the daily one: its key and time.
async fn latest_snapshot<F: FeedSource>(
    feed: &F,
    source: &HistorySource,
    at_ms: i64,
) -> Result<Option<(String, i64)>, SourceError> {
    let mut latest: Option<(String, i64)> = None;
    let prefixes = std::iter::once(&source.snapshot_prefix).chain(source.daily_prefix.as_ref());
    for prefix in prefixes {
        let snapshots = format!("{}{}/", prefix, source.table);
        // (the last two days first: one page, as a warm consumer asks every batch; all of
        // them when none is there)
        let recent = chrono::DateTime::from_timestamp_millis(at_ms - 2 * 86_400_000)
            .map(|t| format!("{snapshots}{}", stream_refdata_protocol::format_key_time(t)))
            .unwrap_or_default();
        let mut found = None;
        for after in [recent.as_str(), ""] {
            found = (list_all(feed, &snapshots, after).await?.into_iter())
                .filter_map(|k| {
                    let time = k
                        .strip_prefix(&snapshots)
                        .and_then(|k| k.strip_suffix(".jsonl.gz"))
                        .and_then(parse_key_time)?
                        .timestamp_millis();
                    (time <= at_ms).then_some((k, time))
                })
                .next_back();
            if found.is_some() {
                break;
            }
        }
        if let Some(found) = found {
            if latest.as_ref().is_none_or(|l| found.1 > l.1) {
                latest = Some(found);
            }
        }
    }
    Ok(latest)
}

/// A history kept for a stream of batches (a warm consumer's): built from a snapshot and the
/// change files after it, then extended with the files written since, batch by batch.
///
/// Each batch asks for the times from its oldest record on ([`Followed::prepare`]). Its base is
/// a function of that time alone: the latest snapshot written at or before it less
/// [`Followed::snapshot_settle`] (a snapshot's key time is taken before its upload ends: by
/// then every snapshot keyed before it is visible), so a retry, a redrive or a fresh
/// environment starts from the same snapshot and answers the same. The history is read again
/// when that base changes (one LIST of the snapshot prefixes per batch); between, each batch
/// lists the feed from before the last listing's visibility bound (one LIST, and a GET per new
/// file), as the follower does.
pub struct Followed<T, K> {
    source: HistorySource,
    make: Box<dyn Fn() -> HistoryBuilder<T, K> + Send + Sync>,
    history: Option<History<T, K>>,
    /// The snapshot the history was built from: its key and time (`None`: none).
    base: Option<(String, i64)>,
    /// The change files read whose keys the next listing may return again.
    seen: BTreeSet<String>,
    settle: Duration,
    builds: u64,
}

impl<T, K> std::fmt::Debug for Followed<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Followed")
            .field("source", &self.source)
            .field("base", &self.base)
            .field("builds", &self.builds)
            .finish_non_exhaustive()
    }
}

impl<T, K: LookupKey> Followed<T, K> {
    /// A history of `source`, each build starting from a builder `make` returns.
    pub fn new(
        source: HistorySource,
        make: impl Fn() -> HistoryBuilder<T, K> + Send + Sync + 'static,
    ) -> Self {
        Followed {
            source,
            make: Box::new(make),
            history: None,
            base: None,
            seen: BTreeSet::new(),
            settle: Duration::from_secs(900),
            builds: 0,
        }
    }

    /// How long a snapshot may take to become visible after its key time (default 15 minutes:
    /// more than the compactor's timeout): a batch's base is the latest snapshot keyed at least
    /// this long before its oldest record.
    #[must_use]
    pub fn snapshot_settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The history as the last [`prepare`](Self::prepare) left it (`None` before the first).
    pub fn history(&self) -> Option<&History<T, K>> {
        self.history.as_ref()
    }

    /// How many times the history was read from a snapshot (or from nothing) so far.
    pub fn builds(&self) -> u64 {
        self.builds
    }

    /// The history for times from `from_ms` on, as the feed is at `now_ms` (see the type).
    ///
    /// # Errors
    /// [`SourceError`] when a listing or a GET fails (nothing is answered then; the next call
    /// reads again what this one could not).
    pub async fn prepare<F: FeedSource>(
        &mut self,
        feed: &F,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<&History<T, K>, SourceError> {
        let settle_ms = i64::try_from(self.settle.as_millis()).unwrap_or(i64::MAX);
        let base = latest_snapshot(feed, &self.source, from_ms.saturating_sub(settle_ms)).await?;
        // (without a snapshot the history starts at its first batch: one that starts earlier
        // reads it again from there)
        let keep = self
            .history
            .as_ref()
            .is_some_and(|h| base == self.base && (base.is_some() || h.starts_ms() <= from_ms));
        if !keep {
            // (the old history goes first: never two in memory)
            self.history = None;
            self.seen.clear();
            let history = (self.make)()
                .read_from(
                    feed,
                    &self.source,
                    base.as_ref().map(|b| b.0.as_str()),
                    from_ms,
                    now_ms,
                )
                .await?;
            self.builds += 1;
            self.base = base;
            let history = self.history.insert(history);
            self.seen.extend(std::mem::take(&mut history.inputs.listed));
            return Ok(history);
        }
        let Some(history) = self.history.as_mut() else {
            unreachable!("a history is kept or was just read");
        };
        // Files written since the last listing: every file not seen then was written after its
        // visibility bound (the feed's contract, with the largest W known); one look-back more
        // covers a W learned since.
        let look_back = history.look_back_ms();
        let after = key_at(
            &self.source,
            history.final_through_ms.saturating_sub(look_back),
        );
        let keys = list_all(feed, &self.source.feed_prefix, &after).await?;
        let mut files = Vec::new();
        let mut read = Vec::new();
        for key in keys {
            if self.seen.contains(&key) || ChangeKey::parse(&self.source.feed_prefix, &key).is_err()
            {
                continue;
            }
            // (an error here drops what this call read: none of it is marked seen)
            if let Some(file) = read_file(feed, &key, &mut history.inputs).await? {
                files.push((key.clone(), file));
            }
            read.push(key);
        }
        history.extend(files, i64::MIN);
        // (the bound from the look-back the files read so far state)
        history.final_through_ms =
            (history.final_through_ms).max(now_ms.saturating_sub(history.look_back_ms()));
        self.seen.extend(read);
        // (keys before this listing's start are never listed again)
        self.seen = self.seen.split_off(&after);
        Ok(history)
    }
}

/// Every key under `prefix` after `start_after`, all pages.
async fn list_all<F: FeedSource>(
    feed: &F,
    prefix: &str,
    start_after: &str,
) -> Result<Vec<String>, SourceError> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = feed.list(prefix, start_after, token.take()).await?;
        keys.extend(page.keys);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(keys),
        }
    }
}

/// A snapshot's header and entries, or why it cannot be read.
async fn read_snapshot<F: FeedSource>(
    feed: &F,
    key: &str,
) -> Result<
    Result<
        (
            stream_refdata_protocol::SnapshotHeader,
            Vec<stream_refdata_protocol::SnapshotEntry>,
        ),
        String,
    >,
    SourceError,
> {
    let body = match feed.get(key).await {
        Ok(body) => body,
        Err(e) if e.is_permanent() => return Ok(Err(e.to_string())),
        Err(e) => return Err(e),
    };
    let gz = flate2::bufread::GzDecoder::new(body.as_slice());
    let decoded = (|| {
        let mut reader = SnapshotReader::new(BufReader::new(gz)).map_err(|e| e.to_string())?;
        let header = reader.header().clone();
        let mut entries = Vec::new();
        while let Some(entry) = reader.next_entry().map_err(|e| e.to_string())? {
            entries.push(entry);
        }
        Ok((header, entries))
    })();
    Ok(decoded)
}
