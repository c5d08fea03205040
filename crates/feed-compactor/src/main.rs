//! The feed-compactor binary: configuration, clients, then either the Lambda runtime (on a
//! schedule) or, outside Lambda, one run as a command. The logic is in the library.

use aws_plumbing::{init, s3_client, sdk_config, S3Store, SystemClock};
use enrichment::sources::{DynamoDbTable, S3Feed};
use feed_compactor::{embedded_metrics, Compactor, Config};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = init::or_exit("feed-compactor", Config::from_env()).await;
    let sdk = sdk_config(None).await;
    let s3 = s3_client(&sdk);
    let table = DynamoDbTable::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    let feed = S3Feed::new(s3.clone(), config.change_bucket.clone());
    let compactor = Compactor::new(config, table, feed, S3Store::new(s3), SystemClock);
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        // A command: one run, what it did on stdout.
        let mut compactor = compactor;
        let report = compactor.run_once().await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let compactor = tokio::sync::Mutex::new(compactor);
    let compactor = &compactor;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let mut c = compactor.lock().await;
        let result = c.run_once().await;
        let report = result.as_ref().cloned().unwrap_or_default();
        println!("{}", embedded_metrics(&report, c.latest_position()));
        result.map_err(Error::from)
    }))
    .await
}
