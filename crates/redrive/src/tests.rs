//! The redrive's rules against an in-memory bucket and fake handlers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use feed_writer::WriteError;

use super::*;

const DDB_RECORD: &[u8] = include_bytes!("../../../events/example-s3-failure-dynamodb.json");
const KINESIS_RECORD: &[u8] = include_bytes!("../../../events/example-s3-failure-kinesis.json");

#[derive(Default)]
struct Bucket(Mutex<BTreeMap<String, Vec<u8>>>);

impl Bucket {
    fn with(objects: &[(&str, &[u8])]) -> Bucket {
        let b = Bucket::default();
        for (k, v) in objects {
            b.0.lock().unwrap().insert((*k).to_owned(), v.to_vec());
        }
        b
    }
    fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

impl FailureBucket for &Bucket {
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BucketError> {
        Ok(self
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect())
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BucketError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), BucketError> {
        self.0.lock().unwrap().insert(key.to_owned(), body);
        Ok(())
    }
}

/// Handlers that succeed, fail, or are not configured, and count what they were given.
#[derive(Default)]
struct Fake {
    failing: Vec<Function>,
    missing: Vec<Function>,
    replays: Mutex<Vec<(Function, String)>>,
    gaps: Mutex<Vec<String>>,
}

impl Functions for &Fake {
    async fn replay(&self, f: Function, payload: &str, _: &str) -> Result<(), ReplayError> {
        if self.missing.contains(&f) {
            return Err(ReplayError::NotConfigured(f, "set it".into()));
        }
        self.replays.lock().unwrap().push((f, payload.to_owned()));
        if self.failing.contains(&f) {
            return Err(ReplayError::Failed("S3 is down".into()));
        }
        Ok(())
    }
    async fn announce_gap(&self, reason: &str, _: &str) -> Result<String, WriteError> {
        let mut gaps = self.gaps.lock().unwrap();
        gaps.push(reason.to_owned());
        Ok(format!("change_flags/gap-{}.json", gaps.len()))
    }
}

impl Fake {
    /// Handlers of which `functions` fail every replay.
    fn failing(functions: &[Function]) -> Fake {
        Fake {
            failing: functions.to_vec(),
            ..Fake::default()
        }
    }

    /// Handlers of which `functions` have no configuration.
    fn missing(functions: &[Function]) -> Fake {
        Fake {
            missing: functions.to_vec(),
            ..Fake::default()
        }
    }
}

fn settings() -> Settings {
    Settings {
        backoff: Duration::ZERO,
        ..Settings::default()
    }
}

/// A redrive of `bucket` through `fake`, with no pause between attempts.
fn redriver<'a>(bucket: &'a Bucket, fake: &'a Fake) -> Redriver<&'a Bucket, &'a Fake> {
    Redriver::new(bucket, fake, settings())
}

const DDB_KEY: &str = "aws/lambda/esm-1/shardId-1/2026/11/25/2026-11-25T09.14.49-a";
const KIN_KEY: &str = "aws/lambda/esm-2/shardId-000000000002/2026/11/25/2026-11-25T09.38.06-b";

#[test]
fn the_documented_records_parse_with_their_payloads() {
    let r = FailureRecord::parse(DDB_RECORD).unwrap();
    assert_eq!(r.function, Function::ChangeHandler);
    assert_eq!(r.condition, "RetryAttemptsExhausted");
    assert_eq!(r.batch.batch_size, 1);
    let payload: serde_json::Value = serde_json::from_str(r.payload.as_deref().unwrap()).unwrap();
    assert_eq!(payload["Records"].as_array().unwrap().len(), 1);
    let k = FailureRecord::parse(KINESIS_RECORD).unwrap();
    assert_eq!(k.function, Function::OrdersConsumer);
    assert_eq!(k.batch.shard_id, "shardId-000000000002");
    assert_eq!(k.batch.batch_size, 7);
    assert!(matches!(
        FailureRecord::parse(b"{\"requestContext\": {}}"),
        Err(RecordError::UnknownSource)
    ));
    assert!(matches!(
        FailureRecord::parse(b"not json"),
        Err(RecordError::NotARecord(_))
    ));
}

