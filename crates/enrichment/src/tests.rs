//! Unit tests of the enricher's rules with in-memory sources.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use change_protocol::{
    head_key, source_label, AttributeValue, ChangeFile, ChangeKey, ChangeKind, EventName,
    HeadPointer, Item, OpaqueRecord, SequenceNumber, SequenceRange, Source, StreamChange,
};
use chrono::{DateTime, Utc};

use crate::config::*;
use crate::sources::*;
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/1";
const PREFIX: &str = "change_flags/";

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Product {
    item: String,
    price: u32,
    priority: String,
}

#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);
impl ManualClock {
    fn advance(&self, ms: i64) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::milliseconds(ms);
    }
    fn ms(&self) -> i64 {
        self.0.lock().unwrap().timestamp_millis()
    }
}
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn product(item: &str, priority: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    m.insert("priority".to_owned(), AttributeValue::S(priority.into()));
    Item::from(m)
}

fn keys(item: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item.into()));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    Item::from(m)
}

struct Rig {
    table: MemoryTable,
    feed: MemoryBucket,
    clock: ManualClock,
    enricher: TableEnricher<Product, String, MemoryTable, MemoryBucket>,
}

fn rig_with(
    config: impl FnOnce(TableConfig<Product, String>) -> TableConfig<Product, String>,
) -> Rig {
    let table = MemoryTable::new(&["item", "price"]);
    table.set_stream_arn(Some(ARN));
    for (item, priority) in [("salad", "high"), ("pizza", "low"), ("burger", "medium")] {
        table.put(product(item, priority));
    }
    let feed = MemoryBucket::default();
    let clock = ManualClock(Arc::new(Mutex::new(
        DateTime::from_timestamp_millis(1_795_650_000_000).unwrap(),
    )));
    let settings = FeedSettings {
        poll_interval: Duration::ZERO,
        ..FeedSettings::default()
    };
    let cfg = config(
        TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
            Some(p.item.clone())
        })
        .with_feed(settings),
    );
    let enricher = TableEnricher::new(cfg, table.clone(), Some(feed.clone()), clock.clone());
    Rig {
        table,
        feed,
        clock,
        enricher,
    }
}

fn rig() -> Rig {
    rig_with(|c| c)
}

/// One change of the change feed, as a test describes it.
struct Change<'a> {
    seq: u64,
    event: EventName,
    item: &'a str,
    priority: Option<&'a str>,
    /// Creation time relative to the rig clock's start.
    created_ms: i64,
}

fn change(seq: u64, event: EventName, item: &str, priority: Option<&str>) -> StreamChange {
    StreamChange {
        index: 0,
        event_id: format!("e{seq}"),
        event_name: event,
        sequence_number: SequenceNumber::parse(&seq.to_string()).unwrap(),
        approximate_creation_ms: 0,
        stream_view_type: Some("NEW_AND_OLD_IMAGES".into()),
        keys: keys(item),
        new_image: priority.map(|p| product(item, p)),
        old_image: None,
        user_identity: None,
    }
}

impl Rig {
    /// Writes a change file at the clock's time, then the pointer, as the producer does.
    fn write(&self, changes: &[Change<'_>]) -> String {
        self.write_file(changes, ARN, vec![])
    }

    fn write_file(&self, changes: &[Change<'_>], arn: &str, opaque: Vec<OpaqueRecord>) -> String {
        let base = 1_795_650_000_000;
        let list: Vec<StreamChange> = changes
            .iter()
            .map(|c| {
                let mut sc = change(c.seq, c.event, c.item, c.priority);
                sc.approximate_creation_ms = base + c.created_ms;
                sc
            })
            .collect();
        let seqs = list.first().map(|f| SequenceRange {
            first: f.sequence_number.clone(),
            last: list.last().unwrap().sequence_number.clone(),
        });
        let key = ChangeKey {
            time: self.clock.now(),
            label: source_label(arn),
            unique: seqs.is_none().then(|| format!("u{}", self.clock.ms())),
            sequences: seqs,
        }
        .to_key(PREFIX);
        let file = ChangeFile {
            schema_version: 1,
            kind: ChangeKind::Dynamodb,
            written_at: String::new(),
            write_window_ms: 20_000,
            producer: "test".into(),
            source: Source {
                label: source_label(arn),
                table: Some("ProductPriority".into()),
                stream_arn: Some(arn.into()),
                region: None,
                bucket: None,
            },
            changes: list,
            opaque,
            objects: vec![],
            reason: None,
        };
        self.feed.put(&key, file.to_vec());
        self.point_head_at(&key);
        key
    }

    fn point_head_at(&self, key: &str) {
        let pointer = HeadPointer {
            latest: key.into(),
            written_at: String::new(),
        };
        self.feed
            .put(&head_key(PREFIX), serde_json::to_vec(&pointer).unwrap());
    }

    fn priority(&self, item: &str) -> Option<String> {
        self.enricher
            .reader()
            .lookup(item)
            .map(|p| p.priority.clone())
    }

    /// A refresh after the clock moved past the producer's write (and the full load's margin).
    async fn refresh_later(&mut self) -> RefreshReport {
        self.clock.advance(100);
        self.enricher.refresh().await
    }
}

fn modify<'a>(seq: u64, item: &'a str, priority: &'a str, created_ms: i64) -> Change<'a> {
    Change {
        seq,
        event: EventName::Modify,
        item,
        priority: Some(priority),
        created_ms,
    }
}

/// A KEYS_ONLY change (no image): the item must be read.
fn keys_only(seq: u64, item: &str, created_ms: i64) -> Change<'_> {
    Change {
        seq,
        event: EventName::Modify,
        item,
        priority: None,
        created_ms,
    }
}

/// The rig's start plus the 5 s margin: changes created after this apply from their image.
const AFTER_LOAD: i64 = 6_000;

#[tokio::test]
async fn first_refresh_is_a_full_load() {
    let mut r = rig();
    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(r.priority("burger").as_deref(), Some("medium"));
    let m = r.enricher.metrics();
    assert_eq!(m.items_read, 3);
    assert_eq!(m.full_refreshes, 1);
    assert_eq!(r.table.scans(), 4, "4 parallel segments");
}

#[tokio::test]
async fn a_change_with_its_new_image_costs_no_table_read() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert_eq!((report.files, report.applied, report.reread), (1, 1, 0));
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(m.items_read, 3, "only the first load read the table");
    assert_eq!(r.table.batch_gets(), 0);
    assert_eq!(m.delta_refreshes, 1);
}

#[tokio::test]
async fn nothing_changed_costs_one_conditional_get() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.refresh_later().await;
    let lists = r.feed.lists();
    for _ in 0..5 {
        let report = r.refresh_later().await;
        assert!(!report.did_work());
    }
    assert_eq!(r.feed.lists(), lists, "no listing while _head is unchanged");
    assert_eq!(r.enricher.metrics().head_not_modified, 5);
}

