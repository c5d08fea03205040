//! The orders stream on Kafka, on the test command's Kafka-protocol broker
//! (`scripts/kafka-broker`): orders produced to a 4-partition topic, delivered by the Kafka
//! event source mapping's emulation (a poller per partition, batches by size and window, the
//! event as Lambda builds it) to the real orders consumer; a partition whose objects cannot be
//! written is retried from the offset it reports, and a batch past its retries goes to the
//! on-failure destination in Kafka's record shape, and the redrive replays it.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use event_source_mappings::{
    kafka_failures, Invocation, KafkaEventSource, KafkaPartitionMapping, MappingConfig,
    MappingStats, S3Destination,
};
use local_emulator::provision;
use orders_consumer::{Config, OrdersConsumer};
use redrive::{Action, Deployed, Redriver, S3FailureBucket, Settings};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::Value;
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata_aws::{OffsetClock, S3Store};
use test_support::{
    feed_config, kafka_bootstrap_servers, kafka_client, kafka_topic, list_keys, read_object,
    unique_name, FeedRig, MemoryStore,
};
use tokio::sync::watch;

type Consumer = OrdersConsumer<DynamoDbTable, S3Feed, Arc<MemoryStore>>;

// (the consumer of a rig's table and feed as `main` builds it, writing to a store)
use crate::orders_consumer_feed::consumer;

/// `orders` produced to `partition` of `topic`, in order.
async fn produce(client: &rskafka::client::Client, topic: &str, partition: i32, orders: &[&str]) {
    let pc = client
        .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Retry)
        .await
        .unwrap();
    let records = (orders.iter())
        .map(|o| Record {
            key: Some(b"order".to_vec()),
            value: Some(o.as_bytes().to_vec()),
            headers: Default::default(),
            timestamp: rskafka::chrono::Utc::now(),
        })
        .collect();
    pc.produce(records, Compression::NoCompression)
        .await
        .unwrap();
}

fn config(retries: Option<u32>) -> MappingConfig {
    MappingConfig {
        batch_size: 3,
        poll_interval: Duration::from_millis(20),
        trim_horizon: true,
        maximum_retry_attempts: retries,
    }
}

/// Every partition of `topic` delivered to `consumer` until drained (the mappings stopped
/// from the start: each runs until its partition has nothing more), with `on_failure` as their
/// destination when given.
async fn deliver(
    topic: &str,
    partitions: &[i32],
    consumer: &Consumer,
    config: MappingConfig,
    on_failure: Option<S3Destination>,
) -> Vec<MappingStats> {
    let client = kafka_client().await;
    let servers = kafka_bootstrap_servers().join(",");
    let source = KafkaEventSource::Msk {
        cluster_arn: "arn:aws:kafka:us-east-1:123456789012:cluster/orders/uuid-1".into(),
    };
    let (_stop, stopped) = watch::channel(true);
    let runs = partitions.iter().map(|&p| {
        let mut mapping = KafkaPartitionMapping::new(
            Arc::clone(&client),
            source.clone(),
            servers.clone(),
            topic,
            p,
            config.clone(),
        )
        .with_batching_window(Duration::from_millis(50));
        if let Some(d) = &on_failure {
            mapping = mapping.with_on_failure(d.clone());
        }
        let stopped = stopped.clone();
        async move {
            let name = mapping.partition_name();
            let handler = |event: Value| {
                let name = name.clone();
                async move {
                    // (parsed from its text, as the binary parses its payload)
                    let event: orders_consumer::Invocation =
                        serde_json::from_str(&event.to_string()).unwrap();
                    match consumer.handle_any(event).await {
                        Ok((response, _)) => {
                            let response = serde_json::to_value(response).unwrap();
                            Invocation::from_reported(Ok::<_, String>(kafka_failures(
                                &response, &name,
                            )))
                        }
                        Err(e) => Invocation::Error(e.to_string()),
                    }
                }
            };
            mapping.run(handler, stopped).await.unwrap()
        }
    });
    futures_util::future::join_all(runs).await
}

const ORDERS: [&str; 4] = [
    r#"{"dish":"burger","cost":42,"customer_id":1001}"#,
    r#"{"dish":"pizza","cost":17.5,"customer_id":1002}"#,
    r#"{"dish":"donut","cost":12,"customer_id":1003}"#,
    r#"{"dish":"ice-cream","cost":99,"customer_id":1005}"#,
];

