//! The workspace's one S3 adapter: [`S3Store`] on the SDK's client.
//!
//! Producers and the orders consumer write through the [`ObjectStore`] port (tests pass fakes);
//! the crates that read the change feed and reference objects delegate to its inherent read
//! methods ([`S3Store::get`], [`S3Store::list_page`], [`S3Store::get_if_none_match`]) behind
//! their own ports, converting [`S3Error`] one to one (`operation`, `message`, and whether it
//! is permanent: [`S3Error::is_permanent`]).

use std::future::Future;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
pub use bytes::Bytes;

/// A PutObject that failed; the message carries the SDK's whole error chain, and the SDK's
/// error itself is the source.
#[derive(Debug, thiserror::Error)]
#[error("PutObject s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    /// The bucket written to.
    pub bucket: String,
    /// The key written to.
    pub key: String,
    /// What the service or the transport said.
    pub message: String,
    /// The SDK's error, when the write went through the SDK.
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A failed write of `bucket`/`key` that `message` describes, with no underlying error (a
    /// store that is not an SDK client, such as a test's fake).
    pub fn new(bucket: &str, key: &str, message: impl Into<String>) -> StoreError {
        StoreError {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: message.into(),
            source: None,
        }
    }
}

/// A read from S3 that failed. `operation` names the API call (`GetObject`, `ListObjectsV2`);
/// the message carries the SDK's whole error chain, and the SDK's error itself is the source.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct S3Error {
    /// The API operation.
    pub operation: &'static str,
    /// What the service or the transport said.
    pub message: String,
    /// Whether retrying alone cannot cure it (see [`S3Error::is_permanent`]).
    pub permanent: bool,
    /// The SDK's error (the failed call, or the body that could not be read).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl S3Error {
    fn sdk<E>(operation: &'static str, e: SdkError<E>) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        S3Error {
            operation,
            message: DisplayErrorContext(&e).to_string(),
            permanent: is_permanent(status(&e), e.code()),
            source: Some(Box::new(e)),
        }
    }

    /// Whether the call can never succeed by being retried alone: the object is archived
    /// (`InvalidObjectState`), or the caller may not read it (403: an IAM or bucket policy, a
    /// KMS key it may not use; S3 also answers 403 for a missing key when the caller may not
    /// list it), an SSE-C object is read without its key, or its KMS key is disabled or gone.
    /// Something outside the caller must change first (a restore, a policy), so the caller
    /// retries it after a backoff, not at once. Everything else is transient: throttling (S3's
    /// or KMS's), 5xx, timeouts, transport errors, and the 4xx answers that fresh credentials
    /// or a corrected clock cure.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }
}

/// See [`S3Error::is_permanent`]: the answer's HTTP `status` and S3 error `code`. Every 4xx is
/// permanent (403 access denied or archived, 400 `InvalidObjectState`, `InvalidRequest` for an
/// SSE-C object read without its key, a disabled KMS key) except the answers that time, fresh
/// credentials or a plain retry cure: throttling (any code that says so, `KMS.ThrottlingException`
/// included), 408, 409, 429, and the clock and token codes. 404 is not an error to the reads.
fn is_permanent(status: Option<u16>, code: Option<&str>) -> bool {
    const TRANSIENT_CODES: [&str; 5] = [
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "TokenRefreshRequired",
        "RequestTimeout",
        "OperationAborted",
    ];
    let transient_code = code
        .is_some_and(|c| TRANSIENT_CODES.contains(&c) || c.contains("Throttl") || c == "SlowDown");
    match status {
        Some(404 | 408 | 409 | 429) => false,
        Some(400..=499) => !transient_code,
        _ => false,
    }
}

