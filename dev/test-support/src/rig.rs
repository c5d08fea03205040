//! The change-feed test rigs, written once: the producer side of the pattern on the emulator,
//! for every test that needs a feed with real change files in it.
//!
//! - [`FeedRig`]: a uniquely named reference table with a stream of a given view type, a feed
//!   bucket, the real `change-handler` writing to it, and a stream pump that hands new stream
//!   records to the handler as the event source mapping would.
//! - [`FlagRig`]: a reference bucket notifying an SQS queue, a feed bucket, a 4-shard orders
//!   stream, and the real `s3-event-handler` (change file, then a flag on every shard).
//! - [`through_proxy`]: an SDK configuration through a fault proxy, without SDK retries, so every
//!   injected fault reaches the code under test.

use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use aws_sdk_dynamodbstreams::types::Record;
use change_handler::ChangeHandler;
use feed_writer::FeedConfig;
use local_emulator::provision;
use serde_json::Value;
use stream_refdata_aws::{s3_client, S3Store};
use stream_refdata_protocol::{ChangeFile, ChangeKey};
use tokio::sync::Mutex;

use crate::{
    create_stream, read_stream_records, sdk_config, unique_name, NotifiedBucket, ReferenceTable,
    StreamPump,
};

/// The feed's prefix in every rig (the template's `ChangePrefix`).
pub const FEED_PREFIX: &str = provision::CHANGE_PREFIX;

/// The feed settings of the rigs' producers: `bucket`, [`FEED_PREFIX`], no legacy marker,
/// W = 20 s.
pub fn feed_config(bucket: &str) -> FeedConfig {
    FeedConfig {
        bucket: bucket.to_owned(),
        prefix: FEED_PREFIX.to_owned(),
        legacy_flag_key: None,
        write_window: Duration::from_secs(20),
    }
}

/// `sdk` pointed at a proxy's `endpoint`, with one attempt per call (no SDK retries).
pub fn through_proxy(sdk: &aws_config::SdkConfig, endpoint: &str) -> aws_config::SdkConfig {
    sdk.clone()
        .into_builder()
        .endpoint_url(endpoint)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
        .build()
}

/// The keys under `prefix` in `bucket` (one listing page: the rigs' feeds stay small).
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("ListObjectsV2")
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// The whole object at `bucket/key`.
pub async fn read_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject {key}: {e}"))
        .body
        .collect()
        .await
        .expect("the object's body")
        .into_bytes()
        .to_vec()
}

