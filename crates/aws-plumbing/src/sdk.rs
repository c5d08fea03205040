//! The SDK configuration and the S3 client, built once at start-up.

use std::time::Duration;

/// Loads the SDK configuration from the environment (credentials, region, and
/// `AWS_ENDPOINT_URL` for an emulator or an S3-compatible endpoint), with an operation timeout
/// over all retry attempts when `operation_timeout` is given (producers give their write
/// budget, so a PUT never outlives it).
pub async fn sdk_config(operation_timeout: Option<Duration>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(timeout) = operation_timeout {
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(timeout)
                .build(),
        );
    }
    loader.load().await
}

/// An S3 client for `config`. When an endpoint URL is configured (an S3-compatible endpoint or
/// the local emulator), it uses path-style addressing, since bucket host names do not resolve
/// there.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let builder =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}