#[tokio::test]
async fn orders_on_four_partitions_are_enriched_per_partition_and_a_failed_write_is_retried_from_its_offset(
) {
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = consumer(&rig, Arc::clone(&store));
    let client = kafka_client().await;
    let (topic, partitions) = kafka_topic(&client, "orders").await;
    assert_eq!(partitions.len(), 4);
    for &p in &partitions {
        produce(&client, &topic, p, &ORDERS).await;
    }
    // The first write fails: its partition's batch is reported from its first offset and
    // retried.
    store.fail_next(1);
    let stats = deliver(&topic, &partitions, &consumer, config(None), None).await;
    let retries: u64 = stats.iter().map(|s| s.retries).sum();
    assert!(retries >= 1, "{stats:?}");
    // Each partition: two batches (3 orders, then 1), each under its topic-partition and first
    // offset; burger in the first, ice-cream in the second.
    for &p in &partitions {
        let first = format!("enriched/item=burger/priority=medium/{topic}-{p}-0.jsonl");
        let body = store
            .object("out", &first)
            .unwrap_or_else(|| panic!("no {first}"));
        assert_eq!(
            body.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            1
        );
        let second = format!("enriched/item=ice-cream/priority=very very high/{topic}-{p}-3.jsonl");
        assert!(store.object("out", &second).is_some(), "no {second}");
        let dead = format!("dead-letter/{topic}-{p}-0.jsonl");
        assert!(
            store.object("out", &dead).is_some(),
            "no {dead} (donut: no item)"
        );
    }
    let delivered: u64 = stats.iter().map(|s| s.records_delivered).sum();
    assert!(delivered >= 16, "{stats:?}");
}

#[tokio::test]
async fn a_batch_past_its_retries_goes_to_the_on_failure_destination_in_kafkas_shape_and_is_redriven(
) {
    let rig = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = consumer(&rig, Arc::clone(&store));
    let client = kafka_client().await;
    let (topic, partitions) = kafka_topic(&client, "orders").await;
    produce(&client, &topic, partitions[0], &ORDERS[..2]).await;
    let bucket = unique_name("failures");
    provision::create_bucket(&rig.s3, &bucket).await.unwrap();
    let destination = S3Destination::new(
        rig.s3.clone(),
        &bucket,
        "arn:aws:lambda:us-east-1:123456789012:function:orders-consumer",
    );
    // Every write fails: the batch is tried three times, then discarded to the destination.
    store.fail_puts_under(Some("enriched/"));
    let stats = deliver(
        &topic,
        &partitions[..1],
        &consumer,
        config(Some(2)),
        Some(destination),
    )
    .await;
    assert_eq!(stats[0].discarded, 1, "{stats:?}");
    let keys = list_keys(&rig.s3, &bucket, "aws/lambda/").await;
    assert_eq!(keys.len(), 1);
    let name = format!("{topic}-{}", partitions[0]);
    assert!(keys[0].contains(&format!("/{name}/")), "{keys:?}");
    let record: Value =
        serde_json::from_slice(&read_object(&rig.s3, &bucket, &keys[0]).await).unwrap();
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    let info = &record["KafkaBatchInfo"];
    assert_eq!(info["batchSize"], 2);
    assert_eq!(info["recordsInfo"][&name]["firstRecordOffset"], "0");
    assert_eq!(info["recordsInfo"][&name]["lastRecordOffset"], "1");
    assert_eq!(
        info["bootstrapServers"],
        kafka_bootstrap_servers().join(",")
    );
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["eventSource"], "aws:kafka");
    assert_eq!(payload["records"][&name].as_array().unwrap().len(), 2);

    // The redrive replays it through the deployed consumer (its S3 output this time): the
    // partition's objects, under the names the first attempt would have had.
    let out = unique_name("out");
    provision::create_bucket(&rig.s3, &out).await.unwrap();
    let orders = Config::from_lookup(&|var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some(out.clone()),
        _ => None,
    })
    .unwrap();
    let sdk = test_support::sdk_config().await;
    let functions = Deployed::with_sdk(
        feed_config(&rig.bucket),
        Ok(orders),
        &sdk,
        &sdk,
        OffsetClock::default(),
    );
    let redriver = Redriver::new(
        S3FailureBucket::new(S3Store::new(rig.s3.clone()), &bucket),
        functions,
        Settings {
            backoff: Duration::from_millis(10),
            ..Settings::default()
        },
    );
    let report = redriver.run().await.unwrap();
    assert_eq!(report.count(Action::Redriven), 1, "{report:?}");
    let written = list_keys(&rig.s3, &out, "enriched/").await;
    assert!(
        written.contains(&format!(
            "enriched/item=burger/priority=medium/{name}-0.jsonl"
        )),
        "{written:?}"
    );
}