/// Every change file of the feed in `bucket` (keys that do not match the key format, such as
/// the `_head` pointer, are left out), in key order, with its key.
pub async fn change_files(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<(String, ChangeFile)> {
    let mut files = Vec::new();
    for key in list_keys(s3, bucket, FEED_PREFIX).await {
        if ChangeKey::parse(FEED_PREFIX, &key).is_err() {
            continue;
        }
        let body = read_object(s3, bucket, &key).await;
        let file = ChangeFile::from_slice(&body)
            .unwrap_or_else(|e| panic!("{key} is not a change file: {e}"));
        files.push((key, file));
    }
    files
}

/// The table side of the pattern: a reference table with a stream, a feed bucket, the real
/// change-handler writing to it, and a pump standing in for the event source mapping.
#[derive(Debug)]
pub struct FeedRig {
    /// The emulator's SDK configuration.
    pub sdk: aws_config::SdkConfig,
    /// The table (uniquely named, `item`/`price` key, a stream).
    pub table: ReferenceTable,
    /// The feed's bucket (the feed is under [`FEED_PREFIX`]).
    pub bucket: String,
    /// An S3 client (path-style).
    pub s3: aws_sdk_s3::Client,
    /// A DynamoDB Streams client.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The change-handler, writing the feed in [`FeedRig::bucket`].
    pub handler: ChangeHandler<S3Store>,
    pump: Mutex<StreamPump>,
}

impl FeedRig {
    /// An empty table with a stream of `view` type, the feed bucket, the handler, and the pump
    /// at the start of the stream.
    pub async fn new(view: StreamViewType) -> FeedRig {
        let sdk = sdk_config().await;
        let s3 = s3_client(&sdk);
        let table = ReferenceTable::create(&aws_sdk_dynamodb::Client::new(&sdk), view).await;
        let bucket = unique_name("feed");
        provision::create_bucket(&s3, &bucket)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
        let pump = StreamPump::new(streams.clone(), &table.stream_arn).await;
        let handler = change_handler(&bucket, &sdk);
        FeedRig {
            sdk,
            table,
            bucket,
            s3,
            streams,
            handler,
            pump: Mutex::new(pump),
        }
    }

    /// Like [`FeedRig::new`], with the original's five items put and their stream records
    /// delivered (so the feed holds one change file).
    pub async fn seeded(view: StreamViewType) -> FeedRig {
        let rig = FeedRig::new(view).await;
        rig.table.seed().await;
        rig.deliver().await;
        rig
    }

    /// A change-handler that writes the feed to `bucket` instead (a missing bucket, say).
    pub fn handler_for(&self, bucket: &str) -> ChangeHandler<S3Store> {
        change_handler(bucket, &self.sdk)
    }

    /// A change-handler that writes this rig's feed through `sdk` (e.g. [`through_proxy`]).
    pub fn handler_through(&self, sdk: &aws_config::SdkConfig) -> ChangeHandler<S3Store> {
        change_handler(&self.bucket, sdk)
    }

    /// The Lambda event for the stream records written since the last call (or since the
    /// start), or `None` if there are none.
    pub async fn next_event(&self) -> Option<Value> {
        self.pump.lock().await.next_event().await
    }

    /// What the event source mapping does: hands the new stream records to the handler, which
    /// must report no failure. Returns the event, to deliver it again later; `None` if there
    /// were no new records.
    pub async fn deliver(&self) -> Option<Value> {
        let event = self.next_event().await?;
        let response = self
            .handler
            .handle(&event, "req")
            .await
            .unwrap_or_else(|e| panic!("the change-handler failed: {e}"));
        assert!(
            response.batch_item_failures.is_empty(),
            "the change-handler reported {:?}",
            response.batch_item_failures
        );
        Some(event)
    }

    /// Every record of the stream from its start (the pump is not moved).
    pub async fn stream_records(&self) -> Vec<Record> {
        read_stream_records(&self.streams, &self.table.stream_arn).await
    }

    /// Every record of the stream from its start, as one Lambda event.
    pub async fn stream_event(&self) -> Value {
        event_source_mappings::dynamodb_stream_event(
            &self.table.stream_arn,
            &self.stream_records().await,
        )
    }

    /// Every key under the feed's prefix (change files, the `_head` pointer).
    pub async fn feed_keys(&self) -> Vec<String> {
        list_keys(&self.s3, &self.bucket, FEED_PREFIX).await
    }

    /// Every change file of the feed, with its key, in key order.
    pub async fn change_files(&self) -> Vec<(String, ChangeFile)> {
        change_files(&self.s3, &self.bucket).await
    }

    /// The object at `key` of the feed's bucket.
    pub async fn read(&self, key: &str) -> Vec<u8> {
        read_object(&self.s3, &self.bucket, key).await
    }
}

fn change_handler(bucket: &str, sdk: &aws_config::SdkConfig) -> ChangeHandler<S3Store> {
    change_handler::deployed(feed_config(bucket), sdk)
}

/// The S3 side of the pattern: a reference bucket whose notifications for `reference/` go to
/// an SQS queue, a feed bucket, a 4-shard orders stream, and the real s3-event-handler.
#[derive(Debug)]
pub struct FlagRig {
    /// The emulator's SDK configuration.
    pub sdk: aws_config::SdkConfig,
    /// The reference bucket and its queue.
    pub reference: NotifiedBucket,
    /// An S3 client (path-style).
    pub s3: aws_sdk_s3::Client,
    /// A Kinesis client.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The feed's bucket.
    pub feed_bucket: String,
    /// The orders stream's name.
    pub stream: String,
    /// The s3-event-handler: change files to [`FlagRig::feed_bucket`], flags to
    /// [`FlagRig::stream`].
    pub handler: s3_event_handler::DeployedHandler,
}

impl FlagRig {
    /// Creates the buckets, the queue and the stream.
    pub async fn new() -> FlagRig {
        let sdk = sdk_config().await;
        let s3 = s3_client(&sdk);
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let reference = NotifiedBucket::create(&sdk).await;
        let feed_bucket = unique_name("feed");
        provision::create_bucket(&s3, &feed_bucket)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let stream = create_stream(&kinesis, provision::SHARD_COUNT).await;
        let handler = s3_event_handler::deployed(config(&feed_bucket, &stream, &reference), &sdk);
        FlagRig {
            sdk,
            reference,
            s3,
            kinesis,
            feed_bucket,
            stream,
            handler,
        }
    }

    /// The handler's configuration: the feed, the stream, `reference/` of the reference bucket.
    pub fn config(&self) -> s3_event_handler::Config {
        config(&self.feed_bucket, &self.stream, &self.reference)
    }

    /// An s3-event-handler like [`FlagRig::handler`] whose calls (Kinesis and S3) go through
    /// `sdk` (e.g. [`through_proxy`]).
    pub fn handler_through(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> s3_event_handler::DeployedHandler {
        s3_event_handler::deployed(self.config(), sdk)
    }

    /// What the SQS event source mapping does, until the queue is empty: receive, invoke the
    /// handler (which must report no failure), delete. Returns the number of invocations.
    pub async fn deliver(&self) -> usize {
        let mut invocations = 0;
        while let Some((event, receipts)) = self.reference.receive().await {
            let response = self
                .handler
                .handle(&event, "req")
                .await
                .unwrap_or_else(|e| panic!("the s3-event-handler failed: {e}"));
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
            self.reference.ack(&receipts).await;
            invocations += 1;
        }
        invocations
    }

    /// Every change file of the feed, in key order.
    pub async fn change_files(&self) -> Vec<ChangeFile> {
        change_files(&self.s3, &self.feed_bucket)
            .await
            .into_iter()
            .map(|(_, file)| file)
            .collect()
    }
}

fn config(feed_bucket: &str, stream: &str, reference: &NotifiedBucket) -> s3_event_handler::Config {
    s3_event_handler::Config {
        feed: feed_config(feed_bucket),
        flags: s3_event_handler::FlagTarget::Kinesis(stream.to_owned()),
        reference_prefix: reference.prefix.clone(),
        reference_bucket: Some(reference.bucket.clone()),
        legacy_flag_payload: None,
    }
}
