//! The one S3 capability a producer needs: put an object.

use std::future::Future;
use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

/// A PutObject that failed; the message carries the SDK's whole error chain.
#[derive(Debug, thiserror::Error)]
#[error("PutObject s3://{bucket}/{key} failed: {message}")]
pub struct StoreError {
    /// The bucket written to.
    pub bucket: String,
    /// The key written to.
    pub key: String,
    /// What the service or the transport said.
    pub message: String,
}

/// Puts whole objects. Implemented for S3 by [`S3Store`]; tests pass fakes.
pub trait ObjectStore: Send + Sync {
    /// Writes `body` to `bucket/key`, replacing any object there.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`ObjectStore`] on the AWS SDK's S3 client.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// Wraps a client built once at start-up.
    pub fn new(client: aws_sdk_s3::Client) -> S3Store {
        S3Store { client }
    }
}

impl ObjectStore for S3Store {
    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: DisplayErrorContext(&e).to_string(),
            })
    }
}

/// Loads the SDK configuration from the environment (credentials, region, `AWS_ENDPOINT_URL`),
/// with an operation timeout over all retry attempts when `operation_timeout` is given.
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