#[tokio::test]
async fn a_safety_listing_runs_at_least_once_a_minute() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.refresh_later().await;
    let lists = r.feed.lists();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    r.refresh_later().await;
    assert_eq!(r.feed.lists(), lists + 1);
}

#[tokio::test]
async fn a_change_written_twice_by_a_retry_is_applied_once() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(30);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert_eq!((report.files, report.applied), (2, 1));
    assert_eq!(r.enricher.metrics().changes_skipped, 1);
}

#[tokio::test]
async fn an_older_change_written_later_never_rolls_an_item_back() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(20, "burger", "high", AFTER_LOAD + 2000)]);
    r.refresh_later().await;
    // A backlogged batch with the older change arrives afterwards (another shard, a retry).
    r.write(&[modify(10, "burger", "low", AFTER_LOAD + 1000)]);
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_late_older_modify_after_a_remove_does_not_resurrect_the_item() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.delete(&keys("pizza"));
    r.write(&[Change {
        seq: 30,
        event: EventName::Remove,
        item: "pizza",
        priority: None,
        created_ms: AFTER_LOAD + 3000,
    }]);
    r.refresh_later().await;
    assert_eq!(r.priority("pizza"), None);
    r.write(&[modify(25, "pizza", "high", AFTER_LOAD + 2000)]);
    r.refresh_later().await;
    assert_eq!(r.priority("pizza"), None, "the tombstone keeps it removed");
}

#[tokio::test]
async fn creation_time_disagreeing_with_sequence_order_rereads_the_item() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(20, "burger", "high", AFTER_LOAD + 5000)]);
    r.refresh_later().await;
    // A larger sequence number from another shard, stamped seconds earlier: re-read the truth.
    r.table.put(product("burger", "very high"));
    r.write(&[modify(30, "burger", "low", AFTER_LOAD + 1000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("very high"));
}

#[tokio::test]
async fn keys_only_changes_reread_just_those_items() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("salad", "low"));
    r.write(&[keys_only(11, "salad", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert_eq!((report.applied, report.reread), (0, 1));
    assert_eq!(r.priority("salad").as_deref(), Some("low"));
    assert_eq!(r.table.batch_gets(), 1);
    assert_eq!(r.enricher.metrics().items_read, 3 + 1);
}

#[tokio::test]
async fn changes_stamped_during_the_full_load_are_reread() {
    let mut r = rig();
    r.enricher.refresh().await;
    // Stamped before the load's end plus the margin: the Scan may or may not have seen it.
    r.table.put(product("burger", "high"));
    r.write(&[modify(10, "burger", "stale-image", 1000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn opaque_entries_reread_their_keys_or_force_a_full_reload() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("pizza", "medium"));
    let with_keys = OpaqueRecord {
        index: 0,
        reason: "unknown attribute type".into(),
        sequence_number: Some("12".into()),
        keys: Some(serde_json::to_value(keys("pizza")).unwrap()),
        raw: serde_json::json!({}),
    };
    r.write_file(&[], ARN, vec![with_keys]);
    let report = r.refresh_later().await;
    assert_eq!((report.reread, report.full_reload.clone()), (1, None));
    assert_eq!(r.priority("pizza").as_deref(), Some("medium"));

    let without_keys = OpaqueRecord {
        index: 0,
        reason: "no dynamodb object".into(),
        sequence_number: None,
        keys: None,
        raw: serde_json::json!({}),
    };
    r.write_file(&[], ARN, vec![without_keys]);
    let report = r.refresh_later().await;
    assert!(matches!(
        report.full_reload,
        Some(ReloadReason::OpaqueWithoutKeys { .. })
    ));
}

#[tokio::test]
async fn an_unreadable_change_file_forces_a_reported_full_reload() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("burger", "high"));
    let key = r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.feed
        .put(&key, b"{\"schema_version\": 1, \"kind\": \"dyn".to_vec());
    let report = r.refresh_later().await;
    let Some(ReloadReason::UnreadableFile { file, .. }) = report.full_reload else {
        panic!("expected a reload for the unreadable file: {report:?}");
    };
    assert_eq!(file, key);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    // It is not read again and again.
    r.write(&[modify(11, "pizza", "high", AFTER_LOAD + 500)]);
    let report = r.refresh_later().await;
    assert_eq!(report.full_reload, None);
    assert_eq!(r.enricher.metrics().full_refreshes, 2);
}

#[tokio::test]
async fn an_unknown_schema_version_forces_a_full_reload() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    let key = r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let mut json: serde_json::Value =
        serde_json::from_slice(&r.feed.object(&key).unwrap()).unwrap();
    json["schema_version"] = 99.into();
    r.feed.put(&key, json.to_string().into_bytes());
    let report = r.refresh_later().await;
    let Some(ReloadReason::UnreadableFile { error, .. }) = report.full_reload else {
        panic!("expected a reload for the unknown schema: {report:?}");
    };
    assert!(error.contains("schema version 99"), "{error}");
}

#[tokio::test]
async fn a_new_stream_arn_forces_a_full_reload_and_old_stream_files_are_ignored() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.refresh_later().await;
    let new_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2";
    r.table.put(product("salad", "very high"));
    r.write_file(
        &[modify(1, "salad", "low", AFTER_LOAD + 100)],
        new_arn,
        vec![],
    );
    let report = r.refresh_later().await;
    assert!(matches!(
        report.full_reload,
        Some(ReloadReason::NewStream { .. })
    ));
    assert_eq!(r.priority("salad").as_deref(), Some("very high"));
    r.write(&[modify(99, "salad", "old stream", AFTER_LOAD + 200)]);
    r.refresh_later().await;
    assert_eq!(r.priority("salad").as_deref(), Some("very high"));
    assert_eq!(r.enricher.metrics().ignored_files, 1);
}

#[tokio::test]
async fn listing_pages_are_all_read() {
    let mut r = rig();
    r.feed = r.feed.clone().with_page_size(2);
    let mut e = TableEnricher::new(
        TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
            Some(p.item.clone())
        })
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            ..FeedSettings::default()
        }),
        r.table.clone(),
        Some(r.feed.clone()),
        r.clock.clone(),
    );
    e.refresh().await;
    r.clock.advance(AFTER_LOAD);
    for (i, p) in ["a", "b", "c", "d", "high"].iter().enumerate() {
        r.clock.advance(1);
        r.write(&[modify(10 + i as u64, "burger", p, AFTER_LOAD + i as i64)]);
    }
    r.clock.advance(100);
    let report = e.refresh().await;
    assert_eq!(report.files, 5);
    assert_eq!(e.reader().lookup("burger").unwrap().priority, "high");
    r.enricher = e;
}

