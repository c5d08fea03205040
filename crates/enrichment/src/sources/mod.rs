//! The AWS calls the enrichment crate makes, behind one small trait per service.
//!
//! [`TableSource`] reads the reference table (Scan, BatchGetItem); [`FeedSource`] reads the
//! change feed (ListObjectsV2, GetObject, a conditional GET of the `_head` pointer);
//! [`ObjectSource`] reads reference objects (ListObjectsV2, GetObject). [`DynamoDbTable`],
//! [`S3Feed`] and [`S3Objects`] implement them on the AWS SDK; tests pass the in-memory sources
//! of `stream_refdata::testing` (feature `testing`) or the same adapters pointed at the local emulator.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::types::{AttributeValue as SdkValue, KeysAndAttributes};
use stream_refdata_aws::{S3Error, S3Store};
use stream_refdata_protocol::Item;

pub use stream_refdata_aws::{Conditional, ListPage, ObjectBody};

/// A call to a source failed. `operation` names the API call; the message carries the SDK's
/// whole error chain, and the SDK's error stays the [`source`](std::error::Error::source).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct SourceError {
    /// The API operation, e.g. `Scan`.
    pub operation: &'static str,
    /// What went wrong.
    pub message: String,
    /// Whether retrying alone cannot cure it ([`SourceError::is_permanent`]).
    permanent: bool,
    /// The error that caused it, when there is one (shared: reports are cloned).
    #[source]
    cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    /// A failure of `operation` that `message` describes, with no underlying error (a source
    /// that is not an SDK client, such as an in-memory one).
    pub fn new(operation: &'static str, message: impl Into<String>) -> SourceError {
        SourceError {
            operation,
            message: message.into(),
            permanent: false,
            cause: None,
        }
    }

    /// Like [`SourceError::new`], for a failure that retrying alone cannot cure (see
    /// [`SourceError::is_permanent`]).
    pub fn permanent(operation: &'static str, message: impl Into<String>) -> SourceError {
        SourceError {
            permanent: true,
            ..SourceError::new(operation, message)
        }
    }

    /// Whether the call can never succeed by being retried alone: an S3 object that is
    /// archived or that the consumer may not read (see
    /// [`S3Error::is_permanent`](stream_refdata_aws::S3Error::is_permanent)). A reference object
    /// that fails so is rejected (its previous rows keep serving) and read again after a
    /// backoff; any other failure fails the refresh, which is retried.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    fn sdk(
        operation: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> SourceError {
        SourceError {
            operation,
            message: aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
            permanent: false,
            cause: Some(std::sync::Arc::new(e)),
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

    /// The table's current stream (DescribeTable's `LatestStreamArn`); `None` when the table
    /// has no stream. Each full load records it: change files of any other stream of the table
    /// hold changes the load may not reflect.
    fn latest_stream_arn(&self)
        -> impl Future<Output = Result<Option<String>, SourceError>> + Send;
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

    /// A GET of `key` with `If-None-Match: etag`. [`Conditional::Missing`] when there is no
    /// such object (404, or 403 where the caller may not list the bucket): the consumer then
    /// lists, as when the pointer changed.
    fn head_state(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<Conditional, SourceError>> + Send;

    /// When the answers this source gives from now on were taken at the earliest, if that can
    /// be before the call: a source that shares one answer among several followers
    /// ([`SharedFeed`]) says so, and a follower counts its feed position and its staleness from
    /// then (on the wall clock and the monotonic clock). `None`, the default: every answer is
    /// taken during the call.
    fn taken_at(&self) -> Option<(chrono::DateTime<chrono::Utc>, tokio::time::Instant)> {
        None
    }
}

mod shared;
pub use shared::SharedFeed;

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
        .map(|(k, v)| (k, stream_refdata_protocol::AttributeValue::from(v)))
        .collect::<HashMap<_, _>>()
        .into()
}

impl TableSource for DynamoDbTable {
    async fn latest_stream_arn(&self) -> Result<Option<String>, SourceError> {
        let out = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| SourceError::sdk("DescribeTable", e))?;
        Ok(out
            .table
            .and_then(|t| t.latest_stream_arn)
            .filter(|a| !a.is_empty()))
    }

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

/// The feed and reference-object reads on the workspace's one S3 adapter
/// ([`stream_refdata_aws::S3Store`]), for one bucket. [`S3Feed`] and [`S3Objects`] name it for its two
/// uses.
#[derive(Clone, Debug)]
pub struct S3Bucket {
    store: S3Store,
    bucket: String,
}

/// [`FeedSource`] on S3: the change feed's bucket.
pub type S3Feed = S3Bucket;
/// [`ObjectSource`] on S3: the reference objects' bucket.
pub type S3Objects = S3Bucket;

impl S3Bucket {
    /// Reads `bucket` with `client` (build it with [`stream_refdata_aws::s3_client`], which uses
    /// path-style addressing when it talks to an emulator).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Bucket {
            store: S3Store::new(client),
            bucket: bucket.into(),
        }
    }
}

impl From<S3Error> for SourceError {
    fn from(e: S3Error) -> SourceError {
        SourceError {
            operation: e.operation,
            message: e.message.clone(),
            permanent: e.is_permanent(),
            cause: Some(std::sync::Arc::new(e)),
        }
    }
}

impl FeedSource for S3Bucket {
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        Ok(self
            .store
            .list_page(&self.bucket, prefix, Some(start_after), token)
            .await?)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        match self.store.get(&self.bucket, key).await? {
            Some(body) => Ok(body.bytes),
            None => Err(SourceError::new(
                "GetObject",
                format!("NoSuchKey: {key} is listed but gone"),
            )),
        }
    }

    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<Conditional, SourceError> {
        Ok(self
            .store
            .get_if_none_match(&self.bucket, key, etag)
            .await?)
    }
}

impl ObjectSource for S3Bucket {
    async fn list(&self, prefix: &str, token: Option<String>) -> Result<ListPage, SourceError> {
        Ok(self
            .store
            .list_page(&self.bucket, prefix, None, token)
            .await?)
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
        Ok(self.store.get(&self.bucket, key).await?)
    }
}
