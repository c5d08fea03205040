//! **Late rows are held, not dead-lettered** (`docs/design.md`, 5 unmatched records and
//! staleness): under [`Unmatched::Hold`] a record without its row is answered
//! [`Outcome::Waiting`] and its key watched; the first published snapshot that has the row
//! records that version, handed out once by `take_resolved`, so the caller releases the record
//! with the version that resolved it, never a later one. A flag in the batch resolves the
//! records before it at its position. An ambiguous key is rejected with its reason, not held.

use std::sync::Arc;

use crate::test_support::*;
use crate::*;

fn holding() -> Rig {
    rig_with(|c| c.with_unmatched(Unmatched::Hold))
}

#[tokio::test]
async fn a_record_without_its_row_waits_and_resolves_with_the_version_that_brought_the_row() {
    // GIVEN a loaded consumer that holds unmatched records, and an order for donut (no row yet)
    let mut r = holding().loaded().await;
    let (outcomes, report) = r.enricher.enrich(vec!["donut", "burger"], data).await;
    assert!(matches!(outcomes[0], Outcome::Waiting { record: "donut" }));
    assert_eq!((report.waiting, report.enriched), (1, 1));
    assert!(report.reconciles());
    assert_eq!(r.enricher.waiting_keys(), 1);
    assert!(r.enricher.take_resolved().is_empty());
    // WHEN donut's row is created, then changed in a later poll
    r.deliver(&[modify(10, "donut", "low", AFTER_LOAD)]).await;
    r.deliver(&[modify(11, "donut", "high", AFTER_LOAD + 100)])
        .await;
    // THEN the version that resolved it is the first one, handed out once
    let resolved = r.enricher.take_resolved();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].0, "donut");
    assert_eq!(resolved[0].1.priority, "low", "not a later version");
    assert!(r.enricher.take_resolved().is_empty());
    assert_eq!(r.enricher.waiting_keys(), 0);
}

#[tokio::test]
async fn a_flag_resolves_the_records_before_it_at_its_position() {
    // GIVEN a loaded consumer that holds, and donut's row written before a flag of the batch
    let mut r = holding().loaded().await;
    r.write(&[modify(10, "donut", "low", AFTER_LOAD)]);
    r.clock.advance(100);
    // WHEN the batch is walked without a refresh first: donut, the flag, donut
    let records = vec!["donut", "FLAG", "donut"];
    let (outcomes, report) = r.enricher.enrich(records, flag_at(Classified::Flag)).await;
    // THEN the donut before the flag waits and resolves at the flag with the version the one
    // after the flag is enriched with
    assert!(
        matches!(outcomes[0], Outcome::Waiting { .. }),
        "{outcomes:?}"
    );
    let Outcome::Enriched { item: after, .. } = &outcomes[2] else {
        panic!("{outcomes:?}")
    };
    let resolved = r.enricher.take_resolved();
    assert_eq!(resolved.len(), 1);
    assert!(Arc::ptr_eq(&resolved[0].1, after), "the same version");
    assert_eq!((report.waiting, report.enriched, report.flags), (1, 1, 1));
}

#[tokio::test]
async fn a_watched_key_that_is_already_there_resolves_at_once_with_the_current_version() {
    // (a record held by an earlier environment, known again after a cold start)
    let r = holding().loaded().await;
    r.enricher.watch(["burger".to_owned(), "donut".to_owned()]);
    let resolved = r.enricher.take_resolved();
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (resolved[0].0.as_str(), resolved[0].1.priority.as_str()),
        ("burger", "medium")
    );
    assert_eq!(r.enricher.waiting_keys(), 1);
}

#[tokio::test]
async fn an_ambiguous_key_is_rejected_with_its_reason_not_held() {
    let mut r = rig_with(|c| {
        c.with_unmatched(Unmatched::Hold)
            .with_ambiguity(Ambiguity::Reject)
    });
    let mut second = product("burger", "high");
    second.insert(
        "price".into(),
        stream_refdata_protocol::AttributeValue::N("200".into()),
    );
    r.table.put(second);
    r.enricher.refresh().await;
    let (outcomes, report) = r.enricher.enrich(vec!["burger"], data).await;
    assert!(
        matches!(
            outcomes[0],
            Outcome::Rejected {
                reason: UnmatchedReason::Ambiguous(2),
                ..
            }
        ),
        "{outcomes:?}"
    );
    assert_eq!((report.rejected, report.waiting), (1, 0));
}

#[test]
fn hold_is_a_policy_by_name() {
    assert_eq!("hold".parse::<Unmatched>(), Ok(Unmatched::Hold));
    let e = "wait".parse::<Unmatched>().unwrap_err();
    assert!(e.contains("hold"), "{e}");
}
