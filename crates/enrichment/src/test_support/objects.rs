//! The object consumer's side: reference rows, a seeded bucket, the enricher's constructors, and
//! flags and gap files as the producers write them.

use stream_refdata_protocol::{ChangeFlag, ObjectChange};

use super::{every_refresh, flag_at, put_gap_file};
use crate::config::*;
use crate::testing::MemoryBucket;
use crate::*;

/// A row of a reference object (CSV or JSON Lines).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Row {
    pub(crate) item: String,
    pub(crate) priority: String,
}

/// An object consumer of `Row`s, its objects and its feed in in-memory buckets.
pub(crate) type RowEnricher = ObjectEnricher<Row, String, MemoryBucket, MemoryBucket>;

/// An object consumer of `objects` under `reference/`, without a feed, with the bad-row policy
/// `bad_rows`.
pub(crate) fn enricher(objects: &MemoryBucket, bad_rows: BadRows) -> RowEnricher {
    let config = row_config().with_bad_rows(bad_rows);
    ObjectEnricher::new(config, objects.clone(), None, SystemClock)
}

/// The object consumer's configuration: the `Row`s under `reference/` of `ref-bucket`, looked up
/// by item, the feed polled at every refresh.
fn row_config() -> ObjectConfig<Row> {
    ObjectConfig::new("ref-bucket", "reference/", |r: &Row| Some(r.item.clone()))
        .with_feed(every_refresh())
}

/// A [`seeded`] bucket and a consumer without a feed (bad-row policy `bad_rows`) that has loaded
/// it.
pub(crate) async fn loaded(bad_rows: BadRows) -> (MemoryBucket, RowEnricher) {
    let objects = seeded();
    let mut e = enricher(&objects, bad_rows);
    e.refresh().await;
    (objects, e)
}

/// A consumer (see [`loaded`]) after its load, then the object `key` changed to `body`: the
/// bucket, the consumer, and the flag the s3-event-handler writes for the change.
pub(crate) async fn loaded_then_changed(
    bad_rows: BadRows,
    key: &str,
    body: &[u8],
) -> (MemoryBucket, RowEnricher, ChangeFlag) {
    let (objects, e) = loaded(bad_rows).await;
    put(&objects, key, body);
    let f = flag(&objects, key, false);
    (objects, e, f)
}

/// A batch of only the flag `f`, enriched (so applied) by `e`; its report.
pub(crate) async fn apply_flag(e: &mut RowEnricher, f: &ChangeFlag) -> BatchReport {
    let (_, report) = e
        .enrich(vec!["FLAG"], flag_at(Classified::ChangeFlag(f.clone())))
        .await;
    report
}

/// Writes the object `key`.
pub(crate) fn put(objects: &MemoryBucket, key: &str, body: &[u8]) {
    objects.put(key, body.to_vec());
}

/// Writes a gap change file (unique part `unique`) into the feed: every follower reloads fully.
pub(crate) fn gap_file(objects: &MemoryBucket, unique: &str) {
    put_gap_file(objects, chrono::Utc::now(), unique);
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

/// The priority the consumer serves for `item`.
pub(crate) fn priority(e: &RowEnricher, item: &str) -> Option<String> {
    e.reader().lookup(item).map(|r| r.priority.clone())
}

/// A bucket with two reference objects (burger medium, pizza low; salad high) and one outside
/// the prefix (donut).
pub(crate) fn seeded() -> MemoryBucket {
    let objects = MemoryBucket::default();
    put(&objects, "reference/a.jsonl", b"{\"item\":\"burger\",\"priority\":\"medium\"}\n{\"item\":\"pizza\",\"priority\":\"low\"}\n");
    put(&objects, "reference/b.csv", b"item,priority\nsalad,high\n");
    put(&objects, "other/c.csv", b"item,priority\ndonut,high\n");
    objects
}

/// An object enricher that follows a feed (the same in-memory bucket holds the objects and the
/// feed; the feed's prefix is outside the reference prefix).
pub(crate) fn following(
    objects: &MemoryBucket,
    tweak: impl FnOnce(ObjectConfig<Row>) -> ObjectConfig<Row>,
) -> RowEnricher {
    ObjectEnricher::new(
        tweak(row_config()),
        objects.clone(),
        Some(objects.clone()),
        SystemClock,
    )
}
