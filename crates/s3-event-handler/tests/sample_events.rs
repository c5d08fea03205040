//! The handler over the sample events in `events/`, with an in-memory store and a fake stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use feed_writer::FeedConfig;
use s3_event_handler::flags::{Entry, PutResult, Shard, StreamError};
use s3_event_handler::{Config, FlagStream, HandlerError, S3EventHandler};
use serde_json::Value;
use stream_refdata_aws::SystemClock;
use stream_refdata_protocol::{ChangeFile, ChangeFlag, ChangeKey, ChangeKind};
use test_support::{sample_event, MemoryStore};

/// A stream of shards; a record goes to the shard whose starting hash key it names. It can
/// throttle the next N entries and reshard (split shard 0) after the next put.
#[derive(Clone, Default)]
struct FakeStream {
    state: Arc<Mutex<StreamState>>,
}

#[derive(Default)]
struct StreamState {
    shards: Vec<Shard>,
    records: HashMap<String, Vec<Vec<u8>>>,
    throttle_next: usize,
    list_calls: usize,
}

impl FakeStream {
    fn with_shards(n: usize) -> FakeStream {
        let s = FakeStream::default();
        s.state.lock().unwrap().shards = (0..n)
            .map(|i| Shard {
                id: format!("shardId-{i:012}"),
                starting_hash_key: (i as u128 * (u128::MAX / n as u128)).to_string(),
            })
            .collect();
        s
    }
    /// Splits the last shard as Kinesis does: the parent closes, two children cover its range.
    fn split_last(&self) {
        let mut s = self.state.lock().unwrap();
        let parent = s.shards.pop().unwrap();
        let start: u128 = parent.starting_hash_key.parse().unwrap();
        s.shards.push(Shard {
            id: "shardId-000000000098".into(),
            starting_hash_key: parent.starting_hash_key.clone(),
        });
        s.shards.push(Shard {
            id: "shardId-000000000099".into(),
            starting_hash_key: (start + (u128::MAX - start) / 2).to_string(),
        });
    }

    fn records(&self, shard: &str) -> Vec<Vec<u8>> {
        self.state
            .lock()
            .unwrap()
            .records
            .get(shard)
            .cloned()
            .unwrap_or_default()
    }
}

impl FlagStream for FakeStream {
    async fn open_shards(&self) -> Result<Vec<Shard>, StreamError> {
        let mut s = self.state.lock().unwrap();
        s.list_calls += 1;
        Ok(s.shards.clone())
    }
    async fn put_records(&self, entries: Vec<Entry>) -> Result<Vec<PutResult>, StreamError> {
        let mut s = self.state.lock().unwrap();
        let mut out = Vec::new();
        for e in entries {
            if s.throttle_next > 0 {
                s.throttle_next -= 1;
                out.push(PutResult {
                    shard_id: None,
                    error_code: Some("ProvisionedThroughputExceededException".into()),
                });
                continue;
            }
            // The shard with the largest starting hash key not above the record's.
            let key: u128 = e.explicit_hash_key.parse().unwrap();
            let shard = s
                .shards
                .iter()
                .filter(|sh| sh.starting_hash_key.parse::<u128>().unwrap() <= key)
                .max_by_key(|sh| sh.starting_hash_key.parse::<u128>().unwrap())
                .unwrap()
                .id
                .clone();
            s.records.entry(shard.clone()).or_default().push(e.data);
            out.push(PutResult {
                shard_id: Some(shard),
                error_code: None,
            });
        }
        Ok(out)
    }
}

fn config(legacy: Option<&str>) -> Config {
    Config {
        feed: FeedConfig {
            bucket: "feed-bucket".into(),
            prefix: "change_flags/".into(),
            legacy_flag_key: None,
            write_window: Duration::from_secs(20),
        },
        flags: s3_event_handler::FlagTarget::Kinesis("SourceKinesisStream".into()),
        reference_prefix: "reference/".into(),
        reference_bucket: None,
        legacy_flag_payload: legacy.map(|l| l.as_bytes().to_vec()),
    }
}

struct Rig {
    handler: S3EventHandler<MemoryStore, s3_event_handler::FlagSender<FakeStream>>,
    store: MemoryStore,
    stream: FakeStream,
}

fn rig(legacy: Option<&str>) -> Rig {
    let store = MemoryStore::new();
    let stream = FakeStream::with_shards(4);
    Rig {
        handler: S3EventHandler::new(config(legacy), store.clone(), stream.clone(), SystemClock),
        store,
        stream,
    }
}

impl Rig {
    /// The handler's answer to the sample event `name`.
    async fn handle(&self, name: &str) -> Result<SqsBatchResponse, HandlerError> {
        self.handler.handle(&sample_event(name), "req").await
    }

    fn change_files(&self) -> Vec<ChangeFile> {
        self.store
            .put_keys()
            .iter()
            .filter(|k| ChangeKey::parse("change_flags/", k).is_ok())
            .map(|k| ChangeFile::from_slice(&self.store.object("feed-bucket", k).unwrap()).unwrap())
            .collect()
    }
    fn flags_per_shard(&self) -> Vec<usize> {
        let s = self.stream.state.lock().unwrap();
        s.shards
            .iter()
            .map(|sh| s.records.get(&sh.id).map_or(0, Vec::len))
            .collect()
    }
}

