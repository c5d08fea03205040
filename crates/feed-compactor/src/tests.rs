//! The compactor's rules with in-memory sources: it writes a snapshot only of current data, the
//! object before its pointer, nothing when nothing changed, and a cold compactor starts from its
//! own latest snapshot without reading the table.

use std::collections::HashMap;
use std::time::Duration;

use stream_refdata::testing::{MemoryBucket, MemoryTable};
use stream_refdata::{FeedSettings, SystemClock, TableConfig, TableEnricher};
use stream_refdata_protocol::{snapshot_pointer_key, AttributeValue, SnapshotPointer};

use super::*;

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";

fn product(item: &str, priority: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    m.insert("priority".to_owned(), AttributeValue::S(priority.into()));
    Item::from(m)
}

fn config() -> Config {
    Config::from_lookup(&|k: &str| {
        match k {
            "REFERENCE_TABLE" => Some("ProductPriority"),
            "CHANGE_BUCKET" => Some("feed-bucket"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap()
}

fn setup() -> (MemoryTable, MemoryBucket) {
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    for (item, priority) in [("salad", "high"), ("pizza", "low"), ("burger", "medium")] {
        table.put(product(item, priority));
    }
    (table, MemoryBucket::default())
}

fn compactor(
    table: &MemoryTable,
    bucket: &MemoryBucket,
) -> Compactor<MemoryTable, MemoryBucket, MemoryBucket> {
    Compactor::new(
        config(),
        table.clone(),
        bucket.clone(),
        bucket.clone(),
        SystemClock,
    )
}

fn pointer(bucket: &MemoryBucket) -> Option<SnapshotPointer> {
    let key = snapshot_pointer_key(DEFAULT_SNAPSHOT_PREFIX, "ProductPriority");
    bucket
        .object(&key)
        .map(|b| serde_json::from_slice(&b).unwrap())
}

#[derive(Debug, serde::Deserialize)]
struct Product {
    item: String,
    priority: String,
}

fn consumer(
    table: &MemoryTable,
    bucket: &MemoryBucket,
) -> TableEnricher<Product, String, MemoryTable, MemoryBucket> {
    let config = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_feed(FeedSettings {
        poll_interval: Duration::ZERO,
        ..FeedSettings::default()
    });
    TableEnricher::new(config, table.clone(), Some(bucket.clone()), SystemClock)
}

#[tokio::test]
async fn the_first_run_scans_and_publishes_then_a_run_without_change_writes_nothing() {
    let (table, bucket) = setup();
    let mut c = compactor(&table, &bucket);
    let first = c.run_once().await.unwrap();
    assert_eq!(first.full_reload.as_deref(), Some("first load"));
    assert_eq!(first.items_read, 3);
    let published = first.published.expect("published");
    assert_eq!((published.items, published.tombstones), (3, 0));
    let p = pointer(&bucket).expect("pointer written");
    assert_eq!(p.key, published.key);
    assert!(
        bucket.object(&p.key).is_some(),
        "the object it names exists"
    );

    let second = c.run_once().await.unwrap();
    assert!(second.published.is_none());
    assert!(second.skipped.unwrap().contains("nothing changed"));
    assert_eq!(second.items_read, 0, "the steady state reads no table item");
}

#[tokio::test]
async fn a_new_consumer_loads_the_published_snapshot_without_reading_the_table() {
    let (table, bucket) = setup();
    compactor(&table, &bucket).run_once().await.unwrap();
    let mut consumer = consumer(&table, &bucket);
    let report = consumer.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(consumer.metrics().items_read, 0);
    assert_eq!(
        consumer.reader().lookup("burger").unwrap().priority,
        "medium"
    );
    assert_eq!(consumer.reader().lookup("salad").unwrap().item, "salad");
}

#[tokio::test]
async fn a_cold_compactor_starts_from_its_latest_snapshot() {
    let (table, bucket) = setup();
    compactor(&table, &bucket).run_once().await.unwrap();
    let scans = table.scans();
    let mut cold = compactor(&table, &bucket);
    let report = cold.run_once().await.unwrap();
    assert!(report.started_from.is_some(), "{report:?}");
    assert_eq!(report.items_read, 0);
    assert_eq!(table.scans(), scans, "no Scan");
    assert!(
        report.published.is_some(),
        "a cold run writes its own snapshot"
    );
}

#[tokio::test]
async fn a_failed_run_writes_nothing_and_the_previous_snapshot_stays_the_latest() {
    let (table, bucket) = setup();
    let mut c = compactor(&table, &bucket);
    c.run_once().await.unwrap();
    let before = pointer(&bucket).unwrap();
    bucket.set_failing(true);
    let err = c.run_once().await.unwrap_err();
    assert!(matches!(err, CompactError::Refresh(_)), "{err}");
    bucket.set_failing(false);
    assert_eq!(pointer(&bucket).unwrap(), before);
}

#[test]
fn a_snapshot_prefix_inside_the_feed_is_refused() {
    let err = Config::from_lookup(&|k: &str| {
        match k {
            "REFERENCE_TABLE" => Some("T"),
            "CHANGE_BUCKET" => Some("feed-bucket"),
            "SNAPSHOT_PREFIX" => Some("change_flags/snapshots/"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap_err();
    assert!(err.to_string().contains("SNAPSHOT_PREFIX"), "{err}");
}

#[tokio::test]
async fn the_first_snapshot_of_each_utc_day_is_kept_under_the_daily_prefix_as_well() {
    let (table, bucket) = setup();
    let at = |days_ago: i64| {
        // (noon UTC, so a few seconds later is the same day)
        let now = Utc::now();
        let noon = now.date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
        stream_refdata_aws::OffsetClock::new(noon - now - chrono::Duration::days(days_ago))
    };
    let mut c = Compactor::new(
        config(),
        table.clone(),
        bucket.clone(),
        bucket.clone(),
        at(2),
    );
    let first = c.run_once().await.unwrap();
    let daily = first.daily.expect("the day's first snapshot is kept");
    assert!(
        daily.starts_with("feed-snapshots-daily/ProductPriority/"),
        "{daily}"
    );
    assert_eq!(
        bucket.object(&daily),
        first.published.as_ref().and_then(|p| bucket.object(&p.key))
    );
    // Another snapshot the same day: not kept again.
    table.put(product("burger", "high"));
    let mut later = Compactor::new(
        config(),
        table.clone(),
        bucket.clone(),
        bucket.clone(),
        at(2),
    );
    later.daily_written = c.daily_written;
    let second = later.run_once().await.unwrap();
    assert!(
        second.published.is_some() && second.daily.is_none(),
        "{second:?}"
    );
    // The next day's first: kept.
    let mut next_day = Compactor::new(config(), table, bucket.clone(), bucket.clone(), at(1));
    next_day.daily_written = c.daily_written;
    let third = next_day.run_once().await.unwrap();
    assert!(third.daily.is_some(), "{third:?}");
    // And none with DAILY_SNAPSHOT_PREFIX=none; a prefix under the others' is refused.
    let none = Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some("T".into()),
        "CHANGE_BUCKET" => Some("feed-bucket".into()),
        "DAILY_SNAPSHOT_PREFIX" => Some("none".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(none.daily_prefix, None);
    let err = Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some("T".into()),
        "CHANGE_BUCKET" => Some("feed-bucket".into()),
        "DAILY_SNAPSHOT_PREFIX" => Some("feed-snapshots/daily/".into()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("DAILY_SNAPSHOT_PREFIX"), "{err}");
}

#[tokio::test]
async fn a_snapshot_records_when_its_scan_began_and_ended() {
    let (table, bucket) = setup();
    let published = compactor(&table, &bucket).run_once().await.unwrap();
    let key = published.published.expect("published").key;
    let body = bucket.object(&key).unwrap();
    let gz = flate2::bufread::GzDecoder::new(body.as_slice());
    let reader = stream_refdata_protocol::SnapshotReader::new(std::io::BufReader::new(gz)).unwrap();
    let header = reader.header();
    let (start, end) = (header.full_load_start_ms, header.full_load_end_ms);
    assert!(
        matches!((start, end), (Some(s), Some(r)) if s <= r),
        "{start:?} {end:?}"
    );
}
