//! Unit tests of the object enricher with in-memory objects.

use std::time::Duration;

use change_protocol::{ChangeFlag, ObjectChange};

use crate::config::*;
use crate::testing::MemoryBucket;
use crate::*;

#[derive(Debug, serde::Deserialize)]
struct Row {
    item: String,
    priority: String,
}

type E = ObjectEnricher<Row, String, MemoryBucket, MemoryBucket>;

fn enricher(objects: &MemoryBucket, bad_rows: BadRows) -> E {
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()))
        .with_bad_rows(bad_rows)
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            ..FeedSettings::default()
        });
    ObjectEnricher::new(config, objects.clone(), None, SystemClock)
}

fn put(objects: &MemoryBucket, key: &str, body: &[u8]) {
    objects.put(key, body.to_vec());
}

/// Writes a gap change file (unique part `unique`) into the feed: every follower reloads fully.
pub(crate) fn gap_file(objects: &MemoryBucket, unique: &str) {
    let gap = change_protocol::ChangeFile {
        schema_version: 1,
        kind: change_protocol::ChangeKind::Gap,
        written_at: String::new(),
        write_window_ms: 20_000,
        producer: "test".into(),
        source: change_protocol::Source::default(),
        changes: vec![],
        opaque: vec![],
        objects: vec![],
        reason: None,
    };
    let key = change_protocol::ChangeKey {
        time: chrono::Utc::now(),
        label: change_protocol::source_label("gap"),
        sequences: None,
        unique: Some(unique.to_owned()),
    }
    .to_key("change_flags/");
    objects.put(&key, gap.to_vec());
}

/// A flag for the object at `key` as the s3-event-handler writes it (its current ETag).
pub(crate) fn flag(objects: &MemoryBucket, key: &str, removed: bool) -> ChangeFlag {
    let etag = objects.etag(key).map(|e| e.trim_matches('"').to_owned());
    ChangeFlag::new(
        ObjectChange {
            bucket: "ref-bucket".into(),
            key: key.into(),
            event_name: if removed {
                "ObjectRemoved:Delete"
            } else {
                "ObjectCreated:Put"
            }
            .into(),
            removed,
            event_time: "2026-11-26T01:00:00.000Z".into(),
            version_id: None,
            etag,
            sequencer: None,
        },
        None,
    )
}

fn priority(e: &E, item: &str) -> Option<String> {
    e.reader().lookup(item).map(|r| r.priority.clone())
}

fn seeded() -> MemoryBucket {
    let objects = MemoryBucket::default();
    put(&objects, "reference/a.jsonl", b"{\"item\":\"burger\",\"priority\":\"medium\"}\n{\"item\":\"pizza\",\"priority\":\"low\"}\n");
    put(&objects, "reference/b.csv", b"item,priority\nsalad,high\n");
    put(&objects, "other/c.csv", b"item,priority\ndonut,high\n");
    objects
}

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
async fn a_flag_reloads_only_its_object_at_its_position() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\n",
    );
    let f = flag(&objects, "reference/a.jsonl", false);
    let gets = objects.gets();
    let (outcomes, report) = e
        .enrich(
            vec!["burger", "FLAG", "burger", "pizza", "salad"],
            |r| match *r {
                "FLAG" => Classified::ChangeFlag(f.clone()),
                d => Classified::Data(d.to_owned()),
            },
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
    e.enrich(vec!["FLAG"], |_| Classified::ChangeFlag(f.clone()))
        .await;
    assert_eq!(objects.gets(), gets + 1);
}

#[tokio::test]
async fn a_removal_drops_the_objects_rows() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    objects.remove("reference/b.csv");
    let f = flag(&objects, "reference/b.csv", true);
    e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
    assert_eq!(priority(&e, "salad"), None);
    assert_eq!(priority(&e, "burger").as_deref(), Some("medium"));
}

#[tokio::test]
async fn a_bad_row_rejects_the_object_and_keeps_its_previous_rows() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    put(
        &objects,
        "reference/b.csv",
        b"item,priority\nsalad,low\nsalad,low,extra\n",
    );
    let f = flag(&objects, "reference/b.csv", false);
    let (_, report) = e
        .enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
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
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::SkipRow);
    e.refresh().await;
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\nnot json\n",
    );
    let f = flag(&objects, "reference/a.jsonl", false);
    e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
    assert_eq!(priority(&e, "burger").as_deref(), Some("high"));
    assert_eq!(
        priority(&e, "pizza"),
        None,
        "pizza is no longer in the object"
    );
    assert_eq!(e.metrics().bad_rows, 1);
}

