//! The in-memory stand-in for S3 that every crate's tests share (feature `testing`).
//!
//! [`MemoryStore`] is an [`ObjectStore`] with the reads of [`S3Store`](crate::S3Store) under
//! the same names and types ([`MemoryStore::get`], [`MemoryStore::list_page`],
//! [`MemoryStore::get_if_none_match`]), so a fake of any S3 port in the workspace is a thin
//! wrapper around it. A test can script the next writes (fail, delay, fail late), take the
//! whole store down, and count the calls made.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use stream_refdata_aws::testing::MemoryStore;
//! use stream_refdata_aws::ObjectStore;
//!
//! let store = MemoryStore::new();
//! store.fail_next(1);
//! assert!(store.put("feed", "a.json", b"{}".to_vec()).await.is_err());
//! store.put("feed", "a.json", b"{}".to_vec()).await.unwrap();
//! assert_eq!(store.put_keys(), ["a.json"]);
//! assert_eq!(store.object("feed", "a.json").unwrap(), b"{}");
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::s3::{Bytes, Conditional, ListPage, ObjectBody, ObjectStore, S3Error, StoreError};

/// What a scripted failure says unless the script names the error.
const UNAVAILABLE: &str = "injected failure: ServiceUnavailable";
/// What every call says while the store is set to fail.
const FAILING: &str = "injected failure (the store is set to fail)";

/// Objects of any number of buckets in memory, in key order, with quoted ETags that change with
/// the content and listings in pages (1,000 keys, as S3, unless set otherwise).
///
/// Cheap to clone: clones share their objects, script and counts, so a test keeps a clone of
/// the store it hands to the code under test.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    state: Arc<State>,
    page_size: usize,
}

#[derive(Debug, Default)]
struct State {
    objects: Mutex<BTreeMap<(String, String), Bytes>>,
    script: Mutex<VecDeque<Step>>,
    puts: Mutex<Vec<String>>,
    archived: Mutex<std::collections::BTreeSet<(String, String)>>,
    failing_under: Mutex<Option<String>>,
    failing: AtomicBool,
    gets: AtomicU64,
    lists: AtomicU64,
}

/// What the next put does.
#[derive(Debug, Clone)]
enum Step {
    Fail(String),
    Delay(Duration),
    FailAfter(Duration),
}