/// Puts whole objects. Implemented for S3 by [`S3Store`]; tests pass fakes.
pub trait ObjectStore: Send + Sync {
    /// Writes `body` to `bucket/key`, replacing any object there. A `Vec<u8>` is moved in; a
    /// [`Bytes`] shared with the caller (e.g. kept for a summary) is put without a copy.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What a caller that keeps objects of its own (the orders consumer's held orders) needs beside
/// [`ObjectStore::put`]: every key under a prefix, a read, a delete. Implemented for S3 by
/// [`S3Store`], and by the in-memory store of the `testing` feature.
pub trait ObjectKeeper: ObjectStore {
    /// One page of the keys of `bucket` under `prefix`, continuing from `token`.
    fn keys_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, S3Error>> + Send;
    /// Every key of `bucket` under `prefix` (all pages).
    fn list_keys(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, S3Error>> + Send {
        async move {
            let mut keys = Vec::new();
            let mut token = None;
            loop {
                let page = self.keys_page(bucket, prefix, token.take()).await?;
                keys.extend(page.keys);
                match page.next {
                    Some(t) => token = Some(t),
                    None => return Ok(keys),
                }
            }
        }
    }
    /// The bytes of `bucket/key`; `None` when there is no such object.
    fn read_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, S3Error>> + Send;
    /// Deletes `bucket/key` (no error when there is none).
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), S3Error>> + Send;
    /// The "folders" of `bucket` right under `prefix` (`<prefix><name>/`), each once: a listing
    /// with the delimiter `/`, all pages, no object under them read.
    fn child_prefixes(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, S3Error>> + Send;
    /// The bytes of `bucket/key` with its ETag, for a later [`put_if_unchanged`]; `None` when
    /// there is no such object.
    ///
    /// [`put_if_unchanged`]: ObjectKeeper::put_if_unchanged
    fn read_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, String)>, S3Error>> + Send;
    /// Writes `body` to `bucket/key` only while the object is the one read: `If-Match: etag`,
    /// or `If-None-Match: *` when `etag` is `None` (there was none). `Ok(false)` when another
    /// writer changed, created or deleted it since (412, 409, 404): read again and decide again.
    /// A read-merge-write with this never overwrites what another writer added meanwhile.
    fn put_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl<S: ObjectKeeper> ObjectKeeper for std::sync::Arc<S> {
    fn keys_page(
        &self,
        bucket: &str,
        prefix: &str,
        token: Option<String>,
    ) -> impl Future<Output = Result<ListPage, S3Error>> + Send {
        (**self).keys_page(bucket, prefix, token)
    }
    fn read_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, S3Error>> + Send {
        (**self).read_object(bucket, key)
    }
    fn delete_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), S3Error>> + Send {
        (**self).delete_object(bucket, key)
    }
    fn read_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, String)>, S3Error>> + Send {
        (**self).read_tagged(bucket, key)
    }
    fn child_prefixes(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, S3Error>> + Send {
        (**self).child_prefixes(bucket, prefix)
    }
    fn put_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        etag: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).put_if_unchanged(bucket, key, body, etag)
    }
}

impl ObjectKeeper for S3Store {
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
    async fn child_prefixes(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut prefixes = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .delimiter("/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| S3Error::sdk("ListObjectsV2", e))?;
            prefixes.extend(
                (out.common_prefixes().iter()).filter_map(|p| p.prefix().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_owned()),
                _ => return Ok(prefixes),
            }
        }
    }
    async fn put_if_unchanged(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        let request = match etag {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        let sent = if self.unsigned_payloads {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        match sent {
            Ok(_) => Ok(true),
            // 412: changed or created since; 409: a concurrent conditional write; 404: deleted.
            Err(e) if matches!(status(&e), Some(412 | 409 | 404)) => Ok(false),
            Err(e) => Err(StoreError {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: DisplayErrorContext(&e).to_string(),
                source: Some(Box::new(e)),
            }),
        }
    }
}

/// A shared store is a store (tests keep an `Arc` to look into a fake the code under test owns).
impl<S: ObjectStore> ObjectStore for std::sync::Arc<S> {
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes> + Send,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put(bucket, key, body)
    }
}

/// An object's body and metadata, as [`S3Store::get`] read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectBody {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Its ETag, as S3 sent it (with quotes).
    pub etag: Option<String>,
    /// Its `Content-Encoding`, if any.
    pub content_encoding: Option<String>,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in lexical order.
    pub keys: Vec<String>,
    /// The continuation token for the next page, only while the listing is truncated.
    pub next: Option<String>,
}

