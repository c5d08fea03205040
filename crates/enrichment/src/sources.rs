//! The AWS calls the enrichment crate makes, behind one small trait per service.
//!
//! [`TableSource`] reads the reference table (Scan, BatchGetItem); [`FeedSource`] reads the
//! change feed (ListObjectsV2, GetObject, a conditional GET of the `_head` pointer).
//! [`DynamoDbTable`] and [`S3Feed`] implement them on the AWS SDK; tests pass fakes or the
//! same adapters pointed at the local emulator.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::types::{AttributeValue as SdkValue, KeysAndAttributes};
use change_protocol::Item;

/// A call to a source failed. `operation` names the API call; the message carries the SDK's
/// whole error chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct SourceError {
    /// The API operation, e.g. `Scan`.
    pub operation: &'static str,
    /// What went wrong.
    pub message: String,
}

impl SourceError {
    fn sdk(operation: &'static str, e: impl std::error::Error) -> SourceError {
        SourceError {
            operation,
            message: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
        }
    }
}

/// One page of a Scan segment.
#[derive(Clone, Debug, Default)]
pub struct ScanPage {
    /// Items of the page.
    pub items: Vec<Item>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Item>,
}

/// The answer to one BatchGetItem call.
#[derive(Clone, Debug, Default)]
pub struct BatchGet {
    /// Items found.
    pub items: Vec<Item>,
    /// Keys the service did not process; ask again.
    pub unprocessed: Vec<Item>,
}

/// Reads the reference table.
pub trait TableSource: Clone + Send + Sync + 'static {
    /// One page of segment `segment` of `total` of a consistent Scan.
    fn scan_page(
        &self,
        segment: i32,
        total: i32,
        start: Option<Item>,
    ) -> impl Future<Output = Result<ScanPage, SourceError>> + Send;

    /// A consistent BatchGetItem of at most 100 keys.
    fn batch_get(
        &self,
        keys: Vec<Item>,
    ) -> impl Future<Output = Result<BatchGet, SourceError>> + Send;
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Keys in lexical order.
    pub keys: Vec<String>,
    /// Continuation token while the listing is truncated.
    pub next: Option<String>,
}

/// What a conditional GET of the pointer object found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadState {
    /// Same ETag as last time (HTTP 304).
    NotModified,
    /// Changed; its new ETag.
    Changed(String),
    /// No pointer object (no producer has written yet).
    Missing,
}

/// Reads the change feed.
pub trait FeedSource: Send + Sync + 'static {
    /// One page of ListObjectsV2 under `prefix`, after `start_after`.
    fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, SourceError>> + Send;

    /// The whole object at `key`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, SourceError>> + Send;

    /// A GET of `key` with `If-None-Match: etag`.
    fn head_state(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<HeadState, SourceError>> + Send;
}

/// [`TableSource`] on the SDK's DynamoDB client.
#[derive(Clone, Debug)]
pub struct DynamoDbTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbTable {
    /// Reads `table` with `client`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoDbTable {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

fn to_sdk(item: Item) -> HashMap<String, SdkValue> {
    item.into_inner()
        .into_iter()
        .map(|(k, v)| (k, SdkValue::from(v)))
        .collect()
}

fn from_sdk(map: HashMap<String, SdkValue>) -> Item {
    map.into_iter()
        .map(|(k, v)| (k, change_protocol::AttributeValue::from(v)))
        .collect::<HashMap<_, _>>()
        .into()
}

impl TableSource for DynamoDbTable {
    async fn scan_page(
        &self,
        segment: i32,
        total: i32,
        start: Option<Item>,
    ) -> Result<ScanPage, SourceError> {
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true);
        if total > 1 {
            request = request.segment(segment).total_segments(total);
        }
        if let Some(start) = start {
            request = request.set_exclusive_start_key(Some(to_sdk(start)));
        }
        let out = request
            .send()
            .await
            .map_err(|e| SourceError::sdk("Scan", e))?;
        Ok(ScanPage {
            next: out
                .last_evaluated_key
                .filter(|k| !k.is_empty())
                .map(from_sdk),
            items: out
                .items
                .unwrap_or_default()
                .into_iter()
                .map(from_sdk)
                .collect(),
        })
    }

