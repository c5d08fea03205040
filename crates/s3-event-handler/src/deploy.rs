//! The s3-event-handler as deployed: its one composition root, used by the binary, the local
//! pipeline and the test rigs alike.

use aws_plumbing::{s3_client, Clock, S3Store, SdkConfig, SystemClock};

use crate::{Config, KinesisStream, S3EventHandler};

/// The s3-event-handler as deployed: the feed and the flag stream that `config` names, through
/// clients from `sdk` (whose operation timeout should be `config.feed.write_budget()`, as the
/// binary sets it).
pub fn deployed(config: Config, sdk: &SdkConfig) -> S3EventHandler<S3Store, KinesisStream> {
    deployed_with_clock(config, sdk, SystemClock)
}

/// [`deployed`] with its keys' time from `clock`.
pub fn deployed_with_clock(
    config: Config,
    sdk: &SdkConfig,
    clock: impl Clock,
) -> S3EventHandler<S3Store, KinesisStream> {
    let stream = KinesisStream::new(
        aws_sdk_kinesis::Client::new(sdk),
        config.flag_stream.clone(),
    );
    S3EventHandler::new(config, S3Store::new(s3_client(sdk)), stream, clock)
}
