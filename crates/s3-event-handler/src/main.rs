//! The s3-event-handler binary: configuration, clients, runtime. The logic is in the library.

// The served future (the runtime over the handler over the SDK) nests deeper than the default.
#![recursion_limit = "256"]

use lambda_runtime::Error;
use s3_event_handler::Config;
use stream_refdata_aws::{init, lambda, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // A bad variable ends the process with a sentence, reported as the function's init error.
    let config = init::or_exit("s3-event-handler", Config::from_env()).await;
    let sdk = sdk_config(Some(config.feed.write_budget())).await;
    lambda::serve(&s3_event_handler::deployed(config, &sdk)).await
}
