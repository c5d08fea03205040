//! The flags on every partition of a Kafka topic, on the test command's Kafka-protocol broker
//! (`scripts/kafka-broker`: librdkafka's mock cluster, plaintext), through the real client.

use std::time::Duration;

use feed_writer::FeedConfig;
use s3_event_handler::{Config, FlagTarget, KafkaAuth, KafkaFlags, KafkaTarget, S3EventHandler};
use stream_refdata_aws::SystemClock;
use stream_refdata_protocol::{ChangeFile, ChangeFlag, ChangeKey};
use test_support::{
    kafka_bootstrap_servers, kafka_client, kafka_records, kafka_topic, sample_event, MemoryStore,
};

fn config(topic: &str) -> (Config, KafkaTarget) {
    let target = KafkaTarget {
        bootstrap_servers: kafka_bootstrap_servers(),
        topic: topic.to_owned(),
        auth: KafkaAuth::None,
    };
    let config = Config {
        feed: FeedConfig {
            bucket: "feed-bucket".into(),
            prefix: "change_flags/".into(),
            legacy_flag_key: None,
            write_window: Duration::from_secs(20),
        },
        flags: FlagTarget::Kafka(target.clone()),
        reference_prefix: "reference/".into(),
        reference_bucket: None,
        legacy_flag_payload: Some(br#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#.to_vec()),
    };
    (config, target)
}

#[tokio::test]
async fn a_put_writes_a_change_file_then_its_flags_on_every_partition_of_the_topic() {
    let client = kafka_client().await;
    let (topic, partitions) = kafka_topic(&client, "orders").await;
    assert_eq!(partitions.len(), 4);
    let (config, target) = config(&topic);
    let store = MemoryStore::new();
    let handler = S3EventHandler::with_flags(
        config,
        store.clone(),
        KafkaFlags::new(target, None),
        SystemClock,
    );
    let response = handler
        .handle(&sample_event("example-s3-put.json"), "req-1")
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let key = (store.put_keys().into_iter())
        .find(|k| ChangeKey::parse("change_flags/", k).is_ok())
        .expect("a change file");
    let file = ChangeFile::from_slice(&store.object("feed-bucket", &key).unwrap()).unwrap();
    assert_eq!(file.objects[0].key, "reference/products.jsonl");
    // Each partition: the protocol flag naming the change file, then the legacy flag, in order.
    for partition in partitions {
        let records = kafka_records(&client, &topic, partition).await;
        assert_eq!(records.len(), 2, "partition {partition}");
        let value = records[0].record.value.as_deref().unwrap();
        let flag: ChangeFlag = serde_json::from_slice(value).unwrap();
        assert_eq!(flag.change_file.as_deref(), Some(key.as_str()));
        assert_eq!(flag.change.key, "reference/products.jsonl");
        let legacy = records[1].record.value.as_deref().unwrap();
        assert!(std::str::from_utf8(legacy).unwrap().contains("CHANGE_FLAG"));
    }
}

#[tokio::test]
async fn a_topic_the_cluster_does_not_have_fails_the_invocation_and_names_it() {
    let (config, target) = config("no-such-topic");
    let handler = S3EventHandler::with_flags(
        config,
        MemoryStore::new(),
        KafkaFlags::new(target, None),
        SystemClock,
    );
    let err = handler
        .handle(&sample_event("example-s3-put.json"), "req-1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no-such-topic") && text.contains("does not exist"),
        "{text}"
    );
}

#[tokio::test]
async fn the_binary_puts_the_flag_on_every_partition_of_the_topic_its_variables_name() {
    // The deployed binary, configured as infra/ configures it for MSK (here plaintext: the test
    // broker has no TLS), invoked through a stand-in Runtime API with the sample S3 event, its
    // change file written to the emulator's bucket.
    let client = kafka_client().await;
    let (topic, partitions) = kafka_topic(&client, "orders").await;
    let sdk = test_support::sdk_config().await;
    let s3 = stream_refdata_aws::s3_client(&sdk);
    let bucket = test_support::unique_name("feed");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let servers = kafka_bootstrap_servers().join(",");
    let vars = [
        ("AWS_LAMBDA_FUNCTION_NAME", "stack-s3-event-handler"),
        ("CHANGE_BUCKET", bucket.as_str()),
        ("REFERENCE_PREFIX", "reference/"),
        ("FLAG_KAFKA_TOPIC", topic.as_str()),
        ("KAFKA_BOOTSTRAP_SERVERS", servers.as_str()),
        ("KAFKA_AUTH", "none"),
    ];
    let answers = test_support::run_function(
        env!("CARGO_BIN_EXE_s3-event-handler"),
        &vars,
        vec![sample_event("example-s3-put.json")],
    )
    .await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0], serde_json::json!({"batchItemFailures": []}));
    for partition in partitions {
        let records = kafka_records(&client, &topic, partition).await;
        assert_eq!(records.len(), 1, "partition {partition}");
        let flag: ChangeFlag =
            serde_json::from_slice(records[0].record.value.as_deref().unwrap()).unwrap();
        assert_eq!(flag.change.key, "reference/products.jsonl");
        let file = flag.change_file.expect("the flag names its change file");
        assert!(file.starts_with("change_flags/"), "{file}");
    }
}
