//! As-of enrichment (`ENRICH_AS_OF=arrival`) through the real orders-consumer binary, on the
//! emulator, with the real change-handler writing the feed and the real feed-compactor its
//! snapshot: a batch is enriched with the reference as it was when its orders arrived, even
//! though the table changed before the batch ran; retried by a fresh process after another
//! change, it writes the same bytes; a gap file in the window refuses rather than guesses.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use base64::Engine;
use serde_json::{json, Value};
use test_support::{run_function, unique_name, FeedRig};

const SHARD: &str = "shardId-000000000000";

fn seq(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{n:07}")
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A Kinesis event of shard 0: these records' data (sequence numbers from `first`), all
/// arrived at `arrival_ms`.
fn kinesis_event(first: u64, arrival_ms: i64, data: &[String]) -> Value {
    let records: Vec<Value> = (data.iter().enumerate())
        .map(|(i, data)| {
            let seq = seq(first + i as u64);
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": arrival_ms as f64 / 1000.0
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{SHARD}:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/orders-consumer",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The same records as an MSK event of `orders-0` (offsets from `first`), each with `timestamp`
/// `arrival_ms` (the as-of time of a Kafka record).
fn kafka_event(first: i64, arrival_ms: i64, data: &[String]) -> Value {
    let records: Vec<Value> = (data.iter().enumerate())
        .map(|(i, data)| {
            json!({
                "topic": "orders",
                "partition": 0,
                "offset": first + i as i64,
                "timestamp": arrival_ms,
                "timestampType": "CREATE_TIME",
                "key": null,
                "value": base64::engine::general_purpose::STANDARD.encode(data),
                "headers": []
            })
        })
        .collect();
    json!({
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders/uuid-1",
        "bootstrapServers": "b-1.orders.kafka.us-east-1.amazonaws.com:9098",
        "records": { "orders-0": records }
    })
}

fn order(dish: &str, customer: u64) -> String {
    json!({"dish": dish, "cost": 5, "customer_id": customer}).to_string()
}

/// Runs the binary (as of arrival, W = 1 s) on `events`, consuming `rig`'s table and feed and
/// writing to `out`, until it has answered them all: its answers.
async fn run(rig: &FeedRig, out: &str, events: Vec<Value>) -> Vec<Value> {
    let vars = [
        ("AWS_LAMBDA_FUNCTION_NAME", "stack-orders-consumer"),
        ("REFERENCE_TABLE", rig.table.name.as_str()),
        ("CHANGE_BUCKET", rig.bucket.as_str()),
        ("OUTPUT_BUCKET", out),
        ("ENRICH_AS_OF", "arrival"),
        ("WRITE_WINDOW_SECS", "1"),
        // (the snapshot a second before the orders is their base: its PUT is long done)
        ("AS_OF_SNAPSHOT_SETTLE_SECS", "1"),
    ];
    run_function(env!("CARGO_BIN_EXE_orders-consumer"), &vars, events).await
}

/// Every object of `bucket`: key and bytes.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, Vec<u8>> {
    let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut all = BTreeMap::new();
    for key in listed.contents().iter().filter_map(|o| o.key()) {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes().to_vec();
        all.insert(key.to_owned(), bytes);
    }
    all
}

/// The lines of every object under `prefix` in `objects`, with their object's key.
fn lines(objects: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    for (key, body) in objects.range(prefix.to_owned()..) {
        if !key.starts_with(prefix) {
            break;
        }
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            all.push((key.clone(), serde_json::from_slice(line).unwrap()));
        }
    }
    all
}

/// A feed snapshot of `rig`'s table, as the feed-compactor publishes it.
async fn publish_snapshot(rig: &FeedRig) {
    let config = feed_compactor::Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        // (the consumers' W: a snapshot's W widens their look-back, and their wait)
        "WRITE_WINDOW_SECS" => Some("1".to_owned()),
        _ => None,
    })
    .expect("configuration");
    let mut compactor = feed_compactor::deployed(config, &rig.sdk);
    let run = compactor.run_once().await.expect("the compactor runs");
    assert!(run.published.is_some(), "{run:?}");
}

