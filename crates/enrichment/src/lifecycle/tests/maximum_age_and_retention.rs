//! **A failed maximum-age reload keeps the feed followed** and, for the feed's retention,
//! **Files are never deleted by consumers** (`docs/design.md`, 1.4 full loads and reloads): a
//! consumer of a table or of objects reloads fully, change or no change, when its last full load
//! is older than the maximum age or its last listing older than the retention minus a day. A
//! failed maximum-age reload leaves the feed followed and the data current; without a feed
//! nothing else confirms the data, so there it is not current.

use std::time::Duration;

use crate::config::ReferenceConfig;
use crate::lifecycle::loader::Loader;
use crate::sources::FeedSource;
use crate::test_support::objects::{following, priority, put, seeded};
use crate::test_support::*;
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
    // (each consumer reloads somewhere in the last tenth of the maximum age)
    tokio::time::advance(Duration::from_secs(539)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(62)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
}

#[tokio::test(start_paused = true)]
async fn consumers_that_loaded_together_reload_at_different_moments_within_the_maximum_age() {
    // GIVEN eight consumers with a 600 s maximum age that loaded at the same moment
    let mut rigs: Vec<Rig> = (0..8)
        .map(|_| rig_with(|c| c.with_max_age(Some(Duration::from_secs(600)))))
        .collect();
    for r in &mut rigs {
        r.enricher.refresh().await;
    }
    // WHEN each refreshes every 5 s
    let mut reloaded_at = vec![None; rigs.len()];
    for step in 1..=121u64 {
        tokio::time::advance(Duration::from_secs(5)).await;
        for (r, at) in rigs.iter_mut().zip(&mut reloaded_at) {
            if at.is_none()
                && r.enricher.refresh().await.full_reload == Some(ReloadReason::MaximumAge)
            {
                *at = Some(step * 5);
            }
        }
    }
    // THEN every one reloaded within the maximum age, none before its last tenth, and not all
    // at the same moment
    let at: Vec<u64> = reloaded_at
        .into_iter()
        .map(|a| a.expect("reloaded"))
        .collect();
    assert!(at.iter().all(|s| (540..=605).contains(s)), "{at:?}");
    let first = at[0];
    assert!(at.iter().any(|s| *s != first), "all at {first} s: {at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_keeps_following_the_feed() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))))
        .loaded()
        .await;
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    let report = r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    // The reload failed and says so, but the delta applied: the data is current.
    assert!(report.reload_error.is_some(), "{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.applied, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.staleness().unwrap() < Duration::from_secs(1));
    // The next refresh does not try the Scan again at once; it follows the feed.
    let report = r
        .deliver(&[modify(11, "pizza", "high", AFTER_LOAD + 100)])
        .await;
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
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))))
        .loaded()
        .await;
    r.refresh_later().await;
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let (outcomes, report) = r
        .enricher
        .enrich(vec!["FLAG", "burger"], flag_at(Classified::Flag))
        .await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert_eq!(report.held, 0, "{:?} {outcomes:?}", report.retry);
    assert!(report.refreshes[0].reload_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn without_a_feed_a_failing_maximum_age_reload_is_not_current() {
    let (table, mut e) = without_feed(|c| {
        c.with_max_age(Some(Duration::from_secs(600)))
            .with_max_staleness(Some(Duration::from_secs(900)))
    });
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

/// A consumer's configuration for the retention cases: no maximum age, change files kept 3 days.
fn kept_3_days<S, T, K>(c: ReferenceConfig<S, T, K>) -> ReferenceConfig<S, T, K> {
    c.with_max_age(None).with_feed(retention_days(3))
}

/// `e` (configured by [`kept_3_days`]) loads, is idle a day (no reload), then past the retention
/// minus a day: it reloads fully and says why.
async fn idle_beyond_the_retention<L: Loader, Fd: FeedSource>(e: &mut ReferenceEnricher<L, Fd>) {
    e.refresh().await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600 + 60)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_idle_beyond_the_feed_retention_reloads_fully_and_says_so() {
    let mut r = rig_with(kept_3_days);
    idle_beyond_the_retention(&mut r.enricher).await;
}

#[tokio::test(start_paused = true)]
async fn object_consumers_idle_beyond_the_feed_retention_reload_fully() {
    let objects = seeded();
    let mut e = following(&objects, kept_3_days);
    idle_beyond_the_retention(&mut e).await;
}
