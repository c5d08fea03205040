//! The second reference (objects in S3) through the real orders-consumer binary, on the
//! emulator, as Lambda runs it (a stub of the Runtime API hands it Kinesis events in turn, one
//! warm process): a key `0042` that only matches as text, a multi-member gzip object, an
//! archived object (moto answers 403 `InvalidObjectState` for the GLACIER storage class), and
//! an object whose key column is renamed, at its flag. Every batch succeeds, and every order
//! is written with the rows the rules say.

use std::io::Write;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use base64::Engine;
use serde_json::{json, Value};
use stream_refdata_aws::s3_client;
use test_support::{emulator, sdk_config, unique_name, ReferenceTable, RuntimeApiStub};

/// A Kinesis event of shard 0 whose records carry `data`, sequence numbers from `first`.
fn kinesis_event(first: u64, data: &[Vec<u8>]) -> Value {
    let records: Vec<Value> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let seq = format!("4959033827149025660855969253836157109592157598913{:07}", first + i as u64);
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "1",
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(d),
                    "approximateArrivalTimestamp": 1795650067.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/orders-consumer",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream"
            })
        })
        .collect();
    json!({ "Records": records })
}

fn order(dish: &str, customer: u64) -> Vec<u8> {
    json!({"dish": dish, "cost": 5, "customer_id": customer})
        .to_string()
        .into_bytes()
}

