//! What the enrichment scenarios share (the enrichment crate's consumers following a feed that
//! the real producers write, through `test_support`'s rigs): the product type, a consumer that
//! follows a feed with no poll interval and no clock margin (one machine, one clock), and the
//! views of a consumer and of the table that the tests compare.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The keys of the 1,000-write scenario (`item-00` …), and the writes of each of its two writers.
pub(crate) const KEYS: usize = 20;
pub(crate) const WRITES_PER_WRITER: usize = 500;

/// Hands every pending stream batch to the change-handler; every third batch (counted in
/// `batches`) twice, as a retried invocation would write it.
pub(crate) async fn deliver(rig: &FeedRig, batches: &AtomicUsize) {
    while let Some(event) = rig.next_event().await {
        let r = rig.handler.handle(&event, "req").await.unwrap();
        assert!(r.batch_item_failures.is_empty());
        if batches.fetch_add(1, Ordering::SeqCst).is_multiple_of(3) {
            rig.handler.handle(&event, "req-retry").await.unwrap();
        }
    }
}

/// Runs the 1,000 random writes (two writers: puts, the same key twice in quick succession,
/// deletes) while the change-handler delivers (4 polls a second, see [`deliver`]) and `during`
/// runs alongside until the writers are done; then delivers what is left.
pub(crate) async fn writes_while(rig: &FeedRig, during: impl AsyncFnMut(&AtomicBool)) {
    let batches = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let writer = |seed: u64| {
        let table = rig.table.clone();
        async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            for n in 0..WRITES_PER_WRITER {
                let item = format!("item-{:02}", rng.usize(..KEYS));
                match rng.u8(..10) {
                    0 | 1 => table.delete(&item).await,
                    2..=5 => table.put(&item, &format!("w{seed}-{n}")).await,
                    _ => {
                        table.put(&item, &format!("w{seed}-{n}a")).await;
                        table.put(&item, &format!("w{seed}-{n}b")).await;
                    }
                }
            }
        }
    };
    let producer = async {
        while !done.load(Ordering::SeqCst) {
            deliver(rig, &batches).await;
            tokio::time::sleep(Duration::from_millis(250)).await; // Lambda polls 4 times a second
        }
        deliver(rig, &batches).await;
    };
    let writers = async {
        tokio::join!(writer(1), writer(2));
        done.store(true, Ordering::SeqCst);
    };
    let mut during = during;
    tokio::join!(producer, writers, during(&done));
    deliver(rig, &batches).await;
}
