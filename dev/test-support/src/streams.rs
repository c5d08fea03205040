//! Reading all of a DynamoDB stream, for tests.

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

/// Every record currently in the stream, from the start of each shard, in shard order.
pub async fn read_stream_records(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Vec<Record> {
    let described = client
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .expect("DescribeStream");
    let shards = described
        .stream_description()
        .map(|d| d.shards().to_vec())
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let Some(shard_id) = shard.shard_id() else {
            continue;
        };
        let mut iterator = client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(it) = iterator.take() {
            let out = client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            let got = out.records().to_vec();
            if got.is_empty() {
                break;
            }
            records.extend(got);
            iterator = out.next_shard_iterator;
        }
    }
    records
}

/// Reads a stream's new records on demand, as an event source mapping would between polls.
#[derive(Debug)]
pub struct StreamPump {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    iterators: Vec<Option<String>>,
}

impl StreamPump {
    /// Starts at the oldest record of every shard.
    pub async fn new(client: aws_sdk_dynamodbstreams::Client, stream_arn: &str) -> StreamPump {
        StreamPump::open(client, stream_arn, ShardIteratorType::TrimHorizon).await
    }

    /// Starts after the newest record of every shard: only records written from now on.
    pub async fn latest(client: aws_sdk_dynamodbstreams::Client, stream_arn: &str) -> StreamPump {
        StreamPump::open(client, stream_arn, ShardIteratorType::Latest).await
    }

    async fn open(
        client: aws_sdk_dynamodbstreams::Client,
        stream_arn: &str,
        position: ShardIteratorType,
    ) -> StreamPump {
        let described = client
            .describe_stream()
            .stream_arn(stream_arn)
            .send()
            .await
            .expect("DescribeStream");
        let mut iterators = Vec::new();
        for shard in described
            .stream_description()
            .map(|d| d.shards().to_vec())
            .unwrap_or_default()
        {
            let it = client
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(shard.shard_id().unwrap_or_default())
                .shard_iterator_type(position.clone())
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator;
            iterators.push(it);
        }
        StreamPump {
            client,
            stream_arn: stream_arn.to_owned(),
            iterators,
        }
    }

    /// The Lambda event for the records written since the last call, or `None` if there are none.
    pub async fn next_event(&mut self) -> Option<serde_json::Value> {
        let mut records = Vec::new();
        for slot in &mut self.iterators {
            let Some(it) = slot.clone() else { continue };
            let out = self
                .client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .expect("GetRecords");
            records.extend(out.records().iter().cloned());
            *slot = out.next_shard_iterator;
        }
        (!records.is_empty())
            .then(|| event_source_mappings::dynamodb_stream_event(&self.stream_arn, &records))
    }

    /// Like [`StreamPump::next_event`], polling every 50 ms for up to `timeout`.
    pub async fn wait_event(&mut self, timeout: std::time::Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.next_event().await {
                return Some(event);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
