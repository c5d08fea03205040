//! The feed-compactor binary: configuration, clients, then either the Lambda runtime (on a
//! schedule) or, outside Lambda, one run as a command. The logic is in the library.

use feed_compactor::{embedded_metrics, Config};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use stream_refdata_aws::{init, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = init::or_exit("feed-compactor", Config::from_env()).await;
    let sdk = sdk_config(None).await;
    let compactor = feed_compactor::deployed(config, &sdk);
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