/// The lock, even if a test panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Arc::default(),
            page_size: 1000,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The same store, listed `page_size` keys a page (at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> MemoryStore {
        self.page_size = page_size.max(1);
        self
    }

    /// The next `n` puts fail (S3's `ServiceUnavailable`).
    pub fn fail_next(&self, n: usize) {
        let fail = Step::Fail(UNAVAILABLE.to_owned());
        lock(&self.state.script).extend(std::iter::repeat_n(fail, n));
    }

    /// The next put fails, its error saying `message` (e.g. the S3 error code).
    pub fn fail_next_with(&self, message: &str) {
        self.script(Step::Fail(format!("injected failure: {message}")));
    }

    /// The next put takes `d` (on tokio's clock) before it succeeds.
    pub fn delay_next(&self, d: Duration) {
        self.script(Step::Delay(d));
    }

    /// The next put fails after `d` (on tokio's clock): with concurrent writes, the puts started
    /// with it finish first.
    pub fn fail_next_after(&self, d: Duration) {
        self.script(Step::FailAfter(d));
    }

    fn script(&self, step: Step) {
        lock(&self.state.script).push_back(step);
    }

    /// Makes every put of a key under `prefix` fail (S3's `ServiceUnavailable`) until called
    /// with `None`; other calls succeed.
    pub fn fail_puts_under(&self, prefix: Option<&str>) {
        *lock(&self.state.failing_under) = prefix.map(str::to_owned);
    }

    /// Makes every call, reads included, fail (`true`) or succeed again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    /// Keys of every successful put, in order.
    pub fn put_keys(&self) -> Vec<String> {
        lock(&self.state.puts).clone()
    }

    /// Object GETs served so far (conditional GETs included).
    pub fn gets(&self) -> u64 {
        self.state.gets.load(Ordering::SeqCst)
    }

    /// Listing pages served so far.
    pub fn lists(&self) -> u64 {
        self.state.lists.load(Ordering::SeqCst)
    }

    /// Writes an object as the test's own setup: no script, no failure, not in
    /// [`MemoryStore::put_keys`].
    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Bytes>) {
        lock(&self.state.objects).insert((bucket.to_owned(), key.to_owned()), body.into());
    }

    /// Deletes an object, if any.
    pub fn remove(&self, bucket: &str, key: &str) {
        lock(&self.state.objects).remove(&(bucket.to_owned(), key.to_owned()));
    }

    /// Moves the object at `bucket/key` to an archive storage class (`true`: its GETs answer
    /// 403 `InvalidObjectState`, a permanent error, as S3 answers for GLACIER) or restores it
    /// (`false`). Listings still show it, as in S3.
    pub fn set_archived(&self, bucket: &str, key: &str, archived: bool) {
        let id = (bucket.to_owned(), key.to_owned());
        let mut set = lock(&self.state.archived);
        if archived {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// The object at `bucket/key`.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.body(bucket, key).map(|b| b.to_vec())
    }

    /// The ETag (quoted, as S3 sends it) of the object at `bucket/key`.
    pub fn etag(&self, bucket: &str, key: &str) -> Option<String> {
        self.body(bucket, key).map(|b| etag_of(&b))
    }

    fn body(&self, bucket: &str, key: &str) -> Option<Bytes> {
        lock(&self.state.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// A call of `operation`: fails while the store is set to fail, else counted in `calls`.
    fn call(&self, operation: &'static str, calls: &AtomicU64) -> Result<(), S3Error> {
        if self.state.failing.load(Ordering::SeqCst) {
            return Err(S3Error {
                operation,
                message: FAILING.to_owned(),
                permanent: false,
                source: None,
            });
        }
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The object at `bucket/key` with its ETag, as [`S3Store::get`](crate::S3Store::get)
    /// reads it; `None` when there is none.
    ///
    /// # Errors
    /// [`S3Error`] with operation `GetObject` while the store is set to fail; a permanent one
    /// for an archived object ([`MemoryStore::set_archived`]).
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<ObjectBody>, S3Error> {
        self.call("GetObject", &self.state.gets)?;
        if lock(&self.state.archived).contains(&(bucket.to_owned(), key.to_owned())) {
            return Err(S3Error {
                operation: "GetObject",
                message: format!(
                    "InvalidObjectState: The operation is not valid for the object's storage class ({key})"
                ),
                permanent: true,
                source: None,
            });
        }
        Ok(self.body(bucket, key).map(|bytes| ObjectBody {
            etag: Some(etag_of(&bytes)),
            bytes: bytes.to_vec(),
            content_encoding: None,
        }))
    }

    /// Deletes `bucket/key`, as [`S3Store::delete`](crate::S3Store::delete) does (no error when
    /// there is no such object).
    ///
    /// # Errors
    /// [`S3Error`] with operation `DeleteObject` while the store is set to fail.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.call("DeleteObject", &self.state.gets)?;
        self.remove(bucket, key);
        Ok(())
    }

    /// One page of the keys of `bucket` under `prefix`, after `start_after` if given,
    /// continuing from `token` if given, as [`S3Store::list_page`](crate::S3Store::list_page)
    /// reads it (the token is the page's last key).
    ///
    /// # Errors
    /// [`S3Error`] with operation `ListObjectsV2` while the store is set to fail.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
    ) -> Result<ListPage, S3Error> {
        self.call("ListObjectsV2", &self.state.lists)?;
        let after = (
            bucket.to_owned(),
            token.or(start_after.map(str::to_owned)).unwrap_or_default(),
        );
        let mut keys: Vec<String> = lock(&self.state.objects)
            .range((Bound::Excluded(after), Bound::Unbounded))
            .map(|((b, k), _)| (b, k))
            .take_while(|(b, _)| b.as_str() == bucket)
            .filter(|(_, k)| k.starts_with(prefix))
            .take(self.page_size + 1)
            .map(|(_, k)| k.clone())
            .collect();
        let truncated = keys.len() > self.page_size;
        keys.truncate(self.page_size);
        let next = truncated.then(|| keys.last().cloned()).flatten();
        Ok(ListPage { keys, next })
    }

    /// What a GET of `bucket/key` with `If-None-Match: etag` finds, as
    /// [`S3Store::get_if_none_match`](crate::S3Store::get_if_none_match) reads it.
    ///
    /// # Errors
    /// [`S3Error`] with operation `GetObject` while the store is set to fail.
    pub async fn get_if_none_match(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, S3Error> {
        self.call("GetObject", &self.state.gets)?;
        Ok(match self.etag(bucket, key) {
            None => Conditional::Missing,
            Some(tag) if etag == Some(tag.as_str()) => Conditional::NotModified,
            Some(tag) => Conditional::Changed(tag),
        })
    }

    /// What the next put does: fails (with its error), after waiting out its delay if scripted.
    async fn next_step(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        if self.state.failing.load(Ordering::SeqCst) {
            return Err(StoreError::new(bucket, key, FAILING));
        }
        if (lock(&self.state.failing_under).as_deref()).is_some_and(|p| key.starts_with(p)) {
            return Err(StoreError::new(bucket, key, UNAVAILABLE));
        }
        let step = lock(&self.state.script).pop_front();
        match step {
            None => Ok(()),
            Some(Step::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Step::FailAfter(d)) => {
                tokio::time::sleep(d).await;
                Err(StoreError::new(bucket, key, UNAVAILABLE))
            }
            Some(Step::Fail(message)) => Err(StoreError::new(bucket, key, message)),
        }
    }
}

/// A quoted hash of `body` that changes with it (S3's is an MD5; any such hash will do here).
fn etag_of(body: &[u8]) -> String {
    let hash = body
        .iter()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
    format!("\"{hash:x}\"")
}

/// A put follows the script, then writes the object and records its key.
impl crate::ObjectKeeper for MemoryStore {
    async fn keys_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> Result<ListPage, S3Error> {
        self.list_page(bucket, prefix, None, token).await
    }
    async fn read_object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        Ok(self.get(bucket, key).await?.map(|b| b.bytes))
    }
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.delete(bucket, key).await
    }
    async fn child_prefixes(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        self.call("ListObjectsV2", &self.state.lists)?;
        let mut prefixes: Vec<String> = lock(&self.state.objects)
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .filter_map(|(_, k)| {
                let rest = &k[prefix.len()..];
                rest.find('/')
                    .map(|end| format!("{prefix}{}", &rest[..=end]))
            })
            .collect();
        prefixes.dedup();
        Ok(prefixes)
    }
    async fn read_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, String)>, S3Error> {
        Ok(self
            .get(bucket, key)
            .await?
            .map(|b| (b.bytes, b.etag.unwrap_or_default())))
    }
    async fn put_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.next_step(bucket, key).await?;
        // (checked and written under one lock: no put comes between)
        let mut objects = lock(&self.state.objects);
        let id = (bucket.to_owned(), key.to_owned());
        let now = objects.get(&id).map(|b| etag_of(b));
        if now.as_deref() != etag {
            return Ok(false);
        }
        objects.insert(id, body);
        drop(objects);
        lock(&self.state.puts).push(key.to_owned());
        Ok(true)
    }
}

