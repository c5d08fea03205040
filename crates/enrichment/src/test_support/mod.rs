//! What the crate's unit tests share, one family of helpers: the reference types they load (a
//! table's `Product`, an object's `objects::Row`) and their configurations, a clock that moves
//! only when told (`ManualClock`), changes and gap files written as the producers write them, how
//! a batch's records are classified, the table consumer's rig (`Rig`: table, feed, clock, consumer
//! and the compactor's snapshots), fake sources that fail or answer late, and the object
//! consumer's bucket, flags and constructors (`objects`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stream_refdata_protocol::{
    source_label, AttributeValue, ChangeFile, ChangeKey, ChangeKind, EventName, Item, Source,
};

use crate::testing::{MemoryBucket, MemoryTable};
use crate::{Classified, Clock, FeedSettings, SystemClock, TableConfig, TableEnricher};

pub(crate) mod objects;
mod rig;
mod sources;

pub(crate) use rig::{raw_config, raw_priority, rig, rig_with, Rig};
pub(crate) use sources::{slow_enricher, ListingFails, SlowTable};

/// The stream of the rig's table, and of the change files it writes.
pub(crate) const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";
/// The feed prefix.
pub(crate) const PREFIX: &str = "change_flags/";

/// The table's stream after a switch (the table re-created, or its stream replaced).
pub(crate) const NEW_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2";

/// The rig clock's start, in milliseconds since the epoch.
pub(crate) const BASE: i64 = 1_795_650_000_000;

/// The rig's start plus the 5 s margin: changes created after this apply from their image.
pub(crate) const AFTER_LOAD: i64 = 6_000;

/// A product of the `ProductPriority` table (key attributes `item` and `price`).
#[derive(Debug, serde::Deserialize, PartialEq)]
pub(crate) struct Product {
    pub(crate) item: String,
    pub(crate) price: u32,
    pub(crate) priority: String,
}

/// A clock that moves only when a test moves it.
#[derive(Clone)]
pub(crate) struct ManualClock(pub(crate) Arc<Mutex<DateTime<Utc>>>);
impl ManualClock {
    pub(crate) fn advance(&self, ms: i64) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::milliseconds(ms);
    }
    pub(crate) fn ms(&self) -> i64 {
        self.0.lock().unwrap().timestamp_millis()
    }
}
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// The tests' feed settings: the defaults, the feed polled at every refresh.
pub(crate) fn every_refresh() -> FeedSettings {
    FeedSettings {
        poll_interval: Duration::ZERO,
        ..FeedSettings::default()
    }
}

/// [`every_refresh`], with this consumer's own clock margin `margin` (the default is 5 s).
pub(crate) fn own_margin(margin: Duration) -> FeedSettings {
    FeedSettings {
        clock_margin: margin,
        ..every_refresh()
    }
}

/// [`every_refresh`], with change files kept `days` days (the bucket's lifecycle rule).
pub(crate) fn retention_days(days: u64) -> FeedSettings {
    FeedSettings {
        retention: Duration::from_secs(days * 24 * 3600),
        ..every_refresh()
    }
}

/// The configuration of a `ProductPriority` consumer: items keyed by `item` and `price`, looked
/// up by `item`, every other setting the default.
pub(crate) fn product_config() -> TableConfig<Product> {
    TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
}

/// A consumer without a feed (the original design) of a table holding burger (medium), on the
/// system clock; `config` adjusts its configuration.
pub(crate) fn without_feed(
    config: impl FnOnce(TableConfig<Product>) -> TableConfig<Product>,
) -> (
    MemoryTable,
    TableEnricher<Product, String, MemoryTable, MemoryBucket>,
) {
    let table = MemoryTable::new(&["item", "price"]);
    table.put(product("burger", "medium"));
    let enricher = TableEnricher::new(config(product_config()), table.clone(), None, SystemClock);
    (table, enricher)
}

/// Classifies a batch's record as data, looked up by the record itself.
pub(crate) fn data(record: &&str) -> Classified<String> {
    Classified::Data((*record).to_owned())
}

/// Classifies a batch's records: `"FLAG"` is `flag`, every other record is [`data`].
pub(crate) fn flag_at(flag: Classified<String>) -> impl Fn(&&str) -> Classified<String> {
    move |record| {
        if *record == "FLAG" {
            flag.clone()
        } else {
            data(record)
        }
    }
}

/// A product item (price 100) in DynamoDB's typed form.
pub(crate) fn product(item: &str, priority: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    m.insert("priority".to_owned(), AttributeValue::S(priority.into()));
    Item::from(m)
}

/// The key attributes of the product `item` (price 100).
pub(crate) fn keys(item: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    Item::from(m)
}

/// One change of the change feed, as a test describes it.
pub(crate) struct Change<'a> {
    pub(crate) seq: u64,
    pub(crate) event: EventName,
    pub(crate) item: &'a str,
    pub(crate) priority: Option<&'a str>,
    /// Creation time relative to the rig clock's start.
    pub(crate) created_ms: i64,
}

/// A MODIFY with its new image.
pub(crate) fn modify<'a>(
    seq: u64,
    item: &'a str,
    priority: &'a str,
    created_ms: i64,
) -> Change<'a> {
    Change {
        seq,
        event: EventName::Modify,
        item,
        priority: Some(priority),
        created_ms,
    }
}

/// A KEYS_ONLY change (no image): the item must be read.
pub(crate) fn keys_only(seq: u64, item: &str, created_ms: i64) -> Change<'_> {
    Change {
        seq,
        event: EventName::Modify,
        item,
        priority: None,
        created_ms,
    }
}

/// Writes a `gap` change file into `feed` at `time` (unique part `unique`), as the `write-gap`
/// command does, and returns its key: every follower that lists it reloads fully. The `_head`
/// pointer is left as it is.
pub(crate) fn put_gap_file(feed: &MemoryBucket, time: DateTime<Utc>, unique: &str) -> String {
    let key = ChangeKey {
        time,
        label: source_label("write-gap"),
        sequences: None,
        unique: Some(unique.to_owned()),
    }
    .to_key(PREFIX);
    let gap = ChangeFile {
        schema_version: 1,
        kind: ChangeKind::Gap,
        written_at: String::new(),
        write_window_ms: 20_000,
        producer: "write-gap".into(),
        source: Source {
            label: source_label("write-gap"),
            ..Source::default()
        },
        changes: vec![],
        opaque: vec![],
        objects: vec![],
        reason: Some("test".into()),
    };
    feed.put(&key, gap.to_vec());
    key
}