/// What a conditional GET (`If-None-Match`) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conditional {
    /// The object still has the given ETag (HTTP 304).
    NotModified,
    /// The object changed (or no ETag was given); its ETag now (empty if S3 sent none).
    Changed(String),
    /// There is no such object (HTTP 404, or 403 where the caller may not list the bucket).
    Missing,
}

/// [`ObjectStore`] and the reads on the AWS SDK's S3 client. Build the client once at start-up
/// with [`crate::s3_client`]; every method takes the bucket, so one value serves every bucket.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    unsigned_payloads: bool,
}

impl S3Store {
    /// Wraps a client built once at start-up. Its PutObjects sign their bodies (SigV4 with the
    /// body's SHA-256), as the SDK does by default.
    pub fn new(client: aws_sdk_s3::Client) -> S3Store {
        S3Store {
            client,
            unsigned_payloads: false,
        }
    }

    /// The same store, its PutObjects signed with `x-amz-content-sha256: UNSIGNED-PAYLOAD`
    /// instead of the body's SHA-256 (the SDK's `disable_payload_signing`): the signature then
    /// covers the headers but not the body, which saves hashing every byte written.
    ///
    /// Safe where the body's integrity is otherwise assured, as it is for S3 in AWS:
    /// - the connection is HTTPS (the SDK's S3 endpoints), so nothing between the function and
    ///   S3 can read or change the body;
    /// - the SDK still computes its default flexible checksum (CRC32) of the in-memory body and
    ///   sends it as `x-amz-checksum-crc32`, a signed header; S3 refuses a body that does not
    ///   match it, so a body damaged on the way is still rejected (and the put retried).
    ///
    /// Over plain http (an emulator on loopback) the SDK sends the same request: unlike the
    /// Java SDK it does not fall back to signing the body there. The CRC32 still catches
    /// damage, not tampering, which TLS is for. Only PutObject is affected; reads are unchanged.
    pub fn with_unsigned_payloads(mut self) -> S3Store {
        self.unsigned_payloads = true;
        self
    }

