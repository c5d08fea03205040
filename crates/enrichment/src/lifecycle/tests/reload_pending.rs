//! **A pending reload is never forgotten** (`docs/design.md`, 1.4 full loads and reloads): a
//! reload asked for (here by a gap file, or by the feed's retention) stays pending, with the poll
//! that found it, until a reload succeeds; failed attempts back off; meanwhile the data is not
//! current, so staleness grows; and after the reload the consumer follows the feed from the
//! reload's own position.

use std::time::Duration;

use crate::test_support::*;
use crate::*;

#[tokio::test(start_paused = true)]
async fn a_reload_asked_for_stays_pending_until_it_succeeds() {
    let mut r = rig_with(|c| c.with_max_staleness(Some(Duration::from_secs(60))))
        .loaded()
        .await;
    // A change that was lost (announced by a gap file) while the table throttles.
    r.table.put(product("burger", "lost change"));
    r.write_gap();
    r.table.set_failing(true);
    let report = r.refresh_later().await;
    assert!(report.error.is_some(), "{report:?}");
    assert!(matches!(
        r.enricher.pending_reload(),
        Some(ReloadReason::Gap { .. })
    ));
    // Not current meanwhile: staleness grows and, past the limit, the staleness policy applies.
    for _ in 0..70 {
        tokio::time::advance(Duration::from_secs(1)).await;
        r.refresh_later().await;
    }
    assert!(r.enricher.staleness().unwrap() > Duration::from_secs(60));
    assert!(r.enricher.is_too_stale());
    // The table recovers: the next attempt reloads, and the lost change is served.
    r.table.set_failing(false);
    tokio::time::advance(Duration::from_secs(61)).await;
    let report = r.refresh_later().await;
    assert!(
        matches!(report.full_reload, Some(ReloadReason::Gap { .. })),
        "{report:?}"
    );
    assert_eq!(r.priority("burger").as_deref(), Some("lost change"));
    assert_eq!(r.enricher.pending_reload(), None);
    assert!(!r.enricher.is_too_stale());
    // The gap file was applied with the reload: it does not ask again.
    assert_eq!(r.refresh_later().await.full_reload, None);
}

#[tokio::test(start_paused = true)]
async fn failed_reload_attempts_back_off() {
    let mut r = rig().loaded().await;
    r.write_gap();
    r.table.set_failing(true);
    let scans = r.table.scans();
    // Refreshes every 100 ms for 10 s: attempts at 0, 1, 3 and 7 s, not one per refresh.
    let mut attempts = 0;
    for _ in 0..100 {
        let report = r.refresh_later().await;
        if !report
            .error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("next attempt in"))
        {
            attempts += 1;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(attempts, 4);
    assert_eq!(
        r.table.scans(),
        scans,
        "every attempt failed before scanning"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recovered_pending_reload_follows_the_feed_from_its_own_position() {
    let mut r = rig().loaded().await;
    r.refresh_later().await;
    r.write_gap();
    r.table.set_failing(true);
    r.refresh_later().await;
    // Twenty changes during the outage; the reload after it covers them all.
    for i in 0..20u64 {
        r.clock.advance(5_000);
        let p = format!("p{i}");
        let created = r.clock.ms() - BASE;
        r.table.put(product("burger", &p));
        r.write(&[modify(100 + i, "burger", &p, created)]);
    }
    r.clock.advance(200_000);
    tokio::time::advance(Duration::from_secs(300)).await;
    r.table.set_failing(false);
    assert!(matches!(
        r.refresh_later().await.full_reload,
        Some(ReloadReason::Gap { .. })
    ));
    assert_eq!(r.priority("burger").as_deref(), Some("p19"));
    let gets = r.table.batch_gets();
    let report = r.refresh_later().await;
    assert_eq!(
        (report.files, r.table.batch_gets() - gets),
        (0, 0),
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_does_not_hide_the_retention_reload() {
    let mut r = rig_with(|c| {
        c.with_max_age(Some(Duration::from_secs(6 * 3600)))
            .with_max_staleness(Some(Duration::from_secs(900)))
            .with_feed(retention_days(3))
    })
    .loaded()
    .await;
    r.table.put(product("burger", "high"));
    let key = r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    // Idle for four days: the change file expired meanwhile.
    tokio::time::advance(Duration::from_secs(4 * 24 * 3600)).await;
    r.clock.advance(4 * 24 * 3600 * 1000);
    r.feed.remove(&key);
    r.table.set_failing(true);
    let report = r.refresh_later().await;
    assert!(
        matches!(
            r.enricher.pending_reload(),
            Some(ReloadReason::BeyondRetention)
        ),
        "{report:?}"
    );
    assert!(report.error.is_some(), "{report:?}");
    // Not confirmed current while the reload is pending: past the limit records are stale.
    tokio::time::advance(Duration::from_secs(901)).await;
    r.refresh_later().await;
    assert!(r.enricher.is_too_stale());
    r.table.set_failing(false);
    tokio::time::advance(Duration::from_secs(60)).await;
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}