#[tokio::test]
async fn flags_for_other_buckets_or_prefixes_change_nothing() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    let gets = objects.gets();
    let mut f = flag(&objects, "other/c.csv", false);
    e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
    f.change.bucket = "another-bucket".into();
    f.change.key = "reference/a.jsonl".into();
    e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
    assert_eq!(objects.gets(), gets);
}

/// An object enricher that follows a feed (the same in-memory bucket holds the objects and the
/// feed; the feed's prefix is outside the reference prefix).
fn following(
    objects: &MemoryBucket,
    tweak: impl FnOnce(ObjectConfig<Row>) -> ObjectConfig<Row>,
) -> E {
    let config = ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()))
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            ..FeedSettings::default()
        });
    ObjectEnricher::new(
        tweak(config),
        objects.clone(),
        Some(objects.clone()),
        SystemClock,
    )
}

#[tokio::test(start_paused = true)]
async fn object_consumers_reload_past_the_maximum_age() {
    let objects = seeded();
    let mut e = following(&objects, |c| c.with_max_age(Some(Duration::from_secs(600))));
    e.refresh().await;
    put(&objects, "reference/b.csv", b"item,priority\nsalad,low\n");
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
    assert_eq!(priority(&e, "salad").as_deref(), Some("low"));
}

#[tokio::test(start_paused = true)]
async fn object_consumers_idle_beyond_the_feed_retention_reload_fully() {
    let objects = seeded();
    let mut e = following(&objects, |c| {
        c.with_max_age(None).with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(3 * 24 * 3600),
            ..FeedSettings::default()
        })
    });
    e.refresh().await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert_eq!(e.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600 + 60)).await;
    let report = e.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
}

#[tokio::test(start_paused = true)]
async fn object_consumers_reject_records_as_stale_past_the_limit() {
    let objects = seeded();
    let mut e = following(&objects, |c| {
        c.with_max_staleness(Some(Duration::from_secs(60)))
    });
    e.refresh().await;
    objects.set_failing(true);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, report) = e
        .process_batch(vec!["burger"], |r| Classified::Data((*r).to_owned()))
        .await;
    assert!(report.refreshes[0].error.is_some());
    assert_eq!(report.enriched, 1, "within the limit the old data serves");
    tokio::time::advance(Duration::from_secs(31)).await;
    let (outcomes, report) = e
        .process_batch(vec!["burger"], |r| Classified::Data((*r).to_owned()))
        .await;
    assert_eq!(report.rejected, 1);
    let Outcome::Rejected { reason, .. } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.to_string().contains("stale"), "{reason}");
    assert!(e.last_error().is_some_and(|e| e.contains("injected")));
}

#[tokio::test]
async fn restoring_a_deleted_object_loads_it() {
    // GIVEN a consumer that loaded while reference/d.csv was deleted
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    assert_eq!(priority(&e, "donut"), None);
    // WHEN the delete marker is removed (S3 reports an undelete as a removal)
    put(&objects, "reference/d.csv", b"item,priority\ndonut,high\n");
    let f = flag(&objects, "reference/d.csv", true);
    e.enrich(vec![()], |_| Classified::ChangeFlag(f.clone()))
        .await;
    // THEN the object is read, and its rows serve
    assert_eq!(priority(&e, "donut").as_deref(), Some("high"));
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
async fn a_flag_whose_refresh_fails_holds_the_records_after_it_for_a_retry() {
    let objects = seeded();
    let mut e = enricher(&objects, BadRows::RejectObject);
    e.refresh().await;
    put(
        &objects,
        "reference/a.jsonl",
        b"{\"item\":\"burger\",\"priority\":\"high\"}\n",
    );
    let f = flag(&objects, "reference/a.jsonl", false);
    objects.set_failing(true);
    let (outcomes, report) = e
        .enrich(vec!["burger", "FLAG", "burger", "salad"], |r| {
            if *r == "FLAG" {
                Classified::ChangeFlag(f.clone())
            } else {
                Classified::Data((*r).to_owned())
            }
        })
        .await;
    // Before the flag: enriched; after it: never with the data the flag says is old.
    assert!(matches!(&outcomes[0], Outcome::Enriched { item, .. } if item.priority == "medium"));
    assert!(matches!(outcomes[1], Outcome::Flag));
    assert!(matches!(outcomes[2], Outcome::Held { record: "burger" }));
    assert!(matches!(outcomes[3], Outcome::Held { record: "salad" }));
    assert!(
        report
            .retry
            .as_deref()
            .is_some_and(|r| r.contains("change flag")),
        "{report:?}"
    );
    assert_eq!((report.enriched, report.held), (1, 2));
    assert!(report.reconciles());
}