#[tokio::test]
async fn a_put_writes_a_change_file_then_one_flag_on_each_of_four_shards() {
    let r = rig(None);
    let response = r
        .handler
        .handle(&sample_event("example-s3-put.json"), "req-1")
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let files = r.change_files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].kind, ChangeKind::S3);
    let object = &files[0].objects[0];
    assert_eq!(object.key, "reference/products.jsonl");
    assert!(!object.removed);
    assert_eq!(
        object.version_id.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    );
    assert_eq!(r.flags_per_shard(), [1, 1, 1, 1]);
    let flag = ChangeFlag::parse(&r.stream.records("shardId-000000000002")[0]).unwrap();
    assert_eq!(flag.change, *object);
    let change_file_key = flag.change_file.unwrap();
    assert!(
        r.store.put_keys()[0] == change_file_key,
        "the change file is written before the flags"
    );
}

#[tokio::test]
async fn a_delete_is_a_removal() {
    let r = rig(None);
    r.handle("example-s3-delete.json").await.unwrap();
    let object = &r.change_files()[0].objects[0];
    assert!(object.removed);
    assert_eq!(object.event_name, "ObjectRemoved:Delete");
    assert_eq!(object.etag, None);
}

#[tokio::test]
async fn url_encoded_keys_with_spaces_and_non_ascii_are_decoded() {
    let r = rig(None);
    r.handle("example-s3-key-with-spaces.json").await.unwrap();
    assert_eq!(
        r.change_files()[0].objects[0].key,
        "reference/menu 2026 café + extras.csv"
    );
}

#[tokio::test]
async fn objects_outside_the_prefix_are_ignored() {
    let r = rig(None);
    r.handle("example-s3-outside-prefix.json").await.unwrap();
    assert!(r.store.put_keys().is_empty());
    assert_eq!(r.flags_per_shard(), [0, 0, 0, 0]);
}

#[tokio::test]
async fn the_s3_test_event_is_ignored_gracefully() {
    let r = rig(None);
    let response = r.handle("example-s3-test-event.json").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(r.store.put_keys().is_empty());
}

#[tokio::test]
async fn sqs_wrapped_notifications_are_handled_per_message() {
    let r = rig(None);
    let response = r.handle("example-sqs-s3-mixed.json").await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let files = r.change_files();
    assert_eq!(
        files.len(),
        1,
        "one change, a test event and an outside object"
    );
    let key = r.store.put_keys()[0].clone();
    assert!(
        key.ends_with("-059f36b4-87a3-44ab-83d2-661975830000.json"),
        "{key}: message id names the file"
    );
}

#[tokio::test]
async fn a_message_that_cannot_be_handled_is_reported_and_the_others_are_not() {
    let r = rig(None);
    let mut payload = sample_event("example-sqs-s3-mixed.json");
    payload["Records"][1]["body"] = Value::String("{not json".into());
    r.store.fail_next(0);
    let response = r.handler.handle(&payload, "req").await.unwrap();
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(ids, ["059f36b4-87a3-44ab-83d2-661975830001"]);
    assert_eq!(r.change_files().len(), 1);
}

#[tokio::test]
async fn a_failed_change_file_reports_the_message_and_puts_no_flag() {
    let r = rig(None);
    r.store.fail_next(1);
    let response = r.handle("example-sqs-s3-put.json").await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(r.flags_per_shard(), [0, 0, 0, 0]);
}

#[tokio::test]
async fn a_direct_invocation_that_fails_is_an_error() {
    let r = rig(None);
    r.store.fail_next(1);
    let err = r.handle("example-s3-put.json").await.unwrap_err();
    assert!(matches!(err, HandlerError::Process(_)), "{err}");
}

#[tokio::test]
async fn other_payloads_are_invocation_errors() {
    let r = rig(None);
    let change = sample_event("example-dynamodb-insert.json");
    for payload in [
        change,
        serde_json::json!(42),
        serde_json::json!({"detail": {}}),
    ] {
        let err = r.handler.handle(&payload, "req").await.unwrap_err();
        assert!(matches!(err, HandlerError::InvalidEvent(_)), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn throttled_entries_are_retried_until_every_shard_has_its_flag() {
    let r = rig(None);
    r.stream.state.lock().unwrap().throttle_next = 3;
    r.handle("example-s3-put.json").await.unwrap();
    assert_eq!(r.flags_per_shard(), [1, 1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_reshard_makes_the_sender_list_again_and_fill_the_new_shards() {
    let r = rig(None);
    r.handle("example-s3-put.json").await.unwrap();
    assert_eq!(r.stream.state.lock().unwrap().list_calls, 1);
    // Resharded between invocations: the sender's cached list still names the closed parent.
    r.stream.split_last();
    r.handle("example-s3-put.json").await.unwrap();
    let counts = r.flags_per_shard();
    assert_eq!(
        counts,
        [2, 2, 2, 1, 1],
        "every open shard, children included, got the second flag"
    );
    assert_eq!(
        r.stream.state.lock().unwrap().list_calls,
        2,
        "listed again after the mismatch"
    );
}

#[tokio::test(start_paused = true)]
async fn flags_that_cannot_be_delivered_fail_the_message() {
    let r = rig(None);
    r.stream.state.lock().unwrap().throttle_next = 1000;
    let response = r.handle("example-sqs-s3-put.json").await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "never a silent success"
    );
}

#[tokio::test]
async fn the_legacy_payload_also_goes_to_every_shard() {
    let legacy = r#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#;
    let r = rig(Some(legacy));
    r.handle("example-s3-put.json").await.unwrap();
    assert_eq!(r.flags_per_shard(), [2, 2, 2, 2]);
    assert!(r
        .stream
        .records("shardId-000000000000")
        .iter()
        .any(|rec| rec == legacy.as_bytes()));
}
