//! The handler over the sample events in `events/`, with an in-memory store.

use std::time::Duration;

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use change_handler::{ChangeHandler, HandlerError, PRODUCER};
use feed_writer::{FeedConfig, FeedWriter};
use serde_json::json;
use stream_refdata_aws::SystemClock;
use stream_refdata_protocol::{ChangeFile, ChangeKey, EventName, HeadPointer};
use test_support::{priorities, sample_event, MemoryStore};

/// The handler writing to a fresh store, and the store (a clone sharing its objects).
fn handler(legacy: Option<&str>) -> (ChangeHandler<MemoryStore>, MemoryStore) {
    let store = MemoryStore::new();
    let config = FeedConfig {
        bucket: "feed".into(),
        prefix: "change_flags/".into(),
        legacy_flag_key: legacy.map(str::to_owned),
        write_window: Duration::from_secs(20),
    };
    let writer = FeedWriter::new(config, store.clone(), SystemClock, PRODUCER);
    (ChangeHandler::new(writer), store)
}

/// A fresh handler's answer to the sample event `name` (request `request_id`), and its store.
async fn handle_sample(name: &str, request_id: &str) -> (DynamoDbEventResponse, MemoryStore) {
    let (h, store) = handler(None);
    let response = h.handle(&sample_event(name), request_id).await.unwrap();
    (response, store)
}

/// The one change file the store holds.
fn only_file(store: &MemoryStore) -> (String, ChangeFile) {
    let keys: Vec<String> = store
        .put_keys()
        .into_iter()
        .filter(|k| ChangeKey::parse("change_flags/", k).is_ok())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let file = ChangeFile::from_slice(&store.object("feed", &keys[0]).unwrap()).unwrap();
    (keys[0].clone(), file)
}

#[tokio::test]
async fn walkthrough_modify_becomes_a_change_file_with_both_images() {
    let (response, store) = handle_sample("example-dynamodb-modify-burger.json", "req-1").await;
    assert!(response.batch_item_failures.is_empty());
    let (key, file) = only_file(&store);
    assert_eq!(file.changes.len(), 1);
    let c = &file.changes[0];
    assert_eq!(c.event_name, EventName::Modify);
    assert_eq!(priorities(c), (Some("medium"), Some("high")));
    assert_eq!(
        c.keys["price"],
        stream_refdata_protocol::AttributeValue::N("100".into())
    );
    assert_eq!(file.source.table.as_deref(), Some("ProductPriority"));
    assert_eq!(file.write_window_ms, 20_000);
    assert_eq!(file.producer, PRODUCER);
    let parsed = ChangeKey::parse("change_flags/", &key).unwrap();
    let range = parsed.sequences.unwrap();
    assert_eq!(range.first.as_str(), "4421584600000000017450439092");
    assert_eq!(range.first, range.last);
    assert!(key.contains(&file.written_at));
    let pointer: HeadPointer =
        serde_json::from_slice(&store.object("feed", "change_flags/_head").unwrap()).unwrap();
    assert_eq!(pointer.latest, key);
}

#[tokio::test]
async fn each_sample_event_keeps_every_record() {
    for (name, expected) in [
        ("example-dynamodb-insert.json", vec![EventName::Insert]),
        ("example-dynamodb-remove.json", vec![EventName::Remove]),
        ("example-dynamodb-keys-only.json", vec![EventName::Modify]),
        (
            "example-dynamodb-batch.json",
            vec![
                EventName::Insert,
                EventName::Modify,
                EventName::Modify,
                EventName::Remove,
            ],
        ),
    ] {
        let (response, store) = handle_sample(name, "req").await;
        assert!(response.batch_item_failures.is_empty(), "{name}");
        let (_, file) = only_file(&store);
        let names: Vec<EventName> = file.changes.iter().map(|c| c.event_name).collect();
        assert_eq!(names, expected, "{name}");
        let indexes: Vec<usize> = file.changes.iter().map(|c| c.index).collect();
        assert_eq!(
            indexes,
            (0..expected.len()).collect::<Vec<_>>(),
            "{name}: stream order"
        );
    }
}

#[tokio::test]
async fn keys_only_changes_carry_keys_and_no_images() {
    let (_, store) = handle_sample("example-dynamodb-keys-only.json", "req").await;
    let (_, file) = only_file(&store);
    let c = &file.changes[0];
    assert_eq!(c.stream_view_type.as_deref(), Some("KEYS_ONLY"));
    assert!(c.new_image.is_none() && c.old_image.is_none());
    assert_eq!(c.keys.len(), 2);
}

