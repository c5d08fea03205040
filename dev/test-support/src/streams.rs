//! Reading a DynamoDB stream, for tests: all of it at once, or its new records on demand.

use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

/// One GetRecords call of `iterator`: the same call on the DynamoDB Streams and the Kinesis
/// client, whose types differ.
macro_rules! get_records {
    ($client:expr, $iterator:expr) => {
        $client
            .get_records()
            .shard_iterator($iterator)
            .send()
            .await
            .expect("GetRecords")
    };
}

/// Every record of a shard from `iterator` on, a GetRecords call a page, until a page is empty
/// or the shard ends (on either client, as [`get_records!`]).
macro_rules! read_shard {
    ($client:expr, $iterator:expr) => {{
        let mut iterator: Option<String> = $iterator;
        let mut records = Vec::new();
        while let Some(it) = iterator.take() {
            let page = $crate::streams::get_records!($client, it);
            if page.records().is_empty() {
                break;
            }
            records.extend(page.records().iter().cloned());
            iterator = page.next_shard_iterator;
        }
        records
    }};
}
pub(crate) use {get_records, read_shard};

/// Every record currently in the stream, from the start of each shard, in shard order.
pub async fn read_stream_records(
    client: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Vec<Record> {
    let pump = StreamPump::new(client.clone(), stream_arn).await;
    let mut records = Vec::new();
    for iterator in pump.iterators {
        records.extend(read_shard!(client, iterator));
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
            let page = get_records!(self.client, it);
            records.extend(page.records().iter().cloned());
            *slot = page.next_shard_iterator;
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