#[tokio::test]
async fn a_file_that_becomes_visible_late_is_still_found() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    // The producer read its key time, then the PUT took 12 s (inside W - 5 s).
    let key_time = r.clock.now();
    r.clock.advance(12_000);
    r.refresh_later().await; // a listing happens while the file is not yet visible
    let saved = r.clock.now();
    *r.clock.0.lock().unwrap() = key_time;
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    *r.clock.0.lock().unwrap() = saved;
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn an_idle_consumer_still_finds_a_late_file_after_its_last_listing() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    let listed_at = r.clock.now();
    // No batch for five minutes; meanwhile a file whose key time is just after the last
    // listing became visible late.
    r.clock.advance(300_000);
    let saved = r.clock.now();
    *r.clock.0.lock().unwrap() = listed_at + chrono::Duration::milliseconds(10);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    *r.clock.0.lock().unwrap() = saved;
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_flag_in_the_middle_of_a_batch_splits_old_and_new_data_at_its_position() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let records = vec!["burger", "burger", "FLAG", "burger", "burger"];
    let (outcomes, report) = r
        .enricher
        .enrich(records, |r| {
            if *r == "FLAG" {
                Classified::Flag
            } else {
                Classified::Data((*r).to_owned())
            }
        })
        .await;
    let seen: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enriched { item, .. } => item.priority.clone(),
            Outcome::Flag => "FLAG".into(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["medium", "medium", "FLAG", "high", "high"]);
    assert_eq!(report.flags, 1);
    assert!(report.reconciles());
}

#[tokio::test]
async fn without_a_feed_a_flag_reloads_the_table_like_the_original() {
    let table = MemoryTable::new(&["item", "price"]);
    table.put(product("burger", "medium"));
    let cfg = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    });
    let mut e: TableEnricher<Product, String, MemoryTable, MemoryBucket> =
        TableEnricher::new(cfg, table.clone(), None, SystemClock);
    e.refresh().await;
    table.put(product("burger", "high"));
    let (outcomes, _) = e
        .enrich(vec!["burger", "F", "burger"], |r| {
            if *r == "F" {
                Classified::Flag
            } else {
                Classified::Data((*r).to_owned())
            }
        })
        .await;
    let priorities: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Enriched { item, .. } => Some(item.priority.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(priorities, ["medium", "high"]);
    assert_eq!(e.metrics().full_refreshes, 2);
}

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
async fn a_failing_source_keeps_the_last_snapshot_serving_and_recovers() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.feed.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert!(report.error.unwrap().contains("injected failure"));
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("medium"),
        "last good snapshot"
    );
    assert!(r.enricher.last_error().is_some());
    assert_eq!(r.enricher.metrics().refresh_errors, 1);
    r.feed.set_failing(false);
    let report = r.refresh_later().await;
    assert_eq!(report.error, None);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.last_error().is_none());
}

#[tokio::test(start_paused = true)]
async fn past_the_staleness_limit_records_are_rejected_as_stale() {
    let mut r = rig_with(|c| c.with_max_staleness(Some(Duration::from_secs(60))));
    r.enricher.refresh().await;
    r.feed.set_failing(true);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, report) = r
        .enricher
        .process_batch(vec!["burger"], |r| Classified::Data((*r).to_owned()))
        .await;
    assert_eq!(report.enriched, 1, "within the limit the old data serves");
    tokio::time::advance(Duration::from_secs(31)).await;
    let (outcomes, report) = r
        .enricher
        .process_batch(vec!["burger"], |r| Classified::Data((*r).to_owned()))
        .await;
    assert_eq!(report.rejected, 1);
    let Outcome::Rejected { reason, .. } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert!(reason.to_string().contains("stale"), "{reason}");
    assert!(r.enricher.metrics().staleness.unwrap() > Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn the_maximum_age_forces_a_full_reload_without_a_change() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    tokio::time::advance(Duration::from_secs(601)).await;
    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::MaximumAge));
}

#[tokio::test]
async fn ambiguous_lookup_keys_follow_the_policy() {
    let mut r = rig_with(|c| c.with_ambiguity(Ambiguity::Reject));
    let mut second = product("burger", "low");
    second.insert("price".into(), AttributeValue::N("200".into()));
    r.table.put(second);
    let (_, report) = r
        .enricher
        .process_batch(vec!["burger"], |r| Classified::Data((*r).to_owned()))
        .await;
    assert_eq!(report.rejected, 1);
    assert_eq!(r.enricher.metrics().ambiguous, 1);
}

#[tokio::test]
async fn raw_mode_keeps_attribute_maps() {
    let table = MemoryTable::new(&["item", "price"]);
    table.put(product("burger", "medium"));
    let cfg = TableConfig::raw("ProductPriority", &["item", "price"], |i: &Item| {
        match i.get("item") {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        }
    });
    let mut e: TableEnricher<Item, String, MemoryTable, MemoryBucket> =
        TableEnricher::new(cfg, table, None, SystemClock);
    e.refresh().await;
    let item = e.reader().lookup("burger").unwrap();
    assert_eq!(
        item.get("priority"),
        Some(&AttributeValue::S("medium".into()))
    );
    assert_eq!(item.get("price"), Some(&AttributeValue::N("100".into())));
}

#[tokio::test]
async fn items_that_do_not_decode_are_counted_and_left_out() {
    let mut r = rig();
    let mut bad = product("odd", "x");
    bad.insert("price".into(), AttributeValue::S("not a number".into()));
    r.table.put(bad);
    r.enricher.refresh().await;
    assert_eq!(r.enricher.metrics().undecodable_items, 1);
    assert_eq!(r.enricher.snapshot().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_idle_beyond_the_feed_retention_reloads_fully_and_says_so() {
    let mut r = rig_with(|c| {
        c.with_max_age(None).with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(3 * 24 * 3600),
            ..FeedSettings::default()
        })
    });
    r.enricher.refresh().await;
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    assert_eq!(r.enricher.refresh().await.full_reload, None);
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600 + 60)).await;
    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
}

#[tokio::test]
async fn a_gap_file_makes_every_consumer_reload_fully() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.table.put(product("burger", "high"));
    let key = ChangeKey {
        time: r.clock.now(),
        label: source_label("redrive"),
        sequences: None,
        unique: Some("gap-1".into()),
    }
    .to_key(PREFIX);
    let gap = ChangeFile {
        schema_version: 1,
        kind: ChangeKind::Gap,
        written_at: String::new(),
        write_window_ms: 20_000,
        producer: "write-gap".into(),
        source: Source {
            label: source_label("redrive"),
            ..Source::default()
        },
        changes: vec![],
        opaque: vec![],
        objects: vec![],
        reason: None,
    };
    r.feed.put(&key, gap.to_vec());
    r.point_head_at(&key);
    let report = r.refresh_later().await;
    assert!(matches!(report.full_reload, Some(ReloadReason::Gap { .. })));
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

