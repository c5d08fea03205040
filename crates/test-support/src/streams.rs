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
