//! The follower's rules where they are about AWS behaviour, through the real SDK, the real
//! producers and the emulator: a stream switch seen through DescribeTable, an undelete in a
//! versioned reference bucket, and a change-feed pointer S3 answers with 403.

use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use local_emulator::provision;
use stream_refdata::sources::{S3Feed, S3Objects};
use stream_refdata::{FeedSettings, ObjectConfig, ObjectEnricher, ReloadReason, SystemClock};
use test_support::{emulator, FeedRig, FlagRig, HttpFaultProxy, Rule, StreamPump};

use crate::common::{consumer, FeedConsumers};

/// Re-creates the rig's table under the same name (as a restore or a re-creation does): a new
/// stream, and nothing of what happened in between was streamed. Returns the new stream's ARN.
async fn recreate_table(rig: &FeedRig, items: &[(&str, &str)]) -> String {
    let ddb = &rig.table.ddb;
    ddb.delete_table()
        .table_name(&rig.table.name)
        .send()
        .await
        .expect("DeleteTable");
    // Stream labels are creation times: the new one sorts after the old one.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let arn =
        provision::create_reference_table(ddb, &rig.table.name, StreamViewType::NewAndOldImages)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    for (item, priority) in items {
        provision::put_item(ddb, &rig.table.name, item, priority)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    arn
}

#[tokio::test]
async fn a_new_stream_makes_a_consumer_that_loaded_before_it_reload() {
    // GIVEN a consumer that loaded (DescribeTable names the first stream) and followed the feed
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let mut c = rig.consumer();
    c.refresh().await;
    c.refresh().await;
    assert_eq!(
        crate::common::view(&c, ["pizza".into()])
            .get("pizza")
            .map(String::as_str),
        Some("low")
    );
    let old_event = rig.stream_event().await;

    // WHEN the table is re-created (restored from a backup, say) without pizza, and burger
    // changes on the new table's stream
    let new_arn = recreate_table(
        &rig,
        &[
            ("burger", "medium"),
            ("salad", "high"),
            ("ice cream", "very very high"),
        ],
    )
    .await;
    assert_ne!(new_arn, rig.table.stream_arn);
    rig.table.set_priority("burger", "high").await;
    let mut pump = StreamPump::new(rig.streams.clone(), &new_arn).await;
    let event = pump.next_event().await.expect("the new stream's record");
    let response = rig.handler.handle(&event, "req-new").await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    // THEN the consumer reloads at the new stream's first file: pizza is gone
    let report = c.refresh().await;
    assert!(
        matches!(&report.full_reload, Some(ReloadReason::NewStream { stream_arn, .. }) if *stream_arn == new_arn),
        "{report:?}"
    );
    let seen = crate::common::view(&c, ["pizza".into(), "burger".into()]);
    assert_eq!(seen.get("pizza"), None);
    assert_eq!(seen.get("burger").map(String::as_str), Some("high"));

    // AND a late retry of an old-stream batch changes nothing and is counted
    let response = rig.handler.handle(&old_event, "req-late").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let report = c.refresh().await;
    assert_eq!(report.full_reload, None, "{report:?}");
    assert_eq!(crate::common::view(&c, ["pizza".into()]).get("pizza"), None);
    assert!(c.metrics().other_stream_files >= 1);

    // AND a consumer that starts now records the new stream and follows it without a reload
    let mut fresh = consumer(&rig.sdk, &rig.table.name, &rig.bucket);
    fresh.refresh().await;
    let report = fresh.refresh().await;
    assert!(
        !matches!(report.full_reload, Some(ReloadReason::NewStream { .. })),
        "{report:?}"
    );
}

#[derive(Debug, serde::Deserialize)]
struct Row {
    item: String,
    priority: String,
}

#[tokio::test]
async fn an_undeleted_reference_object_is_loaded_again() {
    // GIVEN a versioned reference bucket where an object was deleted (a delete marker), and a
    // consumer that loaded without it
    let rig = FlagRig::new().await;
    provision::enable_versioning(&rig.s3, &rig.reference.bucket)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = "reference/specials.csv";
    rig.reference.put(key, b"item,priority\ndonut,high\n").await;
    rig.reference.delete(key).await;
    rig.deliver().await;
    let mut c = ObjectEnricher::new(
        ObjectConfig::new(rig.reference.bucket.clone(), "reference/", |r: &Row| {
            Some(r.item.clone())
        })
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            clock_margin: Duration::ZERO,
            ..FeedSettings::default()
        }),
        S3Objects::new(rig.s3.clone(), rig.reference.bucket.clone()),
        Some(S3Feed::new(rig.s3.clone(), rig.feed_bucket.clone())),
        SystemClock,
    );
    c.refresh().await;
    // It also took in the feed's files of the put and the delete (a GET each: 404).
    c.refresh().await;
    assert!(c.reader().lookup("donut").is_none());

    // WHEN the delete marker is removed (S3 reports it as a removal)
    let versions = rig
        .s3
        .list_object_versions()
        .bucket(&rig.reference.bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let marker = versions
        .delete_markers()
        .iter()
        .find(|m| m.is_latest() == Some(true))
        .and_then(|m| m.version_id())
        .expect("a delete marker")
        .to_owned();
    rig.s3
        .delete_object()
        .bucket(&rig.reference.bucket)
        .key(key)
        .version_id(&marker)
        .send()
        .await
        .unwrap();
    // The emulator sends no notification for deleting a version; S3 sends this one (the
    // documented shape of an ObjectRemoved:Delete record naming the delete marker's version).
    let notification = serde_json::json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventName": "ObjectRemoved:Delete",
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "reference-data-changes",
            "bucket": {
                "name": rig.reference.bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": format!("arn:aws:s3:::{}", rig.reference.bucket)
            },
            "object": {"key": key, "versionId": marker, "sequencer": "0055AED6DCD90281F0"}
        }
    }]});
    rig.reference
        .sqs
        .send_message()
        .queue_url(&rig.reference.queue_url)
        .message_body(notification.to_string())
        .send()
        .await
        .unwrap();
    assert!(rig.deliver().await > 0, "the removal was handled");
    let removal = rig
        .change_files()
        .await
        .into_iter()
        .flat_map(|f| f.objects)
        .last()
        .expect("an S3 change");
    assert!(removal.removed, "{removal:?}");

    // THEN the consumer reads the object (not a shortcut for "removed") and serves it again
    c.refresh().await;
    assert_eq!(
        c.reader()
            .lookup("donut")
            .map(|r| r.priority.clone())
            .as_deref(),
        Some("high")
    );
}

#[tokio::test]
async fn a_pointer_answered_with_403_means_list_now() {
    // GIVEN a consumer whose role may not list the feed's pointer key: S3 answers 403 for it
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let proxy = HttpFaultProxy::start(emulator().endpoint(), 3).await;
    proxy.set_rules(vec![Rule {
        service: "s3",
        operation: "GetObject /change_flags/_head",
        fault: test_support::Fault::Forbidden,
        rate: 1.0,
    }]);
    let mut c = rig.consumer_through(proxy.endpoint());
    c.refresh().await;
    c.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // WHEN a change is written
    rig.table.set_priority("burger", "high").await;
    rig.deliver().await;

    // THEN the next poll is no failure: it lists and applies the change
    let report = c.refresh().await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(
        c.reader()
            .lookup("burger")
            .map(|p| p.priority.clone())
            .as_deref(),
        Some("high")
    );
    let forbidden = proxy
        .counts()
        .iter()
        .filter(|(k, _)| k.contains("Forbidden"))
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert!(forbidden >= 1, "{:?}", proxy.counts());
}
