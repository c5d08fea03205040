//! The s3-event-handler binary: configuration, clients, runtime. The logic is in the library.

use aws_plumbing::{init, sdk_config};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use s3_event_handler::Config;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // A bad variable ends the process with a sentence, reported as the function's init error.
    let config = init::or_exit("s3-event-handler", Config::from_env()).await;
    let sdk = sdk_config(Some(config.feed.write_budget())).await;
    let handler = s3_event_handler::deployed(config, &sdk);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handler
            .handle(&event.payload, &event.context.request_id)
            .await
    }))
    .await
}
