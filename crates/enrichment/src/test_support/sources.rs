//! Sources that fail or answer late, around the in-memory table and bucket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stream_refdata_protocol::Item;

use super::{own_margin, product_config, ManualClock, Product, Rig};
use crate::sources::*;
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

/// A table whose BatchGetItem is answered `latency_ms` after the read is served, and which
/// serves only the first key of a call for `throttled` calls, leaving the others unprocessed (as a throttled table
/// does). The rig's clock follows tokio's (paused) time, so the enricher's own backoff sleeps
/// move it.
#[derive(Clone)]
pub(crate) struct SlowTable {
    pub(crate) inner: MemoryTable,
    pub(crate) clock: ManualClock,
    pub(crate) latency_ms: i64,
    pub(crate) throttled: Arc<Mutex<u32>>,
    pub(crate) last: Arc<Mutex<tokio::time::Instant>>,
}

impl SlowTable {
    pub(crate) fn new(r: &Rig, latency_ms: i64) -> Self {
        SlowTable {
            inner: r.table.clone(),
            clock: r.clock.clone(),
            latency_ms,
            throttled: Arc::default(),
            last: Arc::new(Mutex::new(tokio::time::Instant::now())),
        }
    }
}

impl TableSource for SlowTable {
    async fn scan_page(
        &self,
        segment: i32,
        total: i32,
        start: Option<Item>,
    ) -> Result<ScanPage, SourceError> {
        self.inner.scan_page(segment, total, start).await
    }
    async fn latest_stream_arn(&self) -> Result<Option<String>, SourceError> {
        self.inner.latest_stream_arn().await
    }
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<BatchGet, SourceError> {
        {
            let mut last = self.last.lock().unwrap();
            let now = tokio::time::Instant::now();
            self.clock.advance((now - *last).as_millis() as i64);
            *last = now;
        }
        let mut unprocessed = vec![];
        {
            let mut n = self.throttled.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                // The first key of the call is served (unless it is the only one).
                unprocessed = keys.split_off(usize::from(keys.len() > 1));
            }
        }
        let mut got = self.inner.batch_get(keys).await?; // the items are read now
        got.unprocessed.extend(unprocessed);
        self.clock.advance(self.latency_ms); // ... and the answer arrives later
        Ok(got)
    }
}

/// A consumer of the rig's feed and clock reading `table`, with clock margin `margin`.
pub(crate) fn slow_enricher(
    r: &Rig,
    table: SlowTable,
    margin: Duration,
) -> TableEnricher<Product, String, SlowTable, MemoryBucket> {
    let cfg = product_config().with_feed(own_margin(margin));
    TableEnricher::new(cfg, table, Some(r.feed.clone()), r.clock.clone())
}

/// A feed whose listings fail while `failing` is set; object GETs (the snapshot pointer and
/// object, change files) keep working.
#[derive(Clone)]
pub(crate) struct ListingFails {
    pub(crate) bucket: MemoryBucket,
    pub(crate) failing: Arc<std::sync::atomic::AtomicBool>,
}

impl FeedSource for ListingFails {
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SourceError::new("ListObjectsV2", "injected failure"));
        }
        FeedSource::list(&self.bucket, prefix, start_after, token).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        FeedSource::get(&self.bucket, key).await
    }

    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<Conditional, SourceError> {
        self.bucket.head_state(key, etag).await
    }
}
