//! Late re-delivery of older stream records (a retried or backlogged batch written again, under a
//! newer key) never rolls an item back or brings a deleted item back — neither in a consumer that
//! followed the feed nor in one that started (full load) after the newer change.

use std::time::Duration;

use aws_plumbing::{s3_client, S3Store};
use aws_sdk_dynamodb::types::StreamViewType;
use change_handler::{ChangeHandler, PRODUCER};
use feed_writer::{FeedConfig, FeedWriter};
use serde_json::Value;
use test_support::{sdk_config, unique_name, ReferenceTable, StreamPump};

mod common;

use common::Consumer;

struct Rig {
    sdk: aws_config::SdkConfig,
    table: ReferenceTable,
    bucket: String,
    pump: StreamPump,
    handler: ChangeHandler<S3Store, aws_plumbing::SystemClock>,
}

impl Rig {
    async fn new() -> Rig {
        let sdk = sdk_config().await;
        let s3 = s3_client(&sdk);
        let table = ReferenceTable::create(
            &aws_sdk_dynamodb::Client::new(&sdk),
            StreamViewType::NewAndOldImages,
        )
        .await;
        let bucket = unique_name("feed");
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let handler = ChangeHandler::new(FeedWriter::new(
            FeedConfig {
                bucket: bucket.clone(),
                prefix: "change_flags/".into(),
                legacy_flag_key: None,
                write_window: Duration::from_secs(20),
            },
            S3Store::new(s3),
            aws_plumbing::SystemClock,
            PRODUCER,
        ));
        let pump = StreamPump::new(
            aws_sdk_dynamodbstreams::Client::new(&sdk),
            &table.stream_arn,
        )
        .await;
        Rig {
            sdk,
            table,
            bucket,
            pump,
            handler,
        }
    }

    /// Delivers the new stream records and returns their event, to re-deliver it later.
    async fn deliver(&mut self) -> Value {
        let event = self.pump.next_event().await.expect("new stream records");
        self.handler.handle(&event, "req").await.unwrap();
        event
    }

    async fn redeliver(&self, event: &Value) {
        self.handler.handle(event, "req-late").await.unwrap();
    }

    fn consumer(&self) -> Consumer {
        common::consumer(&self.sdk, &self.table.name, &self.bucket)
    }
}

fn priority(c: &Consumer, item: &str) -> Option<String> {
    c.reader().lookup(item).map(|p| {
        assert_eq!(p.item, item);
        p.priority.clone()
    })
}

#[tokio::test]
async fn an_older_modify_delivered_again_later_never_rolls_an_item_back() {
    let mut r = Rig::new().await;
    r.table.put("burger", "medium").await;
    let old = r.deliver().await;
    let mut following = r.consumer();
    following.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("burger", "high").await;
    r.deliver().await;
    following.refresh().await;
    assert_eq!(priority(&following, "burger").as_deref(), Some("high"));

    // A consumer that starts after the newer change…
    let mut fresh = r.consumer();
    fresh.refresh().await;
    // …and then the old batch arrives again, under a newer key.
    tokio::time::sleep(Duration::from_millis(10)).await;
    r.redeliver(&old).await;
    following.refresh().await;
    fresh.refresh().await;
    assert_eq!(
        priority(&following, "burger").as_deref(),
        Some("high"),
        "following consumer"
    );
    assert_eq!(
        priority(&fresh, "burger").as_deref(),
        Some("high"),
        "consumer started after the change"
    );
}

#[tokio::test]
async fn an_older_insert_delivered_again_after_a_remove_does_not_bring_the_item_back() {
    let mut r = Rig::new().await;
    r.table.put("donut", "low").await;
    let insert = r.deliver().await;
    let mut following = r.consumer();
    following.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.delete("donut").await;
    r.deliver().await;
    following.refresh().await;
    assert_eq!(priority(&following, "donut"), None);

    let mut fresh = r.consumer();
    fresh.refresh().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    r.redeliver(&insert).await;
    following.refresh().await;
    fresh.refresh().await;
    assert_eq!(priority(&following, "donut"), None, "the tombstone holds");
    assert_eq!(priority(&fresh, "donut"), None, "re-read, not resurrected");
}
