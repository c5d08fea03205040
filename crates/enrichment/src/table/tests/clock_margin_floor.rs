//! **The clock-margin floor** (`docs/design.md`, 1.4 the full load and 5a feed snapshots): data
//! loaded from a feed snapshot was taken (its position L, its Scan's end R, its read stamps) on
//! the clock of the follower that wrote it, within that follower's margin. Until its own next
//! successful Scan, a consumer started from the snapshot uses the larger of its own margin and
//! the snapshot's: for the look-back of a listing from L, for the re-read cut-off R + margin, and
//! as the margin the snapshots it writes state. Its own listings do not end that; a Scan that
//! fails does not either.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stream_refdata_protocol::Item;

use crate::sources::{FeedSource, TableSource};
use crate::test_support::*;
use crate::*;

/// The consumers' own clock margin in these tests; the compactor runs with the default 5 s.
const OWN_MARGIN: Duration = Duration::from_secs(1);

/// The clock margin a snapshot written now by `follower` states, in milliseconds.
fn written_margin<Tb: TableSource, Fd: FeedSource>(
    follower: &TableEnricher<Item, String, Tb, Fd>,
    clock: &ManualClock,
) -> u64 {
    let (_, header) = follower
        .write_feed_snapshot(Vec::new(), clock.now())
        .expect("current");
    header.clock_margin_ms
}

/// R is on the compactor's clock, within its 5 s margin: a change stamped 3 s after R may have
/// been made before the Scan read its item, so it is re-read, not applied from its image, even
/// after the consumer's own listings (its own 1 s margin would take the image).
#[tokio::test]
async fn changes_within_the_snapshots_margin_of_r_are_reread_after_own_listings() {
    let mut r = rig_with(|c| c.with_feed(own_margin(OWN_MARGIN)));
    r.publish_first_snapshot().await; // R = the rig's start, on a clock within 5 s
    let report = r.refresh_later().await; // the snapshot, then the listing from its L
    assert!(report.snapshot.is_some(), "{report:?}");
    r.refresh_later().await; // a listing from the consumer's own position

    r.clock.advance(3_000);
    r.table.put(product("burger", "high"));
    let gets = r.table.batch_gets();
    let report = r.deliver(&[modify(10, "burger", "high", 3_000)]).await;
    assert_eq!(
        (report.applied, report.reread),
        (0, 1),
        "a change stamped between R + 1 s and R + 5 s was applied from its image ({report:?})"
    );
    assert_eq!(r.table.batch_gets(), gets + 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

/// A snapshot written by a follower started from another's snapshot states the larger margin its
/// data was taken with, after its own listing too; after its own Scan, its own margin.
#[tokio::test]
async fn a_written_snapshot_states_the_loaded_snapshots_margin_until_an_own_scan() {
    let r = rig();
    r.publish_first_snapshot().await; // margin 5 s
    let mut follower = TableEnricher::new(
        raw_config(own_margin(OWN_MARGIN)),
        r.table.clone(),
        Some(r.feed.clone()),
        r.clock.clone(),
    );
    r.clock.advance(100);
    let report = follower.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(written_margin(&follower, &r.clock), 5_000, "after the load");

    r.clock.advance(AFTER_LOAD);
    r.table.put(product("burger", "high"));
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let report = follower.refresh().await;
    assert_eq!(report.files, 1, "{report:?}");
    assert_eq!(raw_priority(&follower, "burger").as_deref(), Some("high"));
    assert_eq!(
        written_margin(&follower, &r.clock),
        5_000,
        "after its own listing"
    );

    r.clock.advance(1_000);
    r.write_gap();
    r.clock.advance(100);
    let scans = r.table.scans();
    let report = follower.refresh().await;
    assert!(
        matches!(report.full_reload, Some(ReloadReason::Gap { .. })),
        "{report:?}"
    );
    assert!(r.table.scans() > scans, "{report:?}");
    assert_eq!(
        written_margin(&follower, &r.clock),
        OWN_MARGIN.as_millis() as u64,
        "after its own Scan"
    );
}

/// A maximum-age reload whose Scan load fails (the table does not answer) leaves the data the
/// snapshot's, so the margin it needs stays the snapshot's: the listing that follows from L still
/// looks back with it (and finds a file that became visible just after the compactor's listing),
/// and a snapshot written then states it. (The loader never holds the margin: the failure is the
/// same to the follower wherever in the load it happens.)
#[tokio::test(start_paused = true)]
async fn a_failed_scan_keeps_the_snapshots_margin_for_the_next_listing_and_snapshot() {
    let r = rig();
    r.publish_before_a_late_file().await;
    let listing_fails = Arc::new(AtomicBool::new(true));
    let max_age = Duration::from_secs(300);
    let mut follower = TableEnricher::new(
        raw_config(own_margin(OWN_MARGIN)).with_max_age(Some(max_age)),
        r.table.clone(),
        Some(ListingFails {
            bucket: r.feed.clone(),
            failing: listing_fails.clone(),
        }),
        r.clock.clone(),
    );
    // Loaded from the snapshot (its Scan a minute old); the listing from its L fails.
    let report = follower.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert!(report.error.is_some(), "{report:?}");

    // Past the maximum age (counted from the snapshot's Scan): the reload Scans, and fails; the
    // feed is followed from L meanwhile.
    tokio::time::advance(max_age).await;
    r.clock.advance(max_age.as_millis() as i64);
    listing_fails.store(false, Ordering::SeqCst);
    r.table.set_failing(true);
    let report = follower.refresh().await;
    r.table.set_failing(false);
    assert!(report.reload_error.is_some(), "{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(
        raw_priority(&follower, "burger").as_deref(),
        Some("high"),
        "the listing from L looked back with the follower's own 1 s margin and skipped the file"
    );
    assert_eq!(
        written_margin(&follower, &r.clock),
        5_000,
        "after the failed Scan"
    );
}
