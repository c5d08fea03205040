//! Reading a window's history from the change feed: the latest snapshot written at or before the
//! window's start, then every change file from its position (less the look-back) through the
//! present.

use std::io::BufReader;
use std::time::Duration;

use change_protocol::{parse_key_time, ChangeFile, ChangeKey, SnapshotReader};

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
    /// look-back through the present. A change file that cannot be read or decoded, or a
    /// snapshot that cannot, makes the window refuse (with the key and why); a listing that
    /// fails is an error (nothing is answered). Answers are final up to `now_ms` less the
    /// look-back.
    ///
    /// # Errors
    /// [`SourceError`] when a listing fails.
    pub async fn read<F: FeedSource>(
        mut self,
        feed: &F,
        source: &HistorySource,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<History<T, K>, SourceError> {
        let mut look_back = i64::try_from(source.look_back.as_millis()).unwrap_or(i64::MAX);
        self.table(&source.table);
        // The latest snapshot written at or before the window's start.
        let snapshots = format!("{}{}/", source.snapshot_prefix, source.table);
        let snapshot = (list_all(feed, &snapshots, "").await?.into_iter()).rfind(|k| {
            let time = k
                .strip_prefix(&snapshots)
                .and_then(|k| k.strip_suffix(".jsonl.gz"))
                .and_then(parse_key_time);
            time.is_some_and(|t| t.timestamp_millis() <= from_ms)
        });
        if let Some(key) = snapshot {
            match read_snapshot(feed, &key).await {
                Ok((header, entries)) => self.snapshot(&header, entries),
                Err(why) => self.unreadable_file(&key, &why),
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
        let start =
            chrono::DateTime::from_timestamp_millis(self.starts_ms.saturating_sub(look_back))
                .unwrap_or_default();
        let after = format!(
            "{}{}",
            source.feed_prefix,
            change_protocol::format_key_time(start)
        );
        for key in list_all(feed, &source.feed_prefix, &after).await? {
            if ChangeKey::parse(&source.feed_prefix, &key).is_err() {
                continue;
            }
            match feed.get(&key).await {
                Ok(body) => match ChangeFile::from_slice(&body) {
                    Ok(file) => self.file(&key, file),
                    Err(e) => self.unreadable_file(&key, &e.to_string()),
                },
                Err(e) => self.unreadable_file(&key, &e.to_string()),
            }
        }
        Ok(self.build(now_ms.saturating_sub(look_back)))
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
    (
        change_protocol::SnapshotHeader,
        Vec<change_protocol::SnapshotEntry>,
    ),
    String,
> {
    let body = feed.get(key).await.map_err(|e| e.to_string())?;
    let gz = flate2::bufread::GzDecoder::new(body.as_slice());
    let mut reader = SnapshotReader::new(BufReader::new(gz)).map_err(|e| e.to_string())?;
    let header = reader.header().clone();
    let mut entries = Vec::new();
    while let Some(entry) = reader.next_entry().map_err(|e| e.to_string())? {
        entries.push(entry);
    }
    Ok((header, entries))
}
