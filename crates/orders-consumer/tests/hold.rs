//! Held orders (`UNMATCHED=hold`) through the real orders-consumer binary, on the emulator, with
//! the real change-handler writing the feed: a dish's orders arrive before its row, with an
//! update and a delete of other dishes in between; two consumers of the same stream (each with
//! its own output bucket) hold and release their own; one of them is killed while it releases
//! and its batch is retried by a fresh process; the last held order is released by the scheduled
//! sweep, with no batch. Every order ends exactly once, and a released order carries the version
//! of the row that resolved it.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use base64::Engine;
use serde_json::{json, Value};
use test_support::{emulator, unique_name, FeedRig, RuntimeApiStub};

const SHARD: &str = "shardId-000000000000";

fn seq(n: u64) -> String {
    format!("4959033827149025660855969253836157109592157598913{n:07}")
}

/// A Kinesis event of shard 0 whose records are these orders (dish, customer), sequence
/// numbers from `first`.
fn kinesis_event(first: u64, orders: &[(&str, u64)]) -> Value {
    let records: Vec<Value> = orders
        .iter()
        .enumerate()
        .map(|(i, (dish, customer))| {
            let seq = seq(first + i as u64);
            let data = json!({"dish": dish, "cost": 5, "customer_id": customer}).to_string();
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": 1795650067.123
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

/// The binary, serving `api`'s events, consuming `rig`'s table and feed, writing to `out`.
fn spawn(api: &RuntimeApiStub, rig: &FeedRig, out: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_orders-consumer"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "stack-orders-consumer")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_ENDPOINT_URL", emulator().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("REFERENCE_TABLE", &rig.table.name)
        .env("CHANGE_BUCKET", &rig.bucket)
        .env("OUTPUT_BUCKET", out)
        .env("UNMATCHED", "hold")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the function runs")
}

/// Every key of `bucket` under `prefix`.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    (listed.contents().iter())
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Every output line of `bucket` with the key of its object, by customer id.
async fn lines(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<u64, Vec<(String, Value)>> {
    let mut by_customer: BTreeMap<u64, Vec<(String, Value)>> = BTreeMap::new();
    for key in keys(s3, bucket, "enriched/").await {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: Value = serde_json::from_slice(line).unwrap();
            let customer = line["customer_id"].as_u64().unwrap();
            by_customer
                .entry(customer)
                .or_default()
                .push((key.clone(), line));
        }
    }
    by_customer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_before_their_row_are_held_and_released_once_through_the_binary_by_each_consumer_even_when_killed(
) {
    // GIVEN the original's table, its feed, and two consumers' output buckets
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let (out_a, out_b) = (unique_name("out-a"), unique_name("out-b"));
    for bucket in [&out_a, &out_b] {
        rig.s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    // The first batch: 200 ramen orders (no row yet) among a burger and a pizza.
    const RAMEN: u64 = 200;
    let mut first: Vec<(&str, u64)> = vec![("burger", 1), ("pizza", 2)];
    first.extend((0..RAMEN).map(|i| ("ramen", 100 + i)));
    let batch_1 = kinesis_event(1, &first);
    // The second: a burger (after its update), a pizza (after its row is deleted: held), and a
    // ramen (after its row exists: enriched at once).
    let batch_2 = kinesis_event(1_000, &[("burger", 3), ("pizza", 4), ("ramen", 5)]);

    // WHEN both consumers take the first batch
    let (api_a, api_b) = (
        RuntimeApiStub::start_open().await,
        RuntimeApiStub::start_open().await,
    );
    api_a.push(batch_1.clone());
    api_b.push(batch_1);
    let mut a = spawn(&api_a, &rig, &out_a);
    let b = spawn(&api_b, &rig, &out_b);
    api_a.wait_for_answers(1, Duration::from_secs(120)).await;
    api_b.wait_for_answers(1, Duration::from_secs(120)).await;
    for bucket in [&out_a, &out_b] {
        let held = keys(&rig.s3, bucket, &format!("held/{SHARD}/")).await;
        assert_eq!(held.len(), RAMEN as usize, "every ramen held in {bucket}");
    }
    // AND burger is updated, pizza deleted and ramen's row created (low), through the feed
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.table.set_priority("burger", "high").await;
    rig.table.delete("pizza").await;
    rig.table.put("ramen", "low").await;
    rig.deliver().await;
    // AND both take the second batch; consumer A is killed while it releases (once its release
    // is in the output, before all its held objects are gone), and a fresh process takes the
    // batch again, as Lambda retries a batch whose invocation died
    api_b.push(batch_2.clone());
    api_b.close();
    api_a.push(batch_2.clone());
    let released_object = format!("enriched/item=ramen/priority=low/{SHARD}-{}.jsonl", seq(1));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while keys(&rig.s3, &out_a, &released_object).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no release in A");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.start_kill().unwrap();
    a.wait().await.unwrap();
    // (the batch's pizza is held before its output: the rest are ramen not ended yet)
    let held_at_kill = keys(&rig.s3, &out_a, &format!("held/{SHARD}/"))
        .await
        .len()
        .saturating_sub(1);
    let retry = RuntimeApiStub::start_with_events(vec![batch_2]).await;
    let again = spawn(&retry, &rig, &out_a);
    for process in [again, b] {
        tokio::time::timeout(Duration::from_secs(120), process.wait_with_output())
            .await
            .expect("the function ends after its events")
            .expect("the function runs");
    }
    assert_eq!(
        retry.answers(),
        [json!({"batchItemFailures": []})],
        "the retry succeeds"
    );
    assert_eq!(api_b.answers().len(), 2);
    assert!(api_b
        .answers()
        .iter()
        .all(|a| *a == json!({"batchItemFailures": []})));

    // THEN in each consumer's output every order ends once: ramen 1–200 released with the
    // version that resolved it (low) into the first batch's object, the later ramen enriched,
    // burger before and after its update, pizza held (its row deleted), nothing dead-lettered
    for bucket in [&out_a, &out_b] {
        let by_customer = lines(&rig.s3, bucket).await;
        for (customer, written) in &by_customer {
            assert_eq!(
                written.len(),
                1,
                "customer {customer} in {bucket}: {written:?}"
            );
        }
        for customer in 100..100 + RAMEN {
            let (key, line) = &by_customer[&customer][0];
            assert_eq!(key, &released_object, "{line}");
            assert_eq!(line["priority"], "low");
        }
        let priority = |c: u64| by_customer[&c][0].1["priority"].clone();
        assert_eq!(priority(1), "medium");
        assert_eq!(priority(3), "high");
        assert_eq!(priority(2), "low");
        assert_eq!(priority(5), "low");
        assert!(
            !by_customer.contains_key(&4),
            "pizza without its row is held"
        );
        assert_eq!(by_customer.len(), RAMEN as usize + 4, "in {bucket}");
        let held = keys(&rig.s3, bucket, &format!("held/{SHARD}/")).await;
        assert_eq!(
            held.len(),
            1,
            "only the pizza still held in {bucket}: {held:?}"
        );
        assert!(keys(&rig.s3, bucket, "dead-letter/").await.is_empty());
    }
    // AND when pizza's row comes back and no batch follows, the scheduled sweep (an EventBridge
    // event, as the schedule in infra/ sends it) releases the held pizza
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.table.put("pizza", "high").await;
    rig.deliver().await;
    let scheduled: Value =
        serde_json::from_str(include_str!("../../../events/example-scheduled-sweep.json")).unwrap();
    let sweep = RuntimeApiStub::start_with_events(vec![scheduled]).await;
    let sweeper = spawn(&sweep, &rig, &out_a);
    tokio::time::timeout(Duration::from_secs(120), sweeper.wait_with_output())
        .await
        .expect("the function ends after its event")
        .expect("the function runs");
    assert_eq!(sweep.answers(), [json!({"batchItemFailures": []})]);
    let by_customer = lines(&rig.s3, &out_a).await;
    let pizza = &by_customer[&4];
    assert_eq!(pizza.len(), 1);
    assert_eq!(
        pizza[0].0,
        format!(
            "enriched/item=pizza/priority=high/{SHARD}-{}.jsonl",
            seq(1_000)
        ),
        "into its first attempt's object"
    );
    assert!(keys(&rig.s3, &out_a, &format!("held/{SHARD}/"))
        .await
        .is_empty());
    println!(
        "scenario: consumer A killed after its release was written, {held_at_kill} of {RAMEN} ramen not ended yet; its retry ended them once"
    );
}
