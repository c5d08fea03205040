//! Redrive on the emulator: batches that an event source mapping discarded to its S3
//! on-failure destination during an outage (the emulated mapping writes the record as Lambda
//! does), replayed after it through the real handlers; an unreplayable record announces a gap;
//! a second run is a no-op, and a run that crashed before its marker duplicates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use event_source_mappings::{
    DynamoDbStreamMapping, Invocation, KinesisShardMapping, MappingConfig, S3Destination,
};
use local_emulator::provision;
use redrive::{Action, Deployed, Redriver, Report, S3FailureBucket, Settings};
use serde_json::Value;
use stream_refdata_aws::{OffsetClock, S3Store};
use stream_refdata_protocol::ChangeKind;
use test_support::{
    create_stream, emulator, feed_config, list_keys, read_object, through_proxy, unique_name,
    Fault, FeedRig, HttpFaultProxy, Rule,
};
use tokio::sync::watch;

use crate::common::{view, FeedConsumers};

/// Every S3 PutObject through the proxy fails: an outage of the writes.
fn s3_write_outage() -> Vec<Rule> {
    vec![Rule {
        service: "s3",
        operation: "PutObject",
        fault: Fault::ServerError,
        rate: 1.0,
    }]
}

fn bounded(retries: u32) -> MappingConfig {
    MappingConfig {
        batch_size: 100,
        poll_interval: Duration::from_millis(20),
        trim_horizon: true,
        maximum_retry_attempts: Some(retries),
    }
}

