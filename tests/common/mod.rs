//! What the enrichment scenarios share (the enrichment crate's consumers following a feed that
//! the real producers write, through `test_support`'s rigs): the product type, a consumer that
//! follows a feed with no poll interval and no clock margin (one machine, one clock), and the
//! views of a consumer and of the table that the tests compare.
#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata::{FeedSettings, Lookup, SystemClock, TableConfig, TableEnricher};
use stream_refdata_aws::s3_client;
use test_support::{through_proxy, FeedRig};
use tokio::sync::{watch, Semaphore};

/// A `ProductPriority` item as the tests read it.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Product {
    pub(crate) item: String,
    pub(crate) priority: String,
}

/// A consumer of the table and its feed, through the emulator.
pub(crate) type Consumer = TableEnricher<Product, String, DynamoDbTable, S3Feed>;

/// A consumer of `table` and the feed in `bucket`, through `sdk`.
pub(crate) fn consumer(sdk: &aws_config::SdkConfig, table: &str, bucket: &str) -> Consumer {
    consumer_with(sdk, table, bucket, |c| c)
}

/// Like [`consumer`], with `tweak` applied to its configuration.
pub(crate) fn consumer_with(
    sdk: &aws_config::SdkConfig,
    table: &str,
    bucket: &str,
    tweak: impl FnOnce(TableConfig<Product, String>) -> TableConfig<Product, String>,
) -> Consumer {
    let config = TableConfig::new(table.to_owned(), &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_feed(FeedSettings {
        poll_interval: Duration::ZERO,
        clock_margin: Duration::ZERO,
        ..FeedSettings::default()
    });
    TableEnricher::new(
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
/// The writes (of both writers together) that one round of the scenario releases.
pub(crate) const WRITES_PER_ROUND: usize = 40;

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

/// The rounds of the 1,000-write scenario. The writers write only what a round released; a
/// round starts once the writes of the rounds before the previous one are written and
/// delivered. So the scenario interleaves by count, not by time: a round's work runs while its
/// own writes are made and the previous round's are still being delivered (change files and
/// the feed's pointer written while consumers poll and list), and it sees at least every
/// change of the rounds before that, however busy the machine.
pub(crate) struct Rounds {
    permits: Semaphore,
    released: AtomicUsize,
    /// The writes released before the last round: what the next round waits to be delivered.
    lagging: AtomicUsize,
    written: AtomicUsize,
    delivered: watch::Sender<usize>,
}

impl Rounds {
    const WRITES: usize = 2 * WRITES_PER_WRITER;

    fn new() -> Rounds {
        Rounds {
            permits: Semaphore::new(0),
            released: AtomicUsize::new(0),
            lagging: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            delivered: watch::Sender::new(0),
        }
    }

    /// Waits until the writes released before the last round are written and delivered, then
    /// releases the next round's writes and returns `true`; `false` once all the writes are
    /// delivered.
    pub(crate) async fn next(&self) -> bool {
        let released = self.released.load(Ordering::SeqCst);
        let wait_for = if released == Self::WRITES {
            released
        } else {
            self.lagging.load(Ordering::SeqCst)
        };
        self.delivered
            .subscribe()
            .wait_for(|d| *d >= wait_for)
            .await
            .expect("the scenario's producer is running");
        if released == Self::WRITES {
            return false;
        }
        let round = WRITES_PER_ROUND.min(Self::WRITES - released);
        self.lagging.store(released, Ordering::SeqCst);
        self.released.store(released + round, Ordering::SeqCst);
        self.permits.add_permits(round);
        true
    }

    /// How many rounds the scenario has.
    pub(crate) const fn count() -> usize {
        Self::WRITES.div_ceil(WRITES_PER_ROUND)
    }
}

/// Runs the 1,000 random writes (two writers: puts, the same key twice in quick succession,
/// deletes) in [`Rounds`] that `during` starts with [`Rounds::next`], while the change-handler
/// delivers (4 polls a second, see [`deliver`]); then delivers what is left. `during` must call
/// `next` until it returns `false`.
pub(crate) async fn writes_while(rig: &FeedRig, during: impl AsyncFnOnce(&Rounds)) {
    let batches = AtomicUsize::new(0);
    let rounds = Rounds::new();
    let writer = |seed: u64| {
        let table = rig.table.clone();
        let rounds = &rounds;
        async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            for n in 0..WRITES_PER_WRITER {
                rounds.permits.acquire().await.expect("open").forget();
                let item = format!("item-{:02}", rng.usize(..KEYS));
                match rng.u8(..10) {
                    0 | 1 => table.delete(&item).await,
                    2..=5 => table.put(&item, &format!("w{seed}-{n}")).await,
                    _ => {
                        table.put(&item, &format!("w{seed}-{n}a")).await;
                        table.put(&item, &format!("w{seed}-{n}b")).await;
                    }
                }
                rounds.written.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    let producer = async {
        loop {
            let written = rounds.written.load(Ordering::SeqCst);
            deliver(rig, &batches).await;
            rounds.delivered.send_replace(written);
            if written == Rounds::WRITES {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await; // Lambda polls 4 times a second
        }
    };
    tokio::join!(producer, writer(1), writer(2), during(&rounds));
    deliver(rig, &batches).await;
}
