//! The change-handler with 20% of its S3 writes failing (500s, `SlowDown`, connection resets)
//! behind an HTTP fault proxy, driven by an event source mapping with unbounded retries: every
//! stream record ends up in at least one change file, a file written twice by a retry holds the
//! same changes, and a consumer applies each change once and equals a fresh Scan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use aws_sdk_dynamodb::types::StreamViewType;
use event_source_mappings::{DynamoDbStreamMapping, Invocation, MappingConfig};
use stream_refdata_protocol::StreamChange;
use test_support::{emulator, through_proxy, Fault, FeedRig, HttpFaultProxy, Rule};
use tokio::sync::watch;

use crate::common::{consumer, table_view, view};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_percent_s3_faults_lose_no_change() {
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    let table = &rig.table;
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..200 {
        let item = format!("item-{:02}", rng.usize(..15));
        if rng.u8(..10) == 0 {
            table.delete(&item).await;
        } else {
            table.put(&item, &format!("p{n}")).await;
        }
    }
    let records = rig.stream_records().await;
    let total = records.len();

    // The change-handler writes through the proxy: 20% of its PutObject calls fail.
    let proxy = HttpFaultProxy::start(emulator().endpoint(), 42).await;
    proxy.set_rules(vec![
        Rule {
            service: "s3",
            operation: "PutObject",
            fault: Fault::ServerError,
            rate: 0.07,
        },
        Rule {
            service: "s3",
            operation: "PutObject",
            fault: Fault::Throttle,
            rate: 0.07,
        },
        Rule {
            service: "s3",
            operation: "PutObject",
            fault: Fault::Reset,
            rate: 0.07,
        },
    ]);
    // No SDK retries: every fault reaches the handler, so the mapping's retries are exercised.
    let handler = rig.handler_through(&through_proxy(&rig.sdk, proxy.endpoint()));
    let mapping = DynamoDbStreamMapping::new(
        rig.streams.clone(),
        table.stream_arn.clone(),
        MappingConfig {
            batch_size: 10,
            poll_interval: Duration::from_millis(20),
            trim_horizon: true,
            maximum_retry_attempts: None,
        },
    );
    let acked = AtomicUsize::new(0);
    let reported = AtomicUsize::new(0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = mapping.run(
        |event: Value| {
            let (h, acked, reported, stop) = (&handler, &acked, &reported, &stop_tx);
            async move {
                let n = event["Records"].as_array().map_or(0, Vec::len);
                match h.handle(&event, "req").await {
                    Ok(r) if r.batch_item_failures.is_empty() => {
                        if acked.fetch_add(n, Ordering::SeqCst) + n >= total {
                            let _ = stop.send(true);
                        }
                        Invocation::Success
                    }
                    Ok(r) => {
                        reported.fetch_add(1, Ordering::SeqCst);
                        Invocation::PartialFailure(
                            r.batch_item_failures
                                .into_iter()
                                .filter_map(|f| f.item_identifier)
                                .collect(),
                        )
                    }
                    Err(e) => Invocation::Error(e.to_string()),
                }
            }
        },
        stop_rx,
    );
    let stats = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the mapping finishes")
        .unwrap();

    // Every stream record is in at least one change file; duplicates are identical.
    let mut seen: HashMap<String, StreamChange> = HashMap::new();
    let mut files = 0;
    let mut duplicates = 0;
    for (_, file) in rig.change_files().await {
        files += 1;
        for change in file.changes {
            let seq = change.sequence_number.to_string();
            if let Some(earlier) = seen.get(&seq) {
                duplicates += 1;
                assert_eq!(
                    (earlier.event_id.as_str(), &earlier.keys, &earlier.new_image),
                    (change.event_id.as_str(), &change.keys, &change.new_image),
                    "a retried write holds the same change"
                );
            }
            seen.insert(seq, change);
        }
    }
    let missing: Vec<&str> = records
        .iter()
        .filter_map(|r| r.dynamodb().and_then(|d| d.sequence_number()))
        .filter(|s| !seen.contains_key(*s))
        .collect();
    println!(
        "{total} stream records; faults injected {}; {} invocations ({} retries, {} reported failures); {files} change files; {duplicates} changes written twice; {} lost",
        proxy.injected(),
        stats.invocations,
        stats.retries,
        reported.load(Ordering::SeqCst),
        missing.len()
    );
    println!("proxy: {:?}", proxy.counts());
    assert!(proxy.injected() > 0, "faults were injected");
    assert!(stats.retries > 0, "the mapping retried reported batches");
    assert!(missing.is_empty(), "lost: {missing:?}");

    // A consumer applies each change once and ends equal to the table.
    let mut consumer = consumer(&rig.sdk, &table.name, &rig.bucket);
    consumer.refresh().await;
    consumer.refresh().await;
    let items = (0..15).map(|k| format!("item-{k:02}"));
    assert_eq!(
        view(&consumer, items),
        table_view(&table.ddb, &table.name).await
    );
}

/// The s3-event-handler with a third of its Kinesis calls throttled: messages that could not put
/// every flag are reported and redelivered, until every shard has the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_throttling_still_gets_every_flag_to_every_shard() {
    use test_support::{records_per_shard, FlagRig};

    let rig = FlagRig::new().await;
    let (reference, kinesis, stream) = (&rig.reference, &rig.kinesis, &rig.stream);
    let proxy = HttpFaultProxy::start(emulator().endpoint(), 9).await;
    proxy.set_rules(vec![Rule {
        service: "kinesis",
        operation: "PutRecords",
        fault: Fault::Throttle,
        rate: 0.34,
    }]);
    let handler = rig.handler_through(&through_proxy(&rig.sdk, proxy.endpoint()));
    let objects = 12;
    for i in 0..objects {
        reference
            .put(
                &format!("reference/part-{i:02}.csv"),
                b"item,priority\nburger,high\n",
            )
            .await;
    }
    let (mut deliveries, mut reported) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Some((event, receipts)) = reference.receive().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages keep failing"
        );
        deliveries += 1;
        let response = handler.handle(&event, "req").await.unwrap();
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        reported += failed.len();
        // Acknowledge what succeeded; the queue redelivers the rest (after the visibility timeout,
        // here: made visible again at once).
        let messages: Vec<Value> = event["Records"].as_array().unwrap().clone();
        for (m, receipt) in messages.iter().zip(&receipts) {
            let id = m["messageId"].as_str().unwrap();
            if failed.iter().any(|f| f == id) {
                reference
                    .sqs
                    .change_message_visibility()
                    .queue_url(&reference.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                reference.ack(std::slice::from_ref(receipt)).await;
            }
        }
    }
    let shards = records_per_shard(kinesis, stream).await;
    println!(
        "{objects} objects changed; {} PutRecords throttled; {deliveries} deliveries, {reported} messages reported and redelivered",
        proxy.injected()
    );
    assert!(
        proxy.injected() > 0 && reported > 0,
        "throttling happened and was reported"
    );
    for (shard, records) in shards {
        let keys: std::collections::BTreeSet<String> = records
            .iter()
            .filter_map(|r| stream_refdata_protocol::ChangeFlag::parse(r))
            .map(|f| f.change.key)
            .collect();
        assert_eq!(
            keys.len(),
            objects,
            "{shard} has flags for {} of {objects} objects",
            keys.len()
        );
    }
}

