//! The orders consumer following the feed that the real change-handler writes (moved from the
//! orders-consumer crate, whose own emulator tests need no producer): after the walkthrough's
//! update, burger orders land in `priority=high`.

use std::sync::Arc;
use std::time::Duration;

use aws_plumbing::s3_client;
use aws_sdk_dynamodb::types::StreamViewType;
use enrichment::sources::{DynamoDbTable, S3Feed};
use orders_consumer::{Config, OrdersConsumer};
use serde_json::Value;
use test_support::{FeedRig, MemoryStore};

fn sample() -> Value {
    let path = format!(
        "{}/../events/example-kinesis-orders.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The consumer of `rig`'s table and feed as `main` builds it from its variables (defaults
/// otherwise), writing to `store`.
fn consumer(
    rig: &FeedRig,
    store: Arc<MemoryStore>,
) -> OrdersConsumer<DynamoDbTable, S3Feed, Arc<MemoryStore>> {
    let config = Config::from_lookup(&|var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some("out".to_owned()),
        _ => None,
    })
    .unwrap();
    let table = DynamoDbTable::new(
        aws_sdk_dynamodb::Client::new(&rig.sdk),
        config.reference_table.clone(),
    );
    let feed = S3Feed::new(s3_client(&rig.sdk), rig.bucket.clone());
    OrdersConsumer::new(config, table, feed, store)
}

#[tokio::test]
async fn after_the_walkthrough_update_burger_orders_land_in_priority_high() {
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = consumer(&r, store.clone());
    consumer.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("burger", "high").await;
    r.deliver().await;
    let mut later = sample();
    for rec in later["Records"].as_array_mut().unwrap() {
        let seq = rec["kinesis"]["sequenceNumber"]
            .as_str()
            .unwrap()
            .replace("4959", "4960");
        rec["eventID"] = format!("shardId-000000000002:{seq}").into();
        rec["kinesis"]["sequenceNumber"] = seq.into();
    }
    let (_, summary) = consumer.handle_batch(&later).await.unwrap();
    let partitions: Vec<&String> = summary.output.partitions.keys().collect();
    assert!(
        partitions.contains(&&"item=burger/priority=high/".to_owned()),
        "{partitions:?}"
    );
    assert!(!partitions.contains(&&"item=burger/priority=medium/".to_owned()));
}