    async fn batch_get(&self, keys: Vec<Item>) -> Result<BatchGet, SourceError> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys.into_iter().map(to_sdk).collect()))
            .consistent_read(true)
            .build()
            .map_err(|e| SourceError::sdk("BatchGetItem", e))?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .send()
            .await
            .map_err(|e| SourceError::sdk("BatchGetItem", e))?;
        let items = out
            .responses
            .and_then(|mut r| r.remove(&self.table))
            .unwrap_or_default()
            .into_iter()
            .map(from_sdk)
            .collect();
        let unprocessed = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(&self.table))
            .map(|k| k.keys.into_iter().map(from_sdk).collect())
            .unwrap_or_default();
        Ok(BatchGet { items, unprocessed })
    }
}

/// [`FeedSource`] on the SDK's S3 client.
#[derive(Clone, Debug)]
pub struct S3Feed {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Feed {
    /// Reads the feed in `bucket` with `client` (build it with path-style addressing when it
    /// talks to an emulator).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Feed {
            client,
            bucket: bucket.into(),
        }
    }
}

impl FeedSource for S3Feed {
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .start_after(start_after)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| SourceError::sdk("ListObjectsV2", e))?;
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage {
            keys: out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
            next,
        })
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| SourceError::sdk("GetObject", e))?;
        let body = out.body.collect().await.map_err(|e| SourceError {
            operation: "GetObject",
            message: format!("reading the body of {key}: {e}"),
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<HeadState, SourceError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_none_match(etag.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => Ok(out
                .e_tag()
                .map(|t| HeadState::Changed(t.to_owned()))
                .unwrap_or(HeadState::Changed(String::new()))),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                match status {
                    Some(304) => Ok(HeadState::NotModified),
                    Some(404) => Ok(HeadState::Missing),
                    _ => Err(SourceError::sdk("GetObject", e)),
                }
            }
        }
    }
}

/// In-memory sources for unit tests.
#[cfg(test)]
pub(crate) mod fakes {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    fn fail(operation: &'static str) -> SourceError {
        SourceError {
            operation,
            message: "injected: connection refused".into(),
        }
    }

    /// A table keyed by the `item` and `price` attributes.
    #[derive(Clone, Default)]
    pub(crate) struct FakeTable {
        pub(crate) items: Arc<Mutex<BTreeMap<(String, String), Item>>>,
        pub(crate) down: Arc<AtomicBool>,
        pub(crate) scans: Arc<AtomicU64>,
        pub(crate) gets: Arc<AtomicU64>,
    }

    fn key_of(item: &Item) -> (String, String) {
        let s = |name: &str| match item.get(name) {
            Some(change_protocol::AttributeValue::S(s) | change_protocol::AttributeValue::N(s)) => {
                s.clone()
            }
            _ => String::new(),
        };
        (s("item"), s("price"))
    }

    impl FakeTable {
        pub(crate) fn put(&self, item: Item) {
            self.items.lock().unwrap().insert(key_of(&item), item);
        }
        pub(crate) fn delete(&self, item: &str) {
            self.items
                .lock()
                .unwrap()
                .remove(&(item.to_owned(), "100".to_owned()));
        }
    }

