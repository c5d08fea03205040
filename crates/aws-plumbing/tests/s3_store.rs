//! The S3 adapter against the emulator: put, get (a 404 is `None`), paged listings with
//! `StartAfter`, and the conditional GET of a pointer object (304, changed, missing).

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, SdkError};
use stream_refdata_aws::{s3_client, Conditional, MeasureError, ObjectStore, OffsetClock, S3Store};
use test_support::{sdk_config, unique_name};

async fn store_with_bucket() -> (S3Store, String) {
    let store = S3Store::new(s3_client(&sdk_config().await));
    let bucket = unique_name("plumbing");
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    (store, bucket)
}

#[tokio::test]
async fn a_put_object_reads_back_with_its_etag_and_a_missing_one_is_none() {
    let (s3, bucket) = store_with_bucket().await;
    s3.put(&bucket, "feed/a.json", b"{\"a\":1}".to_vec())
        .await
        .unwrap();
    let body = s3
        .get(&bucket, "feed/a.json")
        .await
        .unwrap()
        .expect("found");
    assert_eq!(body.bytes, b"{\"a\":1}");
    assert!(body.etag.is_some_and(|t| !t.is_empty()));
    assert_eq!(body.content_encoding, None);
    assert_eq!(s3.get(&bucket, "feed/missing.json").await.unwrap(), None);
}

#[tokio::test]
async fn an_archived_object_is_a_permanent_failure_and_an_unreachable_endpoint_is_not() {
    let (s3, bucket) = store_with_bucket().await;
    s3.client()
        .put_object()
        .bucket(&bucket)
        .key("reference/archived.csv")
        .body(b"item,priority\nsalad,high\n".to_vec().into())
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .send()
        .await
        .expect("PutObject");
    let e = s3
        .get(&bucket, "reference/archived.csv")
        .await
        .expect_err("S3 answers 403 InvalidObjectState for GLACIER");
    assert!(e.is_permanent(), "{e}");
    assert!(e.message.contains("InvalidObjectState"), "{e}");
    // A transport failure is transient: the same store on a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sdk = sdk_config()
        .await
        .into_builder()
        .endpoint_url(endpoint)
        .build();
    let unreachable = S3Store::new(s3_client(&sdk));
    let e = unreachable
        .get(&bucket, "reference/archived.csv")
        .await
        .expect_err("nothing listens there");
    assert!(!e.is_permanent(), "{e}");
}

/// Keeps the `x-amz-content-sha256` and `x-amz-checksum-crc32` headers of each request sent.
#[derive(Debug, Default)]
struct SeenHeaders(Arc<Mutex<Vec<Seen>>>);

/// A request's `x-amz-content-sha256` and `x-amz-checksum-crc32`.
type Seen = (Option<String>, Option<String>);

impl Intercept for SeenHeaders {
    fn name(&self) -> &'static str {
        "SeenHeaders"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let headers = context.request().headers();
        let get = |name: &str| headers.get(name).map(str::to_owned);
        self.0
            .lock()
            .unwrap()
            .push((get("x-amz-content-sha256"), get("x-amz-checksum-crc32")));
        Ok(())
    }
}

#[tokio::test]
async fn a_put_with_an_unsigned_payload_keeps_its_checksum_and_reads_back() {
    // The orders consumer's output store: UNSIGNED-PAYLOAD, the SDK's CRC32 still sent (and
    // checked by the emulator), over the emulator's plain http.
    let (s3, bucket) = store_with_bucket().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = s3
        .client()
        .config()
        .to_builder()
        .interceptor(SeenHeaders(seen.clone()))
        .build();
    let unsigned =
        S3Store::new(aws_sdk_s3::Client::from_conf(config.clone())).with_unsigned_payloads();
    let signed = S3Store::new(aws_sdk_s3::Client::from_conf(config));
    let body = b"{\"item\":\"burger\"}\n".repeat(1000);
    unsigned
        .put(&bucket, "out/a.jsonl", body.clone())
        .await
        .unwrap();
    signed
        .put(&bucket, "out/b.jsonl", body.clone())
        .await
        .unwrap();
    unsigned.put(&bucket, "out/empty", vec![]).await.unwrap();
    for key in ["out/a.jsonl", "out/b.jsonl"] {
        let read = s3.get(&bucket, key).await.unwrap().expect("found");
        assert_eq!(read.bytes, body);
    }
    let read = s3.get(&bucket, "out/empty").await.unwrap().expect("found");
    assert!(read.bytes.is_empty());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0.as_deref(), Some("UNSIGNED-PAYLOAD"));
    assert!(seen[0].1.is_some(), "the CRC32 is still sent: {seen:?}");
    let signed_hash = seen[1].0.as_deref().unwrap();
    assert_eq!(
        signed_hash.len(),
        64,
        "the body's SHA-256 by default: {seen:?}"
    );
    assert_eq!(seen[0].1, seen[1].1, "the same body, the same CRC32");
    assert_eq!(seen[2].0.as_deref(), Some("UNSIGNED-PAYLOAD"));
}

