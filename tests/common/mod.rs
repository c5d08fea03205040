//! What the enrichment scenarios share (the enrichment crate's consumers following a feed that
//! the real producers write, through `test_support`'s rigs): the product type, a consumer that
//! follows a feed with no poll interval and no clock margin (one machine, one clock), and the
//! views of a consumer and of the table that the tests compare.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::time::Duration;

use aws_plumbing::s3_client;
use enrichment::{
    DynamoDbTable, Enricher, EnricherConfig, FeedSettings, Lookup, S3Feed, SystemClock,
};
use test_support::{through_proxy, FeedRig};

/// A `ProductPriority` item as the tests read it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Product {
    pub(crate) item: String,
    pub(crate) priority: String,
}

/// A consumer of the table and its feed, through the emulator.
pub(crate) type Consumer = Enricher<Product, String, DynamoDbTable, S3Feed, SystemClock>;

/// A consumer of `table` and the feed in `bucket`, through `sdk`.
pub(crate) fn consumer(sdk: &aws_config::SdkConfig, table: &str, bucket: &str) -> Consumer {
    consumer_with(sdk, table, bucket, |c| c)
}

/// Like [`consumer`], with `tweak` applied to its configuration.
pub(crate) fn consumer_with(
    sdk: &aws_config::SdkConfig,
    table: &str,
    bucket: &str,
    tweak: impl FnOnce(EnricherConfig<Product, String>) -> EnricherConfig<Product, String>,
) -> Consumer {
    let config = EnricherConfig::new(table.to_owned(), &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_feed(FeedSettings {
        poll_interval: Duration::ZERO,
        clock_margin: Duration::ZERO,
        ..FeedSettings::default()
    });
    Enricher::new(
        tweak(config),
        DynamoDbTable::new(aws_sdk_dynamodb::Client::new(sdk), table.to_owned()),
        Some(S3Feed::new(s3_client(sdk), bucket.to_owned())),
        SystemClock,
    )
}

/// Consumers of a [`FeedRig`]'s table and feed.
pub(crate) trait FeedConsumers {
    /// A consumer talking to the emulator directly.
    fn consumer(&self) -> Consumer;
    /// A consumer talking to the emulator through the proxy at `endpoint`, without SDK retries.
    fn consumer_through(&self, endpoint: &str) -> Consumer;
}

impl FeedConsumers for FeedRig {
    fn consumer(&self) -> Consumer {
        consumer(&self.sdk, &self.table.name, &self.bucket)
    }

    fn consumer_through(&self, endpoint: &str) -> Consumer {
        consumer(
            &through_proxy(&self.sdk, endpoint),
            &self.table.name,
            &self.bucket,
        )
    }
}

/// What a consumer's snapshot says for `items`: item -> priority.
pub(crate) fn view(
    consumer: &Consumer,
    items: impl IntoIterator<Item = String>,
) -> BTreeMap<String, String> {
    let snapshot = consumer.snapshot();
    items
        .into_iter()
        .filter_map(|k| match snapshot.lookup(k.as_str()) {
            Lookup::Found(p) => Some((p.item.clone(), p.priority.clone())),
            _ => None,
        })
        .collect()
}

/// What a fresh consistent Scan of the table says: item -> priority.
pub(crate) async fn table_view(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, String> {
    let scan = ddb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scan.items()
        .iter()
        .map(|i| {
            let s = |k: &str| {
                i.get(k)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default()
            };
            (s("item"), s("priority"))
        })
        .collect()
}