async fn failure_bucket(s3: &aws_sdk_s3::Client) -> String {
    let name = unique_name("failures");
    provision::create_bucket(s3, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    name
}

/// Sets `stop` once `bucket` holds `n` records under `aws/lambda/`.
async fn stop_after_records(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    n: usize,
    stop: &watch::Sender<bool>,
) {
    for _ in 0..600 {
        if list_keys(s3, bucket, "aws/lambda/").await.len() >= n {
            let _ = stop.send(true);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no failure record reached {bucket}");
}

fn redriver(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    functions: Deployed,
) -> Redriver<S3FailureBucket, Deployed> {
    Redriver::new(
        S3FailureBucket::new(S3Store::new(s3.clone()), bucket),
        functions,
        Settings {
            backoff: Duration::from_millis(10),
            ..Settings::default()
        },
    )
}

fn print(report: &Report) {
    for o in &report.records {
        println!("{:?} {} {}", o.action, o.key, o.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_handler_batch_discarded_in_an_s3_outage_is_redriven_and_every_consumer_serves_it()
{
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let (mut a, mut b) = (rig.consumer(), rig.consumer());
    a.refresh().await;
    b.refresh().await;
    let items = || ["burger".to_owned(), "pizza".to_owned()];
    assert_eq!(view(&a, items())["burger"], "medium");
    // Their first polls re-read the seed file's items (stamped before their loads' end), so
    // they have applied everything before the change below; a second apart, by creation second.
    a.refresh().await;
    b.refresh().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The walkthrough's change, made while the feed's writes fail: the mapping (bounded
    // retries here, standing in for a day-long outage that outlives the records on AWS) gives
    // up and records the batch in the failure bucket.
    rig.table.set_priority("burger", "high").await;
    rig.table.set_priority("pizza", "low").await;
    let failures = failure_bucket(&rig.s3).await;
    let proxy = HttpFaultProxy::start(emulator().endpoint(), 1).await;
    proxy.set_rules(s3_write_outage());
    let handler = rig.handler_through(&through_proxy(&rig.sdk, proxy.endpoint()));
    let mapping = DynamoDbStreamMapping::new(
        rig.streams.clone(),
        rig.table.stream_arn.clone(),
        bounded(2),
    )
    .with_on_failure(S3Destination::new(
        rig.s3.clone(),
        &failures,
        "arn:aws:lambda:us-east-1:123456789012:function:change-handler",
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = mapping.run(
        |event| {
            let handler = &handler;
            async move {
                Invocation::from_reported(handler.handle(&event, "req").await.map(|r| {
                    r.batch_item_failures
                        .into_iter()
                        .filter_map(|f| f.item_identifier)
                        .collect()
                }))
            }
        },
        stop_rx,
    );
    let (stats, ()) = tokio::join!(run, stop_after_records(&rig.s3, &failures, 1, &stop_tx));
    let stats = stats.unwrap();
    assert!(stats.discarded >= 1, "{stats:?}");
    assert_eq!(stats.failure_records.len() as u64, stats.discarded);
    assert!(proxy.injected() >= 3, "every attempt failed");
    a.refresh().await;
    assert_eq!(
        view(&a, items())["burger"],
        "medium",
        "the change was lost, for now"
    );

    // After the outage: the redrive replays it through the change-handler.
    let sdk = test_support::sdk_config().await;
    let feed_files_before = rig.feed_keys().await.len();
    let r = redriver(
        &rig.s3,
        &failures,
        Deployed::with_sdk(
            feed_config(&rig.bucket),
            Err("none".into()),
            &sdk,
            &sdk,
            OffsetClock::default(),
        ),
    );
    let started = std::time::Instant::now();
    let report = r.run().await.unwrap();
    let took = started.elapsed();
    print(&report);
    println!(
        "change-handler: {} invocations ({} retries), {} batch(es) with {} records discarded; redriven in {took:?}; {} change file(s) written by the redrive",
        stats.invocations,
        stats.retries,
        stats.discarded,
        stats.discarded_records,
        rig.feed_keys().await.len() - feed_files_before
    );
    assert_eq!(report.count(Action::Redriven), stats.failure_records.len());
    assert_eq!(report.unresolved(), 0);
    for consumer in [&mut a, &mut b] {
        consumer.refresh().await;
        let v = view(consumer, items());
        assert_eq!((v["burger"].as_str(), v["pizza"].as_str()), ("high", "low"));
    }
    let mut c = rig.consumer();
    c.refresh().await;
    assert_eq!(view(&c, items())["burger"], "high", "a new consumer too");

    // A second run is a no-op: nothing replayed, no change file written.
    let feed_files = rig.feed_keys().await.len();
    assert!(feed_files > feed_files_before);
    let again = r.run().await.unwrap();
    assert_eq!(again.count(Action::AlreadyRedriven), report.listed);
    assert_eq!(rig.feed_keys().await.len(), feed_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreplayable_record_is_reported_and_a_gap_makes_every_consumer_reload() {
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let mut consumer = rig.consumer();
    consumer.refresh().await;
    let failures = failure_bucket(&rig.s3).await;
    // A record cut short (a partial copy, a hand edit): nobody can say which changes it held.
    let key = "aws/lambda/3f0c-esm/shardId-00000001/2026/11/25/2026-11-25T09.14.49-0d5e";
    rig.s3
        .put_object()
        .bucket(&failures)
        .key(key)
        .body(
            b"{\"requestContext\": {\"condition\": \"RetryAttemptsExhausted\""
                .to_vec()
                .into(),
        )
        .send()
        .await
        .unwrap();
    // A change the consumer has not seen, made while no change file describes it.
    rig.table.set_priority("burger", "high").await;

    let sdk = test_support::sdk_config().await;
    let r = redriver(
        &rig.s3,
        &failures,
        Deployed::with_sdk(
            feed_config(&rig.bucket),
            Err("none".into()),
            &sdk,
            &sdk,
            OffsetClock::default(),
        ),
    );
    let dry = Redriver::new(
        S3FailureBucket::new(S3Store::new(rig.s3.clone()), &failures),
        Deployed::with_sdk(
            feed_config(&rig.bucket),
            Err("none".into()),
            &sdk,
            &sdk,
            OffsetClock::default(),
        ),
        Settings {
            dry_run: true,
            ..Settings::default()
        },
    )
    .run()
    .await
    .unwrap();
    assert_eq!(dry.count(Action::WouldAnnounceGap), 1);
    let gaps = |files: &[(String, stream_refdata_protocol::ChangeFile)]| {
        files
            .iter()
            .filter(|(_, f)| f.kind == ChangeKind::Gap)
            .count()
    };
    assert_eq!(
        gaps(&rig.change_files().await),
        0,
        "a dry run writes nothing"
    );

    let report = r.run().await.unwrap();
    print(&report);
    assert_eq!(report.count(Action::GapAnnounced), 1);
    assert!(
        report.records[0].detail.contains("unreadable"),
        "{}",
        report.records[0].detail
    );
    let files = rig.change_files().await;
    assert_eq!(gaps(&files), 1);
    let (_, gap) = files
        .iter()
        .find(|(_, f)| f.kind == ChangeKind::Gap)
        .unwrap();
    assert!(gap.reason.as_deref().unwrap_or("").contains(key));
    // The record stays in place; every consumer reloads and sees the table as it is.
    assert!(list_keys(&rig.s3, &failures, "aws/lambda/")
        .await
        .contains(&key.to_owned()));
    consumer.refresh().await;
    assert_eq!(view(&consumer, ["burger".to_owned()])["burger"], "high");
    // A second run reports it again and writes no second gap.
    let again = r.run().await.unwrap();
    assert_eq!(again.count(Action::GapAnnounced), 1);
    assert_eq!(gaps(&rig.change_files().await), 1);
}

/// The orders consumer's output: object key -> its lines' (sequence number, dish, priority).
async fn output(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> BTreeMap<String, Vec<(String, String, String)>> {
    let mut out = BTreeMap::new();
    let mut keys = list_keys(s3, bucket, "enriched/").await;
    keys.extend(list_keys(s3, bucket, "dead-letter/").await);
    for key in keys {
        let body = read_object(s3, bucket, &key).await;
        let lines = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let text = |f: &str| v[f].as_str().unwrap_or_default().to_owned();
                (text("sequence_number"), text("dish"), text("priority"))
            })
            .collect();
        out.insert(key, lines);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_batch_discarded_in_an_outage_is_redriven_without_duplicates() {
    Box::pin(orders_batch_redriven(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_batch_that_holds_orders_is_redriven_and_its_held_orders_end_once() {
    Box::pin(orders_batch_redriven(true)).await;
}

/// An orders batch discarded in an outage, then redriven (twice: a crash before the marker);
/// with `hold`, its donuts are held by the redrive and released once their row exists.
async fn orders_batch_redriven(hold: bool) {
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let kinesis = aws_sdk_kinesis::Client::new(&rig.sdk);
    let stream = create_stream(&kinesis, 1).await;
    let described = kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let stream_arn = described
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_owned();
    let shard = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_owned();
    let dishes = ["burger", "pizza", "donut", "burger", "ice-cream"];
    let orders = 40;
    for n in 0..orders {
        let order = format!(
            r#"{{"dish":"{}","cost":{n},"customer_id":{n}}}"#,
            dishes[n % dishes.len()]
        );
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("c{n}"))
            .data(order.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    // And the original design's in-stream flag among them (not an order).
    kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("flag")
        .data(br#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#.to_vec().into())
        .send()
        .await
        .unwrap();
    let out_bucket = unique_name("lake");
    provision::create_bucket(&rig.s3, &out_bucket)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = || {
        orders_consumer::Config::from_lookup(&|var: &str| match var {
            "REFERENCE_TABLE" => Some(rig.table.name.clone()),
            "CHANGE_BUCKET" => Some(rig.bucket.clone()),
            "OUTPUT_BUCKET" => Some(out_bucket.clone()),
            "FEED_POLL_INTERVAL_MS" => Some("1".to_owned()),
            "UNMATCHED" if hold => Some("hold".to_owned()),
            _ => None,
        })
        .unwrap()
    };
    // During the outage the consumer's output writes fail, through the proxy; its mapping gives
    // up after 2 retries and records the batch.
    let failures = failure_bucket(&rig.s3).await;
    let proxy = HttpFaultProxy::start(emulator().endpoint(), 2).await;
    proxy.set_rules(s3_write_outage());
    let consumer = orders_consumer::deployed(config(), &through_proxy(&rig.sdk, proxy.endpoint()));
    let mapping =
        KinesisShardMapping::new(kinesis.clone(), &stream, &stream_arn, &shard, bounded(2))
            .with_on_failure(S3Destination::new(
                rig.s3.clone(),
                &failures,
                "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer",
            ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = mapping.run(
        |event| {
            let consumer = &consumer;
            async move {
                Invocation::from_reported(consumer.handle(&event).await.map(|r| {
                    r.batch_item_failures
                        .into_iter()
                        .filter_map(|f| f.item_identifier)
                        .collect()
                }))
            }
        },
        stop_rx,
    );
    let (stats, ()) = tokio::join!(run, stop_after_records(&rig.s3, &failures, 1, &stop_tx));
    let stats = stats.unwrap();
    assert_eq!(stats.discarded, 1, "{stats:?}");
    assert!(
        output(&rig.s3, &out_bucket).await.is_empty(),
        "nothing reached the lake"
    );

    // After the outage: the redrive replays the batch through the orders consumer.
    let sdk = test_support::sdk_config().await;
    let functions = || {
        Deployed::with_sdk(
            feed_config(&rig.bucket),
            Ok(config()),
            &sdk,
            &sdk,
            OffsetClock::default(),
        )
    };
    let r = redriver(&rig.s3, &failures, functions());
    let started = std::time::Instant::now();
    let report = r.run().await.unwrap();
    let took = started.elapsed();
    print(&report);
    assert_eq!(report.count(Action::Redriven), 1);
    let first = output(&rig.s3, &out_bucket).await;
    println!(
        "orders: {} invocations ({} retries), {} batch(es) with {} records discarded; redriven in {took:?} into {} objects",
        stats.invocations,
        stats.retries,
        stats.discarded,
        stats.discarded_records,
        first.len()
    );
    let lines: Vec<&(String, String, String)> = first.values().flatten().collect();
    let sequences: BTreeSet<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    // In = out + rejected: the donuts (no such item) are dead letters, or held.
    let dead = first
        .iter()
        .filter(|(k, _)| k.starts_with("dead-letter/"))
        .map(|(_, l)| l.len())
        .sum::<usize>();
    let donuts = orders / dishes.len();
    let held = list_keys(&rig.s3, &out_bucket, "held/").await.len();
    if hold {
        assert_eq!((dead, held), (0, donuts), "the donuts held by the redrive");
    } else {
        assert_eq!((dead, held), (donuts, 0), "the donuts");
    }
    assert_eq!(lines.len() + held, orders, "every order once");
    assert_eq!(sequences.len() + held, orders, "no order twice");
    assert!(
        first
            .keys()
            .any(|k| k.contains("item=burger/priority=medium/")),
        "{first:?}"
    );

    // A second run is a no-op.
    let again = r.run().await.unwrap();
    assert_eq!(again.count(Action::AlreadyRedriven), 1);
    assert_eq!(output(&rig.s3, &out_bucket).await, first);

    // A run that crashed after the replay, before its marker: the next one replays the batch
    // again and overwrites the same objects, adding nothing.
    for marker in list_keys(&rig.s3, &failures, "redriven/").await {
        rig.s3
            .delete_object()
            .bucket(&failures)
            .key(marker)
            .send()
            .await
            .unwrap();
    }
    let replayed = redriver(&rig.s3, &failures, functions())
        .run()
        .await
        .unwrap();
    assert_eq!(replayed.count(Action::Redriven), 1);
    assert_eq!(output(&rig.s3, &out_bucket).await, first);
    if !hold {
        return;
    }
    // With hold: once donut's row exists, the sweep releases the held donuts into the
    // redriven batch's objects, each once; a replay after that (its marker lost again) decides
    // none of them again and duplicates nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.table.put("donut", "low").await;
    rig.deliver().await;
    let live = orders_consumer::deployed(config(), &sdk);
    let swept = live.sweep().await;
    assert_eq!(
        (swept.output.released, swept.failed.as_deref()),
        (donuts, None)
    );
    assert!(list_keys(&rig.s3, &out_bucket, &format!("held/{shard}/"))
        .await
        .is_empty());
    let released = output(&rig.s3, &out_bucket).await;
    let lines: Vec<&(String, String, String)> = released.values().flatten().collect();
    let sequences: BTreeSet<&str> = lines.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        (lines.len(), sequences.len()),
        (orders, orders),
        "every order once"
    );
    for marker in list_keys(&rig.s3, &failures, "redriven/").await {
        rig.s3
            .delete_object()
            .bucket(&failures)
            .key(marker)
            .send()
            .await
            .unwrap();
    }
    let replayed = redriver(&rig.s3, &failures, functions())
        .run()
        .await
        .unwrap();
    assert_eq!(replayed.count(Action::Redriven), 1);
    assert_eq!(
        output(&rig.s3, &out_bucket).await,
        released,
        "nothing written twice"
    );
}

#[tokio::test]
async fn the_redrive_names_the_files_it_writes_from_s3s_clock() {
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    // Against the emulator (same machine, same clock) the measured offset is at most what one
    // request's round trip and the Date header's whole second can make of it.
    let (sent, measured) = (
        chrono::Utc::now(),
        OffsetClock::measure(&rig.s3, &rig.bucket, "change_flags/.probe")
            .await
            .unwrap(),
    );
    let round_trip = chrono::Utc::now() - sent;
    assert!(
        measured.offset().abs() <= round_trip / 2 + chrono::Duration::seconds(1),
        "{:?} measured in {round_trip:?}",
        measured.offset()
    );
    // A machine an hour behind S3: the gap is named an hour later than this machine's clock.
    let sdk = test_support::sdk_config().await;
    let ahead = OffsetClock::new(chrono::Duration::hours(1));
    let failures = failure_bucket(&rig.s3).await;
    let key = "aws/lambda/x/shardId-1/2026/11/25/2026-11-25T09.14.49-garbled";
    rig.s3
        .put_object()
        .bucket(&failures)
        .key(key)
        .body(b"{".to_vec().into())
        .send()
        .await
        .unwrap();
    let before = chrono::Utc::now();
    let report = redriver(
        &rig.s3,
        &failures,
        Deployed::with_sdk(
            feed_config(&rig.bucket),
            Err("none".into()),
            &sdk,
            &sdk,
            ahead,
        ),
    )
    .run()
    .await
    .unwrap();
    let after = chrono::Utc::now();
    let gap = report.records[0].gap_key.clone().expect("a gap");
    let parsed =
        stream_refdata_protocol::ChangeKey::parse(test_support::FEED_PREFIX, &gap).unwrap();
    let hour = chrono::Duration::hours(1);
    // The key's time has whole milliseconds.
    assert!(
        parsed.time >= before + hour - chrono::Duration::milliseconds(1)
            && parsed.time <= after + hour,
        "{gap} is not an hour after this machine's time during the run ({before} to {after})"
    );
}

/// Every object under `prefix` of `bucket`: key and bytes.
async fn objects_under(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for key in list_keys(s3, bucket, prefix).await {
        let bytes = read_object(s3, bucket, &key).await;
        all.insert(key, bytes);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orders_batch_redriven_after_the_reference_changed_rewrites_its_first_attempts_bytes() {
    // GIVEN the table (burger medium), its feed, a snapshot of it (a Scan clear of the seed's
    // changes by more than the clock margin), and orders that arrived then
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    tokio::time::sleep(Duration::from_millis(6_100)).await;
    let compactor = feed_compactor::Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "WRITE_WINDOW_SECS" => Some("1".to_owned()),
        _ => None,
    })
    .unwrap();
    let run = feed_compactor::deployed(compactor, &rig.sdk)
        .run_once()
        .await;
    assert!(run.unwrap().published.is_some());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let arrived = chrono::Utc::now();
    let shard = "shardId-000000000000";
    let data: Vec<String> = ["burger", "pizza", "ramen", "burger"]
        .iter()
        .enumerate()
        .map(|(i, dish)| serde_json::json!({"dish": dish, "cost": 5, "customer_id": i}).to_string())
        .collect();
    let seq = |i: usize| format!("4959033827149025660855969253836157109592157598913{i:07}");
    // (the event a mapping delivers, as the replay builds it)
    let event = redrive::replay::ArchivedBatch {
        shard: shard.to_owned(),
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/Orders".to_owned(),
        records: (data.iter().enumerate())
            .map(|(i, d)| redrive::replay::ArchivedRecord {
                sequence_number: seq(i),
                partition_key: "1".to_owned(),
                data: d.clone().into_bytes(),
                arrival_ms: arrived.timestamp_millis(),
            })
            .collect(),
    }
    .event("us-east-1");
    let out = unique_name("lake");
    provision::create_bucket(&rig.s3, &out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The function's variables: nothing about as-of (live, the default).
    let vars = |var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some(out.clone()),
        "WRITE_WINDOW_SECS" => Some("1".to_owned()),
        "AS_OF_SNAPSHOT_SETTLE_SECS" => Some("1".to_owned()),
        _ => None,
    };
    // AND burger's priority changed to high after they arrived (more than the clock margin
    // after the snapshot's Scan)
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    rig.table.set_priority("burger", "high").await;
    rig.deliver().await.unwrap();

    // WHEN a first attempt enriches the batch as of arrival and writes it, then the batch is
    // discarded all the same (its record lands in the failure bucket), its output is lost,
    // burger changes again, and the redrive runs with the function's own variables
    let as_of = |var: &str| match var {
        "ENRICH_AS_OF" => Some("arrival".to_owned()),
        other => vars(other),
    };
    let first_attempt = orders_consumer::deployed(
        orders_consumer::Config::from_lookup(&as_of).unwrap(),
        &rig.sdk,
    );
    let response = first_attempt.handle(&event).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let first = objects_under(&rig.s3, &out, "").await;
    assert!(
        first
            .keys()
            .any(|k| k.starts_with("enriched/item=burger/priority=medium/")),
        "{:?}",
        first.keys()
    );
    let failures = failure_bucket(&rig.s3).await;
    let destination = S3Destination::new(
        rig.s3.clone(),
        &failures,
        "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer",
    );
    let info = event_source_mappings::BatchInfo {
        stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/Orders".into(),
        shard_id: shard.into(),
        start_sequence_number: seq(0),
        end_sequence_number: seq(data.len() - 1),
        first_arrival: Some(arrived),
        last_arrival: Some(arrived),
        batch_size: data.len(),
        bootstrap_servers: None,
    };
    destination
        .send(&event_source_mappings::DiscardedBatch {
            kind: event_source_mappings::StreamKind::Kinesis,
            info: &info,
            payload: &event,
            last: &Invocation::Error("Task timed out".into()),
            invoke_count: 3,
        })
        .await
        .unwrap();
    for key in first.keys() {
        rig.s3
            .delete_object()
            .bucket(&out)
            .key(key)
            .send()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    rig.table.set_priority("burger", "low").await;
    rig.deliver().await.unwrap();
    let (config, why_live) = redrive::replay_config(&vars, false).unwrap();
    assert!(why_live.is_none() && config.as_of.is_some());
    let sdk = test_support::sdk_config().await;
    let functions = Deployed::with_sdk(
        feed_config(&rig.bucket),
        Ok(config),
        &sdk,
        &sdk,
        OffsetClock::default(),
    );
    let report = redriver(&rig.s3, &failures, functions).run().await.unwrap();
    print(&report);
    assert_eq!(report.count(Action::Redriven), 1);

    // THEN the redrive wrote byte for byte what the first attempt wrote (burger in medium,
    // as it was when the orders arrived; the dish without a row dead-lettered alike)
    let again = objects_under(&rig.s3, &out, "").await;
    assert_eq!(
        again.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    for (key, body) in &first {
        assert_eq!(
            String::from_utf8_lossy(&again[key]),
            String::from_utf8_lossy(body),
            "{key}"
        );
    }
    // AND with --live it would not have (burger is low now)
    let (live, _) = redrive::replay_config(&vars, true).unwrap();
    assert!(live.as_of.is_none());
}
