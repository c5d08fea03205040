//! The test command's Kafka-protocol broker (`scripts/kafka-broker`, librdkafka's mock cluster:
//! started once by `scripts/test`, its address in `KAFKA_BOOTSTRAP_SERVERS`), and topics of its
//! own for each test.

use std::sync::Arc;

use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;

use crate::unique_name;

/// The broker's bootstrap servers (`scripts/test` starts it).
pub fn kafka_bootstrap_servers() -> Vec<String> {
    let servers = std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or_else(|_| {
        panic!("KAFKA_BOOTSTRAP_SERVERS is not set: run the tests with scripts/test, which starts the broker (scripts/kafka-broker)")
    });
    servers.split(',').map(str::to_owned).collect()
}

/// A client of the broker.
pub async fn kafka_client() -> Arc<Client> {
    Arc::new(
        ClientBuilder::new(kafka_bootstrap_servers())
            .build()
            .await
            .expect("a client of the test broker"),
    )
}

/// A new topic, named after `prefix`, and its partitions (the broker creates a topic on its
/// first use, with 4 partitions: the mock cluster takes no CreateTopics request).
pub async fn kafka_topic(client: &Client, prefix: &str) -> (String, Vec<i32>) {
    let topic = unique_name(prefix);
    // (the first metadata request for the topic creates it)
    client
        .partition_client(topic.clone(), 0, UnknownTopicHandling::Retry)
        .await
        .expect("the topic, created on first use");
    let partitions = (client.list_topics().await.expect("the topics"))
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.into_iter().collect())
        .expect("the new topic listed");
    (topic, partitions)
}

/// Every record of `topic`'s `partition`, from its first.
pub async fn kafka_records(client: &Client, topic: &str, partition: i32) -> Vec<RecordAndOffset> {
    let pc = client
        .partition_client(topic.to_owned(), partition, UnknownTopicHandling::Error)
        .await
        .expect("the partition");
    let end = pc.get_offset(OffsetAt::Latest).await.expect("its end");
    let mut offset = pc.get_offset(OffsetAt::Earliest).await.expect("its start");
    let mut all = Vec::new();
    while offset < end {
        let (records, _) = pc
            .fetch_records(offset, 1..1_000_000, 1_000)
            .await
            .expect("its records");
        let Some(last) = records.last() else {
            break;
        };
        offset = last.offset + 1;
        all.extend(records);
    }
    all
}