#[tokio::test]
async fn a_record_is_replayed_once_and_a_second_run_is_a_no_op() {
    let bucket = Bucket::with(&[(DDB_KEY, DDB_RECORD), (KIN_KEY, KINESIS_RECORD)]);
    let fake = Fake::default();
    let r = redriver(&bucket, &fake);
    let first = r.run().await.unwrap();
    assert_eq!(first.count(Action::Redriven), 2, "{first:?}");
    assert_eq!(first.unresolved(), 0);
    let replays = fake.replays.lock().unwrap().clone();
    assert_eq!(replays.len(), 2);
    // The payload handed to the handler is the record's payload, unchanged.
    let ddb = FailureRecord::parse(DDB_RECORD).unwrap();
    assert!(replays
        .iter()
        .any(|(f, p)| *f == Function::ChangeHandler && Some(p) == ddb.payload.as_ref()));
    let second = r.run().await.unwrap();
    assert_eq!(second.count(Action::AlreadyRedriven), 2, "{second:?}");
    assert_eq!(
        fake.replays.lock().unwrap().len(),
        2,
        "nothing replayed again"
    );
    // The records stay (the bucket's lifecycle expires them); the markers sit beside them.
    assert!(bucket.keys().contains(&DDB_KEY.to_owned()));
    assert!(bucket
        .keys()
        .contains(&format!("{DEFAULT_MARKER_PREFIX}{DDB_KEY}.json")));
    assert!(fake.gaps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let bucket = Bucket::with(&[(DDB_KEY, DDB_RECORD), ("aws/lambda/x/s/garbled", b"{")]);
    let fake = Fake::default();
    let r = Redriver::new(
        &bucket,
        &fake,
        Settings {
            dry_run: true,
            ..settings()
        },
    );
    let report = r.run().await.unwrap();
    assert_eq!(report.count(Action::WouldRedrive), 1);
    assert_eq!(report.count(Action::WouldAnnounceGap), 1);
    assert!(fake.replays.lock().unwrap().is_empty());
    assert!(fake.gaps.lock().unwrap().is_empty());
    assert_eq!(bucket.keys().len(), 2, "no marker written");
}

#[tokio::test]
async fn an_unreadable_record_announces_one_gap_and_stays() {
    let garbled = "aws/lambda/x/s/2026/11/25/garbled";
    let bucket = Bucket::with(&[(garbled, b"{\"requestContext\": ")]);
    let fake = Fake::default();
    let r = redriver(&bucket, &fake);
    let first = r.run().await.unwrap();
    assert_eq!(first.count(Action::GapAnnounced), 1);
    assert_eq!(first.unresolved(), 1);
    let gaps = fake.gaps.lock().unwrap().clone();
    assert_eq!(gaps.len(), 1);
    assert!(
        gaps[0].contains(garbled),
        "the gap names the record: {}",
        gaps[0]
    );
    assert_eq!(
        first.records[0].gap_key.as_deref(),
        Some("change_flags/gap-1.json")
    );
    // A second run reports it again, without a second gap.
    let second = r.run().await.unwrap();
    assert_eq!(second.count(Action::GapAnnounced), 1);
    assert_eq!(fake.gaps.lock().unwrap().len(), 1);
    assert!(bucket.keys().contains(&garbled.to_owned()));
}

#[tokio::test]
async fn a_change_handler_that_keeps_failing_gets_a_gap_and_orders_are_left() {
    let bucket = Bucket::with(&[(DDB_KEY, DDB_RECORD), (KIN_KEY, KINESIS_RECORD)]);
    let fake = Fake::failing(&[Function::ChangeHandler, Function::OrdersConsumer]);
    let report = redriver(&bucket, &fake).run().await.unwrap();
    let by_key = |k: &str| report.records.iter().find(|o| o.key == k).unwrap();
    assert_eq!(by_key(DDB_KEY).action, Action::GapAnnounced);
    assert!(
        by_key(DDB_KEY).detail.contains("3 attempts"),
        "{}",
        by_key(DDB_KEY).detail
    );
    assert_eq!(by_key(KIN_KEY).action, Action::Left);
    assert!(by_key(KIN_KEY).detail.contains("not in the output"));
    assert_eq!(fake.replays.lock().unwrap().len(), 6, "3 attempts each");
    assert_eq!(fake.gaps.lock().unwrap().len(), 1, "no gap for orders");
}

#[tokio::test]
async fn a_batch_that_failed_before_is_replayed_when_it_can_be() {
    let bucket = Bucket::with(&[(DDB_KEY, DDB_RECORD)]);
    let failing = Fake::failing(&[Function::ChangeHandler]);
    let report = redriver(&bucket, &failing).run().await.unwrap();
    assert_eq!(report.count(Action::GapAnnounced), 1);
    // The outage is over: the next run replays it and marks it redriven.
    let healthy = Fake::default();
    let r = redriver(&bucket, &healthy);
    assert_eq!(r.run().await.unwrap().count(Action::Redriven), 1);
    assert_eq!(r.run().await.unwrap().count(Action::AlreadyRedriven), 1);
    assert!(healthy.gaps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_damaged_orders_record_is_left_not_gapped_and_markers_are_never_records() {
    // `batchSize` as text: the record does not parse, but it is an orders batch.
    let damaged = String::from_utf8(KINESIS_RECORD.to_vec())
        .unwrap()
        .replace("\"batchSize\": 7", "\"batchSize\": \"7\"");
    assert!(FailureRecord::parse(damaged.as_bytes()).is_err());
    let bucket = Bucket::with(&[(KIN_KEY, damaged.as_bytes())]);
    let fake = Fake::default();
    let settings = Settings {
        // Overlapping prefixes: the markers must not be taken for records.
        failure_prefix: String::new(),
        ..settings()
    };
    let r = Redriver::new(&bucket, &fake, settings);
    let report = r.run().await.unwrap();
    assert_eq!(report.count(Action::Left), 1, "{report:?}");
    assert_eq!(report.records[0].function, Some(Function::OrdersConsumer));
    assert!(
        fake.gaps.lock().unwrap().is_empty(),
        "a gap brings no orders back"
    );
    // A healthy record redriven, then a run over the whole bucket: its marker is not a record.
    let bucket = Bucket::with(&[(DDB_KEY, DDB_RECORD)]);
    let r = Redriver::new(
        &bucket,
        &fake,
        Settings {
            failure_prefix: String::new(),
            ..self::settings()
        },
    );
    assert_eq!(r.run().await.unwrap().count(Action::Redriven), 1);
    let again = r.run().await.unwrap();
    assert_eq!(again.listed, 1, "{again:?}");
    assert_eq!(again.count(Action::AlreadyRedriven), 1);
    assert!(fake.gaps.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_configuration_leaves_the_record_without_a_gap() {
    let bucket = Bucket::with(&[(KIN_KEY, KINESIS_RECORD)]);
    let fake = Fake::missing(&[Function::OrdersConsumer]);
    let report = redriver(&bucket, &fake).run().await.unwrap();
    assert_eq!(report.count(Action::Left), 1);
    assert!(report.records[0].detail.contains("no configuration"));
    assert!(fake.gaps.lock().unwrap().is_empty());
}

#[test]
fn orders_batches_are_replayed_as_of_their_arrival_unless_the_function_or_the_caller_says_otherwise(
) {
    let vars = |extra: &'static [(&'static str, &'static str)]| {
        move |var: &str| match var {
            "REFERENCE_TABLE" => Some("ProductPriority".to_owned()),
            "CHANGE_BUCKET" | "OUTPUT_BUCKET" => Some("bucket".to_owned()),
            other => (extra.iter())
                .find(|(k, _)| *k == other)
                .map(|(_, v)| (*v).to_owned()),
        }
    };
    let (config, why) = crate::replay_config(&vars(&[]), false).unwrap();
    assert!(config.as_of.is_some() && why.is_none());
    // --live
    let (config, _) = crate::replay_config(&vars(&[]), true).unwrap();
    assert!(config.as_of.is_none());
    // The function's own choice stands, and --live wins over it.
    let (config, _) = crate::replay_config(&vars(&[("ENRICH_AS_OF", "live")]), false).unwrap();
    assert!(config.as_of.is_none());
    let (config, _) = crate::replay_config(&vars(&[("ENRICH_AS_OF", "arrival")]), true).unwrap();
    assert!(config.as_of.is_none());
    // A function that holds orders cannot be replayed as of arrival: as it is, and why.
    let (config, why) = crate::replay_config(&vars(&[("UNMATCHED", "hold")]), false).unwrap();
    assert!(config.as_of.is_none() && config.hold.is_some());
    assert!(why.unwrap().contains("UNMATCHED=hold"));
    // A function whose variables are wrong is reported as such.
    assert!(crate::replay_config(&vars(&[("UNMATCHED", "ignore")]), false).is_err());
}

#[test]
fn a_replay_never_writes_into_the_functions_own_output() {
    let vars = |var: &str| match var {
        "REFERENCE_TABLE" => Some("ProductPriority".to_owned()),
        "CHANGE_BUCKET" | "OUTPUT_BUCKET" => Some("bucket".to_owned()),
        _ => None,
    };
    for prefix in ["", "enriched/", "enriched/replay/", "dead-letter/x/"] {
        let err = crate::replay::replay_config(&vars, prefix).unwrap_err();
        assert!(
            err.to_string().contains("--output-prefix"),
            "{prefix:?}: {err}"
        );
    }
    let config = crate::replay::replay_config(&vars, "replay/2026-12-06/").unwrap();
    assert_eq!(config.output_prefix, "replay/2026-12-06/enriched/");
    assert!(config.as_of.is_some() && config.catalog.is_none());
}

#[test]
fn a_kafka_mappings_record_parses_as_the_orders_consumers_batch() {
    // (the S3 destination's record of an MSK mapping, as AWS documents it: recordsInfo per
    // topic-partition, offsets as strings, the event as the payload)
    let bytes = include_bytes!("../../../events/example-s3-failure-msk.json");
    let payload = include_str!("../../../events/example-msk-orders.json");
    assert_eq!(Function::named_in(bytes), Some(Function::OrdersConsumer));
    let r = FailureRecord::parse(bytes).unwrap();
    assert_eq!(r.function, Function::OrdersConsumer);
    assert_eq!(r.invoke_count, 101);
    assert_eq!(r.batch.shard_id, "orders-0,orders-1");
    assert_eq!(r.batch.start_sequence_number, "15");
    assert_eq!(r.batch.end_sequence_number, "9");
    assert_eq!(r.batch.batch_size, 7);
    assert!(r.batch.stream_arn.starts_with("arn:aws:kafka:"));
    assert_eq!(r.payload.as_deref(), Some(payload));
}
