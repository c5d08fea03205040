//! The S3 path end to end on the emulator: a reference object changes, S3 notifies an SQS
//! queue, the s3-event-handler writes a change file and puts a flag on each of 4 shards, and a
//! consumer that reads one shard reloads that object exactly at the flag's position.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use stream_refdata::sources::{S3Feed, S3Objects};
use stream_refdata::{
    Classified, FeedSettings, ObjectConfig, ObjectEnricher, Outcome, SystemClock,
};
use stream_refdata_protocol::ChangeFlag;
use test_support::FlagRig;

#[derive(Debug, serde::Deserialize)]
struct Row {
    item: String,
    priority: String,
}

#[tokio::test]
async fn a_consumer_of_one_shard_reloads_the_object_at_the_flag() {
    // The reference bucket notifying a queue, the feed, 4 shards, the s3-event-handler.
    let rig = FlagRig::new().await;
    let (reference, s3, kinesis) = (&rig.reference, &rig.s3, &rig.kinesis);
    let stream = rig.stream.clone();

    // GIVEN reference rows in S3 and a consumer that loaded them
    let key = "reference/priorities.csv";
    reference
        .put(key, b"item,priority\nburger,medium\npizza,low\n")
        .await;
    let mut consumer = ObjectEnricher::new(
        ObjectConfig::new(reference.bucket.clone(), "reference/", |r: &Row| {
            Some(r.item.clone())
        })
        .with_feed(FeedSettings {
            poll_interval: Duration::from_secs(3600),
            ..FeedSettings::default()
        }),
        S3Objects::new(s3.clone(), reference.bucket.clone()),
        Some(S3Feed::new(s3.clone(), rig.feed_bucket.clone())),
        SystemClock,
    );
    consumer.refresh().await;
    rig.deliver().await;

    // The consumer reads shard 2 of 4 only.
    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let shard = shards.shards()[2].clone();
    let hash_key = shard
        .hash_key_range()
        .unwrap()
        .starting_hash_key()
        .to_owned();
    let order = |dish: &str| {
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key("orders")
            .explicit_hash_key(&hash_key)
            .data(Blob::new(format!(
                r#"{{"dish":"{dish}","cost":12,"customer_id":7}}"#
            )))
            .send()
    };
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(shard.shard_id())
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::Latest)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();

    // WHEN orders arrive, the object changes (notification -> SQS -> handler), more orders arrive
    order("burger").await.unwrap();
    order("burger").await.unwrap();
    reference
        .put(key, b"item,priority\nburger,high\npizza,low\n")
        .await;
    let notifications = rig.deliver().await;
    assert_eq!(notifications, 1);
    order("burger").await.unwrap();
    order("pizza").await.unwrap();

    // THEN the consumer of shard 2 sees the flag between the orders and switches exactly there
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap()
        .records()
        .iter()
        .map(|r| r.data().as_ref().to_vec())
        .collect::<Vec<_>>();
    assert_eq!(records.len(), 5, "4 orders and 1 flag on this shard");
    let reads_before = consumer.metrics().objects_read;
    let (outcomes, report) = consumer
        .enrich(records, |bytes| match ChangeFlag::parse(bytes) {
            Some(flag) => Classified::ChangeFlag(flag),
            None => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(v) => Classified::Data(v["dish"].as_str().unwrap_or_default().to_owned()),
                Err(e) => Classified::Invalid(e.to_string()),
            },
        })
        .await;
    let seen: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enriched { item, .. } => format!("{}={}", item.item, item.priority),
            Outcome::Flag => "flag".into(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "burger=medium",
            "burger=medium",
            "flag",
            "burger=high",
            "pizza=low"
        ]
    );
    assert_eq!(report.flags, 1);
    assert_eq!(
        consumer.metrics().objects_read,
        reads_before + 1,
        "only the changed object was read"
    );
}
