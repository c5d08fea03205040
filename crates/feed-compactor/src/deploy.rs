//! The feed-compactor as deployed: its one composition root, used by the binary and the test
//! rigs alike.

use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata_aws::{s3_client, Clock, S3Store, SdkConfig, SystemClock};

use crate::{Compactor, Config};

/// The compactor as deployed.
pub type DeployedCompactor = Compactor<DynamoDbTable, S3Feed, S3Store>;

/// The compactor as deployed: the table, the feed and the snapshot prefix that `config`
/// names, through clients from `sdk`.
pub fn deployed(config: Config, sdk: &SdkConfig) -> DeployedCompactor {
    deployed_with_clock(config, sdk, SystemClock)
}

/// [`deployed`] with its time from `clock`.
pub fn deployed_with_clock(
    config: Config,
    sdk: &SdkConfig,
    clock: impl Clock,
) -> DeployedCompactor {
    let s3 = s3_client(sdk);
    let table = DynamoDbTable::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone());
    let feed = S3Feed::new(s3.clone(), config.change_bucket.clone());
    Compactor::new(config, table, feed, S3Store::new(s3), clock)
}