#[tokio::test]
async fn a_failed_call_names_its_operation() {
    // Nothing listens on port 9: every call fails in transport, once (no SDK retries).
    let unreachable = sdk_config()
        .await
        .into_builder()
        .endpoint_url("http://127.0.0.1:9")
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build();
    let s3 = S3Store::new(s3_client(&unreachable));
    let err = s3.get("bucket", "k").await.unwrap_err();
    assert_eq!(err.operation, "GetObject");
    assert!(err.to_string().starts_with("GetObject failed: "), "{err}");
    // The SDK's error is kept as the source, not only as text.
    let source = std::error::Error::source(&err).expect("the SDK's error");
    assert!(
        source
            .downcast_ref::<SdkError<aws_sdk_s3::operation::get_object::GetObjectError>>()
            .is_some(),
        "{source:?}"
    );
    let err = s3
        .get_if_none_match("bucket", "k", Some("\"e\""))
        .await
        .unwrap_err();
    assert_eq!(err.operation, "GetObject");
    let err = s3.list_page("bucket", "", None, None).await.unwrap_err();
    assert_eq!(err.operation, "ListObjectsV2");
    assert!(std::error::Error::source(&err).is_some(), "{err}");
    // No answer, so no Date header to measure S3's clock by: the failed HEAD is the source.
    let err = OffsetClock::measure(s3.client(), "bucket", "probe")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no Date header from s3://bucket/probe to measure S3's clock by"
    );
    assert!(
        matches!(
            err,
            MeasureError::NoDate {
                source: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    let err = s3.put("bucket", "k", vec![]).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("PutObject s3://bucket/k failed: "),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_bucket_reads_as_a_missing_object_as_s3_answers_404() {
    // S3 answers GetObject on a missing bucket with 404 (NoSuchBucket), like a missing key.
    let (s3, _) = store_with_bucket().await;
    let missing = unique_name("no-such-bucket");
    assert_eq!(s3.get(&missing, "k").await.unwrap(), None);
    assert_eq!(
        s3.get_if_none_match(&missing, "k", None).await.unwrap(),
        Conditional::Missing
    );
    let err = s3.list_page(&missing, "", None, None).await.unwrap_err();
    assert_eq!(err.operation, "ListObjectsV2");
    assert!(err.message.contains("NoSuchBucket"), "{err}");
}

#[tokio::test]
async fn listings_page_while_truncated_and_start_after_a_key() {
    let (s3, bucket) = store_with_bucket().await;
    for i in 0..1005 {
        s3.put(&bucket, &format!("feed/{i:04}"), vec![])
            .await
            .unwrap();
    }
    s3.put(&bucket, "other/x", vec![]).await.unwrap();

    let first = s3.list_page(&bucket, "feed/", None, None).await.unwrap();
    assert_eq!(first.keys.len(), 1000);
    assert_eq!(first.keys[0], "feed/0000");
    let token = first.next.expect("truncated: a continuation token");
    let second = s3
        .list_page(&bucket, "feed/", None, Some(token))
        .await
        .unwrap();
    assert_eq!(
        second.keys,
        [
            "feed/1000",
            "feed/1001",
            "feed/1002",
            "feed/1003",
            "feed/1004"
        ]
    );
    assert_eq!(second.next, None, "no token on the last page");

    let after = s3
        .list_page(&bucket, "feed/", Some("feed/1002"), None)
        .await
        .unwrap();
    assert_eq!(after.keys, ["feed/1003", "feed/1004"]);
    assert_eq!(after.next, None);
}

#[tokio::test]
async fn a_conditional_get_tells_not_modified_changed_and_missing_apart() {
    let (s3, bucket) = store_with_bucket().await;
    let key = "feed/_head";
    assert_eq!(
        s3.get_if_none_match(&bucket, key, None).await.unwrap(),
        Conditional::Missing
    );
    s3.put(&bucket, key, b"one".to_vec()).await.unwrap();
    let Conditional::Changed(etag) = s3.get_if_none_match(&bucket, key, None).await.unwrap() else {
        panic!("an unconditional GET of an object is Changed");
    };
    assert!(!etag.is_empty());
    assert_eq!(
        s3.get_if_none_match(&bucket, key, Some(&etag))
            .await
            .unwrap(),
        Conditional::NotModified
    );
    s3.put(&bucket, key, b"two".to_vec()).await.unwrap();
    let changed = s3
        .get_if_none_match(&bucket, key, Some(&etag))
        .await
        .unwrap();
    assert!(
        matches!(&changed, Conditional::Changed(new) if *new != etag),
        "{changed:?}"
    );
}

#[tokio::test]
async fn a_conditional_put_writes_only_over_the_object_it_read() {
    use stream_refdata_aws::ObjectKeeper;
    let (s3, bucket) = store_with_bucket().await;
    let key = "out/a.jsonl";
    // None: only when there is no object.
    assert!(s3
        .put_if_unchanged(&bucket, key, "one\n".into(), None)
        .await
        .unwrap());
    assert!(!s3
        .put_if_unchanged(&bucket, key, "again\n".into(), None)
        .await
        .unwrap());
    let (bytes, etag) = s3.read_tagged(&bucket, key).await.unwrap().expect("found");
    assert_eq!(bytes, b"one\n");
    // Another writer between the read and the write: the write is refused.
    s3.put(&bucket, key, b"other\n".to_vec()).await.unwrap();
    assert!(!s3
        .put_if_unchanged(&bucket, key, "one\ntwo\n".into(), Some(&etag))
        .await
        .unwrap());
    let (bytes, etag) = s3.read_tagged(&bucket, key).await.unwrap().expect("found");
    assert_eq!(bytes, b"other\n");
    assert!(s3
        .put_if_unchanged(&bucket, key, "other\ntwo\n".into(), Some(&etag))
        .await
        .unwrap());
    // Deleted since it was read: refused too.
    let (_, etag) = s3.read_tagged(&bucket, key).await.unwrap().expect("found");
    s3.delete(&bucket, key).await.unwrap();
    assert!(!s3
        .put_if_unchanged(&bucket, key, "x\n".into(), Some(&etag))
        .await
        .unwrap());
    assert_eq!(s3.read_tagged(&bucket, key).await.unwrap(), None);
}

#[tokio::test]
async fn child_prefixes_are_the_folders_right_under_a_prefix() {
    use stream_refdata_aws::ObjectKeeper;
    let (s3, bucket) = store_with_bucket().await;
    for key in [
        "held/shard-1/1.json",
        "held/shard-1/2.json",
        "held/shard-2/3.json",
        "held/ended/shard-1/0",
        "held/loose.json",
        "other/shard-3/4.json",
    ] {
        s3.put(&bucket, key, b"{}".to_vec()).await.unwrap();
    }
    let want = ["held/ended/", "held/shard-1/", "held/shard-2/"];
    assert_eq!(s3.child_prefixes(&bucket, "held/").await.unwrap(), want);
}

/// A server that answers any request with the headers of a 1,000-byte object and its first 100
/// bytes, then sends nothing more and keeps the connection open (until the test ends).
async fn stalling_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nETag: \"stalls\"\r\n\
                        Content-Type: application/octet-stream\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&[b'x'; 100]).await;
            open.push(socket);
        }
    });
    endpoint
}

#[tokio::test]
async fn a_body_that_stalls_after_its_headers_fails_as_transient_instead_of_hanging() {
    // GIVEN a store whose endpoint sends an object's headers and a tenth of its body, then
    // nothing, on a connection it keeps open; the client with the SDK's defaults and no timeout
    // at all (not the emulator's configuration, which bounds each attempt)
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(stalling_server().await)
        .timeout_config(aws_config::timeout::TimeoutConfig::disabled())
        .load()
        .await;
    let store = S3Store::new(s3_client(&sdk));
    // WHEN the object is read (the outer limit only turns a hang into a failure of this test)
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        store.get("bucket", "feed/stalls.json"),
    )
    .await
    .expect("the read ended instead of waiting on the stalled body");
    // THEN it failed, transiently, in the body, ended by the SDK's stalled-stream protection
    let e = read.expect_err("a body that never completes is not an object");
    assert!(!e.is_permanent(), "{e}");
    assert_eq!(e.operation, "GetObject");
    assert!(
        e.message.contains("reading the body of feed/stalls.json"),
        "{e}"
    );
    let chain = format!("{e:?}");
    assert!(chain.contains("ThroughputBelowMinimum"), "{chain}");
}
