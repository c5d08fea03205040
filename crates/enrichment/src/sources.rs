//! The AWS calls the enrichment crate makes, behind one small trait per service.
//!
//! [`TableSource`] reads the reference table (Scan, BatchGetItem); [`FeedSource`] reads the
//! change feed (ListObjectsV2, GetObject, a conditional GET of the `_head` pointer);
//! [`ObjectSource`] reads reference objects (ListObjectsV2, GetObject). [`DynamoDbTable`],
//! [`S3Feed`] and [`S3Objects`] implement them on the AWS SDK; tests pass the in-memory sources
//! of [`crate::testing`] or the same adapters pointed at the local emulator.

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

    /// The table's current stream (DescribeTable's `LatestStreamArn`); `None` when the table
    /// has no stream. Each full load records it: change files of any other stream of the table
    /// hold changes the load may not reflect.
    fn latest_stream_arn(&self)
        -> impl Future<Output = Result<Option<String>, SourceError>> + Send;
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

/// An object's body and metadata.
#[derive(Clone, Debug, Default)]
pub struct ObjectBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Its ETag (with or without quotes).
    pub etag: Option<String>,
    /// Its `Content-Encoding`, if any.
    pub content_encoding: Option<String>,
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

/// [`ObjectSource`] on the SDK's S3 client, for one bucket.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Objects {
    /// Reads objects of `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3Objects {
            client,
            bucket: bucket.into(),
        }
    }
}

impl ObjectSource for S3Objects {
    async fn list(&self, prefix: &str, token: Option<String>) -> Result<ListPage, SourceError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| SourceError::sdk("ListObjectsV2", e))?;
        Ok(ListPage {
            keys: out
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect(),
            next: if out.is_truncated().unwrap_or(false) {
                out.next_continuation_token().map(str::to_owned)
            } else {
                None
            },
        })
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, SourceError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_owned);
                let content_encoding = out.content_encoding().map(str::to_owned);
                let bytes = out.body.collect().await.map_err(|e| SourceError {
                    operation: "GetObject",
                    message: format!("reading the body of {key}: {e}"),
                })?;
                Ok(Some(ObjectBody {
                    bytes: bytes.into_bytes().to_vec(),
                    etag,
                    content_encoding,
                }))
            }
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(None),
            Err(e) => Err(SourceError::sdk("GetObject", e)),
        }
    }
}
