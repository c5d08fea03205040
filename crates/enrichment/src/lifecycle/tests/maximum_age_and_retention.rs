//! **A failed maximum-age reload keeps the feed followed** and, for the feed's retention,
//! **Files are never deleted by consumers** (`docs/design.md`, 1.4 full loads and reloads): a
//! consumer of a table or of objects reloads fully, change or no change, when its last full load
//! is older than the maximum age or its last listing older than the retention minus a day. A
//! failed maximum-age reload leaves the feed followed and the data current; without a feed
//! nothing else confirms the data, so there it is not current.

use std::time::Duration;

use crate::test_support::objects::{following, priority, put, seeded};
use crate::test_support::*;
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

#[tokio::test(start_paused = true)]
async fn the_maximum_age_forces_a_full_reload_without_a_change() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    tokio::time::advance(Duration::from_secs(601)).await;
    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
}

#[tokio::test(start_paused = true)]
async fn object_consumers_reload_past_the_maximum_age() {
    let objects = seeded();
    let mut e = following(&objects, |c| c.with_max_age(Some(Duration::from_secs(600))));
    e.refresh().await;
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_keeps_following_the_feed() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    // The reload failed and says so, but the delta applied: the data is current.
    assert!(report.reload_error.is_some(), "{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.applied, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.staleness().unwrap() < Duration::from_secs(1));
    // The next refresh does not try the Scan again at once; it follows the feed.
    r.write(&[modify(11, "pizza", "high", AFTER_LOAD + 100)]);
    let report = r.refresh_later().await;
    assert_eq!(report.applied, 1);
    assert!(
        report.error.is_none(),
        "backing off, not failing: {report:?}"
    );
    // After the backoff, it tries again, and succeeds once the table is back.
    r.table.set_failing(false);
    tokio::time::advance(Duration::from_secs(2)).await;
    let report = r.refresh_later().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
}

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_at_a_flag_holds_no_current_record() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let (outcomes, report) = r
        .enricher
        .enrich(vec!["FLAG", "burger"], |r| {
            if *r == "FLAG" {
                Classified::Flag
            } else {
                Classified::Data((*r).to_owned())
            }
        })
        .await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert_eq!(report.held, 0, "{:?} {outcomes:?}", report.retry);
    assert!(report.refreshes[0].reload_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn without_a_feed_a_failing_maximum_age_reload_is_not_current() {
    let table = MemoryTable::new(&["item", "price"]);
    table.put(product("burger", "medium"));
    let cfg = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_max_age(Some(Duration::from_secs(600)))
    .with_max_staleness(Some(Duration::from_secs(900)));
    let mut e: TableEnricher<Product, String, MemoryTable, MemoryBucket> =
        TableEnricher::new(cfg, table.clone(), None, SystemClock);
    e.refresh().await;
    table.set_failing(true);
    // The maximum age is this consumer's only refresh (no feed); it fails for an hour.
    let mut last = RefreshReport::default();
    for _ in 0..60 {
        tokio::time::advance(Duration::from_secs(60)).await;
        last = e.refresh().await;
    }
    assert!(last.error.is_some(), "{last:?}");
    assert!(
        last.error.is_some() || e.is_too_stale(),
        "nothing was followed, yet: {last:?}, staleness {:?}",
        e.staleness()
    );
}

#[tokio::test(start_paused = true)]
async fn a_consumer_idle_beyond_the_feed_retention_reloads_fully_and_says_so() {
    let mut r = rig_with(|c| {
        c.with_max_age(None).with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(3 * 24 * 3600),
            ..FeedSettings::default()
        })
    });
    r.enricher.refresh().await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert_eq!(r.enricher.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600 + 60)).await;
    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
}

#[tokio::test(start_paused = true)]
async fn object_consumers_idle_beyond_the_feed_retention_reload_fully() {
    let objects = seeded();
    let mut e = following(&objects, |c| {
        c.with_max_age(None).with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(3 * 24 * 3600),
            ..FeedSettings::default()
        })
    });
    e.refresh().await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600 + 60)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
}
