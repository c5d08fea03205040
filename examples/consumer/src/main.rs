//! The function: configuration, clients, the Lambda runtime. The logic is in the library.
// (the enricher's refresh is a deep future: the compiler's default query depth is too shallow
// to lay out the runtime's future that holds it)
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, LambdaEvent};
use refdata_example_consumer::{Config, Handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let handler = Handler::new(config, &sdk);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        handler.handle(event.payload)
    }))
    .await
}
