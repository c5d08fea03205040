//! **Look-back listing** and **Idle polling costs one cheap request** (`docs/design.md`, 1.2
//! finding new change files): a consumer lists from its previous complete listing minus W and
//! the margin, so a file that becomes visible late is found however long the consumer was idle,
//! and every page of a listing is read; while the `_head` pointer is unchanged a poll is one
//! conditional GET, with a safety listing at least once a minute.

use std::time::Duration;

use crate::test_support::*;
use crate::*;

#[tokio::test]
async fn listing_pages_are_all_read() {
    let mut r = rig();
    r.feed = r.feed.clone().with_page_size(2);
    let mut e = TableEnricher::new(
        product_config().with_feed(every_refresh()),
        r.table.clone(),
        Some(r.feed.clone()),
        r.clock.clone(),
    );
    e.refresh().await;
    r.clock.advance(AFTER_LOAD);
    for (i, p) in ["a", "b", "c", "d", "high"].iter().enumerate() {
        r.clock.advance(1);
        r.write(&[modify(10 + i as u64, "burger", p, AFTER_LOAD + i as i64)]);
    }
    r.clock.advance(100);
    let report = e.refresh().await;
    assert_eq!(report.files, 5);
    assert_eq!(e.reader().lookup("burger").unwrap().priority, "high");
    r.enricher = e;
}

/// A consumer lists; a producer reads its key time `key_after_listing_ms` after that listing;
/// `idle_ms` later (after a listing that misses the file, if `listing_meanwhile`) its PUT
/// becomes visible: the next refresh finds the file.
async fn a_late_file_is_found(key_after_listing_ms: i64, idle_ms: i64, listing_meanwhile: bool) {
    let mut r = rig().loaded().await;
    r.refresh_later().await;
    let key_time = r.clock.now() + chrono::Duration::milliseconds(key_after_listing_ms);
    r.clock.advance(idle_ms);
    if listing_meanwhile {
        r.refresh_later().await;
    }
    r.write_keyed_at(key_time, &[modify(10, "burger", "high", AFTER_LOAD)]);
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_file_that_becomes_visible_late_is_still_found() {
    // The producer read its key time, then the PUT took 12 s (inside W - 5 s); a listing
    // happens while the file is not yet visible.
    a_late_file_is_found(0, 12_000, true).await;
}

#[tokio::test]
async fn an_idle_consumer_still_finds_a_late_file_after_its_last_listing() {
    // No batch for five minutes; meanwhile a file whose key time is just after the last
    // listing became visible late.
    a_late_file_is_found(10, 300_000, false).await;
}

#[tokio::test]
async fn nothing_changed_costs_one_conditional_get() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    let lists = r.feed.lists();
    for _ in 0..5 {
        let report = r.refresh_later().await;
        assert!(!report.did_work());
    }
    assert_eq!(r.feed.lists(), lists, "no listing while _head is unchanged");
    assert_eq!(r.enricher.metrics().head_not_modified, 5);
}

#[tokio::test]
async fn a_safety_listing_runs_at_least_once_a_minute() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.refresh_later().await;
    let lists = r.feed.lists();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    r.refresh_later().await;
    assert_eq!(r.feed.lists(), lists + 1);
}
