//! The change-handler binary: configuration, clients, runtime. The logic is in the library.

use aws_plumbing::{s3_client, sdk_config, S3Store, SystemClock};
use change_handler::{ChangeHandler, PRODUCER};
use feed_writer::{FeedConfig, FeedWriter};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = FeedConfig::from_env()?;
    let sdk = sdk_config(Some(config.write_budget())).await;
    let store = S3Store::new(s3_client(&sdk));
    let handler = ChangeHandler::new(FeedWriter::new(config, store, SystemClock, PRODUCER));
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler
            .handle(&event.payload, &event.context.request_id)
            .await
    }))
    .await
}
