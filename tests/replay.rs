//! `orders-replay` on the emulator: a day of orders replayed as of each one's arrival, with the
//! reference changing during the day (the real change-handler writing those changes from
//! stream records dated through the day, the real feed-compactor's snapshot at its start);
//! every order gets the value its dish had when it arrived, and a second run writes the same
//! bytes. And the same from a Kinesis stream read from a timestamp.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::StreamViewType;
use redrive::replay::{
    replay, replay_config, ArchivedBatch, ArchivedRecord, KinesisArchive, S3Archive,
};
use serde_json::{json, Value};
use stream_refdata_aws::OffsetClock;
use test_support::{create_stream, list_keys, read_object, unique_name, FeedRig};

const HOUR: i64 = 3_600_000;

/// The day's reference: (hours after the start, event, dish, priority). The model every order
/// is checked against.
const CHANGES: [(i64, &str, &str, Option<&str>); 5] = [
    (1, "INSERT", "burger", Some("medium")),
    (2, "INSERT", "pizza", Some("low")),
    (6, "MODIFY", "burger", Some("high")),
    (12, "REMOVE", "pizza", None),
    (18, "MODIFY", "burger", Some("low")),
];

/// What `dish` was at `t_ms` (`start`: the day's start) by the model.
fn model(dish: &str, start: i64, t_ms: i64) -> Option<&'static str> {
    let mut value = None;
    for (hour, _, d, priority) in CHANGES {
        // (a change counts from the start of its second)
        if d == dish && start + hour * HOUR <= t_ms {
            value = priority;
        }
    }
    value
}