/// Sleeps past the end of the current second (changes are dated to the second).
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1_100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_enriched_as_of_its_arrival_and_a_retry_after_another_change_writes_the_same_bytes(
) {
    // GIVEN the original's table (burger medium), its feed and a snapshot of it (its Scan
    // more than the clock margin after the seed's changes, or it may or may not hold them:
    // every answer would be unknown until the margin passed)
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    tokio::time::sleep(Duration::from_millis(6_100)).await;
    publish_snapshot(&rig).await;
    next_second().await;
    // AND orders that arrived then: burger, pizza, a dish without a row, a record that is not
    // an order
    let arrived = now_ms();
    let records = [
        order("burger", 1),
        order("pizza", 2),
        order("ramen", 3),
        "not json".to_owned(),
        order("burger", 5),
    ];
    let batch = kinesis_event(1, arrived, &records);
    // (and the same orders on Kafka: as of each record's timestamp)
    let kafka = kafka_event(40, arrived, &records);
    // AND burger's priority changed to high after they arrived, before the batch runs (more
    // than the clock margin after the snapshot's Scan, or the Scan may or may not have seen
    // it: unknown before it)
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    rig.table.set_priority("burger", "high").await;
    rig.deliver().await.expect("the update's stream record");

    // WHEN the binary enriches the batch as of its arrival
    let out = unique_name("as-of-out");
    rig.s3.create_bucket().bucket(&out).send().await.unwrap();
    let answers = run(&rig, &out, vec![batch.clone(), kafka.clone()]).await;
    assert_eq!(answers, vec![json!({"batchItemFailures": []}); 2]);

    // THEN burger is in medium, as it was when the orders arrived; each line says as of when
    let first = objects(&rig.s3, &out).await;
    let all_enriched = lines(&first, "enriched/");
    let on = |all: &[(String, Value)], stream: &str| -> Vec<(String, Value)> {
        (all.iter())
            .filter(|(key, _)| key.contains(stream))
            .cloned()
            .collect()
    };
    let enriched = on(&all_enriched, SHARD);
    let burgers: Vec<&(String, Value)> = (enriched.iter())
        .filter(|(_, l)| l["item"] == "burger")
        .collect();
    assert_eq!(
        burgers.len(),
        2,
        "{enriched:?} {:?}",
        lines(&first, "dead-letter/")
    );
    for (key, line) in &burgers {
        assert!(
            key.starts_with("enriched/item=burger/priority=medium/"),
            "{key}"
        );
        assert_eq!(line["as_of"], json!(arrived), "{line}");
        assert!(line.get("provisional").is_none(), "{line}");
    }
    assert_eq!(enriched.len(), 3, "{enriched:?}");
    // AND on Kafka the same, as of the records' timestamp, under the partition's names
    let on_kafka = on(&all_enriched, "orders-0-40.jsonl");
    assert_eq!(on_kafka.len(), 3, "{all_enriched:?}");
    for (key, line) in on_kafka.iter().filter(|(_, l)| l["item"] == "burger") {
        assert!(
            key.starts_with("enriched/item=burger/priority=medium/"),
            "{key}"
        );
        assert_eq!(line["as_of"], json!(arrived), "{line}");
    }
    // AND the dish without a row and the record that is not an order are dead-lettered
    let dead = on(&lines(&first, "dead-letter/"), SHARD);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead
        .iter()
        .any(|(_, l)| (l["reason"].as_str().unwrap()).contains("ramen")));

    // WHEN burger changes again (low) and a fresh process retries the batch
    next_second().await;
    rig.table.set_priority("burger", "low").await;
    rig.deliver().await.expect("the second update");
    let answers = run(&rig, &out, vec![batch.clone(), kafka.clone()]).await;
    assert_eq!(answers, vec![json!({"batchItemFailures": []}); 2]);

    // THEN every object is byte for byte what the first attempt wrote (Kafka's too)
    let again = objects(&rig.s3, &out).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_window_dead_letters_the_orders_with_why_rather_than_guess() {
    // GIVEN the table, its feed and a snapshot, orders that arrived after it, and a gap file
    // the producers wrote after them (changes were lost)
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    publish_snapshot(&rig).await;
    next_second().await;
    let batch = kinesis_event(1, now_ms(), &[order("burger", 1), order("pizza", 2)]);
    let writer = feed_writer::FeedWriter::new(
        test_support::feed_config(&rig.bucket),
        stream_refdata_aws::S3Store::new(stream_refdata_aws::s3_client(&rig.sdk)),
        stream_refdata_aws::OffsetClock::default(),
        "as-of test",
    );
    writer
        .write_gap("stream records discarded", "as-of-test")
        .await
        .expect("the gap file");

    // WHEN the binary enriches the batch as of its arrival
    let out = unique_name("as-of-gap");
    rig.s3.create_bucket().bucket(&out).send().await.unwrap();
    let answers = run(&rig, &out, vec![batch]).await;

    // THEN nothing is enriched: both orders are dead-lettered, saying the window refuses and
    // why, and the batch is not failed (a retry would answer the same)
    assert_eq!(answers, [json!({"batchItemFailures": []})]);
    let written = objects(&rig.s3, &out).await;
    assert!(lines(&written, "enriched/").is_empty());
    let dead = lines(&written, "dead-letter/");
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (_, line) in &dead {
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains("refuses") && reason.contains("stream records discarded"),
            "{reason}"
        );
    }
}
