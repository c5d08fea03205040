//! In-memory sources, to test a consumer without AWS or an emulator (feature `testing`).
//!
//! [`MemoryTable`] stands in for [`DynamoDbTable`](crate::sources::DynamoDbTable) and [`MemoryBucket`]
//! for [`S3Feed`](crate::sources::S3Feed) and [`S3Objects`](crate::sources::S3Objects). Both are cheap to clone
//! (clones share their contents), count their calls, and can be made to fail, so a test can
//! write a change file, take the source down, and check what the enricher serves meanwhile.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use stream_refdata::testing::{item, MemoryBucket, MemoryTable};
//! use stream_refdata::{TableEnricher, TableConfig, FeedSettings, SystemClock};
//!
//! #[derive(serde::Deserialize)]
//! struct Product { item: String, priority: String }
//!
//! let table = MemoryTable::new(&["item"]);
//! table.put(item(&[("item", "burger"), ("priority", "medium")]));
//! let feed = MemoryBucket::default();
//! let config = TableConfig::new("ProductPriority", &["item"], |p: &Product| Some(p.item.clone()))
//!     .with_feed(FeedSettings { poll_interval: Duration::ZERO, ..FeedSettings::default() });
//! let mut enricher = TableEnricher::new(config, table.clone(), Some(feed.clone()), SystemClock);
//! enricher.refresh().await;
//!
//! feed.set_failing(true); // S3 is down: the last snapshot keeps serving
//! let report = enricher.refresh().await;
//! assert!(report.error.unwrap().to_string().contains("injected failure"));
//! assert_eq!(enricher.reader().lookup("burger").unwrap().priority, "medium");
//! assert_eq!(table.scans(), 4); // one page for each of the 4 Scan segments: loaded once
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::{Arc, Mutex};
use stream_refdata_aws::testing::MemoryStore;
use stream_refdata_aws::S3Error;

use stream_refdata_protocol::{AttributeValue, Item};

use crate::key::ItemKey;
use crate::snapshot::{Ambiguity, Snapshot};
use crate::sources::{
    BatchGet, Conditional, FeedSource, ListPage, ObjectBody, ObjectSource, ScanPage, SourceError,
    TableSource,
};

fn injected(operation: &'static str) -> SourceError {
    SourceError::new(operation, "injected failure (testing source set to fail)")
}

/// An item of string attributes, e.g. `item(&[("item", "burger"), ("priority", "high")])`.
pub fn item(attributes: &[(&str, &str)]) -> Item {
    attributes
        .iter()
        .map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned())))
        .collect::<HashMap<_, _>>()
        .into()
}

/// A snapshot of `entries` built in bulk, as a full load builds it (for benchmarks and tests of
/// code that reads snapshots). A key given twice keeps its last value.
pub fn snapshot<T, K: Hash + Eq + Clone>(
    ambiguity: Ambiguity,
    entries: impl IntoIterator<Item = (ItemKey, T, Option<K>)>,
) -> Snapshot<T, K> {
    Snapshot::from_entries(ambiguity, entries)
}

/// `snapshot` with `value` at `key`: the delta step a change applies, without a copy of the
/// table (for benchmarks).
pub fn with_upsert<T, K: Hash + Eq + Clone>(
    mut snapshot: Snapshot<T, K>,
    key: ItemKey,
    value: T,
    lookup: Option<K>,
) -> Snapshot<T, K> {
    snapshot.upsert(key, value, lookup);
    snapshot
}

#[derive(Debug, Default)]
struct Calls {
    failing: AtomicBool,
    count: AtomicU64,
}

/// A reference table in memory, keyed by its key attributes. Scans return one page per
/// segment; BatchGetItem processes every key.
#[derive(Clone, Debug)]
pub struct MemoryTable {
    key_attributes: Arc<Vec<String>>,
    stream_arn: Arc<Mutex<Option<String>>>,
    items: Arc<Mutex<BTreeMap<ItemKey, Item>>>,
    scans: Arc<Calls>,
    gets: Arc<Calls>,
}

impl MemoryTable {
    /// An empty table with these key attributes (hash key first).
    pub fn new(key_attributes: &[&str]) -> Self {
        MemoryTable {
            key_attributes: Arc::new(key_attributes.iter().map(|s| (*s).to_owned()).collect()),
            stream_arn: Arc::default(),
            items: Arc::default(),
            scans: Arc::default(),
            gets: Arc::default(),
        }
    }

    /// Writes `item` (replacing the item with its key).
    ///
    /// # Panics
    /// When `item` lacks a key attribute: a table would refuse it too.
    pub fn put(&self, item: Item) {
        let key = ItemKey::from_item(&self.key_attributes, &item)
            .unwrap_or_else(|e| panic!("MemoryTable::put: {e}"));
        self.items.lock().unwrap().insert(key, item);
    }

    /// Deletes the item with the key attributes of `keys`, if any.
    pub fn delete(&self, keys: &Item) {
        if let Ok(key) = ItemKey::from_item(&self.key_attributes, keys) {
            self.items.lock().unwrap().remove(&key);
        }
    }

    /// Sets the table's current stream, as DescribeTable reports it (none at first).
    pub fn set_stream_arn(&self, arn: Option<&str>) {
        *self.stream_arn.lock().unwrap() = arn.map(str::to_owned);
    }