// --- The follower never loses a change (docs/design.md, section 1) ---

const NEW_ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/ProductPriority/stream/2";

impl Rig {
    /// Writes a `gap` change file at the clock's time, then the pointer.
    fn write_gap(&self) -> String {
        let key = ChangeKey {
            time: self.clock.now(),
            label: source_label("write-gap"),
            sequences: None,
            unique: Some(format!("gap-{}", self.clock.ms())),
        }
        .to_key(PREFIX);
        let gap = ChangeFile {
            schema_version: 1,
            kind: ChangeKind::Gap,
            written_at: String::new(),
            write_window_ms: 20_000,
            producer: "write-gap".into(),
            source: Source {
                label: source_label("write-gap"),
                ..Source::default()
            },
            changes: vec![],
            opaque: vec![],
            objects: vec![],
            reason: Some("test".into()),
        };
        self.feed.put(&key, gap.to_vec());
        self.point_head_at(&key);
        key
    }
}

#[tokio::test]
async fn a_consumer_loaded_before_a_stream_switch_reloads_at_the_new_streams_first_file() {
    // GIVEN a consumer that loaded while the table's stream was ARN and never saw a file of it
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    // WHEN the table is re-created with a new stream (pizza is gone, salad changed, neither
    // streamed) and the first file of the new stream arrives
    r.table.delete(&keys("pizza"));
    r.table.put(product("salad", "very high"));
    r.table.set_stream_arn(Some(NEW_ARN));
    r.write_file(&[modify(1, "burger", "high", AFTER_LOAD)], NEW_ARN, vec![]);
    r.table.put(product("burger", "high"));
    let report = r.refresh_later().await;
    // THEN it reloads, and serves what the table holds
    assert!(
        matches!(&report.full_reload, Some(ReloadReason::NewStream { stream_arn, .. }) if stream_arn == NEW_ARN),
        "{report:?}"
    );
    assert_eq!(r.priority("pizza"), None);
    assert_eq!(r.priority("salad").as_deref(), Some("very high"));
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_late_file_of_the_old_stream_listed_after_the_new_one_changes_nothing() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    // One poll finds a file of the new stream, then a retried file of the old one listed after.
    r.table.set_stream_arn(Some(NEW_ARN));
    r.table.put(product("salad", "new"));
    r.write_file(&[modify(1, "salad", "new", AFTER_LOAD)], NEW_ARN, vec![]);
    r.clock.advance(10);
    r.write(&[modify(900, "salad", "old stream", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert!(matches!(
        report.full_reload,
        Some(ReloadReason::NewStream { .. })
    ));
    assert_eq!(r.priority("salad").as_deref(), Some("new"));
    // The new stream's changes apply from then on; the old stream's are ignored and counted.
    r.clock.advance(AFTER_LOAD);
    r.write_file(
        &[modify(2, "salad", "newer", 2 * AFTER_LOAD + 200)],
        NEW_ARN,
        vec![],
    );
    r.write(&[modify(901, "salad", "old again", 2 * AFTER_LOAD + 300)]);
    let report = r.refresh_later().await;
    assert_eq!(report.full_reload, None, "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("newer"));
    assert_eq!(r.enricher.metrics().other_stream_files, 2);
}

#[tokio::test]
async fn regional_streams_of_a_global_table_do_not_flip_flop() {
    let eu = "arn:aws:dynamodb:eu-west-1:123456789012:table/ProductPriority/stream/9";
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    for (n, arn) in [ARN, eu, ARN, eu].into_iter().enumerate() {
        let seq = 10 + n as u64;
        let priority = format!("p{n}");
        r.write_file(
            &[modify(seq, "burger", &priority, AFTER_LOAD + n as i64 * 10)],
            arn,
            vec![],
        );
        r.clock.advance(5);
    }
    let report = r.refresh_later().await;
    assert_eq!(report.full_reload, None, "{report:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("p2"),
        "own region's newest"
    );
    assert_eq!(r.enricher.metrics().other_stream_files, 2);
    assert_eq!(r.enricher.metrics().full_refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_reload_asked_for_stays_pending_until_it_succeeds() {
    let mut r = rig_with(|c| c.with_max_staleness(Some(Duration::from_secs(60))));
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
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
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write_gap();
    r.table.set_failing(true);
    let scans = r.table.scans();
    // Refreshes every 100 ms for 10 s: attempts at 0, 1, 3 and 7 s, not one per refresh.
    let mut attempts = 0;
    for _ in 0..100 {
        let report = r.refresh_later().await;
        if !report
            .error
            .as_deref()
            .is_some_and(|e| e.contains("next attempt in"))
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
async fn a_failed_maximum_age_reload_keeps_following_the_feed() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    // The reload failed and says so, but the delta applied: the data is current.
    assert!(report.reload_error.is_some(), "{report:?}");
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(report.applied, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.staleness().unwrap() < Duration::from_secs(1));
    // The next refresh does not try the Scan again at once; it follows the feed.
    r.write(&[modify(11, "pizza", "high", AFTER_LOAD + 100)]);
    let report = r.refresh_later().await;
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

#[tokio::test]
async fn an_older_sequence_number_created_later_is_reread() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(20, "burger", "from seq 20", AFTER_LOAD)]);
    r.refresh_later().await;
    assert_eq!(r.priority("burger").as_deref(), Some("from seq 20"));
    // An older sequence number not created later is simply skipped.
    r.write(&[modify(16, "burger", "from seq 16", AFTER_LOAD)]);
    let report = r.refresh_later().await;
    assert_eq!((report.reread, report.applied), (0, 0));
    // Sequence order says older, creation order says later: only a read can tell.
    r.clock.advance(60_000);
    r.table.put(product("burger", "current"));
    r.write(&[modify(15, "burger", "from seq 15", AFTER_LOAD + 3_000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1, "{report:?}");
    assert_eq!(r.priority("burger").as_deref(), Some("current"));
    // After the read, a change made well before it (an older sequence number or not) is
    // reflected by the read: skipped.
    r.write(&[modify(14, "burger", "from seq 14", AFTER_LOAD + 3_500)]);
    let report = r.refresh_later().await;
    assert_eq!((report.reread, report.applied), (0, 0), "{report:?}");
}

#[tokio::test]
async fn a_reread_item_is_as_new_as_the_read() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    // A KEYS_ONLY change is re-read at the clock's time T.
    r.table.put(product("salad", "read at T"));
    r.write(&[keys_only(10, "salad", AFTER_LOAD)]);
    r.clock.advance(10_000);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1);
    let read_at = r.clock.ms() - 1_795_650_000_000;
    // A change with a higher sequence number but made before the read arrives late: the read
    // already reflects it (or something newer), so its image must not roll the item back.
    r.write(&[modify(11, "salad", "stale image", read_at - 4_000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.applied, 0, "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("read at T"));
    // A change made after the read (plus the margin) applies from its image.
    r.write(&[modify(12, "salad", "after the read", read_at + 6_000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.applied, 1, "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("after the read"));
}

// Found by review: interleavings around re-reads, retention and pending reloads.

#[tokio::test]
async fn an_older_sequence_made_just_after_a_reread_is_not_lost() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("salad", "read at T"));
    r.write(&[keys_only(20, "salad", AFTER_LOAD)]);
    r.clock.advance(10_000);
    assert_eq!(r.refresh_later().await.reread, 1);
    let read_at = r.clock.ms() - 1_795_650_000_000;
    // 2 s after the read (inside the margin), from another shard: a lower sequence number.
    r.clock.advance(2_000);
    r.table.put(product("salad", "after the read"));
    r.write(&[modify(15, "salad", "after the read", read_at + 2_000)]);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1, "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("after the read"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_does_not_hide_the_retention_reload() {
    let mut r = rig_with(|c| {
        c.with_max_age(Some(Duration::from_secs(6 * 3600)))
            .with_max_staleness(Some(Duration::from_secs(900)))
            .with_feed(FeedSettings {
                poll_interval: Duration::ZERO,
                retention: Duration::from_secs(3 * 24 * 3600),
                ..FeedSettings::default()
            })
    });
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
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

#[tokio::test(start_paused = true)]
async fn a_failed_maximum_age_reload_at_a_flag_holds_no_current_record() {
    let mut r = rig_with(|c| c.with_max_age(Some(Duration::from_secs(600))));
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    tokio::time::advance(Duration::from_secs(601)).await;
    r.table.set_failing(true);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let (outcomes, report) = r
        .enricher
        .enrich(vec!["FLAG", "burger"], |r| {
            if *r == "FLAG" {
                Classified::Flag
            } else {
                Classified::Data((*r).to_owned())
            }
        })
        .await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert_eq!(report.held, 0, "{:?} {outcomes:?}", report.retry);
    assert!(report.refreshes[0].reload_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_recovered_pending_reload_follows_the_feed_from_its_own_position() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.refresh_later().await;
    r.write_gap();
    r.table.set_failing(true);
    r.refresh_later().await;
    // Twenty changes during the outage; the reload after it covers them all.
    for i in 0..20u64 {
        r.clock.advance(5_000);
        let p = format!("p{i}");
        let created = r.clock.ms() - 1_795_650_000_000;
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

// --- Review 2 of ab076fd ---

/// A table whose BatchGetItem is answered `latency_ms` after the read is served, and which
/// serves only the first key of a call for `throttled` calls, leaving the others unprocessed (as a throttled table
/// does). The rig's clock follows tokio's (paused) time, so the enricher's own backoff sleeps
/// move it.
#[derive(Clone)]
struct SlowTable {
    inner: MemoryTable,
    clock: ManualClock,
    latency_ms: i64,
    throttled: Arc<Mutex<u32>>,
    last: Arc<Mutex<tokio::time::Instant>>,
}

impl SlowTable {
    fn new(r: &Rig, latency_ms: i64) -> Self {
        SlowTable {
            inner: r.table.clone(),
            clock: r.clock.clone(),
            latency_ms,
            throttled: Arc::default(),
            last: Arc::new(Mutex::new(tokio::time::Instant::now())),
        }
    }
}

impl TableSource for SlowTable {
    async fn scan_page(
        &self,
        segment: i32,
        total: i32,
        start: Option<Item>,
    ) -> Result<ScanPage, SourceError> {
        self.inner.scan_page(segment, total, start).await
    }
    async fn latest_stream_arn(&self) -> Result<Option<String>, SourceError> {
        self.inner.latest_stream_arn().await
    }
    async fn batch_get(&self, mut keys: Vec<Item>) -> Result<BatchGet, SourceError> {
        {
            let mut last = self.last.lock().unwrap();
            let now = tokio::time::Instant::now();
            self.clock.advance((now - *last).as_millis() as i64);
            *last = now;
        }
        let mut unprocessed = vec![];
        {
            let mut n = self.throttled.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                // The first key of the call is served (unless it is the only one).
                unprocessed = keys.split_off(usize::from(keys.len() > 1));
            }
        }
        let mut got = self.inner.batch_get(keys).await?; // the items are read now
        got.unprocessed.extend(unprocessed);
        self.clock.advance(self.latency_ms); // ... and the answer arrives later
        Ok(got)
    }
}

fn slow_enricher(
    r: &Rig,
    table: SlowTable,
    margin: Duration,
) -> TableEnricher<Product, String, SlowTable, MemoryBucket> {
    let cfg = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_feed(FeedSettings {
        poll_interval: Duration::ZERO,
        clock_margin: margin,
        ..FeedSettings::default()
    });
    TableEnricher::new(cfg, table, Some(r.feed.clone()), r.clock.clone())
}

const BASE: i64 = 1_795_650_000_000;

#[tokio::test(start_paused = true)]
async fn a_change_made_after_the_item_was_read_is_not_skipped_while_other_keys_are_retried() {
    let r = rig();
    let table = SlowTable::new(&r, 0);
    let mut e = slow_enricher(&r, table.clone(), Duration::from_secs(5));
    e.refresh().await;
    r.clock.advance(AFTER_LOAD);
    // Two KEYS_ONLY changes: pizza and salad are read in one BatchGetItem; pizza is served at
    // once, salad is left unprocessed six times (the loader's backoff: 9.4 s).
    r.table.put(product("pizza", "read at T"));
    r.write(&[
        keys_only(10, "pizza", AFTER_LOAD),
        keys_only(11, "salad", AFTER_LOAD),
    ]);
    r.clock.advance(100);
    let pizza_read_at = r.clock.ms() - BASE;
    *table.throttled.lock().unwrap() = 6;
    let report = e.refresh().await;
    assert_eq!(report.reread, 2, "{report:?}");
    assert_eq!(e.reader().lookup("pizza").unwrap().priority, "read at T");
    // 1 s after pizza was read (salad still being retried), pizza changes: a newer sequence
    // number, created after the read that pizza's value came from.
    r.table.put(product("pizza", "changed after its read"));
    r.write(&[modify(
        12,
        "pizza",
        "changed after its read",
        pizza_read_at + 1_000,
    )]);
    r.clock.advance(100);
    let report = e.refresh().await;
    assert_eq!(
        e.reader().lookup("pizza").unwrap().priority,
        "changed after its read",
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_zero_margin_a_change_made_while_the_read_was_answered_is_not_skipped() {
    let r = rig();
    // The emulator tests' setting: margin 0. BatchGetItem answers 30 ms after it read.
    let table = SlowTable::new(&r, 30);
    let mut e = slow_enricher(&r, table, Duration::ZERO);
    e.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("salad", "read at 6.980"));
    r.write(&[keys_only(10, "salad", AFTER_LOAD)]);
    r.clock.advance(980); // read served at 6.980 s, answered at 7.010 s
    assert_eq!(e.refresh().await.reread, 1);
    // At 6.990 s, after the read, salad changes (creation second 6).
    r.table.put(product("salad", "changed at 6.990"));
    r.write(&[modify(11, "salad", "changed at 6.990", 6_990)]);
    r.clock.advance(100);
    let report = e.refresh().await;
    assert_eq!(
        e.reader().lookup("salad").unwrap().priority,
        "changed at 6.990",
        "{report:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_feed_a_failing_maximum_age_reload_is_not_current() {
    let table = MemoryTable::new(&["item", "price"]);
    table.put(product("burger", "medium"));
    let cfg = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_max_age(Some(Duration::from_secs(600)))
    .with_max_staleness(Some(Duration::from_secs(900)));
    let mut e: TableEnricher<Product, String, MemoryTable, MemoryBucket> =
        TableEnricher::new(cfg, table.clone(), None, SystemClock);
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

#[tokio::test(start_paused = true)]
async fn a_flag_for_s3_objects_holds_nothing_while_a_table_reload_is_pending() {
    // A table consumer with a reload pending (the table throttles) meets a protocol flag,
    // which names an S3 object: not its data, so the records after it are not held.
    let mut r = rig();
    r.enricher.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write_gap();
    r.table.set_failing(true);
    r.refresh_later().await;
    assert!(r.enricher.pending_reload().is_some());
    let flag = change_protocol::ChangeFlag::new(
        change_protocol::ObjectChange {
            bucket: "ref-bucket".into(),
            key: "reference/menu.csv".into(),
            event_name: "ObjectCreated:Put".into(),
            removed: false,
            event_time: "2026-12-01T10:00:00.000Z".into(),
            version_id: None,
            etag: None,
            sequencer: None,
        },
        None,
    );
    let (_, report) = r
        .enricher
        .enrich(vec!["FLAG", "burger"], |rec| {
            if *rec == "FLAG" {
                Classified::ChangeFlag(flag.clone())
            } else {
                Classified::Data((*rec).to_owned())
            }
        })
        .await;
    assert_eq!((report.held, report.retry.clone()), (0, None), "{report:?}");
    assert_eq!(r.enricher.metrics().ignored_flags, 1);
}

// --- Feed snapshots (docs/design.md, feed snapshots) ---

type RawFollower = TableEnricher<Item, String, MemoryTable, MemoryBucket>;

impl Rig {
    /// A follower of raw items on the rig's table, feed and clock: what the feed-compactor runs.
    fn compactor(&self) -> RawFollower {
        let config = TableConfig::raw("ProductPriority", &["item", "price"], |_: &Item| {
            None::<String>
        })
        .with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            ..FeedSettings::default()
        });
        TableEnricher::new(
            config,
            self.table.clone(),
            Some(self.feed.clone()),
            self.clock.clone(),
        )
    }

    /// Publishes `follower`'s snapshot as the compactor does: the compressed object, then the
    /// pointer to it. Returns the object's key.
    fn publish(&self, follower: &RawFollower) -> String {
        let now = self.clock.now();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let (gz, header) = follower.write_feed_snapshot(gz, now).expect("current");
        let key = change_protocol::snapshot_key(
            change_protocol::DEFAULT_SNAPSHOT_PREFIX,
            &header.table,
            now,
        );
        self.feed.put(&key, gz.finish().unwrap());
        let pointer = change_protocol::SnapshotPointer::to(key.clone(), &header);
        self.feed.put(
            &change_protocol::snapshot_pointer_key(
                change_protocol::DEFAULT_SNAPSHOT_PREFIX,
                &header.table,
            ),
            serde_json::to_vec(&pointer).unwrap(),
        );
        key
    }

    /// Rewrites the snapshot at `key` and its pointer as a compactor before schema 2 wrote them:
    /// schema 1, every entry with its keys (an item's beside the item).
    fn rewrite_as_schema_1(&self, key: &str) {
        use std::io::{BufRead, Write};
        let body = self.feed.object(key).unwrap();
        let lines = std::io::BufReader::new(flate2::bufread::GzDecoder::new(body.as_slice()));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut items_rewritten = 0;
        for (i, line) in lines.lines().enumerate() {
            let mut v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            if i == 0 {
                assert_eq!(v["schema"], 2);
                v["schema"] = 1.into();
            } else if let Some(item) = v.get("item") {
                assert!(v.get("keys").is_none());
                let keys: serde_json::Map<_, _> = ["item", "price"]
                    .into_iter()
                    .map(|k| (k.to_owned(), item[k].clone()))
                    .collect();
                v["keys"] = keys.into();
                items_rewritten += 1;
            }
            serde_json::to_writer(&mut gz, &v).unwrap();
            gz.write_all(b"\n").unwrap();
        }
        assert!(items_rewritten > 0);
        self.feed.put(key, gz.finish().unwrap());
        let pointer_key = change_protocol::snapshot_pointer_key(
            change_protocol::DEFAULT_SNAPSHOT_PREFIX,
            "ProductPriority",
        );
        let mut pointer: change_protocol::SnapshotPointer =
            serde_json::from_slice(&self.feed.object(&pointer_key).unwrap()).unwrap();
        pointer.schema = 1;
        self.feed
            .put(&pointer_key, serde_json::to_vec(&pointer).unwrap());
    }
}

#[tokio::test]
async fn a_new_consumer_starts_from_the_snapshot_reads_no_table_item_and_catches_up() {
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    let key = r.publish(&compactor);
    let scans = r.table.scans();
    // A change written after the snapshot's position
    r.clock.advance(AFTER_LOAD + 1000);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD + 1000)]);

    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(report.snapshot.as_deref(), Some(key.as_str()));
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "caught up before serving"
    );
    assert_eq!(r.priority("salad").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(m.items_read, 0, "no table item read");
    assert_eq!(r.table.scans(), scans, "no Scan");
    assert_eq!((m.snapshot_loads, m.scan_loads), (1, 0));
    assert_eq!(m.changes_applied, 1, "the change applied from its image");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_started_from_a_snapshot_neither_repeats_nor_rolls_back_what_it_holds() {
    started_from_a_snapshot_neither_repeats_nor_rolls_back(false).await;
}

#[tokio::test(start_paused = true)]
async fn an_older_compactors_schema_1_snapshot_applies_the_same_rules() {
    started_from_a_snapshot_neither_repeats_nor_rolls_back(true).await;
}

async fn started_from_a_snapshot_neither_repeats_nor_rolls_back(schema_1: bool) {
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    r.table.delete(&keys("pizza"));
    r.write(&[
        modify(12, "burger", "low", AFTER_LOAD + 1000),
        Change {
            seq: 30,
            event: EventName::Remove,
            item: "pizza",
            priority: None,
            created_ms: AFTER_LOAD + 2000,
        },
    ]);
    r.clock.advance(100);
    compactor.refresh().await;
    // Past the look-back window (a minute later the compactor's safety listing moves its
    // position): the consumer will not list those files again, only the snapshot's per-item
    // state (sequence numbers, the tombstone) can decide.
    tokio::time::advance(Duration::from_secs(61)).await;
    r.clock.advance(61_000);
    compactor.refresh().await;
    let key = r.publish(&compactor);
    if schema_1 {
        r.rewrite_as_schema_1(&key);
    }
    // After the snapshot: a retried copy of the older burger change, and a late older pizza
    // change, both written under newer keys.
    r.clock.advance(100);
    r.write(&[
        modify(10, "burger", "high", AFTER_LOAD),
        modify(25, "pizza", "high", AFTER_LOAD + 1500),
    ]);

    let report = r.enricher.refresh().await;
    assert_eq!(report.snapshot.as_deref(), Some(key.as_str()), "{report:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("low"),
        "the older change is not applied again over the newer one"
    );
    assert_eq!(
        r.priority("pizza"),
        None,
        "the snapshot's tombstone keeps pizza removed"
    );
    assert_eq!(r.enricher.metrics().items_read, 0);
}

#[tokio::test]
async fn a_gap_after_the_snapshot_forces_a_scan() {
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor);
    r.clock.advance(1000);
    r.table.put(product("burger", "high")); // a change the stream lost
    r.write_gap();

    let report = r.enricher.refresh().await;
    assert!(
        matches!(report.full_reload, Some(ReloadReason::Gap { .. })),
        "{report:?}"
    );
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!((m.snapshot_loads, m.scan_loads), (1, 1));
}

#[tokio::test]
async fn a_snapshot_of_another_stream_is_refused_and_the_table_scanned() {
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor);
    r.table.set_stream_arn(Some(NEW_ARN));
    r.table.put(product("burger", "high"));

    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_none());
    let why = report.snapshot_refused.expect("says why");
    assert!(why.contains("stream"), "{why}");
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(
        (m.snapshot_loads, m.scan_loads, m.snapshot_fallbacks),
        (0, 1, 1)
    );
}

#[tokio::test]
async fn a_corrupt_or_foreign_snapshot_falls_back_to_a_scan() {
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    let key = r.publish(&compactor);
    // Truncated: the compressed stream ends early.
    let whole = r.feed.object(&key).unwrap();
    r.feed.put(&key, whole[..whole.len() / 2].to_vec());
    let report = r.enricher.refresh().await;
    let why = report.snapshot_refused.expect("refused");
    assert!(why.contains(&key), "{why}");
    assert_eq!(r.enricher.metrics().scan_loads, 1);
    assert_eq!(r.enricher.snapshot().len(), 3);

    // A pointer of another table under this table's name.
    let mut r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor);
    let pointer_key = change_protocol::snapshot_pointer_key(
        change_protocol::DEFAULT_SNAPSHOT_PREFIX,
        "ProductPriority",
    );
    let mut pointer: change_protocol::SnapshotPointer =
        serde_json::from_slice(&r.feed.object(&pointer_key).unwrap()).unwrap();
    pointer.table = "Other".into();
    r.feed
        .put(&pointer_key, serde_json::to_vec(&pointer).unwrap());
    let why = r
        .enricher
        .refresh()
        .await
        .snapshot_refused
        .expect("refused");
    assert!(why.contains("table Other"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn a_consumer_idle_past_the_retention_reloads_from_the_latest_snapshot() {
    let settings = FeedSettings {
        poll_interval: Duration::ZERO,
        retention: Duration::from_secs(3 * 24 * 3600),
        ..FeedSettings::default()
    };
    let mut r = rig_with(|c| c.with_max_age(None).with_feed(settings.clone()));
    r.enricher.refresh().await;
    assert_eq!(r.enricher.metrics().scan_loads, 1);
    // Two days and more later: the compactor, following all along, publishes.
    let idle = Duration::from_secs(2 * 24 * 3600 + 60);
    tokio::time::advance(idle).await;
    r.clock.advance(idle.as_millis() as i64);
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor);

    let report = r.enricher.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::BeyondRetention));
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(r.enricher.metrics().scan_loads, 1, "no second Scan");
}

#[tokio::test]
async fn a_snapshot_older_than_the_retention_is_refused() {
    let mut r = rig_with(|c| {
        c.with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            retention: Duration::from_secs(2 * 24 * 3600),
            ..FeedSettings::default()
        })
    });
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor);
    r.clock.advance(24 * 3600 * 1000 + 1000);
    let why = r
        .enricher
        .refresh()
        .await
        .snapshot_refused
        .expect("refused");
    assert!(why.contains("retention"), "{why}");
}

#[tokio::test]
async fn a_follower_with_a_pending_reload_writes_no_snapshot() {
    let r = rig();
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.clock.advance(1000);
    r.write_gap();
    r.table.set_failing(true);
    compactor.refresh().await;
    let err = compactor
        .write_feed_snapshot(Vec::new(), r.clock.now())
        .unwrap_err();
    assert!(matches!(err, NotCurrent::ReloadPending(_)), "{err}");
    r.table.set_failing(false);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the first backoff
    compactor.refresh().await;
    assert!(compactor
        .write_feed_snapshot(Vec::new(), r.clock.now())
        .is_ok());
}

// --- Review of feed snapshots: interleavings that lose a change ---

/// A feed whose listings fail while `failing` is set; object GETs (the snapshot pointer and
/// object, change files) keep working.
#[derive(Clone)]
struct ListingFails {
    bucket: MemoryBucket,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl FeedSource for ListingFails {
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SourceError {
                operation: "ListObjectsV2",
                message: "injected failure".into(),
            });
        }
        FeedSource::list(&self.bucket, prefix, start_after, token).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        FeedSource::get(&self.bucket, key).await
    }

    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<Conditional, SourceError> {
        self.bucket.head_state(key, etag).await
    }
}

/// The retention rule ("a consumer whose last listing is older than the retention minus a day
/// does a full reload") is measured from the moment the snapshot was loaded, not from the
/// snapshot's position L, which is where the consumer actually follows from. A consumer that
/// starts from a snapshot 1.9 days old (retention 3 days, so accepted) and cannot list for a
/// while believes its last listing is only as old as the load: when it lists again, L is past
/// the retention, the change files right after L have expired, and it never reloads.
#[tokio::test(start_paused = true)]
async fn the_retention_counts_from_the_snapshots_position_not_from_the_load() {
    let settings = FeedSettings {
        poll_interval: Duration::ZERO,
        retention: Duration::from_secs(3 * 24 * 3600),
        ..FeedSettings::default()
    };
    let r = rig_with(|c| c.with_max_age(None).with_feed(settings.clone()));
    let mut compactor = r.compactor();
    compactor.refresh().await;
    r.publish(&compactor); // L = the compactor's Scan position; the compactor then stops
    r.clock.advance(AFTER_LOAD);
    r.table.put(product("burger", "high"));
    let file = r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);

    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let feed = ListingFails {
        bucket: r.feed.clone(),
        failing: failing.clone(),
    };
    let config = TableConfig::new("ProductPriority", &["item", "price"], |p: &Product| {
        Some(p.item.clone())
    })
    .with_max_age(None)
    .with_feed(settings);
    let mut consumer: TableEnricher<Product, String, MemoryTable, ListingFails> =
        TableEnricher::new(config, r.table.clone(), Some(feed), r.clock.clone());

    // 1.9 days after L: the snapshot is within the retention minus a day (2 days): loaded; the
    // catch-up listing fails.
    let step = Duration::from_secs(19 * 24 * 360);
    tokio::time::advance(step).await;
    r.clock.advance(step.as_millis() as i64);
    let report = consumer.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert!(report.error.is_some(), "{report:?}");

    // Listings keep failing for 1.2 days: L is now 3.1 days old, past the retention, and the
    // file written right after L has expired (the bucket's lifecycle rule).
    for _ in 0..12 {
        let step = Duration::from_secs(24 * 360);
        tokio::time::advance(step).await;
        r.clock.advance(step.as_millis() as i64);
        consumer.refresh().await;
    }
    r.feed.remove(&file);
    failing.store(false, std::sync::atomic::Ordering::SeqCst);

    let report = consumer.refresh().await;
    let burger = consumer
        .reader()
        .lookup("burger")
        .map(|p| p.priority.clone());
    assert_eq!(
        burger.as_deref(),
        Some("high"),
        "the last listing the consumer follows from (L) is 3.1 days old, past the retention: \
         a full reload was due, yet it listed from L and missed the expired change ({report:?})"
    );
}

/// A snapshot carries the compactor's W but not the clock margin its position L (and R, and the
/// Read stamps) was taken with, and L is on the compactor's clock. Each follower satisfies the
/// margin rule on its own (the compactor's clock leads by 4 s, within its 5 s margin; the
/// consumer's own clock and the producers' are exact, so it runs with 1 s), yet a consumer
/// following from L with its own margin starts its first listing too late and never sees a
/// change file that became visible just after the compactor's listing (19 s after its key time,
/// within W).
#[tokio::test]
async fn the_first_listing_from_a_snapshot_uses_the_compactors_margin_on_its_clock() {
    let mut r = rig_with(|c| {
        c.with_feed(FeedSettings {
            poll_interval: Duration::ZERO,
            clock_margin: Duration::from_secs(1),
            ..FeedSettings::default()
        })
    });
    // The compactor's clock leads the producers' (and the consumer's) by 4 s.
    let lead = 4_000;
    let compactor_clock = ManualClock(Arc::new(Mutex::new(
        r.clock.now() + chrono::Duration::milliseconds(lead),
    )));
    let config = TableConfig::raw("ProductPriority", &["item", "price"], |_: &Item| {
        None::<String>
    })
    .with_feed(FeedSettings {
        poll_interval: Duration::ZERO,
        ..FeedSettings::default() // 5 s margin: covers its 4 s lead
    });
    let mut compactor: RawFollower = TableEnricher::new(
        config,
        r.table.clone(),
        Some(r.feed.clone()),
        compactor_clock.clone(),
    );
    let advance = |ms: i64| {
        r.clock.advance(ms);
        compactor_clock.advance(ms);
    };
    compactor.refresh().await; // Scan
    advance(60_000);
    r.table.put(product("salad", "low"));
    r.write(&[modify(5, "salad", "low", 60_000)]);
    compactor.refresh().await; // a complete listing at t1: L = t1 + 4 s (its clock)

    // A producer read its key time 19 s before t1 and its PUT became visible just after the
    // compactor's listing (within W = 20 s): the burger change is in no listing before L.
    r.table.put(product("burger", "high"));
    r.clock.advance(-19_000);
    r.write(&[modify(10, "burger", "high", 60_000 - 19_500)]);
    r.clock.advance(19_000);
    r.publish(&compactor);
    advance(100);

    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("low"));
    // The compactor itself, following on, sees the file (its look-back uses its own margin).
    let own = compactor.refresh().await;
    assert_eq!(own.applied, 1, "{own:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "the consumer listed from L − W − 1 s on the compactor's clock and skipped the file"
    );
}

