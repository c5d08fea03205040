//! The example consumer against an AWS API emulator (the repository's test command starts moto's
//! server and sets `AWS_ENDPOINT_URL`; against your own account, leave it unset): a batch of page
//! views enriched with the users' plans, an unknown user and a record that is not a page view
//! rejected with why; then a plan changed in the table: not seen until the change feed announces
//! it (the table is not read per batch), then seen by the next batch.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Av, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use refdata_example_consumer::{Config, Handler};
use stream_refdata::FeedSettings;
use stream_refdata_protocol::{
    format_key_time, head_key, source_label, AttributeValue, ChangeFile, ChangeKey, ChangeKind,
    EventName, HeadPointer, Item, SequenceNumber, SequenceRange, Source, StreamChange,
    DEFAULT_WRITE_WINDOW_MS, SCHEMA_VERSION,
};

/// A Kinesis event as Lambda sends it, of these records' data.
fn kinesis_event(first: u64, data: &[&str]) -> KinesisEvent {
    let records: Vec<serde_json::Value> = (data.iter().enumerate())
        .map(|(i, d)| {
            let seq = format!(
                "4959033827149025660855969253836157109592157598913{:07}",
                first + i as u64
            );
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("{i}"),
                    "sequenceNumber": seq,
                    "data": STANDARD.encode(d.as_bytes()),
                    "approximateArrivalTimestamp": 1795650067.123
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/page-views",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/page-views"
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
}

async fn lines(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<serde_json::Value> {
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let bytes = body.body.collect().await.unwrap().into_bytes();
    (bytes.split(|b| *b == b'\n'))
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

fn user(id: &str, plan: &str) -> HashMap<String, Av> {
    HashMap::from([
        ("user_id".to_owned(), Av::S(id.into())),
        ("plan".to_owned(), Av::S(plan.into())),
    ])
}

#[tokio::test]
async fn page_views_get_their_users_plan_and_a_changed_plan_is_seen_by_the_next_batch() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "AWS_ENDPOINT_URL: the repository's scripts/test starts the emulator and sets it"
    );
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let s3 = stream_refdata_aws::s3_client(&sdk);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (table, feed_bucket, output_bucket) = (
        format!("Users-{run}"),
        format!("feed-{run}"),
        format!("views-{run}"),
    );
    dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("user_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("user_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    for (id, plan) in [("alice", "pro"), ("bob", "free")] {
        (dynamodb.put_item().table_name(&table))
            .set_item(Some(user(id, plan)))
            .send()
            .await
            .unwrap();
    }
    for bucket in [&feed_bucket, &output_bucket] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let feed = FeedSettings {
        // (every batch polls the feed: the test does not wait for the interval)
        poll_interval: Duration::ZERO,
        ..FeedSettings::default()
    };
    let prefix = feed.prefix.clone();
    let handler = Handler::new(
        Config {
            table: table.clone(),
            feed_bucket: feed_bucket.clone(),
            output_bucket: output_bucket.clone(),
            feed,
        },
        &sdk,
    );

    // The first batch: two known users, an unknown one, a record that is not a page view.
    let event = kinesis_event(
        1,
        &[
            r#"{"user_id":"alice","page":"/home"}"#,
            r#"{"user_id":"bob","page":"/pricing"}"#,
            r#"{"user_id":"carol","page":"/signup"}"#,
            "not json",
        ],
    );
    let first = event.records[0].kinesis.sequence_number.clone();
    handler.handle(event).await.unwrap();
    let enriched = lines(&s3, &output_bucket, &format!("enriched/{first}.jsonl")).await;
    assert_eq!(
        enriched,
        [
            serde_json::json!({"user_id": "alice", "page": "/home", "plan": "pro"}),
            serde_json::json!({"user_id": "bob", "page": "/pricing", "plan": "free"}),
        ]
    );
    let rejected = lines(&s3, &output_bucket, &format!("rejected/{first}.jsonl")).await;
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    assert_eq!(rejected[0]["user_id"], "carol", "{rejected:?}");
    assert_eq!(rejected[0]["reason"], "no reference item", "{rejected:?}");
    assert!(
        rejected[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not a page view"),
        "{rejected:?}"
    );

    // Bob upgrades: the table changes, and its stream's change is written to the feed as the
    // change-handler writes it (a change file, then the `_head` pointer).
    (dynamodb.put_item().table_name(&table))
        .set_item(Some(user("bob", "enterprise")))
        .send()
        .await
        .unwrap();
    // Not read per batch: until the feed says so, the next batch still gets the plan in memory.
    let event = kinesis_event(50, &[r#"{"user_id":"bob","page":"/settings"}"#]);
    let first = event.records[0].kinesis.sequence_number.clone();
    handler.handle(event).await.unwrap();
    let enriched = lines(&s3, &output_bucket, &format!("enriched/{first}.jsonl")).await;
    assert_eq!(enriched[0]["plan"], "free", "{enriched:?}");

    let arn = format!(
        "arn:aws:dynamodb:us-east-1:123456789012:table/{table}/stream/2026-12-07T00:00:00.000"
    );
    let now = chrono::Utc::now();
    let seq = SequenceNumber::parse("4000000000000000000100").unwrap();
    let image = |plan: &str| {
        Item::from(HashMap::from([
            ("user_id".to_owned(), AttributeValue::S("bob".into())),
            ("plan".to_owned(), AttributeValue::S(plan.into())),
        ]))
    };
    let file = ChangeFile {
        schema_version: SCHEMA_VERSION,
        kind: ChangeKind::Dynamodb,
        written_at: format_key_time(now),
        write_window_ms: DEFAULT_WRITE_WINDOW_MS,
        producer: "example test".into(),
        source: Source {
            label: source_label(&arn),
            table: Some(table.clone()),
            stream_arn: Some(arn.clone()),
            region: Some("us-east-1".into()),
            bucket: None,
        },
        changes: vec![StreamChange {
            index: 0,
            event_id: "e1".into(),
            event_name: EventName::Modify,
            sequence_number: seq.clone(),
            approximate_creation_ms: now.timestamp_millis(),
            stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
            keys: Item::from(HashMap::from([(
                "user_id".to_owned(),
                AttributeValue::S("bob".into()),
            )])),
            new_image: Some(image("enterprise")),
            old_image: Some(image("free")),
            user_identity: None,
        }],
        opaque: vec![],
        objects: vec![],
        reason: None,
    };
    let key = ChangeKey {
        time: now,
        label: source_label(&arn),
        sequences: Some(SequenceRange {
            first: seq.clone(),
            last: seq,
        }),
        unique: None,
    }
    .to_key(&prefix);
    for (k, body) in [
        (key.clone(), file.to_vec()),
        (
            head_key(&prefix),
            serde_json::to_vec(&HeadPointer {
                latest: key,
                written_at: format_key_time(now),
            })
            .unwrap(),
        ),
    ] {
        (s3.put_object().bucket(&feed_bucket).key(k))
            .body(body.into())
            .send()
            .await
            .unwrap();
    }

    // The next batch sees it.
    let event = kinesis_event(100, &[r#"{"user_id":"bob","page":"/billing"}"#]);
    let first = event.records[0].kinesis.sequence_number.clone();
    handler.handle(event).await.unwrap();
    let enriched = lines(&s3, &output_bucket, &format!("enriched/{first}.jsonl")).await;
    assert_eq!(
        enriched,
        [serde_json::json!({"user_id": "bob", "page": "/billing", "plan": "enterprise"})]
    );
}

#[test]
fn a_missing_variable_is_named() {
    let vars = HashMap::from([("TABLE_NAME", "Users"), ("FEED_BUCKET", "feed")]);
    let err = Config::from_vars(&|k| vars.get(k).map(|v| (*v).to_owned())).unwrap_err();
    assert!(err.to_string().contains("OUTPUT_BUCKET"), "{err}");
}
