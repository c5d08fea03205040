//! **Then the feed from L, before serving** and **Schemas** (`docs/design.md`, 5a feed
//! snapshots): a consumer started from a snapshot takes its per-item state, so it neither repeats
//! nor rolls back what it holds (from an older compactor's schema 1 snapshot too); it follows the
//! feed from the snapshot's L, with the look-back widened by the snapshot's W and margin, and
//! counts the retention from that L.

use std::sync::Arc;
use std::time::Duration;

use stream_refdata_protocol::EventName;

use crate::test_support::*;
use crate::testing::MemoryTable;
use crate::*;

#[tokio::test(start_paused = true)]
async fn a_consumer_started_from_a_snapshot_neither_repeats_nor_rolls_back_what_it_holds() {
    started_from_a_snapshot_neither_repeats_nor_rolls_back(false).await;
}

#[tokio::test(start_paused = true)]
async fn an_older_compactors_schema_1_snapshot_applies_the_same_rules() {
    started_from_a_snapshot_neither_repeats_nor_rolls_back(true).await;
}

async fn started_from_a_snapshot_neither_repeats_nor_rolls_back(schema_1: bool) {
    let mut r = rig();
    let mut compactor = r.loaded_compactor().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    r.table.delete(&keys("pizza"));
    r.write(&[
        modify(12, "burger", "low", AFTER_LOAD + 1000),
        Change {
            seq: 30,
            event: EventName::Remove,
            item: "pizza",
            priority: None,
            created_ms: AFTER_LOAD + 2000,
        },
    ]);
    r.clock.advance(100);
    compactor.refresh().await;
    // Past the look-back window (a minute later the compactor's safety listing moves its
    // position): the consumer will not list those files again, only the snapshot's per-item
    // state (sequence numbers, the tombstone) can decide.
    tokio::time::advance(Duration::from_secs(61)).await;
    r.clock.advance(61_000);
    compactor.refresh().await;
    let key = r.publish(&compactor);
    if schema_1 {
        r.rewrite_as_schema_1(&key);
    }
    // After the snapshot: a retried copy of the older burger change, and a late older pizza
    // change, both written under newer keys.
    r.clock.advance(100);
    r.write(&[
        modify(10, "burger", "high", AFTER_LOAD),
        modify(25, "pizza", "high", AFTER_LOAD + 1500),
    ]);

    let report = r.enricher.refresh().await;
    assert_eq!(report.snapshot.as_deref(), Some(key.as_str()), "{report:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("low"),
        "the older change is not applied again over the newer one"
    );
    assert_eq!(
        r.priority("pizza"),
        None,
        "the snapshot's tombstone keeps pizza removed"
    );
    assert_eq!(r.enricher.metrics().items_read, 0);
}

/// The retention rule ("a consumer whose last listing is older than the retention minus a day does
/// a full reload") counts from the snapshot's position L, where the consumer follows from, not from
/// the moment the snapshot was loaded. A consumer that starts from a snapshot 1.9 days old
/// (retention 3 days, so accepted) and cannot list for a while reloads fully once L is past the
/// retention: the change files right after L have expired.
#[tokio::test(start_paused = true)]
async fn the_retention_counts_from_the_snapshots_position_not_from_the_load() {
    let r = rig_with(|c| c.with_max_age(None).with_feed(retention_days(3)));
    r.publish_first_snapshot().await; // L = the compactor's Scan position; the compactor then stops
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("burger", "high"));
    let file = r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);

    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feed = ListingFails {
        bucket: r.feed.clone(),
        failing: failing.clone(),
    };
    let config = product_config()
        .with_max_age(None)
        .with_feed(retention_days(3));
    let mut consumer: TableEnricher<Product, String, MemoryTable, ListingFails> =
        TableEnricher::new(config, r.table.clone(), Some(feed), r.clock.clone());

    // 1.9 days after L: the snapshot is within the retention minus a day (2 days): loaded; the
    // catch-up listing fails.
    let step = Duration::from_secs(19 * 24 * 360);
    tokio::time::advance(step).await;
    r.clock.advance(step.as_millis() as i64);
    let report = consumer.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert!(report.error.is_some(), "{report:?}");

    // Listings keep failing for 1.2 days: L is now 3.1 days old, past the retention, and the
    // file written right after L has expired (the bucket's lifecycle rule).
    for _ in 0..12 {
        let step = Duration::from_secs(24 * 360);
        tokio::time::advance(step).await;
        r.clock.advance(step.as_millis() as i64);
        consumer.refresh().await;
    }
    r.feed.remove(&file);
    failing.store(false, std::sync::atomic::Ordering::SeqCst);

    let report = consumer.refresh().await;
    let burger = consumer
        .reader()
        .lookup("burger")
        .map(|p| p.priority.clone());
    assert_eq!(
        burger.as_deref(),
        Some("high"),
        "the last listing the consumer follows from (L) is 3.1 days old, past the retention: \
         a full reload was due, yet it listed from L and missed the expired change ({report:?})"
    );
}

/// The first listing from a snapshot starts from its position L with the clock margin L was taken
/// with, on the compactor's clock, not with the consumer's own margin. Each follower satisfies the
/// margin rule on its own (the compactor's clock leads by 4 s, within its 5 s margin; the
/// consumer's own clock and the producers' are exact, so it runs with 1 s); with its own margin the
/// consumer would start its first listing too late and never see a change file that became visible
/// just after the compactor's listing (19 s after its key time, within W).
#[tokio::test]
async fn the_first_listing_from_a_snapshot_uses_the_compactors_margin_on_its_clock() {
    let mut r = rig_with(|c| c.with_feed(own_margin(Duration::from_secs(1))));
    // The compactor's clock leads the producers' (and the consumer's) by 4 s; a change file
    // became visible just after its listing, 19 s after its key time (within W).
    let mut compactor = r.publish_before_a_late_file().await;

    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("low"));
    // The compactor itself, following on, sees the file (its look-back uses its own margin).
    let own = compactor.refresh().await;
    assert_eq!(own.applied, 1, "{own:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "the consumer listed from L − W − 1 s on the compactor's clock and skipped the file"
    );
}