/// A consumer whose S3 and DynamoDB calls fail half the time (throttling, 500s, resets) keeps
/// enriching with its last good snapshot and reports its staleness; once the faults stop it
/// converges to the table's true state at its next micro-batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_under_faults_serves_the_last_snapshot_and_converges_when_they_stop() {
    // The seed inserts are delivered: the feed holds one change file.
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let table = &rig.table;

    let proxy = HttpFaultProxy::start(emulator().endpoint(), 5).await;
    let via_proxy = through_proxy(&rig.sdk, proxy.endpoint());
    let mut consumer = consumer(&via_proxy, &table.name, &rig.bucket);
    consumer.refresh().await;
    consumer.refresh().await;
    assert_eq!(consumer.snapshot().len(), 5);

    proxy.set_rules(vec![
        Rule {
            service: "s3",
            operation: "*",
            fault: Fault::Throttle,
            rate: 0.2,
        },
        Rule {
            service: "s3",
            operation: "*",
            fault: Fault::Reset,
            rate: 0.2,
        },
        Rule {
            service: "s3",
            operation: "*",
            fault: Fault::ServerError,
            rate: 0.2,
        },
        Rule {
            service: "dynamodb",
            operation: "*",
            fault: Fault::Throttle,
            rate: 0.5,
        },
        Rule {
            service: "*",
            operation: "*",
            fault: Fault::Latency(Duration::from_millis(150)),
            rate: 0.2,
        },
    ]);
    let mut rng = fastrand::Rng::with_seed(3);
    let (mut failed, mut served) = (0, 0);
    for n in 0..30 {
        let item = ["salad", "pizza", "burger", "pasta", "ice-cream", "tacos"][rng.usize(..6)];
        if rng.u8(..6) == 0 {
            table.delete(item).await;
        } else {
            table.put(item, &format!("p{n}")).await;
        }
        rig.deliver().await;
        let (_, report) = consumer
            .process_batch(vec!["burger", "pizza"], |d| {
                stream_refdata::Classified::Data((*d).to_owned())
            })
            .await;
        failed += usize::from(report.refreshes[0].error.is_some());
        served += report.enriched + report.rejected;
    }
    let during = consumer.metrics();
    println!(
        "faults injected {}; {failed} of 30 micro-batches saw a failed refresh; refresh errors {}; every record answered ({served} of 60)",
        proxy.injected(),
        during.refresh_errors
    );
    assert!(
        failed > 0 && during.refresh_errors > 0,
        "faults reached the consumer"
    );
    assert_eq!(
        served, 60,
        "the consumer kept answering with its last good snapshot"
    );
    assert!(during.staleness.is_some());

    proxy.set_rules(vec![]);
    consumer.refresh().await; // one micro-batch after the faults stop
    let items = ["salad", "pizza", "burger", "pasta", "ice-cream", "tacos"].map(String::from);
    assert_eq!(
        view(&consumer, items),
        table_view(&table.ddb, &table.name).await,
        "converged one micro-batch after the faults stopped"
    );
    assert!(consumer.last_error().is_none());
}
