//! Reading a DynamoDB stream, for tests: all of it at once, or its new records on demand.

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

/// Every record currently in the stream, from the start of each shard, in shard order.
pub async fn read_stream_records(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Vec<Record> {
    let mut pump = StreamPump::new(client.clone(), stream_arn).await;
    let mut records = Vec::new();
    for slot in &mut pump.iterators {
        while let Some(it) = slot.take() {
            let (got, next) = get_records(&pump.client, it).await;
            if got.is_empty() {
                break;
            }
            records.extend(got);
            *slot = next;
        }
    }
    records
}

/// One GetRecords call: the records and the shard's next iterator (none once it is closed).
async fn get_records(
    client: &aws_sdk_dynamodbstreams::Client,
    iterator: String,
) -> (Vec<Record>, Option<String>) {
    let out = client
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords");
    (out.records().to_vec(), out.next_shard_iterator)
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
            let Some(shard_id) = shard.shard_id() else {
                continue;
            };
            let it = client
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(shard_id)
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
            let (got, next) = get_records(&self.client, it).await;
            records.extend(got);
            *slot = next;
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
