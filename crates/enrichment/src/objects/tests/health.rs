//! Every reference's health is visible (`docs/design.md`, 5 unmatched records and staleness):
//! **Each reference reports its own health**: its name, loaded or never loaded, staleness, the
//! last error, and the objects it rejects now (served from their last good rows), so an
//! operator sees a wedged or half-rejected reference without reading logs.

use crate::test_support::objects::*;
use crate::*;

#[tokio::test]
async fn a_reference_reports_never_loaded_then_current_then_the_objects_it_rejects() {
    // GIVEN an object consumer that has not loaded yet, over a bucket it cannot list
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    let h = e.health();
    assert_eq!(h.reference, "s3://ref-bucket/reference/");
    assert_eq!(
        (h.state(), h.loaded, h.staleness),
        ("never loaded", false, None)
    );
    objects.set_failing(true);
    e.refresh().await;
    let h = e.health();
    assert_eq!(h.state(), "never loaded");
    assert!(h.last_error.is_some(), "{h:?}");
    // WHEN it loads
    objects.set_failing(false);
    e.refresh().await;
    // THEN it is current and rejects nothing
    let h = e.health();
    assert_eq!((h.state(), h.loaded), ("current", true), "{h:?}");
    assert!(h.rejected.is_empty() && h.last_error.is_none());
    // WHEN one object gets a bad row and another is archived
    put(&objects, "reference/b.csv", b"item,priority\nsalad\n");
    let bad = flag(&objects, "reference/b.csv", false);
    apply_flag(&mut e, &bad).await;
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\n",
    );
    objects.set_archived("reference/a.jsonl", true);
    let archived = flag(&objects, "reference/a.jsonl", false);
    apply_flag(&mut e, &archived).await;
    // THEN both are named as rejected, and the reference is degraded, not current
    let h = e.health();
    assert_eq!(h.rejected, ["reference/a.jsonl", "reference/b.csv"]);
    assert_eq!(h.state(), "degraded");
    assert_eq!(
        (h.metrics.bad_objects, h.metrics.unreadable_objects),
        (2, 1)
    );
    // WHEN both are fixed
    objects.set_archived("reference/a.jsonl", false);
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    for key in ["reference/a.jsonl", "reference/b.csv"] {
        let fixed = flag(&objects, key, false);
        apply_flag(&mut e, &fixed).await;
    }
    // THEN nothing is rejected any more
    let h = e.health();
    assert!(h.rejected.is_empty(), "{h:?}");
    assert_eq!(h.state(), "current");
    assert_eq!(priority(&e, "burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn an_object_rejected_at_a_full_load_is_named_until_a_read_of_it_succeeds() {
    // GIVEN a bucket whose b.csv has a bad row before the first load
    let objects = seeded();
    put(&objects, "reference/b.csv", b"item,priority\nsalad\n");
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    assert_eq!(e.health().rejected, ["reference/b.csv"]);
    // WHEN it is removed
    objects.remove("reference/b.csv");
    let removed = flag(&objects, "reference/b.csv", true);
    apply_flag(&mut e, &removed).await;
    // THEN a removed object is not rejected: it is gone
    let h = e.health();
    assert!(h.rejected.is_empty(), "{h:?}");
    assert_eq!(h.state(), "current");
}
