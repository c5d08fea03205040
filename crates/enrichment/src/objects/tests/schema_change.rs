//! **Schema changes follow a policy** for objects too (`docs/design.md`, 2 reference data kept
//! in S3): a column added is accepted; a column renamed or retyped makes the object's rows bad,
//! and an object with more bad rows than good ones is rejected whole under either bad-row policy,
//! its last good rows kept.

use crate::test_support::objects::*;
use crate::*;

#[tokio::test]
async fn an_added_column_is_accepted() {
    let (objects, mut e, f) = loaded_then_changed(
        BadRows::RejectObject,
        "reference/b.csv",
        b"item,priority,calories\nsalad,low,120\n",
    )
    .await;
    apply_flag(&mut e, &f).await;
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
    assert!(e.health().rejected.is_empty());
    drop(objects);
}

#[tokio::test]
async fn a_renamed_column_keeps_the_objects_last_good_rows_under_either_policy() {
    for policy in [BadRows::RejectObject, BadRows::SkipRow] {
        // GIVEN a loaded consumer, then `priority` renamed in b.csv
        let (_objects, mut e, f) =
            loaded_then_changed(policy, "reference/b.csv", b"item,prio\nsalad,low\n").await;
        // WHEN its flag comes
        let report = apply_flag(&mut e, &f).await;
        // THEN the object is rejected whole with the reason, and salad keeps its last good row
        assert!(
            report.refreshes.iter().all(|r| r.error.is_none()),
            "{policy:?}"
        );
        assert_eq!(priority(&e, "salad").as_deref(), Some("high"), "{policy:?}");
        let problems: Vec<&String> = report.refreshes.iter().flat_map(|r| &r.problems).collect();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("reference/b.csv rejected")),
            "{policy:?}: {problems:?}"
        );
        assert_eq!(e.health().rejected, ["reference/b.csv"], "{policy:?}");
    }
}

#[tokio::test]
async fn with_skip_row_a_few_bad_rows_are_skipped_and_the_good_ones_served() {
    let (_objects, mut e, f) = loaded_then_changed(
        BadRows::SkipRow,
        "reference/b.csv",
        b"item,priority\nsalad,low\nkale\nsoup,high\n",
    )
    .await;
    apply_flag(&mut e, &f).await;
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
    assert_eq!(priority(&e, "soup").as_deref(), Some("high"));
    assert!(e.health().rejected.is_empty());
    assert_eq!(e.metrics().bad_rows, 1);
}
