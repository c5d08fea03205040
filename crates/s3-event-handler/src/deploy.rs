//! The s3-event-handler as deployed: its one composition root, used by the binary, the local
//! pipeline and the test rigs alike.

use stream_refdata_aws::{s3_client, Clock, S3Store, SdkConfig, SystemClock};

use crate::config::FlagTarget;
use crate::flags::{Delivered, FlagError};
use crate::kafka::{Flags, KafkaFlags};
use crate::{Config, FlagSender, KinesisStream, S3EventHandler};

/// The flags' destination as deployed: the Kinesis stream or the Kafka topic `config` names.
#[derive(Debug)]
pub enum DeployedFlags {
    /// Every open shard of a Kinesis data stream.
    Kinesis(FlagSender<KinesisStream>),
    /// Every partition of a Kafka topic.
    Kafka(Box<KafkaFlags>),
}

impl Flags for DeployedFlags {
    async fn send(&self, payloads: &[Vec<u8>]) -> Result<Delivered, FlagError> {
        match self {
            DeployedFlags::Kinesis(f) => f.send(payloads).await,
            DeployedFlags::Kafka(f) => Flags::send(&**f, payloads).await,
        }
    }
}

/// The s3-event-handler as deployed.
pub type DeployedHandler = S3EventHandler<S3Store, DeployedFlags>;

/// The s3-event-handler as deployed: the feed and the flags' destination that `config` names,
/// through clients from `sdk` (whose operation timeout should be `config.feed.write_budget()`,
/// as the binary sets it; MSK's IAM authentication takes its credentials and region).
pub fn deployed(config: Config, sdk: &SdkConfig) -> DeployedHandler {
    deployed_with_clock(config, sdk, SystemClock)
}

/// [`deployed`] with its keys' time from `clock`.
pub fn deployed_with_clock(config: Config, sdk: &SdkConfig, clock: impl Clock) -> DeployedHandler {
    let flags = match &config.flags {
        FlagTarget::Kinesis(stream) => DeployedFlags::Kinesis(FlagSender::new(KinesisStream::new(
            aws_sdk_kinesis::Client::new(sdk),
            stream.clone(),
        ))),
        FlagTarget::Kafka(target) => {
            DeployedFlags::Kafka(Box::new(KafkaFlags::new(target.clone(), Some(sdk.clone()))))
        }
    };
    S3EventHandler::with_flags(config, S3Store::new(s3_client(sdk)), flags, clock)
}