/// The maximum age exists to check the data against the table itself (`snapshot_allowed` refuses
/// snapshots for it), but it is measured from the load, and a load from a snapshot counts as a
/// fresh one. A compactor whose environment is recycled every few hours (cold starts load the
/// latest snapshot, as designed) never reaches its maximum age, so its R never moves: a change
/// the feed did not carry stays out of every snapshot, and every consumer started from one,
/// for as long as that goes on (a warm compactor or a Scanning consumer would have corrected it
/// within 6 h).
#[tokio::test(start_paused = true)]
async fn a_chain_of_snapshot_loads_still_reaches_the_maximum_age() {
    let mut r = rig(); // consumer and compactor: maximum age 6 h
    let mut compactor = r.compactor();
    compactor.refresh().await; // the only Scan
    r.publish(&compactor);
    // A change the feed never carried: what the maximum-age Scan exists to catch.
    r.table.put(product("burger", "high"));
    let mut scans = 0;
    for _ in 0..4 {
        let step = Duration::from_secs(3 * 3600);
        tokio::time::advance(step).await;
        r.clock.advance(step.as_millis() as i64);
        let mut cold = r.compactor();
        let report = cold.refresh().await;
        // Cold starts load the latest snapshot until its Scan is past the maximum age; then
        // that start Scans (and its R is new).
        scans += u32::from(report.snapshot.is_none());
        r.publish(&cold);
    }
    assert_eq!(
        scans, 1,
        "the cold start at 9 h (its snapshot's Scan 9 h old) Scanned"
    );
    // 12 h after the only Scan, twice the maximum age.
    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(
        r.priority("burger").as_deref(),
        Some("high"),
        "the snapshot descends from a Scan twice the maximum age old and was taken for a fresh load"
    );
}