#[tokio::test]
async fn remove_carries_the_old_image_only() {
    let (_, store) = handle_sample("example-dynamodb-remove.json", "req").await;
    let (_, file) = only_file(&store);
    assert!(file.changes[0].new_image.is_none());
    assert!(file.changes[0].old_image.is_some());
}

#[tokio::test]
async fn untypeable_records_are_written_as_opaque_and_not_reported() {
    let (response, store) =
        handle_sample("example-dynamodb-untypeable-records.json", "req-77").await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a retry cannot fix these, so they must not block the shard"
    );
    let (key, file) = only_file(&store);
    assert!(file.changes.is_empty());
    assert_eq!(file.opaque.len(), 3);
    assert!(file.opaque[0].reason.contains("'X'"));
    assert!(file.opaque[1].reason.contains("UPSERT"));
    assert!(file.opaque[2].reason.contains("SequenceNumber"));
    // Every opaque record still names its keys, so consumers re-read just those items.
    assert!(file.opaque.iter().all(|o| o.typed_keys().is_some()));
    // No valid sequence number in the batch: the key carries the request id instead.
    let parsed = ChangeKey::parse("change_flags/", &key).unwrap();
    assert_eq!(parsed.unique.as_deref(), Some("req-77"));
}

#[tokio::test]
async fn empty_batch_writes_nothing() {
    let (h, store) = handler(None);
    let response = h.handle(&json!({"Records": []}), "req").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(store.put_keys().is_empty());
}

#[tokio::test]
async fn a_payload_that_is_not_a_dynamodb_event_is_an_invocation_error() {
    let (h, store) = handler(None);
    for payload in [
        json!("hello"),
        json!({"Records": [{"eventSource": "aws:s3", "s3": {}}]}),
        json!({"detail-type": "Scheduled Event"}),
    ] {
        let err = h.handle(&payload, "req").await.unwrap_err();
        assert!(matches!(err, HandlerError::InvalidEvent(_)), "{err}");
        assert!(
            err.to_string().contains("not a DynamoDB Streams event"),
            "{err}"
        );
        let diagnostic: lambda_runtime::Diagnostic = err.into();
        assert_eq!(diagnostic.error_type, "InvalidEvent");
    }
    assert!(store.put_keys().is_empty());
}

#[tokio::test]
async fn a_failed_write_reports_the_first_record_and_the_retry_succeeds() {
    let (h, store) = handler(None);
    let batch = sample_event("example-dynamodb-batch.json");
    store.fail_next(1);
    let response = h.handle(&batch, "req").await.unwrap();
    let reported: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(reported, ["4421584900000000017450439095"]);
    assert!(store.put_keys().is_empty());

    let response = h.handle(&batch, "req").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(only_file(&store).1.changes.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_write_slower_than_the_window_is_reported_and_retried_under_a_new_key() {
    let (h, store) = handler(None);
    let batch = sample_event("example-dynamodb-insert.json");
    store.delay_next(Duration::from_secs(16));
    let response = h.handle(&batch, "req").await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "a late success is a failure"
    );
    // The late PUT was abandoned at the deadline, so nothing was acknowledged.
    assert!(store.put_keys().is_empty());
    let response = h.handle(&batch, "req").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(only_file(&store).1.changes.len(), 1);
}

#[tokio::test]
async fn a_failed_pointer_write_fails_the_batch() {
    let (h, store) = handler(None);
    // The change file goes through, the pointer after it fails.
    store.delay_next(Duration::ZERO);
    store.fail_next(1);
    let response = h
        .handle(&sample_event("example-dynamodb-insert.json"), "req")
        .await
        .unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
}

#[tokio::test]
async fn no_sequence_number_to_report_fails_the_invocation() {
    let (h, store) = handler(None);
    let mut payload = sample_event("example-dynamodb-insert.json");
    payload["Records"][0]["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("SequenceNumber");
    store.fail_next(1);
    let err = h.handle(&payload, "req").await.unwrap_err();
    assert!(matches!(err, HandlerError::Unreportable(_)), "{err}");
}

#[tokio::test]
async fn legacy_marker_is_written_after_the_change_file() {
    let (h, store) = handler(Some("change_flags/CHANGE_FLAG"));
    h.handle(&sample_event("example-dynamodb-modify-burger.json"), "req")
        .await
        .unwrap();
    let keys = store.put_keys();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[1], "change_flags/_head");
    assert_eq!(keys[2], "change_flags/CHANGE_FLAG");
}
