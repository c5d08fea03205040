//! The change-handler binary: configuration, clients, runtime. The logic is in the library.

use feed_writer::FeedConfig;
use lambda_runtime::Error;
use stream_refdata_aws::{init, lambda, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // A bad variable ends the process with a sentence, reported as the function's init error.
    let config = init::or_exit("change-handler", FeedConfig::from_env()).await;
    let sdk = sdk_config(Some(config.write_budget())).await;
    lambda::serve(&change_handler::deployed(config, &sdk)).await
}
