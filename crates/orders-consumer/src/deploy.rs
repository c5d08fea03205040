//! The consumer as deployed: the real clients, built from one SDK configuration. The binary and
//! the redrive tooling (which replays discarded batches through this same code) both build it
//! here, so a replay runs with the function's own configuration and clients.

use stream_refdata::sources::{DynamoDbTable, S3Feed, S3Objects};
use stream_refdata_aws::{s3_client, S3Store, SdkConfig};

use crate::catalog::GlueCatalog;
use crate::{Config, OrdersConsumer};

/// The orders consumer over DynamoDB, the S3 change feed and S3 output.
pub type DeployedConsumer = OrdersConsumer<DynamoDbTable, S3Feed, S3Store>;

/// The consumer `config` describes, with clients from `sdk`: the reference table, the change
/// feed, the optional second reference (`REFERENCE_OBJECTS_*`, from its own bucket), the
/// optional Glue catalog registration (`GLUE_DATABASE`/`GLUE_TABLE`), and the output.
pub fn deployed(config: Config, sdk: &SdkConfig) -> DeployedConsumer {
    let s3 = s3_client(sdk);
    let table = DynamoDbTable::new(
        aws_sdk_dynamodb::Client::new(sdk),
        config.reference_table.clone(),
    );
    let feed = S3Feed::new(s3.clone(), config.change_bucket.clone());
    let objects = config
        .reference_objects
        .as_ref()
        .map(|r| S3Objects::new(s3.clone(), r.bucket.clone()));
    let catalog = config.catalog.clone();
    // Output over HTTPS with the SDK's CRC32 checksum: the bodies need no SHA-256 for the
    // signature (see `S3Store::with_unsigned_payloads`).
    let output = S3Store::new(s3).with_unsigned_payloads();
    let mut consumer = OrdersConsumer::new(config, table, feed, output);
    if let Some(objects) = objects {
        consumer = consumer.with_reference_objects(objects);
    }
    if let Some((database, table)) = catalog {
        let glue = aws_sdk_glue::Client::new(sdk);
        consumer = consumer.with_catalog(GlueCatalog::new(glue, database, table));
    }
    consumer
}
