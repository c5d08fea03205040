//! `pump-stream TABLE BUCKET`: stands in for the change-handler's event source mapping where a
//! test is not Rust (the Python package's pytest suite and its Glue job test). It follows the
//! table's stream from `TRIM_HORIZON` and hands each batch to the real change-handler, which
//! writes the change feed (`change_flags/`) in BUCKET, four polls a second as Lambda does. It runs
//! until it is killed. The emulator comes from `AWS_ENDPOINT_URL`, as for every test.

use std::time::Duration;

use test_support::{feed_config, sdk_config, StreamPump};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [table, bucket] = &args[..] else {
        eprintln!("usage: pump-stream TABLE BUCKET");
        std::process::exit(2);
    };
    let sdk = sdk_config().await;
    let described = aws_sdk_dynamodb::Client::new(&sdk)
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describing {table}: {e}"));
    let Some(arn) = described.table().and_then(|t| t.latest_stream_arn()) else {
        eprintln!("table {table} has no stream");
        std::process::exit(2);
    };
    let mut pump = StreamPump::new(aws_sdk_dynamodbstreams::Client::new(&sdk), arn).await;
    let handler = change_handler::deployed(feed_config(bucket), &sdk);
    eprintln!("pump-stream: {arn} -> s3://{bucket}/change_flags/");
    let mut batch = 0u64;
    loop {
        while let Some(event) = pump.next_event().await {
            batch += 1;
            // As the mapping does: a failed batch is retried until it succeeds.
            loop {
                match handler.handle(&event, &format!("pump-{batch}")).await {
                    Ok(r) if r.batch_item_failures.is_empty() => break,
                    Ok(r) => eprintln!(
                        "pump-stream: batch {batch} reported {:?}; retrying",
                        r.batch_item_failures
                    ),
                    Err(e) => eprintln!("pump-stream: batch {batch} failed: {e}; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