/// A DynamoDB stream event as AWS delivers it, of the day's changes dated `start` + hours.
fn stream_event(stream_arn: &str, start: i64) -> Value {
    let records: Vec<Value> = (CHANGES.iter().enumerate())
        .map(|(n, (hour, event, dish, priority))| {
            let keys = json!({"item": {"S": dish}, "price": {"N": "10"}});
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": ((start + hour * HOUR) / 1000) as f64,
                "Keys": keys,
                "SequenceNumber": format!("{}", 100_000_000_000_000_000_000u128 + n as u128),
                "SizeBytes": 64,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            });
            if let Some(p) = priority {
                dynamodb["NewImage"] =
                    json!({"item": {"S": dish}, "price": {"N": "10"}, "priority": {"S": p}});
            }
            json!({
                "eventID": format!("e{n}"),
                "eventName": event,
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": dynamodb,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Every object under `prefix` of `bucket`.
async fn objects(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for key in list_keys(s3, bucket, prefix).await {
        let body = read_object(s3, bucket, &key).await;
        all.insert(key, body);
    }
    all
}

/// (customer, dish, priority or `None` when dead-lettered, as_of) of every line under `prefix`.
fn outcomes(objects: &BTreeMap<String, Vec<u8>>) -> BTreeMap<u64, (String, Option<String>, i64)> {
    let mut all = BTreeMap::new();
    for body in objects.values() {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: Value = serde_json::from_slice(line).unwrap();
            let (order, priority) = match line.get("data") {
                Some(data) => (serde_json::from_str(data.as_str().unwrap()).unwrap(), None),
                None => (line.clone(), line["priority"].as_str().map(str::to_owned)),
            };
            let order: Value = order;
            let customer = order["customer_id"].as_u64().unwrap();
            let dish = order.get("dish").or(order.get("item")).unwrap();
            let as_of = line["as_of"].as_i64().unwrap();
            all.insert(
                customer,
                (dish.as_str().unwrap().to_owned(), priority, as_of),
            );
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_replayed_as_of_each_orders_arrival_gets_the_value_it_had_then_and_the_same_bytes_twice(
) {
    // GIVEN an empty table whose snapshot the feed-compactor published two days ago (its clock
    // set back), then a day of changes (from stream records dated through that day, through the
    // real change-handler)
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    let start = chrono::Utc::now().timestamp_millis() - 48 * HOUR;
    let compactor = feed_compactor::Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        // (W 1 s here and in the consumer: orders put now are final after ~7 s, not ~26)
        "WRITE_WINDOW_SECS" => Some("1".to_owned()),
        _ => None,
    })
    .unwrap();
    let back = chrono::Duration::milliseconds(chrono::Utc::now().timestamp_millis() - start);
    let mut compactor =
        feed_compactor::deployed_with_clock(compactor, &rig.sdk, OffsetClock::new(-back));
    assert!(compactor.run_once().await.unwrap().published.is_some());
    let response = rig
        .handler
        .handle(&stream_event(&rig.table.stream_arn, start), "req")
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    // AND the day's orders archived as Kinesis events in S3 (one every 30 minutes, burger and
    // pizza in turn, an event per 6 hours)
    let archive = unique_name("archive");
    rig.s3
        .create_bucket()
        .bucket(&archive)
        .send()
        .await
        .unwrap();
    let shard = "shardId-000000000000";
    let mut customer = 0u64;
    for part in 0..4 {
        let records = (0..12)
            .map(|i| {
                customer += 1;
                let arrival = start + (part * 12 + i) * HOUR / 2 + 7_000;
                let dish = if customer.is_multiple_of(2) {
                    "pizza"
                } else {
                    "burger"
                };
                let data = json!({"dish": dish, "cost": 5, "customer_id": customer}).to_string();
                ArchivedRecord {
                    sequence_number: format!(
                        "49590338271490256608559692538361571095921575989{customer:09}"
                    ),
                    partition_key: "1".to_owned(),
                    data: data.into_bytes(),
                    arrival_ms: arrival,
                }
            })
            .collect();
        // (the archive holds events as a mapping delivers them)
        let batch = ArchivedBatch {
            shard: shard.to_owned(),
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/Orders".to_owned(),
            records,
        };
        let body = batch.event("us-east-1").to_string();
        rig.s3
            .put_object()
            .bucket(&archive)
            .key(format!("orders/part-{part}.json"))
            .body(body.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let out = unique_name("lake");
    rig.s3.create_bucket().bucket(&out).send().await.unwrap();
    let vars = |var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some(out.clone()),
        // (the function's own: replayed orders are dead-lettered, not held)
        "UNMATCHED" => Some("hold".to_owned()),
        "WRITE_WINDOW_SECS" => Some("1".to_owned()),
        "AS_OF_SNAPSHOT_SETTLE_SECS" => Some("1".to_owned()),
        _ => None,
    };
    let config = replay_config(&vars, "replay/").unwrap();
    assert!(config.as_of.is_some() && config.hold.is_none());

    // WHEN the day is replayed, twice (the table changed meanwhile: burger is "none" now)
    let consumer = orders_consumer::deployed(config.clone(), &rig.sdk);
    let read = |from: i64, to: i64| S3Archive::new(rig.s3.clone(), &archive, "orders/", from, to);
    let mut batches = 0;
    let report = replay(
        &mut read(start, start + 24 * HOUR),
        &consumer,
        "us-east-1",
        |_, _| batches += 1,
    )
    .await
    .unwrap();
    assert_eq!((report.batches, report.records, batches), (4, 48, 4));
    let first = objects(&rig.s3, &out, "replay/").await;
    rig.table.put("burger", "none").await;
    let fresh = orders_consumer::deployed(config, &rig.sdk);
    let again = replay(
        &mut read(start, start + 24 * HOUR),
        &fresh,
        "us-east-1",
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(again, report);

    // THEN every order has the value its dish had when it arrived (dead-lettered when it had
    // none), as the model says
    let got = outcomes(&first);
    assert_eq!(got.len(), 48);
    for (customer, (dish, priority, as_of)) in &got {
        assert_eq!(
            priority.as_deref(),
            model(dish, start, *as_of),
            "customer {customer}: {dish} at {} h",
            (as_of - start) as f64 / HOUR as f64
        );
    }
    assert_eq!(
        report.enriched + report.dead_lettered,
        48,
        "in = out + rejected: {report:?}"
    );
    // AND the second run wrote the same bytes
    let second = objects(&rig.s3, &out, "replay/").await;
    assert_eq!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    for (key, body) in &first {
        assert!(second[key] == *body, "{key}");
    }

    // AND from a Kinesis stream read from a timestamp: orders put now get the day's last values
    let kinesis = aws_sdk_kinesis::Client::new(&rig.sdk);
    let stream = create_stream(&kinesis, 1).await;
    let before = chrono::Utc::now().timestamp_millis() - 1_000;
    for (n, dish) in ["burger", "pizza", "burger"].iter().enumerate() {
        let data = json!({"dish": dish, "cost": 5, "customer_id": 1000 + n}).to_string();
        kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key("1")
            .data(data.into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let after = chrono::Utc::now().timestamp_millis() + 1_000;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut archive = KinesisArchive::new(kinesis.clone(), &stream, before, after, 2);
        let consumer =
            orders_consumer::deployed(replay_config(&vars, "from-stream/").unwrap(), &rig.sdk);
        let report = replay(&mut archive, &consumer, "us-east-1", |_, _| {})
            .await
            .unwrap();
        assert_eq!((report.batches, report.records), (2, 3), "{report:?}");
        runs.push(objects(&rig.s3, &out, "from-stream/").await);
    }
    assert_eq!(runs[0], runs[1]);
    let got = outcomes(&runs[0]);
    assert_eq!(got[&1000].1.as_deref(), Some("low"));
    assert_eq!(got[&1001].1, None, "pizza was removed");
}
