//! Reloading reference objects (`docs/design.md`, 2 reference data kept in S3, 3 in-stream flags
//! are a barrier): **Fetch the current object** (every object under the prefix, then the object a
//! flag names; a 404 removes its rows), **No shortcut for removals** (an undelete is reported as a
//! removal, yet the object is read), **The flag's object first** (only that object, at the
//! flag's position, once per ETag; flags for other buckets or prefixes change nothing) and **A
//! rejected object keeps its previous rows** (across full loads too; `BadRows::SkipRow` keeps the
//! good rows instead).

use crate::test_support::flag_at;
use crate::test_support::objects::*;
use crate::testing::MemoryBucket;
use crate::*;

#[tokio::test]
async fn loads_every_object_under_the_prefix() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
    assert_eq!(priority(&e, "salad").as_deref(), Some("high"));
    assert_eq!(priority(&e, "donut"), None, "outside the prefix");
    assert_eq!(e.metrics().objects_read, 2);
}

#[tokio::test]
async fn a_removal_drops_the_objects_rows() {
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    objects.remove("reference/b.csv");
    let f = flag(&objects, "reference/b.csv", true);
    apply_flag(&mut e, &f).await;
    assert_eq!(priority(&e, "salad"), None);
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
}

#[tokio::test]
async fn restoring_a_deleted_object_loads_it() {
    // GIVEN a consumer that loaded while reference/d.csv was deleted
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    assert_eq!(priority(&e, "donut"), None);
    // WHEN the delete marker is removed (S3 reports an undelete as a removal)
    put(&objects, "reference/d.csv", b"item,priority\ndonut,high\n");
    let f = flag(&objects, "reference/d.csv", true);
    apply_flag(&mut e, &f).await;
    // THEN the object is read, and its rows serve
    assert_eq!(priority(&e, "donut").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_flag_reloads_only_its_object_at_its_position() {
    let (objects, mut e, f) = loaded_then_changed(
        BadRows::RejectObject,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\n",
    )
    .await;
    let gets = objects.gets();
    let (outcomes, report) = e
        .enrich(
            vec!["burger", "FLAG", "burger", "pizza", "salad"],
            flag_at(Classified::ChangeFlag(f.clone())),
        )
        .await;
    let seen: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enriched { item, .. } => item.priority.clone(),
            Outcome::Flag => "flag".into(),
            Outcome::Rejected { reason, .. } => reason.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        ["medium", "flag", "high", "no reference item", "high"]
    );
    assert_eq!(objects.gets(), gets + 1, "one object read, not the prefix");
    assert!(report.reconciles());

    // The same notification again (S3 delivers at least once): nothing to do.
    apply_flag(&mut e, &f).await;
    assert_eq!(objects.gets(), gets + 1);
}

#[tokio::test]
async fn flags_for_other_buckets_or_prefixes_change_nothing() {
    let (objects, mut e) = loaded(BadRows::RejectObject).await;
    let gets = objects.gets();
    let mut f = flag(&objects, "other/c.csv", false);
    apply_flag(&mut e, &f).await;
    f.change.bucket = "another-bucket".into();
    f.change.key = "reference/a.jsonl".into();
    apply_flag(&mut e, &f).await;
    assert_eq!(objects.gets(), gets);
}

#[tokio::test]
async fn a_bad_row_rejects_the_object_and_keeps_its_previous_rows() {
    let (_, mut e, f) = loaded_then_changed(
        BadRows::RejectObject,
        "reference/b.csv",
        b"item,priority\nsalad,low\nsalad,low,extra\n",
    )
    .await;
    let report = apply_flag(&mut e, &f).await;
    let problems = &report.refreshes[0].problems;
    assert!(
        problems[0].contains("reference/b.csv") && problems[0].contains("line 3"),
        "{problems:?}"
    );
    assert_eq!(
        priority(&e, "salad").as_deref(),
        Some("high"),
        "previous data kept"
    );
    let m = e.metrics();
    assert_eq!((m.bad_rows, m.bad_objects), (1, 1));
}

#[tokio::test]
async fn skip_row_keeps_the_good_rows_and_counts_the_bad_one() {
    let (_, mut e, f) = loaded_then_changed(
        BadRows::SkipRow,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\nnot json\n",
    )
    .await;
    apply_flag(&mut e, &f).await;
    assert_eq!(priority(&e, "burger").as_deref(), Some("high"));
    assert_eq!(
        priority(&e, "pizza"),
        None,
        "pizza is no longer in the object"
    );
    assert_eq!(e.metrics().bad_rows, 1);
}

#[tokio::test]
async fn a_rejected_object_keeps_its_rows_across_a_full_load() {
    let objects = seeded();
    let mut e = following(&objects, |c| c);
    e.refresh().await;
    put(
        &objects,
        "reference/b.csv",
        b"item,priority\nsalad,low,extra\n",
    );
    // A full reload (here announced by a gap file) reads every object again.
    gap_file(&objects, "g");
    let report = e.refresh().await;
    assert!(matches!(report.full_reload, Some(ReloadReason::Gap { .. })));
    assert!(report.problems[0].contains("reference/b.csv"), "{report:?}");
    assert_eq!(
        priority(&e, "salad").as_deref(),
        Some("high"),
        "previous rows kept"
    );
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
}

#[tokio::test]
async fn without_its_key_column_an_object_is_rejected_by_name_whatever_the_bad_row_policy() {
    // GIVEN a consumer that declared its key column and loaded salad=high from b.csv
    let objects = seeded();
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()))
        .with_key_column("item")
        .with_bad_rows(BadRows::SkipRow);
    let mut e: RowEnricher = ObjectEnricher::new(config, objects.clone(), None, SystemClock);
    e.refresh().await;
    // WHEN b.csv comes back with a misspelled header (every row would be without a key)
    put(&objects, "reference/b.csv", b"itme,priority\nsalad,low\n");
    let report = apply_flag(&mut e, &flag(&objects, "reference/b.csv", false)).await;
    // THEN it is rejected whole, naming the column, and salad keeps its row
    let problems = &report.refreshes[0].problems;
    assert!(
        problems[0].contains("reference/b.csv") && problems[0].contains("no key column `item`"),
        "{problems:?}"
    );
    assert_eq!(priority(&e, "salad").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_row_without_a_key_value_is_a_bad_row_naming_the_column() {
    #[derive(Debug, serde::Deserialize)]
    struct Loose {
        item: Option<String>,
        priority: String,
    }
    let objects = seeded();
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"medium\"}\n{\"dish\":\"pizza\",\"priority\":\"low\"}\n",
    );
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Loose| r.item.clone())
        .with_key_column("item");
    let mut e = ObjectEnricher::new(config, objects.clone(), None::<MemoryBucket>, SystemClock);
    let report = e.refresh().await;
    assert!(
        report.problems[0].contains("reference/a.jsonl line 2: no value in the key column `item`"),
        "{:?}",
        report.problems
    );
    assert!(
        e.reader().lookup("burger").is_none(),
        "the object is rejected"
    );
    assert_eq!(e.metrics().bad_rows, 1);
    assert_eq!(
        e.reader()
            .lookup("salad")
            .map(|r| r.priority.clone())
            .as_deref(),
        Some("high")
    );
}
