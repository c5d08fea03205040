//! The change-handler against the local emulator: real table, real stream records, real S3.
//!
//! Each test creates a table with a stream, changes items through the DynamoDB API, reads the
//! stream records through the DynamoDB Streams API, hands them to the handler as the Lambda
//! event an event source mapping would build, and reads the change file back from S3.

use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use stream_refdata_protocol::{EventName, HeadPointer};
use test_support::{priorities, unique_name, FeedRig};

/// A table with a stream of `view` type, a feed bucket and the change-handler writing to it
/// (`test_support::FeedRig`; these tests read the stream themselves).
async fn setup(view: StreamViewType) -> FeedRig {
    FeedRig::new(view).await
}

#[tokio::test]
async fn stream_records_of_put_update_delete_become_one_change_file() {
    let t = setup(StreamViewType::NewAndOldImages).await;
    t.table.put("burger", "medium").await;
    t.table.set_priority("burger", "high").await;
    t.table.delete("burger").await;
    let event = t.stream_event().await;
    assert_eq!(event["Records"].as_array().unwrap().len(), 3);

    let response = t.handler.handle(&event, "req").await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let files = t.change_files().await;
    assert_eq!(files.len(), 1);
    let (key, file) = &files[0];
    let names: Vec<EventName> = file.changes.iter().map(|c| c.event_name).collect();
    assert_eq!(
        names,
        [EventName::Insert, EventName::Modify, EventName::Remove]
    );
    let modify = &file.changes[1];
    assert_eq!(priorities(modify), (Some("medium"), Some("high")));
    assert!(file
        .changes
        .windows(2)
        .all(|w| w[0].sequence_number < w[1].sequence_number));
    assert_eq!(
        file.source.stream_arn.as_deref(),
        Some(t.table.stream_arn.as_str())
    );
    assert_eq!(file.source.table.as_deref(), Some(t.table.name.as_str()));
    assert!(file.opaque.is_empty());

    let head = t.read("change_flags/_head").await;
    let head: HeadPointer = serde_json::from_slice(&head).unwrap();
    assert_eq!(&head.latest, key);
}

#[tokio::test]
async fn keys_only_stream_gives_changes_without_images() {
    let t = setup(StreamViewType::KeysOnly).await;
    t.table.put("pizza", "low").await;
    t.table.set_priority("pizza", "high").await;
    let response = t
        .handler
        .handle(&t.stream_event().await, "req")
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let files = t.change_files().await;
    let file = &files[0].1;
    assert_eq!(file.changes.len(), 2);
    for c in &file.changes {
        assert!(c.new_image.is_none() && c.old_image.is_none());
        assert_eq!(
            c.keys["item"],
            stream_refdata_protocol::AttributeValue::S("pizza".into())
        );
        assert_eq!(c.stream_view_type.as_deref(), Some("KEYS_ONLY"));
    }
}

#[tokio::test]
async fn a_missing_bucket_is_a_reported_failure_not_a_success() {
    let t = setup(StreamViewType::NewAndOldImages).await;
    t.table.put("salad", "high").await;
    let event = t.stream_event().await;
    let first = event["Records"][0]["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = unique_name("no-such-bucket");
    let response = t.handler_for(&missing).handle(&event, "req").await.unwrap();
    let reported: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(reported, [first]);
}

#[tokio::test]
async fn later_batches_sort_after_earlier_ones() {
    let t = setup(StreamViewType::NewAndOldImages).await;
    let h = &t.handler;
    t.table.put("pasta", "very high").await;
    let first_event = t.stream_event().await;
    t.table.set_priority("pasta", "high").await;
    let both = t.stream_event().await;
    // The second invocation gets the newer record only, as an event source mapping would.
    let second_event = serde_json::json!({"Records": [both["Records"][1].clone()]});
    h.handle(&second_event, "req-2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // A retried, older batch written later must sort later: keys follow write time.
    h.handle(&first_event, "req-1").await.unwrap();
    let files = t.change_files().await;
    assert_eq!(files.len(), 2);
    assert!(files[0].0 < files[1].0);
    assert_eq!(files[0].1.changes[0].event_name, EventName::Modify);
    assert_eq!(files[1].1.changes[0].event_name, EventName::Insert);
}