impl ObjectStore for MemoryStore {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes> + Send,
    ) -> Result<(), StoreError> {
        self.next_step(bucket, key).await?;
        self.insert(bucket, key, body);
        lock(&self.state.puts).push(key.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listings_page_within_one_bucket_and_prefix() {
        let store = MemoryStore::new().with_page_size(2);
        for key in ["feed/a", "feed/b", "feed/c", "other/d"] {
            store.insert("one", key, key.as_bytes().to_vec());
        }
        store.insert("two", "feed/e", b"e".to_vec());
        let first = store.list_page("one", "feed/", None, None).await.unwrap();
        assert_eq!(first.keys, ["feed/a", "feed/b"]);
        let token = first.next.clone();
        let second = store.list_page("one", "feed/", None, token).await.unwrap();
        assert_eq!(
            (second.keys, second.next),
            (vec!["feed/c".to_owned()], None)
        );
        let after = store.list_page("one", "feed/", Some("feed/a"), None).await;
        assert_eq!(after.unwrap().keys, ["feed/b", "feed/c"]);
        assert_eq!(store.lists(), 3);
    }

    #[tokio::test]
    async fn child_prefixes_are_the_folders_right_under_a_prefix_as_s3_lists_them() {
        use crate::ObjectKeeper;
        let store = MemoryStore::new();
        for key in [
            "held/shard-1/1.json",
            "held/shard-1/2.json",
            "held/shard-2/3.json",
            "held/ended/shard-1/0",
            "held/loose.json",
            "other/shard-3/4.json",
        ] {
            store.insert("b", key, b"{}".to_vec());
        }
        store.insert("c", "held/shard-9/1.json", b"{}".to_vec());
        assert_eq!(
            store.child_prefixes("b", "held/").await.unwrap(),
            ["held/ended/", "held/shard-1/", "held/shard-2/"]
        );
    }

    #[tokio::test]
    async fn a_conditional_get_sees_a_changed_body() {
        let store = MemoryStore::new();
        let head = store.get_if_none_match("b", "_head", None).await.unwrap();
        assert_eq!(head, Conditional::Missing);
        store.insert("b", "_head", b"1".to_vec());
        let tag = store.etag("b", "_head");
        let same = store.get_if_none_match("b", "_head", tag.as_deref()).await;
        assert_eq!(same.unwrap(), Conditional::NotModified);
        store.insert("b", "_head", b"2".to_vec());
        let changed = store.get_if_none_match("b", "_head", tag.as_deref()).await;
        assert_eq!(
            changed.unwrap(),
            Conditional::Changed(store.etag("b", "_head").unwrap())
        );
        assert_eq!(store.gets(), 3);
    }

    #[tokio::test]
    async fn the_script_runs_in_order_and_a_failing_store_fails_every_call() {
        let store = MemoryStore::new();
        store.delay_next(Duration::from_millis(20));
        store.fail_next_with("NoSuchBucket");
        let started = tokio::time::Instant::now();
        store.put("b", "k1", b"1".to_vec()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        let err = store.put("b", "k2", b"2".to_vec()).await.unwrap_err();
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
        store.set_failing(true);
        assert!(store.put("b", "k3", b"3".to_vec()).await.is_err());
        assert_eq!(
            store.get("b", "k1").await.unwrap_err().operation,
            "GetObject"
        );
        assert_eq!(store.put_keys(), ["k1"]);
        assert_eq!(store.gets(), 0, "a failed call is not served");
    }
}