    /// The client, for calls this adapter does not make.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// A GetObject of `bucket/key`, for [`S3Store::get`] and [`S3Store::get_if_none_match`].
    fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        self.client.get_object().bucket(bucket).key(key)
    }

    /// The whole object at `bucket/key` with its ETag and `Content-Encoding`; `None` when there
    /// is no such object (HTTP 404).
    ///
    /// A body that stalls after its headers does not hold the read (and the refresh waiting on
    /// it) forever: the SDK's stalled-stream protection, on in every behavior version since
    /// 2024-03-28, ends a download that receives nothing for its grace period (5 s), and the
    /// read fails as transient.
    ///
    /// # Errors
    /// [`S3Error`] with operation `GetObject` for any other failure, including a body that
    /// could not be read to its end; [`S3Error::is_permanent`] tells an object that cannot be
    /// read until something else changes (archived, access denied) from a transient failure.
    pub async fn get(&self, bucket: &str, key: &str) -> Result<Option<ObjectBody>, S3Error> {
        match self.get_object(bucket, key).send().await {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_owned);
                let content_encoding = out.content_encoding().map(str::to_owned);
                let bytes = out.body.collect().await.map_err(|e| S3Error {
                    operation: "GetObject",
                    message: format!("reading the body of {key}: {e}"),
                    permanent: false,
                    source: Some(Box::new(e)),
                })?;
                Ok(Some(ObjectBody {
                    bytes: bytes.into_bytes().to_vec(),
                    etag,
                    content_encoding,
                }))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(S3Error::sdk("GetObject", e)),
        }
    }

    /// Deletes `bucket/key` (DeleteObject: no error when there is no such object).
    ///
    /// # Errors
    /// [`S3Error`] with operation `DeleteObject`.
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| S3Error::sdk("DeleteObject", e))?;
        Ok(())
    }

    /// One page (up to 1,000 keys) of ListObjectsV2 of `bucket` under `prefix`, after
    /// `start_after` if given, continuing from `token` if given. [`ListPage::next`] is set only
    /// while the listing is truncated.
    ///
    /// # Errors
    /// [`S3Error`] with operation `ListObjectsV2`.
    pub async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<String>,
    ) -> Result<ListPage, S3Error> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_start_after(start_after.map(str::to_owned))
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| S3Error::sdk("ListObjectsV2", e))?;
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

    /// A GET of `bucket/key` with `If-None-Match: etag` (an unconditional GET without one),
    /// for cheap polling of a small object such as the change feed's `_head` pointer. The body
    /// is not read.
    ///
    /// # Errors
    /// [`S3Error`] with operation `GetObject` for anything but a success, a 304, a 404 or a 403.
    pub async fn get_if_none_match(
        &self,
        bucket: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<Conditional, S3Error> {
        let result = self
            .get_object(bucket, key)
            .set_if_none_match(etag.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Conditional::Changed(
                out.e_tag().map(str::to_owned).unwrap_or_default(),
            )),
            // S3 answers 403 instead of 404 for a missing key when the caller may not list the
            // bucket (or the prefix): for a pointer that only means "not there".
            Err(e) => match status(&e) {
                Some(304) => Ok(Conditional::NotModified),
                Some(404 | 403) => Ok(Conditional::Missing),
                _ => Err(S3Error::sdk("GetObject", e)),
            },
        }
    }
}

/// The HTTP status of a failed call's response, if there was one.
fn status<E>(e: &aws_sdk_s3::error::SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl ObjectStore for S3Store {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes> + Send,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.into()));
        let sent = if self.unsigned_payloads {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        sent.map(|_| ()).map_err(|e| StoreError {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
            source: Some(Box::new(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_permanent;

    #[test]
    fn only_what_a_retry_alone_cannot_cure_is_permanent() {
        let cases = [
            // Archived (GLACIER, DEEP_ARCHIVE): 403 in S3, 400 in some S3-compatible stores.
            (Some(403), Some("InvalidObjectState"), true),
            (Some(400), Some("InvalidObjectState"), true),
            // IAM or bucket policy, a KMS key the caller may not use, a missing key under a
            // prefix-conditioned ListBucket.
            (Some(403), Some("AccessDenied"), true),
            (Some(403), None, true),
            (Some(400), Some("KMS.DisabledException"), true),
            (Some(400), Some("KMS.NotFoundException"), true),
            // An SSE-C object read without its customer key.
            (Some(400), Some("InvalidRequest"), true),
            // Throttled, by S3 or by KMS: cured by waiting.
            (Some(400), Some("KMS.ThrottlingException"), false),
            (Some(429), None, false),
            (Some(409), Some("OperationAborted"), false),
            // Cured by fresh credentials, a corrected clock, or a plain retry.
            (Some(403), Some("RequestTimeTooSkewed"), false),
            (Some(400), Some("ExpiredToken"), false),
            (Some(400), Some("TokenRefreshRequired"), false),
            (Some(400), Some("RequestTimeout"), false),
            (Some(503), Some("SlowDown"), false),
            (Some(500), Some("InternalError"), false),
            (Some(404), Some("NoSuchKey"), false),
            // No answer at all: a timeout or a transport error.
            (None, None, false),
        ];
        for (status, code, permanent) in cases {
            assert_eq!(
                is_permanent(status, code),
                permanent,
                "status {status:?}, code {code:?}"
            );
        }
    }
}
