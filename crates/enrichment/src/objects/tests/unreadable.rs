//! Objects that cannot be read (`docs/design.md`, 2 reference data kept in S3): **An unreadable
//! object is rejected, not waited on**. A GET that fails for a reason a retry alone cannot cure
//! (S3's 403 `InvalidObjectState` for an archived object, access denied) rejects that object as
//! bad rows do: its previous rows keep serving (none if it was never loaded), it is reported and
//! counted, and it is read again after a growing wait. It never holds a cold start, another
//! object's change or a flag's batch. A transient failure still fails the refresh.

use std::sync::{Arc, Mutex};

use crate::test_support::objects::*;
use crate::test_support::{flag_at, ManualClock};
use crate::testing::MemoryBucket;
use crate::*;

#[tokio::test]
async fn an_archived_object_does_not_hold_a_cold_start() {
    // GIVEN a bucket whose reference/b.csv is archived before the consumer starts
    let objects = seeded();
    objects.set_archived("reference/b.csv", true);
    // WHEN the consumer loads
    let mut e = enricher(&objects, BadRows::RejectObject);
    let report = e.refresh().await;
    // THEN the load succeeds with the other object, and the archived one is reported
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
    assert_eq!(priority(&e, "salad"), None, "never loaded: no rows");
    assert!(
        report.problems.iter().any(|p| p.contains("reference/b.csv")
            && p.contains("InvalidObjectState")
            && p.contains("read again at")),
        "{:?}",
        report.problems
    );
    let m = e.metrics();
    assert_eq!((m.unreadable_objects, m.bad_objects), (1, 1));
    assert!(e.staleness().is_some_and(|s| s.as_secs() == 0));
}

#[tokio::test]
async fn an_object_archived_after_its_load_keeps_its_rows_past_its_flag() {
    // GIVEN a consumer that loaded salad=high from reference/b.csv, which is then rewritten and
    // archived, and reference/a.jsonl, which is then changed too
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    objects.set_archived("reference/b.csv", true);
    let archived = flag(&objects, "reference/b.csv", false);
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\n",
    );
    let changed = flag(&objects, "reference/a.jsonl", false);
    // WHEN a batch holds both flags
    let records = vec!["salad", "FLAG-B", "salad", "FLAG-A", "burger"];
    let (outcomes, report) = e
        .enrich(records, |r: &&str| match *r {
            "FLAG-B" => Classified::ChangeFlag(archived.clone()),
            "FLAG-A" => Classified::ChangeFlag(changed.clone()),
            other => flag_at(Classified::Data(other.to_string()))(r),
        })
        .await;
    // THEN every record is enriched: salad keeps its last good row past its flag, and the
    // other object's change applies at its own flag
    let seen: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enriched { item, .. } => item.priority.clone(),
            Outcome::Flag => "flag".into(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["high", "flag", "high", "flag", "high"]);
    assert!(report.reconciles());
    assert!(report.refreshes.iter().all(|r| r.error.is_none()));
    assert_eq!(e.metrics().unreadable_objects, 1);
}

#[tokio::test]
async fn a_transient_failure_still_fails_the_refresh() {
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    let f = flag(&objects, "reference/b.csv", false);
    objects.set_failing(true);
    let report = apply_flag(&mut e, &f).await;
    assert!(report.refreshes[0].error.is_some(), "{report:?}");
    assert_eq!(e.metrics().unreadable_objects, 0);
}

#[tokio::test]
async fn an_unreadable_object_is_read_again_after_a_growing_wait() {
    // GIVEN a consumer on a clock the test moves, whose reference/b.csv became unreadable
    let objects = seeded();
    let (clock, mut e) = on_a_manual_clock(&objects);
    e.refresh().await;
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    objects.set_archived("reference/b.csv", true);
    apply_flag(&mut e, &flag(&objects, "reference/b.csv", false)).await;
    let gets = objects.gets();

    // WHEN refreshes come before the first wait (30 s) is over, nothing is read
    clock.advance(29_000);
    e.refresh().await;
    assert_eq!(objects.gets(), gets);
    // and at 30 s it is read again; still archived, the next read waits 60 s
    clock.advance(1_000);
    let report = e.refresh().await;
    assert_eq!(objects.gets(), gets + 1);
    assert!(report.error.is_none());
    assert_eq!(e.metrics().unreadable_objects, 2);
    clock.advance(59_000);
    e.refresh().await;
    assert_eq!(objects.gets(), gets + 1);

    // WHEN it is restored, the read at 60 s loads it
    objects.set_archived("reference/b.csv", false);
    clock.advance(1_000);
    e.refresh().await;
    assert_eq!(objects.gets(), gets + 2);
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
    // and it is not read again without a reason
    clock.advance(3_600_000);
    e.refresh().await;
    assert_eq!(e.metrics().unreadable_objects, 2);
    assert_eq!(objects.gets(), gets + 2);
}

#[tokio::test]
async fn a_full_load_keeps_an_unreadable_objects_previous_rows() {
    let objects = seeded();
    let mut e = following(&objects, |c| c);
    e.refresh().await;
    objects.set_archived("reference/b.csv", true);
    // A full reload (here announced by a gap file) reads every object again.
    gap_file(&objects, "g");
    let report = e.refresh().await;
    assert!(matches!(report.full_reload, Some(ReloadReason::Gap { .. })));
    assert!(report.error.is_none(), "{report:?}");
    assert!(report.problems[0].contains("reference/b.csv"), "{report:?}");
    assert_eq!(
        priority(&e, "salad").as_deref(),
        Some("high"),
        "previous rows kept"
    );
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
}

#[tokio::test]
async fn a_deleted_object_answered_with_403_is_a_removal_not_an_unreadable_object() {
    // GIVEN a consumer that loaded salad=high from reference/b.csv, and a bucket that answers
    // 403 for a GET of a missing key (the caller may not list the bucket)
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    objects.set_archived("reference/b.csv", true); // its GETs now answer 403 …
    objects.remove("reference/b.csv"); // … and it is gone: a listing no longer shows it
                                       // WHEN its removal is flagged
    let report = apply_flag(&mut e, &flag(&objects, "reference/b.csv", true)).await;
    // THEN its rows go, as for a 404
    assert!(report.refreshes[0].error.is_none(), "{report:?}");
    assert_eq!(priority(&e, "salad"), None);
    assert_eq!(e.metrics().unreadable_objects, 0);
}

#[tokio::test]
async fn a_transient_failure_of_a_retry_keeps_the_wait_and_tries_again_next_refresh() {
    let objects = seeded();
    let (clock, mut e) = on_a_manual_clock(&objects);
    objects.set_archived("reference/b.csv", true);
    e.refresh().await;
    objects.set_archived("reference/b.csv", false);
    // WHEN the first retry, at 30 s, meets a failing store
    clock.advance(30_000);
    objects.set_failing(true);
    let report = e.refresh().await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("tried again at the next refresh")),
        "{:?}",
        report.problems
    );
    assert_eq!(
        e.metrics().unreadable_objects,
        1,
        "not counted as unreadable"
    );
    // THEN the next refresh reads it (no longer wait)
    objects.set_failing(false);
    e.refresh().await;
    assert_eq!(priority(&e, "salad").as_deref(), Some("high"));
}

/// An object consumer of `objects` without a feed, on a clock the test moves.
fn on_a_manual_clock(objects: &MemoryBucket) -> (ManualClock, RowEnricher) {
    let clock = ManualClock(Arc::new(Mutex::new(chrono::Utc::now())));
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()));
    let e = ObjectEnricher::new(config, objects.clone(), None, clock.clone());
    (clock, e)
}