    impl TableSource for FakeTable {
        async fn scan_page(
            &self,
            segment: i32,
            total: i32,
            _start: Option<Item>,
        ) -> Result<ScanPage, SourceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(fail("Scan"));
            }
            self.scans.fetch_add(1, Ordering::SeqCst);
            let items = self
                .items
                .lock()
                .unwrap()
                .values()
                .enumerate()
                .filter(|(i, _)| (*i as i32) % total == segment)
                .map(|(_, v)| v.clone())
                .collect();
            Ok(ScanPage { items, next: None })
        }

        async fn batch_get(&self, keys: Vec<Item>) -> Result<BatchGet, SourceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(fail("BatchGetItem"));
            }
            self.gets.fetch_add(1, Ordering::SeqCst);
            let items = self.items.lock().unwrap();
            Ok(BatchGet {
                items: keys
                    .iter()
                    .filter_map(|k| items.get(&key_of(k)).cloned())
                    .collect(),
                unprocessed: vec![],
            })
        }
    }

    /// A bucket: objects in key order, ETags that change with content, pages of `page_size`.
    #[derive(Clone)]
    pub(crate) struct FakeFeed {
        pub(crate) objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
        pub(crate) down: Arc<AtomicBool>,
        pub(crate) lists: Arc<AtomicU64>,
        pub(crate) page_size: usize,
    }

    impl Default for FakeFeed {
        fn default() -> Self {
            FakeFeed {
                objects: Arc::default(),
                down: Arc::default(),
                lists: Arc::default(),
                page_size: 1000,
            }
        }
    }

    impl FakeFeed {
        pub(crate) fn put(&self, key: &str, body: Vec<u8>) {
            self.objects.lock().unwrap().insert(key.to_owned(), body);
        }
    }

    impl FeedSource for FakeFeed {
        async fn list(
            &self,
            prefix: &str,
            start_after: &str,
            token: Option<String>,
        ) -> Result<ListPage, SourceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(fail("ListObjectsV2"));
            }
            self.lists.fetch_add(1, Ordering::SeqCst);
            let after = token.unwrap_or_else(|| start_after.to_owned());
            let objects = self.objects.lock().unwrap();
            let keys: Vec<String> = objects
                .keys()
                .filter(|k| k.starts_with(prefix) && k.as_str() > after.as_str())
                .take(self.page_size + 1)
                .cloned()
                .collect();
            let truncated = keys.len() > self.page_size;
            let keys: Vec<String> = keys.into_iter().take(self.page_size).collect();
            let next = truncated.then(|| keys.last().cloned()).flatten();
            Ok(ListPage { keys, next })
        }

        async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(fail("GetObject"));
            }
            self.objects
                .lock()
                .unwrap()
                .get(key)
                .cloned()
                .ok_or_else(|| fail("GetObject"))
        }

        async fn head_state(
            &self,
            key: &str,
            etag: Option<&str>,
        ) -> Result<HeadState, SourceError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(fail("GetObject"));
            }
            let objects = self.objects.lock().unwrap();
            let Some(body) = objects.get(key) else {
                return Ok(HeadState::Missing);
            };
            let tag = format!(
                "{:x}",
                body.iter()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
            );
            Ok(if etag == Some(tag.as_str()) {
                HeadState::NotModified
            } else {
                HeadState::Changed(tag)
            })
        }
    }
}

/// In-memory objects for unit tests of the object enricher.
#[cfg(test)]
pub(crate) mod fake_objects {
    use super::*;
    use crate::objects::{ObjectBody, ObjectSource};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    pub(crate) struct FakeObjects {
        pub(crate) objects: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
        pub(crate) gets: Arc<AtomicU64>,
    }

    pub(crate) fn etag(body: &[u8]) -> String {
        format!(
            "\"{:x}\"",
            body.iter()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)))
        )
    }

    impl ObjectSource for FakeObjects {
        async fn list(
            &self,
            prefix: &str,
            _token: Option<String>,
        ) -> Result<ListPage, SourceError> {
            Ok(ListPage {
                keys: self
                    .objects
                    .lock()
                    .unwrap()
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect(),
                next: None,
            })
        }
        async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(self.objects.lock().unwrap().get(key).map(|b| ObjectBody {
                etag: Some(etag(b)),
                bytes: b.clone(),
                content_encoding: None,
            }))
        }
    }
}