/// `a` and `b` gzipped one after the other into one object, as `gzip -c a b` writes it.
fn two_members(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [a, b] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).unwrap();
        out.extend(gz.finish().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_objects_through_the_binary_keep_text_read_every_member_and_reject_what_they_cannot_use(
) {
    // GIVEN the table (the original's five items and three more dishes) and the menu as objects
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let table = ReferenceTable::create(
        &aws_sdk_dynamodb::Client::new(&sdk),
        StreamViewType::NewAndOldImages,
    )
    .await;
    table.seed().await;
    table.put("0042", "high").await;
    table.put("42", "low").await;
    table.put("gelato", "low").await;
    let (feed, out) = (unique_name("feed"), unique_name("out"));
    for bucket in [&feed, &out] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let put = |key: &'static str, body: Vec<u8>, class: Option<aws_sdk_s3::types::StorageClass>| {
        let (s3, feed) = (s3.clone(), feed.clone());
        async move {
            s3.put_object()
                .bucket(&feed)
                .key(key)
                .body(body.into())
                .set_storage_class(class)
                .send()
                .await
                .unwrap()
        }
    };
    // `0042` and `42` are different dishes; `007` and `1.50` stay as written.
    put(
        "reference/menu.csv",
        b"item,code,price_tag\n0042,007,1.50\n42,forty-two,2\nsalad,s1,3.00\n".to_vec(),
        None,
    )
    .await;
    put(
        "reference/desserts.csv.gz",
        two_members(b"item,code\ngelato,g1\n", b"ice-cream,ic1\n"),
        None,
    )
    .await;
    put(
        "reference/archived.csv",
        b"item,code\npizza,p1\n".to_vec(),
        Some(aws_sdk_s3::types::StorageClass::Glacier),
    )
    .await;
    // The second batch: burger's object gets its key column renamed, and its flag comes
    // mid-batch (as the s3-event-handler puts it); the object is rewritten before the batch.
    put(
        "reference/mains.csv",
        b"item,code\nburger,b1\n".to_vec(),
        None,
    )
    .await;
    let batch_1 = kinesis_event(
        1,
        &[
            order("0042", 1),
            order("42", 2),
            order("gelato", 3),
            order("ice-cream", 4),
            order("pizza", 5),
            order("burger", 6),
        ],
    );
    // WHEN one warm process of the binary handles the first batch, then (the object renamed
    // meanwhile) a second batch with its flag mid-batch
    let api = RuntimeApiStub::start_open().await;
    api.push(batch_1);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders-consumer"));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "stack-orders-consumer")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_ENDPOINT_URL", emulator().endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("REFERENCE_TABLE", &table.name)
        .env("CHANGE_BUCKET", &feed)
        .env("OUTPUT_BUCKET", &out)
        .env("REFERENCE_OBJECTS_BUCKET", &feed)
        .env("REFERENCE_OBJECTS_PREFIX", "reference/")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let process = command.spawn().expect("the function runs");
    api.wait_for_answers(1, Duration::from_secs(120)).await;
    put(
        "reference/mains.csv",
        b"dish,code\nburger,b2\n".to_vec(),
        None,
    )
    .await;
    let etag = s3
        .head_object()
        .bucket(&feed)
        .key("reference/mains.csv")
        .send()
        .await
        .unwrap()
        .e_tag()
        .map(|e| e.trim_matches('"').to_owned());
    let flag = stream_refdata_protocol::ChangeFlag::new(
        stream_refdata_protocol::ObjectChange {
            bucket: feed.clone(),
            key: "reference/mains.csv".into(),
            event_name: "ObjectCreated:Put".into(),
            removed: false,
            event_time: "2026-12-07T10:00:00.000Z".into(),
            version_id: None,
            etag,
            sequencer: None,
        },
        None,
    );
    api.push(kinesis_event(
        100,
        &[order("burger", 7), flag.to_vec(), order("burger", 8)],
    ));
    api.close();
    let output = tokio::time::timeout(Duration::from_secs(120), process.wait_with_output())
        .await
        .expect("the function ends after its events")
        .expect("the function runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        api.answers(),
        [
            json!({"batchItemFailures": []}),
            json!({"batchItemFailures": []})
        ],
        "every batch succeeds: {stdout}{stderr}"
    );

    // THEN every order is written, with the rows the rules say
    let keys: Vec<String> = s3
        .list_objects_v2()
        .bucket(&out)
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    let mut lines: Vec<Value> = Vec::new();
    for key in &keys {
        let body = s3.get_object().bucket(&out).key(key).send().await.unwrap();
        let bytes = body.body.collect().await.unwrap().into_bytes();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            lines.push(serde_json::from_slice(line).unwrap());
        }
    }
    let menu = |customer: u64| {
        lines
            .iter()
            .find(|l| l["customer_id"] == customer)
            .unwrap_or_else(|| panic!("customer {customer} not written: {lines:?}"))
            .get("menu")
            .cloned()
    };
    // the key `0042` matched as text; its cells as written
    assert_eq!(menu(1), Some(json!({"code": "007", "price_tag": "1.50"})));
    assert_eq!(
        menu(2),
        Some(json!({"code": "forty-two", "price_tag": "2"}))
    );
    // both gzip members read
    assert_eq!(menu(3), Some(json!({"code": "g1"})));
    assert_eq!(menu(4), Some(json!({"code": "ic1"})));
    // the archived object rejected: pizza written from the table alone
    assert_eq!(menu(5), None);
    // burger before the rename; after it, still its last good row (the renamed object is
    // rejected by the name of the missing key column, and its last good rows serve)
    assert_eq!(menu(6), Some(json!({"code": "b1"})));
    assert_eq!(menu(7), Some(json!({"code": "b1"})));
    assert_eq!(menu(8), Some(json!({"code": "b1"})));
    assert_eq!(lines.len(), 8, "in = out: {lines:?}");
    // AND the rejections were logged with their keys and show in the objects' metric line
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("reference/archived.csv"), "{all}");
    assert!(all.contains("InvalidObjectState"), "{all}");
    assert!(all.contains("reference/mains.csv"), "{all}");
    let reference = format!("s3://{feed}/reference/");
    let health: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["Reference"] == reference.as_str())
        .collect();
    let last = health.last().expect("the objects' metric line");
    assert_eq!(last["ReferenceRejectedObjects"], 2, "{last}");
    let rejected = last["RejectedKeys"].to_string();
    assert!(
        rejected.contains("reference/archived.csv") && rejected.contains("reference/mains.csv"),
        "{rejected}"
    );
    println!(
        "scenario: {} orders in, {} written, 0 retried; objects rejected: {rejected}",
        8,
        lines.len()
    );
}
