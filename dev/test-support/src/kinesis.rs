//! Kinesis streams in the emulator, for tests.

use aws_sdk_kinesis::types::ShardIteratorType;

/// Creates a provisioned stream with `shards` shards (as `local_emulator::provision` makes the
/// orders stream) and returns its name.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, shards: i32) -> String {
    let name = crate::unique_name("SourceKinesisStream");
    local_emulator::provision::create_orders_stream(client, &name, shards)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    name
}

/// Every record of every shard, from the start: `(shard id, record data)` per shard.
pub async fn records_per_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, Vec<Vec<u8>>)> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        let records = crate::streams::read_shard!(client, iterator);
        let data = records.iter().map(|r| r.data().as_ref().to_vec()).collect();
        out.push((shard.shard_id().to_owned(), data));
    }
    out
}
