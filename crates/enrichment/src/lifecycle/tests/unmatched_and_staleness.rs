//! **Unmatched policy** and **Stale data is dead-lettered, not failed** (`docs/design.md`, 5
//! unmatched records and staleness), with their neighbour, the `Ambiguity` policy for several
//! items per lookup key: a record without its reference item, or with several, follows its policy
//! and is counted; a failing source leaves the last good snapshot serving, and past the staleness
//! limit records are rejected as stale instead of failing the batch, for tables and objects
//! alike.

use std::time::Duration;

use stream_refdata_protocol::AttributeValue;

use crate::lifecycle::loader::Loader;
use crate::sources::FeedSource;
use crate::test_support::objects::{following, seeded};
use crate::test_support::*;
use crate::*;

#[tokio::test]
async fn unmatched_records_follow_the_policy_and_are_counted() {
    for (policy, expect) in [
        (Unmatched::Reject, (0, 1, 0)),
        (Unmatched::Pass, (1, 0, 0)),
        (Unmatched::Drop, (0, 0, 1)),
    ] {
        let mut r = rig_with(|c| c.with_unmatched(policy));
        let (outcomes, report) = r
            .enricher
            .process_batch(vec!["burger", "donut", "not json"], |r| match *r {
                "not json" => Classified::Invalid("expected value at line 1".into()),
                d => Classified::Data(d.to_owned()),
            })
            .await;
        assert_eq!(
            (report.passed, report.rejected, report.dropped),
            expect,
            "{policy:?}"
        );
        assert_eq!((report.enriched, report.invalid), (1, 1));
        assert!(report.reconciles());
        assert_eq!(outcomes.len(), 3);
        assert_eq!(r.enricher.metrics().misses, 1);
    }
}

#[tokio::test]
async fn ambiguous_lookup_keys_follow_the_policy() {
    let mut r = rig_with(|c| c.with_ambiguity(Ambiguity::Reject));
    let mut second = product("burger", "low");
    second.insert("price".into(), AttributeValue::N("200".into()));
    r.table.put(second);
    let (_, report) = r.enricher.process_batch(vec!["burger"], data).await;
    assert_eq!(report.rejected, 1);
    assert_eq!(r.enricher.metrics().ambiguous, 1);
}

#[tokio::test]
async fn a_failing_source_keeps_the_last_snapshot_serving_and_recovers() {
    let mut r = rig().loaded().await;
    r.feed.set_failing(true);
    let report = r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    assert!(report
        .error
        .unwrap()
        .to_string()
        .contains("injected failure"));
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("medium"),
        "last good snapshot"
    );
    assert!(r.enricher.last_error().is_some());
    assert_eq!(r.enricher.metrics().refresh_errors, 1);
    r.feed.set_failing(false);
    let report = r.refresh_later().await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.last_error().is_none());
}

/// A batch of burger 30 s after `e`'s source failed (within its 60 s staleness limit), served
/// the old data, then one 31 s later (past the limit), rejected as stale. Returns the first
/// batch's report.
async fn stale_past_the_limit<L, Fd>(e: &mut ReferenceEnricher<L, Fd>) -> BatchReport
where
    L: Loader<Key = String>,
    L::Value: std::fmt::Debug,
    Fd: FeedSource,
{
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, within) = e.process_batch(vec!["burger"], data).await;
    assert_eq!(within.enriched, 1, "within the limit the old data serves");
    tokio::time::advance(Duration::from_secs(31)).await;
    let (outcomes, report) = e.process_batch(vec!["burger"], data).await;
    assert_eq!(report.rejected, 1);
    let Outcome::Rejected { reason, .. } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.to_string().contains("too stale"), "{reason}");
    within
}

#[tokio::test(start_paused = true)]
async fn past_the_staleness_limit_records_are_rejected_as_stale() {
    let mut r = rig_with(|c| c.with_max_staleness(Some(Duration::from_secs(60))));
    r.enricher.refresh().await;
    assert_eq!(r.enricher.health().state(), "current");
    r.feed.set_failing(true);
    stale_past_the_limit(&mut r.enricher).await;
    assert!(r.enricher.metrics().staleness.unwrap() > Duration::from_secs(60));
    // The table's health names the state and the reason, as records' dead letters do.
    let h = r.enricher.health();
    assert_eq!(
        (h.reference.as_str(), h.state()),
        ("ProductPriority", "too stale")
    );
    assert!(h.too_stale && h.loaded);
    assert!(h.last_error.is_some_and(|e| e.contains("injected")));
}

#[tokio::test(start_paused = true)]
async fn object_consumers_reject_records_as_stale_past_the_limit() {
    let objects = seeded();
    let mut e = following(&objects, |c| {
        c.with_max_staleness(Some(Duration::from_secs(60)))
    });
    e.refresh().await;
    objects.set_failing(true);
    let within = stale_past_the_limit(&mut e).await;
    assert!(within.refreshes[0].error.is_some());
    assert!(e.last_error().is_some_and(|e| e.contains("injected")));
}

#[tokio::test]
async fn without_a_feed_a_refresh_does_not_confirm_the_data_current() {
    // GIVEN a consumer without a feed (nothing but its loads and flags tells it of changes)
    let (_table, mut e) = without_feed(|c| c);
    e.refresh().await;
    // WHEN time passes and it refreshes again, no flag having come
    std::thread::sleep(Duration::from_millis(20));
    e.refresh().await;
    // THEN its staleness counts from the load: a missed flag cannot hide behind a 0
    let staleness = e.staleness().expect("loaded");
    assert!(staleness >= Duration::from_millis(20), "{staleness:?}");
}
