//! The minimal `lambda_runtime` function the start-up of ours is compared with: it answers the
//! event it was given. Nothing else: no SDK, no configuration.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
