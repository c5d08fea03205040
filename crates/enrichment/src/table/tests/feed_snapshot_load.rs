//! **When a snapshot replaces the Scan** and **Only current data is written** (`docs/design.md`,
//! 5a feed snapshots): the first load and the reload past the retention start from the latest
//! feed snapshot when it passes every check (this table, its current stream, L within the
//! retention minus a day, R within the maximum age, whole), then catch up with the feed; any other
//! snapshot, and a gap after it, means a Scan, and says why. A follower with a reload pending
//! writes no snapshot.

use std::time::Duration;

use crate::test_support::*;
use crate::*;

#[tokio::test]
async fn a_new_consumer_starts_from_the_snapshot_reads_no_table_item_and_catches_up() {
    let mut r = rig();
    let key = r.publish_first_snapshot().await;
    let scans = r.table.scans();
    // A change written after the snapshot's position
    r.clock.advance(AFTER_LOAD + 1000);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD + 1000)]);

    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(report.snapshot.as_deref(), Some(key.as_str()));
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "caught up before serving"
    );
    assert_eq!(r.priority("salad").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(m.items_read, 0, "no table item read");
    assert_eq!(r.table.scans(), scans, "no Scan");
    assert_eq!((m.snapshot_loads, m.scan_loads), (1, 0));
    assert_eq!(m.changes_applied, 1, "the change applied from its image");
}

#[tokio::test]
async fn a_gap_after_the_snapshot_forces_a_scan() {
    let mut r = rig();
    r.publish_first_snapshot().await;
    r.clock.advance(1000);
    r.table.put(product("burger", "high")); // a change the stream lost
    r.write_gap();

    let report = r.enricher.refresh().await;
    assert!(
        matches!(report.full_reload, Some(ReloadReason::Gap { .. })),
        "{report:?}"
    );
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!((m.snapshot_loads, m.scan_loads), (1, 1));
}

#[tokio::test]
async fn a_snapshot_of_another_stream_is_refused_and_the_table_scanned() {
    let mut r = rig();
    r.publish_first_snapshot().await;
    r.table.set_stream_arn(Some(NEW_ARN));
    r.table.put(product("burger", "high"));

    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_none());
    let why = report.snapshot_refused.expect("says why");
    assert!(why.contains("stream"), "{why}");
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(
        (m.snapshot_loads, m.scan_loads, m.snapshot_fallbacks),
        (0, 1, 1)
    );
}

#[tokio::test]
async fn a_corrupt_or_foreign_snapshot_falls_back_to_a_scan() {
    let mut r = rig();
    let key = r.publish_first_snapshot().await;
    // Truncated: the compressed stream ends early.
    let whole = r.feed.object(&key).unwrap();
    r.feed.put(&key, whole[..whole.len() / 2].to_vec());
    let why = r.refused().await;
    assert!(why.contains(&key), "{why}");
    assert_eq!(r.enricher.metrics().scan_loads, 1);
    assert_eq!(r.enricher.snapshot().len(), 3);

    // A pointer of another table under this table's name.
    let mut r = rig();
    r.publish_first_snapshot().await;
    let pointer_key = stream_refdata_protocol::snapshot_pointer_key(
        stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX,
        "ProductPriority",
    );
    let mut pointer: stream_refdata_protocol::SnapshotPointer =
        serde_json::from_slice(&r.feed.object(&pointer_key).unwrap()).unwrap();
    pointer.table = "Other".into();
    r.feed
        .put(&pointer_key, serde_json::to_vec(&pointer).unwrap());
    let why = r.refused().await;
    assert!(why.contains("table Other"), "{why}");
}

#[tokio::test]
async fn a_snapshot_older_than_the_retention_is_refused() {
    let mut r = rig_with(|c| c.with_feed(retention_days(2)));
    r.publish_first_snapshot().await;
    r.clock.advance(24 * 3600 * 1000 + 1000);
    let why = r.refused().await;
    assert!(why.contains("retention"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_idle_past_the_retention_reloads_from_the_latest_snapshot() {
    let mut r = rig_with(|c| c.with_max_age(None).with_feed(retention_days(3)));
    r.enricher.refresh().await;
    assert_eq!(r.enricher.metrics().scan_loads, 1);
    // Two days and more later: the compactor, following all along, publishes.
    let idle = Duration::from_secs(2 * 24 * 3600 + 60);
    tokio::time::advance(idle).await;
    r.clock.advance(idle.as_millis() as i64);
    r.publish_first_snapshot().await;

    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(r.enricher.metrics().scan_loads, 1, "no second Scan");
}

/// The maximum age exists to check the data against the table itself (`snapshot_allowed` refuses
/// snapshots for it), so it counts from the Scan a snapshot descends from, not from the load: a
/// load from a snapshot is not a fresh one. A compactor whose environment is recycled every few
/// hours (cold starts load the latest snapshot, as designed) still Scans once its snapshot's Scan
/// is past the maximum age, so a change the feed did not carry reaches the snapshots, and every
/// consumer started from one, within the maximum age.
#[tokio::test(start_paused = true)]
async fn a_chain_of_snapshot_loads_still_reaches_the_maximum_age() {
    let mut r = rig(); // consumer and compactor: maximum age 6 h
    r.publish_first_snapshot().await; // the only Scan
                                      // A change the feed never carried: what the maximum-age Scan exists to catch.
    r.table.put(product("burger", "high"));
    let mut scans = 0;
    for _ in 0..4 {
        let step = Duration::from_secs(3 * 3600);
        tokio::time::advance(step).await;
        r.clock.advance(step.as_millis() as i64);
        let mut cold = r.compactor();
        let report = cold.refresh().await;
        // Cold starts load the latest snapshot until its Scan is past the maximum age; then
        // that start Scans (and its R is new).
        scans += u32::from(report.snapshot.is_none());
        r.publish(&cold);
    }
    // (a snapshot is taken only within the part of the maximum age that no consumer's jittered
    // maximum age reaches, 5.4 h of 6 h: the cold starts at 6 h and at 12 h Scan)
    assert_eq!(
        scans, 2,
        "the cold starts at 6 h and 12 h (their snapshot's Scan 6 h old) Scanned"
    );
    // 12 h after the only Scan, twice the maximum age.
    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "the snapshot descends from a Scan twice the maximum age old and was taken for a fresh load"
    );
}

#[tokio::test]
async fn a_follower_with_a_pending_reload_writes_no_snapshot() {
    let r = rig();
    let mut compactor = r.loaded_compactor().await;
    r.clock.advance(1000);
    r.write_gap();
    r.table.set_failing(true);
    compactor.refresh().await;
    let err = compactor
        .write_feed_snapshot(Vec::new(), r.clock.now())
        .unwrap_err();
    assert!(matches!(err, NotCurrent::ReloadPending(_)), "{err}");
    r.table.set_failing(false);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the first backoff
    compactor.refresh().await;
    assert!(compactor
        .write_feed_snapshot(Vec::new(), r.clock.now())
        .is_ok());
}
