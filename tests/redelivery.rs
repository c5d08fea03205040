//! Late re-delivery of older stream records (a retried or backlogged batch written again, under a
//! newer key) never rolls an item back or brings a deleted item back — neither in a consumer that
//! followed the feed nor in one that started (full load) after the newer change.

use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use serde_json::Value;
use test_support::FeedRig;

use crate::common::{Consumer, FeedConsumers};

/// An empty table with a stream, the feed, the change-handler (`test_support::FeedRig`).
async fn rig() -> FeedRig {
    FeedRig::new(StreamViewType::NewAndOldImages).await
}

/// Delivers the new stream records and returns their event, to re-deliver it later.
async fn deliver(r: &FeedRig) -> Value {
    r.deliver().await.expect("new stream records")
}

/// The same event delivered again, later: a retried or backlogged batch, under a newer key.
async fn redeliver(r: &FeedRig, event: &Value) {
    r.handler.handle(event, "req-late").await.unwrap();
}

fn priority(c: &Consumer, item: &str) -> Option<String> {
    c.reader().lookup(item).map(|p| {
        assert_eq!(p.item, item);
        p.priority.clone()
    })
}

#[tokio::test]
async fn an_older_modify_delivered_again_later_never_rolls_an_item_back() {
    let r = rig().await;
    r.table.put("burger", "medium").await;
    let old = deliver(&r).await;
    let mut following = r.consumer();
    following.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("burger", "high").await;
    deliver(&r).await;
    following.refresh().await;
    assert_eq!(priority(&following, "burger").as_deref(), Some("high"));

    // A consumer that starts after the newer change…
    let mut fresh = r.consumer();
    fresh.refresh().await;
    // …and then the old batch arrives again, under a newer key.
    tokio::time::sleep(Duration::from_millis(10)).await;
    redeliver(&r, &old).await;
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
    let r = rig().await;
    r.table.put("donut", "low").await;
    let insert = deliver(&r).await;
    let mut following = r.consumer();
    following.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.delete("donut").await;
    deliver(&r).await;
    following.refresh().await;
    assert_eq!(priority(&following, "donut"), None);

    let mut fresh = r.consumer();
    fresh.refresh().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    redeliver(&r, &insert).await;
    following.refresh().await;
    fresh.refresh().await;
    assert_eq!(priority(&following, "donut"), None, "the tombstone holds");
    assert_eq!(priority(&fresh, "donut"), None, "re-read, not resurrected");
}