    /// Makes every call fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.scans.failing.store(failing, Ordering::SeqCst);
        self.gets.failing.store(failing, Ordering::SeqCst);
    }

    /// Scan pages served so far.
    pub fn scans(&self) -> u64 {
        self.scans.count.load(Ordering::SeqCst)
    }

    /// BatchGetItem calls served so far.
    pub fn batch_gets(&self) -> u64 {
        self.gets.count.load(Ordering::SeqCst)
    }
}

impl TableSource for MemoryTable {
    async fn latest_stream_arn(&self) -> Result<Option<String>, SourceError> {
        if self.scans.failing.load(Ordering::SeqCst) {
            return Err(injected("DescribeTable"));
        }
        Ok(self.stream_arn.lock().unwrap().clone())
    }

    async fn scan_page(
        &self,
        segment: i32,
        total: i32,
        _start: Option<Item>,
    ) -> Result<ScanPage, SourceError> {
        if self.scans.failing.load(Ordering::SeqCst) {
            return Err(injected("Scan"));
        }
        self.scans.count.fetch_add(1, Ordering::SeqCst);
        let items = self
            .items
            .lock()
            .unwrap()
            .values()
            .enumerate()
            .filter(|(i, _)| (*i as i32) % total.max(1) == segment)
            .map(|(_, v)| v.clone())
            .collect();
        Ok(ScanPage { items, next: None })
    }

    async fn batch_get(&self, keys: Vec<Item>) -> Result<BatchGet, SourceError> {
        if self.gets.failing.load(Ordering::SeqCst) {
            return Err(injected("BatchGetItem"));
        }
        self.gets.count.fetch_add(1, Ordering::SeqCst);
        let items = self.items.lock().unwrap();
        Ok(BatchGet {
            items: keys
                .iter()
                .filter_map(|k| ItemKey::from_item(&self.key_attributes, k).ok())
                .filter_map(|k| items.get(&k).cloned())
                .collect(),
            unprocessed: vec![],
        })
    }
}

/// The one bucket a [`MemoryBucket`] keeps its objects in.
const BUCKET: &str = "memory-bucket";

/// A bucket in memory: one bucket of the workspace's in-memory S3
/// ([`stream_refdata_aws::testing::MemoryStore`]: objects in key order, quoted ETags that change with
/// the content, listings in pages of 1,000 keys unless set otherwise, counted calls). It serves
/// both as a change feed ([`FeedSource`]) and as a place for reference objects
/// ([`ObjectSource`]), and takes writes as an [`ObjectStore`](stream_refdata_aws::ObjectStore).
#[derive(Clone, Debug, Default)]
pub struct MemoryBucket {
    store: MemoryStore,
}

impl MemoryBucket {
    /// The same bucket, listed `page_size` keys a page (at least 1).
    pub fn with_page_size(self, page_size: usize) -> Self {
        MemoryBucket {
            store: self.store.with_page_size(page_size),
        }
    }

    /// The store the bucket lives in, to script its writes (fail, delay).
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Writes an object.
    pub fn put(&self, key: &str, body: Vec<u8>) {
        self.store.insert(BUCKET, key, body);
    }

    /// Deletes an object, if any.
    pub fn remove(&self, key: &str) {
        self.store.remove(BUCKET, key);
    }

    /// The object at `key`.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.store.object(BUCKET, key)
    }

    /// The ETag (quoted, as S3 sends it) of the object at `key`.
    pub fn etag(&self, key: &str) -> Option<String> {
        self.store.etag(BUCKET, key)
    }

    /// Makes every call fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.store.set_failing(failing);
    }

    /// Archives the object at `key` (`true`: its GETs fail permanently with
    /// `InvalidObjectState`, as S3 answers for GLACIER) or restores it (`false`).
    pub fn set_archived(&self, key: &str, archived: bool) {
        self.store.set_archived(BUCKET, key, archived);
    }

    /// Listing pages served so far.
    pub fn lists(&self) -> u64 {
        self.store.lists()
    }

    /// Object GETs served so far (conditional GETs of a pointer included).
    pub fn gets(&self) -> u64 {
        self.store.gets()
    }
}

/// The store's error as a source's, without a cause: the store is not an SDK client.
fn source(e: S3Error) -> SourceError {
    if e.is_permanent() {
        SourceError::permanent(e.operation, e.message)
    } else {
        SourceError::new(e.operation, e.message)
    }
}

impl FeedSource for MemoryBucket {
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let page = self
            .store
            .list_page(BUCKET, prefix, Some(start_after), token);
        page.await.map_err(source)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        match self.store.get(BUCKET, key).await.map_err(source)? {
            Some(body) => Ok(body.bytes),
            None => Err(SourceError::new("GetObject", format!("NoSuchKey: {key}"))),
        }
    }

    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<Conditional, SourceError> {
        let state = self.store.get_if_none_match(BUCKET, key, etag);
        state.await.map_err(source)
    }
}

impl ObjectSource for MemoryBucket {
    async fn list(&self, prefix: &str, token: Option<String>) -> Result<ListPage, SourceError> {
        let page = self.store.list_page(BUCKET, prefix, None, token);
        page.await.map_err(source)
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
        self.store.get(BUCKET, key).await.map_err(source)
    }
}

/// The bucket as an output store too (a producer's or the feed-compactor's writes land in it,
/// whatever bucket they name: one bucket). Fails like reads when set failing.
impl stream_refdata_aws::ObjectStore for MemoryBucket {
    fn put(
        &self,
        _bucket: &str,
        key: &str,
        body: impl Into<stream_refdata_aws::Bytes> + Send,
    ) -> impl std::future::Future<Output = Result<(), stream_refdata_aws::StoreError>> + Send {
        self.store.put(BUCKET, key, body)
    }
}
