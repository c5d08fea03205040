//! The as-of rules against a model: random writes over time (puts, removals, re-inserts, and
//! changes without images), folded partly into a snapshot, the rest delivered as change files in
//! any order, some twice; then every item at any time of the window answers what the model held.
//! And the refusals: a gap file, an unreadable file, a stream switch.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use stream_refdata_protocol::{
    AttributeValue, ChangeFile, ChangeKind, EntryBody, EventName, Item, SequenceNumber,
    SnapshotEntry, SnapshotHeader, Source, StreamChange,
};

use super::*;
use crate::lifecycle::config::DecodeError;

const ITEMS: [&str; 3] = ["a", "b", "c"];
const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2026-01-01T00:00:00.000";

type Value = (String, String);

fn item(name: &str, value: Option<&str>) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(name.into()));
    if let Some(v) = value {
        m.insert("value".to_owned(), AttributeValue::S(v.into()));
    }
    Item::from(m)
}

fn builder(starts_ms: i64) -> HistoryBuilder<Value, String> {
    let decode: Decoder<Value> = Arc::new(|i: Item| {
        let text = |k: &str| match i.get(k) {
            Some(AttributeValue::S(s)) => Ok(s.clone()),
            _ => Err(DecodeError::new(format!("no {k}"))),
        };
        Ok((text("item")?, text("value")?))
    });
    let key: LookupKeyFn<Value, String> = Arc::new(|v: &Value| Some(v.0.clone()));
    HistoryBuilder::new(&["item"], decode, key, Ambiguity::LowestKey, starts_ms)
}

/// One write of the model.
#[derive(Clone, Debug)]
struct Write {
    at_ms: i64,
    item: usize,
    /// The value written; `None` removes the item.
    value: Option<u8>,
    /// The stream carried no image (KEYS_ONLY): the change does not say the value.
    keys_only: bool,
}

fn write() -> impl Strategy<Value = (u16, usize, Option<u8>, bool)> {
    (
        0u16..2_500,
        0..ITEMS.len(),
        prop::option::weighted(0.8, 0u8..4),
        prop::bool::weighted(0.15),
    )
}

/// What the model says item `i` was at `t`: the last write of it whose second (or the
/// history's start, if later) is at or before `t`.
#[derive(Debug, PartialEq)]
enum Expected {
    Value(u8),
    Missing,
    Unknown,
}

fn expected_of(writes: &[Write], i: usize, t: i64, starts_ms: i64, split: usize) -> Expected {
    let last = (writes.iter().enumerate())
        .rfind(|(_, w)| w.item == i && second_of(w.at_ms).max(starts_ms) <= t);
    match last {
        None => Expected::Missing,
        // (a change without an image, unless the snapshot folded it: a read gave its value)
        Some((n, w)) if w.keys_only && w.value.is_some() && n >= split => Expected::Unknown,
        Some((_, w)) => w.value.map_or(Expected::Missing, Expected::Value),
    }
}

/// What a lookup of item `i` at `t` answers: its value, unless an item is unknown then (a
/// change without an image may have given it any lookup key).
fn expected(writes: &[Write], i: usize, t: i64, starts_ms: i64, split: usize) -> Expected {
    let own = expected_of(writes, i, t, starts_ms, split);
    if own == Expected::Unknown {
        return own;
    }
    for j in (0..ITEMS.len()).filter(|j| *j != i) {
        if expected_of(writes, j, t, starts_ms, split) == Expected::Unknown {
            return Expected::Unknown;
        }
    }
    own
}

fn change(seq: u64, w: &Write) -> StreamChange {
    let name = ITEMS[w.item];
    let value = w.value.map(|v| v.to_string());
    StreamChange {
        index: 0,
        event_id: format!("e{seq}"),
        event_name: if w.value.is_some() {
            EventName::Modify
        } else {
            EventName::Remove
        },
        sequence_number: SequenceNumber::parse(&(1000 + seq).to_string()).unwrap(),
        approximate_creation_ms: second_of(w.at_ms),
        stream_view_type: Some(
            if w.keys_only {
                "KEYS_ONLY"
            } else {
                "NEW_AND_OLD_IMAGES"
            }
            .into(),
        ),
        keys: item(name, None),
        new_image: (!w.keys_only)
            .then(|| value.as_deref().map(|v| item(name, Some(v))))
            .flatten(),
        old_image: None,
        user_identity: None,
    }
}

fn file(changes: Vec<StreamChange>, kind: ChangeKind, arn: &str) -> ChangeFile {
    ChangeFile {
        schema_version: 1,
        kind,
        written_at: String::new(),
        write_window_ms: 20_000,
        producer: "test".into(),
        source: Source {
            label: stream_refdata_protocol::source_label(arn),
            table: Some("T".into()),
            stream_arn: Some(arn.into()),
            region: None,
            bucket: None,
        },
        changes,
        opaque: vec![],
        objects: vec![],
        reason: None,
    }
}

fn header(position_ms: i64) -> SnapshotHeader {
    SnapshotHeader {
        kind: stream_refdata_protocol::SNAPSHOT_KIND.into(),
        schema: stream_refdata_protocol::SNAPSHOT_SCHEMA,
        table: "T".into(),
        key_attributes: vec!["item".into()],
        stream_arn: Some(ARN.into()),
        position_ms,
        full_load_end_ms: None,
        full_load_start_ms: None,
        write_window_ms: 20_000,
        clock_margin_ms: 0,
        created_ms: position_ms,
        items: 0,
        tombstones: 0,
    }
}

/// Adds `later` to a built history in `steps` extensions of about equal size (a warm consumer's
/// history extended batch by batch).
fn extend_in_steps(
    history: &mut History<Value, String>,
    later: Vec<(String, ChangeFile)>,
    steps: usize,
) {
    let per = later.len().div_ceil(steps).max(1);
    let mut later = later.into_iter().peekable();
    while later.peek().is_some() {
        history.extend(later.by_ref().take(per).collect::<Vec<_>>(), i64::MAX);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_item_at_every_time_of_the_window_is_what_the_model_held(
        raw in prop::collection::vec(write(), 1..30),
        split in 0usize..30,
        overlap in 0usize..4,
        chunk in 1usize..5,
        order in any::<u64>(),
        twice in prop::collection::vec(any::<bool>(), 0..10),
        extend_at in 0usize..12,
        steps in 1usize..4,
    ) {
        // Writes in time order (the sequence numbers' order).
        let mut writes: Vec<Write> = raw
            .into_iter()
            .map(|(at, item, value, keys_only)| Write {
                at_ms: 1_795_650_000_000 + i64::from(at) * 7,
                item,
                value,
                keys_only,
            })
            .collect();
        writes.sort_by_key(|w| w.at_ms);
        let split = split.min(writes.len());
        // A snapshot of the first `split` writes (their values as a read at its position
        // gives them), at the last one's time; the files hold the rest, and a few of the
        // folded ones again (the follower's look-back).
        let mut b = builder(1_795_650_000_000);
        let mut whole = builder(1_795_650_000_000);
        let starts_ms = if split > 0 {
            let position = writes[split - 1].at_ms;
            let mut last: HashMap<usize, (u64, Option<u8>, i64)> = HashMap::new();
            for (seq, w) in writes[..split].iter().enumerate() {
                last.insert(w.item, (seq as u64, w.value, w.at_ms));
            }
            // (each as the follower applied it: the change's sequence number and time)
            let entries = last.into_iter().map(|(i, (seq, value, at))| SnapshotEntry {
                seq: Some(SequenceNumber::parse(&(1000 + seq).to_string()).unwrap()),
                stamp: Some(stream_refdata_protocol::EntryStamp::Change {
                    created_ms: second_of(at),
                }),
                body: match value {
                    Some(v) => EntryBody::Item(item(ITEMS[i], Some(&v.to_string()))),
                    None => EntryBody::Tombstone(item(ITEMS[i], None)),
                },
            });
            let entries: Vec<SnapshotEntry> = entries.collect();
            b.snapshot(&header(position), entries.clone());
            whole.snapshot(&header(position), entries);
            position
        } else {
            // (nothing before the first write: the table was new)
            b.empty_at_start();
            whole.empty_at_start();
            1_795_650_000_000
        };
        let from = split.saturating_sub(overlap);
        let changes: Vec<StreamChange> = (from..writes.len())
            .map(|i| change(i as u64, &writes[i]))
            .collect();
        let mut files: Vec<Vec<StreamChange>> = changes.chunks(chunk).map(<[_]>::to_vec).collect();
        for (i, again) in twice.iter().enumerate() {
            if *again && i < files.len() {
                files.push(files[i].clone());
            }
        }
        // Any order (late files).
        let mut rng = order;
        for i in (1..files.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            files.swap(i, (rng >> 33) as usize % (i + 1));
        }
        // Some files read before the history is built, the rest added to it later (a warm
        // consumer's history extended batch by batch): the answers are the same.
        let mut files: Vec<(String, ChangeFile)> = (files.into_iter().enumerate())
            .map(|(n, f)| (format!("f{n}"), file(f, ChangeKind::Dynamodb, ARN)))
            .collect();
        let all = files.clone();
        let later = files.split_off(extend_at.min(files.len()));
        for (key, f) in files {
            b.file(&key, f);
        }
        let mut history = b.build(i64::MAX);
        // (in one to three extensions: an item settled before is settled again from what it
        // holds, each time)
        extend_in_steps(&mut history, later, steps);
        // (the same answers, reasons included, as a history built from all the files at once)
        for (key, f) in all {
            whole.file(&key, f);
        }
        let whole = whole.build(i64::MAX);
        prop_assert_eq!(history.starts_ms(), starts_ms);
        let end = writes.last().unwrap().at_ms + 2_000;
        let mut t = starts_ms - 1_000;
        while t <= end {
            for (i, name) in ITEMS.iter().enumerate() {
                let got = history.lookup_as_of(&(*name).to_owned(), t);
                prop_assert_eq!(&got, &whole.lookup_as_of(&(*name).to_owned(), t));
                if t < starts_ms {
                    prop_assert_eq!(got, AsOf::BeforeHistory { starts_ms });
                    continue;
                }
                let want = expected(&writes, i, t, starts_ms, split);
                let got = match got {
                    AsOf::Found(v) => Expected::Value(v.1.parse().unwrap()),
                    AsOf::Missing => Expected::Missing,
                    AsOf::Unknown { .. } => Expected::Unknown,
                    other => panic!("{other:?}"),
                };
                prop_assert_eq!(got, want, "item {} at {}", name, t);
            }
            t += 250;
        }
    }
}

#[test]
fn a_record_in_the_same_second_as_a_change_sees_it() {
    let mut b = builder(0);
    b.empty_at_start();
    let w = Write {
        at_ms: 10_000,
        item: 0,
        value: Some(1),
        keys_only: false,
    };
    b.file("f", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
    let h = b.build(i64::MAX);
    let a = "a".to_owned();
    assert_eq!(h.lookup_as_of(&a, 9_999), AsOf::Missing);
    assert!(matches!(h.lookup_as_of(&a, 10_000), AsOf::Found(_)));
    assert!(matches!(h.lookup_as_of(&a, 10_999), AsOf::Found(_)));
}

#[test]
fn a_gap_an_unreadable_file_or_a_stream_switch_refuses_the_window_with_why() {
    let w = Write {
        at_ms: 10_000,
        item: 0,
        value: Some(1),
        keys_only: false,
    };
    let a = "a".to_owned();
    let mut gap = builder(0);
    gap.file("f1", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
    let mut g = file(vec![], ChangeKind::Gap, ARN);
    g.reason = Some("a discarded batch".into());
    gap.file("gap-1", g);
    let h = gap.build(i64::MAX);
    assert!(
        matches!(h.lookup_as_of(&a, 11_000), AsOf::Refused(why) if why.contains("gap-1") && why.contains("a discarded batch"))
    );

    let mut unreadable = builder(0);
    unreadable.file("f1", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
    unreadable.unreadable_file("f2", "404 Not Found");
    let h = unreadable.build(i64::MAX);
    assert!(matches!(h.lookup_as_of(&a, 11_000), AsOf::Refused(why) if why.contains("f2")));

    let mut switched = builder(0);
    switched.file("f1", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
    let other = ARN.replace("2026-01-01", "2026-02-01");
    switched.file(
        "f2",
        file(vec![change(2, &w)], ChangeKind::Dynamodb, &other),
    );
    let h = switched.build(i64::MAX);
    assert!(
        matches!(h.lookup_as_of(&a, 11_000), AsOf::Refused(why) if why.contains("stream switched"))
    );
}

#[test]
fn without_a_snapshot_a_key_with_no_version_is_before_the_history_not_missing() {
    let w = Write {
        at_ms: 10_000,
        item: 0,
        value: Some(1),
        keys_only: false,
    };
    let mut b = builder(5_000);
    b.file("f", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
    let h = b.build(i64::MAX);
    let a = "a".to_owned();
    // (even a changed item: another with the same lookup key may be from before the window)
    for (key, t) in [(&a, 9_000), (&a, 10_000), (&"b".to_owned(), 10_000)] {
        assert_eq!(
            h.lookup_as_of(key, t),
            AsOf::BeforeHistory { starts_ms: 5_000 }
        );
    }
}

#[test]
fn an_answer_is_final_once_the_visibility_bound_has_passed_its_time() {
    let h = builder(0).build(55_000);
    // (a change of t's own second counts at t: its whole second must be visible, and the
    // clock margin after it, 5 s: a change stamped in it may disagree in order with one before)
    assert!(h.is_final(49_999));
    assert!(!h.is_final(50_000));
    assert_eq!(h.final_at_ms(49_999), 50_000 + 5_000 + h.look_back_ms());
}

/// A builder from a Scan snapshot at `position` whose Scan ended at `r`, holding item a at value
/// 1 (read by the Scan: no sequence number, no stamp); the Scan recorded as begun at the position
/// when `r` is not before it, as today's compactor records (the older compactor's snapshots,
/// without it, have tests of their own).
fn scanned(position: i64, r: i64) -> HistoryBuilder<Value, String> {
    let mut b = builder(0);
    let mut h = header(position);
    h.full_load_end_ms = Some(r);
    h.full_load_start_ms = (r >= position).then_some(position);
    b.snapshot(
        &h,
        vec![SnapshotEntry {
            seq: None,
            stamp: None,
            body: EntryBody::Item(item("a", Some("1"))),
        }],
    );
    b
}

#[test]
fn a_scans_value_is_not_overridden_by_a_change_it_already_reflects() {
    let a = "a".to_owned();
    let value = |h: &History<Value, String>, t: i64| match h.lookup_as_of(&a, t) {
        AsOf::Found(v) => Some(v.1.clone()),
        AsOf::Unknown { .. } => None,
        other => panic!("{other:?}"),
    };
    // A change made long before the Scan ended (a late file, a replayed batch): reflected.
    let old = Write {
        at_ms: 100_000,
        item: 0,
        value: Some(0),
        keys_only: false,
    };
    // (a Scan that began at the position, R after it: the change was before it)
    let mut b = scanned(200_000, 210_000);
    b.file(
        "late",
        file(vec![change(1, &old)], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    assert_eq!(
        value(&h, 250_000).as_deref(),
        Some("1"),
        "the Scan's value stands"
    );
    // A Scan whose R was carried over (before the position): when it began is not known, so
    // the same change may be one it never saw (a late file), or an old one replayed after a
    // later change it did see: neither the Scan's value nor the change's, unknown.
    let mut b = scanned(200_000, 160_000);
    b.file(
        "late",
        file(vec![change(1, &old)], ChangeKind::Dynamodb, ARN),
    );
    assert_eq!(
        value(&b.build(i64::MAX), 250_000),
        None,
        "unknown, not a guess"
    );
    // One made within the margin of the Scan's end (R after the position): the Scan may or
    // may not hold it.
    let during = Write {
        at_ms: 208_000,
        ..old.clone()
    };
    let mut b = scanned(200_000, 210_000);
    b.file(
        "during",
        file(vec![change(1, &during)], ChangeKind::Dynamodb, ARN),
    );
    // The Scan may or may not hold it; but it was made before the position: from there on the
    // item is what it made it, either way.
    assert_eq!(value(&b.build(i64::MAX), 250_000).as_deref(), Some("0"));
    // One made during the read: the Scan may have read the item after it, so its value is not
    // the item's from the position either (it may be the change's, before the change).
    let mut b = scanned(200_000, 210_000);
    let during_read = Write {
        at_ms: 205_000,
        ..old.clone()
    };
    let later = Write {
        at_ms: 240_000,
        value: Some(2),
        ..old.clone()
    };
    b.file(
        "during the read",
        file(
            vec![change(1, &during_read), change(2, &later)],
            ChangeKind::Dynamodb,
            ARN,
        ),
    );
    let h = b.build(i64::MAX);
    assert_eq!(value(&h, 200_000), None, "unknown from the position");
    assert_eq!(value(&h, 204_999), None, "unknown until the change");
    assert_eq!(
        value(&h, 205_000).as_deref(),
        Some("0"),
        "what it made it, either way"
    );
    assert_eq!(value(&h, 240_000).as_deref(), Some("2"));
    // One made after it: applies.
    let after = Write {
        at_ms: 230_000,
        ..old
    };
    let mut b = scanned(200_000, 160_000);
    b.file(
        "after",
        file(vec![change(1, &after)], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    assert_eq!(value(&h, 220_000).as_deref(), Some("1"));
    assert_eq!(value(&h, 230_000).as_deref(), Some("0"));
}

#[test]
fn another_tables_files_are_skipped_and_another_tables_snapshot_refused() {
    let w = Write {
        at_ms: 10_000,
        item: 0,
        value: Some(1),
        keys_only: false,
    };
    let a = "a".to_owned();
    let mut b = builder(0);
    b.table("T");
    b.empty_at_start();
    let mut other = file(
        vec![change(1, &w)],
        ChangeKind::Dynamodb,
        "arn:other/stream/1",
    );
    other.source.table = Some("Other".into());
    b.file("other", other);
    assert_eq!(b.build(i64::MAX).lookup_as_of(&a, 20_000), AsOf::Missing);

    let mut b = builder(0);
    b.table("Orders");
    b.snapshot(&header(5_000), Vec::new());
    assert!(
        matches!(b.build(i64::MAX).lookup_as_of(&a, 20_000), AsOf::Refused(why) if why.contains("table T"))
    );
}

mod read_from_the_feed {
    //! A window read from a feed the producers and the compactor wrote (the rig's in-memory
    //! bucket): the snapshot at the start, then the change files.

    use std::sync::Arc;
    use std::time::Duration;

    use crate::history::{AsOf, HistoryBuilder, HistorySource};
    use crate::lifecycle::config::{DecodeError, Decoder, LookupKeyFn};
    use crate::snapshot::Ambiguity;
    use crate::test_support::{modify, put_gap_file, rig, Product, BASE, PREFIX};
    use crate::Clock;

    fn builder() -> HistoryBuilder<Product, String> {
        let decode: Decoder<Product> =
            Arc::new(|i| serde_dynamo::from_item(i).map_err(DecodeError::wrap));
        let key: LookupKeyFn<Product, String> = Arc::new(|p: &Product| Some(p.item.clone()));
        HistoryBuilder::new(&["item", "price"], decode, key, Ambiguity::LowestKey, BASE)
    }

    fn source() -> HistorySource {
        HistorySource {
            feed_prefix: PREFIX.into(),
            snapshot_prefix: stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX.into(),
            daily_prefix: Some(stream_refdata_protocol::DEFAULT_DAILY_SNAPSHOT_PREFIX.into()),
            table: "ProductPriority".into(),
            look_back: Duration::from_secs(25),
            retention: Some(Duration::from_secs(7 * 86_400)),
        }
    }

    fn priority(answer: AsOf<'_, Product>) -> Option<String> {
        match answer {
            AsOf::Found(p) => Some(p.priority.clone()),
            AsOf::Missing => None,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_window_from_a_snapshot_and_the_files_after_it_answers_each_time_its_value() {
        // GIVEN a snapshot of the table (burger medium), then burger high a minute later and low
        // a minute after that
        let r = rig();
        r.publish_first_snapshot().await;
        r.clock.advance(60_000);
        r.write(&[modify(5, "burger", "high", 60_000)]);
        r.clock.advance(60_000);
        r.write(&[modify(6, "burger", "low", 120_000)]);
        r.clock.advance(60_000);
        // WHEN the window from just after the snapshot is read
        let h = builder()
            .read(&r.feed, &source(), BASE + 1_000, r.clock.ms())
            .await
            .unwrap();
        // THEN each time answers the value it had
        let burger = "burger".to_owned();
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 30_000)).as_deref(),
            Some("medium")
        );
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 60_000)).as_deref(),
            Some("high")
        );
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 119_999)).as_deref(),
            Some("high")
        );
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 120_000)).as_deref(),
            Some("low")
        );
        assert_eq!(
            priority(h.lookup_as_of(&"salad".to_owned(), BASE + 90_000)).as_deref(),
            Some("high")
        );
        assert_eq!(
            priority(h.lookup_as_of(&"donut".to_owned(), BASE + 90_000)),
            None
        );
        assert!(matches!(
            h.lookup_as_of(&burger, BASE - 1),
            AsOf::BeforeHistory { .. }
        ));
        assert!(h.is_final(BASE + 140_000) && !h.is_final(r.clock.ms()));
        // AND a gap file in the window refuses it, naming the file
        let gap = put_gap_file(&r.feed, r.clock.now(), "lost");
        let h = builder()
            .read(&r.feed, &source(), BASE + 1_000, r.clock.ms())
            .await
            .unwrap();
        assert!(
            matches!(h.lookup_as_of(&burger, BASE + 30_000), AsOf::Refused(why) if why.contains(&gap))
        );
    }

    /// A feed whose GETs of keys containing `failing` fail (transiently) while it is set.
    #[derive(Clone)]
    struct GetsFail {
        bucket: crate::testing::MemoryBucket,
        failing: Arc<std::sync::Mutex<Option<String>>>,
    }

    impl crate::sources::FeedSource for GetsFail {
        async fn list(
            &self,
            prefix: &str,
            start_after: &str,
            token: Option<String>,
        ) -> Result<crate::sources::ListPage, crate::sources::SourceError> {
            crate::sources::FeedSource::list(&self.bucket, prefix, start_after, token).await
        }

        async fn get(&self, key: &str) -> Result<Vec<u8>, crate::sources::SourceError> {
            if let Some(f) = self.failing.lock().unwrap().as_deref() {
                if key.contains(f) {
                    return Err(crate::sources::SourceError::new("GetObject", "injected"));
                }
            }
            crate::sources::FeedSource::get(&self.bucket, key).await
        }

        async fn head_state(
            &self,
            key: &str,
            etag: Option<&str>,
        ) -> Result<crate::sources::Conditional, crate::sources::SourceError> {
            self.bucket.head_state(key, etag).await
        }
    }

    #[tokio::test]
    async fn a_followed_history_is_extended_batch_by_batch_and_read_again_when_its_base_changes() {
        let r = rig();
        r.publish_first_snapshot().await;
        let feed = GetsFail {
            bucket: r.feed.clone(),
            failing: Arc::default(),
        };
        // (a snapshot counts for batches from a minute after its key time)
        let mut followed = crate::history::Followed::new(source(), builder)
            .snapshot_settle(Duration::from_secs(60));
        let burger = "burger".to_owned();
        // A first batch: built once from the snapshot.
        r.clock.advance(60_000);
        r.write(&[modify(5, "burger", "high", 60_000)]);
        r.clock.advance(30_000);
        let h = followed
            .prepare(&feed, BASE + 61_000, r.clock.ms())
            .await
            .unwrap();
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 61_000)).as_deref(),
            Some("high")
        );
        assert_eq!(followed.builds(), 1);
        // Later batches: the files written since are added, nothing is read again.
        r.write(&[modify(6, "burger", "low", 100_000)]);
        r.clock.advance(30_000);
        let h = followed
            .prepare(&feed, BASE + 90_000, r.clock.ms())
            .await
            .unwrap();
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 100_500)).as_deref(),
            Some("low")
        );
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 99_999)).as_deref(),
            Some("high")
        );
        assert_eq!(followed.builds(), 1);
        // A listing whose second file cannot be read now: nothing is answered, and the next
        // batch reads both (the first is not taken as read).
        r.write(&[modify(7, "burger", "medium", 130_000)]);
        let late = r.write(&[modify(8, "salad", "low", 131_000)]);
        *feed.failing.lock().unwrap() = Some(late.clone());
        r.clock.advance(30_000);
        assert!(followed
            .prepare(&feed, BASE + 120_000, r.clock.ms())
            .await
            .is_err());
        *feed.failing.lock().unwrap() = None;
        let h = followed
            .prepare(&feed, BASE + 120_000, r.clock.ms())
            .await
            .unwrap();
        assert!(h.refusal().is_none());
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 130_000)).as_deref(),
            Some("medium")
        );
        let salad = "salad".to_owned();
        assert_eq!(
            priority(h.lookup_as_of(&salad, BASE + 131_000)).as_deref(),
            Some("low")
        );
        assert_eq!(followed.builds(), 1);
        // A later snapshot: not the base of batches within a minute of it (it may not be
        // visible to every attempt of theirs), the base of those after.
        r.clock.advance(600_000);
        r.table
            .put(crate::test_support::product("burger", "medium"));
        let s1 = r.clock.ms();
        r.publish(&r.loaded_compactor().await);
        r.clock.advance(30_000);
        followed
            .prepare(&feed, s1 + 10_000, r.clock.ms())
            .await
            .unwrap();
        assert_eq!(followed.builds(), 1);
        r.clock.advance(60_000);
        let from = s1 + 61_000;
        let h = followed.prepare(&feed, from, r.clock.ms()).await.unwrap();
        assert_eq!(
            priority(h.lookup_as_of(&burger, from)).as_deref(),
            Some("medium")
        );
        assert_eq!(followed.builds(), 2);
        // (and a batch before it reads the older one again)
        let h = followed
            .prepare(&feed, BASE + 61_000, r.clock.ms())
            .await
            .unwrap();
        assert_eq!(
            priority(h.lookup_as_of(&burger, BASE + 61_000)).as_deref(),
            Some("high")
        );
        assert_eq!(followed.builds(), 3);
        // A gap file: the window refuses, the same way each batch, and is read again from the
        // first snapshot after the gap once batches are past it.
        let from = r.clock.ms();
        r.clock.advance(1_000);
        put_gap_file(&r.feed, r.clock.now(), "lost");
        r.clock.advance(30_000);
        let h = followed.prepare(&feed, from, r.clock.ms()).await.unwrap();
        assert!(h.refusal().is_some());
        let h = followed.prepare(&feed, from, r.clock.ms()).await.unwrap();
        assert!(h.refusal().is_some(), "no later snapshot: the same refusal");
        assert_eq!(followed.builds(), 4);
        let s2 = r.clock.ms();
        r.publish(&r.loaded_compactor().await);
        r.clock.advance(61_000);
        let after = s2 + 60_000;
        let h = followed.prepare(&feed, after, r.clock.ms()).await.unwrap();
        assert!(h.refusal().is_none(), "{:?}", h.refusal());
        assert_eq!(
            priority(h.lookup_as_of(&burger, after)).as_deref(),
            Some("medium")
        );
        assert_eq!(followed.builds(), 5);
    }
}

#[test]
fn a_later_change_stamped_in_an_earlier_second_makes_the_item_unknown_not_a_guess() {
    let mut b = builder(0);
    b.empty_at_start();
    let first = Write {
        at_ms: 20_000,
        item: 0,
        value: Some(1),
        keys_only: false,
    };
    let second = Write {
        at_ms: 10_000,
        value: Some(2),
        ..first.clone()
    };
    b.file(
        "f",
        file(
            vec![change(1, &first), change(2, &second)],
            ChangeKind::Dynamodb,
            ARN,
        ),
    );
    let h = b.build(i64::MAX);
    assert!(matches!(
        h.lookup_as_of(&"a".to_owned(), 25_000),
        AsOf::Unknown { .. }
    ));
}

#[test]
fn a_snapshot_value_taken_after_its_position_counts_from_then_not_from_the_position() {
    let mut b = builder(0);
    b.snapshot(
        &header(100_000),
        vec![SnapshotEntry {
            seq: Some(SequenceNumber::parse("1005").unwrap()),
            stamp: Some(stream_refdata_protocol::EntryStamp::Change {
                created_ms: 102_400,
            }),
            body: EntryBody::Item(item("a", Some("7"))),
        }],
    );
    let h = b.build(i64::MAX);
    let a = "a".to_owned();
    assert!(matches!(
        h.lookup_as_of(&a, 100_500),
        AsOf::Unknown { since_ms: 100_000 }
    ));
    assert!(matches!(h.lookup_as_of(&a, 102_000), AsOf::Found(v) if v.1 == "7"));
}

/// A snapshot at 20 s holding item a at value 9, applied from change 10 made at `made_ms`.
fn applied(made_ms: i64) -> HistoryBuilder<Value, String> {
    let mut b = builder(0);
    b.snapshot(
        &header(20_000),
        vec![SnapshotEntry {
            seq: Some(SequenceNumber::parse("1010").unwrap()),
            stamp: Some(stream_refdata_protocol::EntryStamp::Change {
                created_ms: made_ms,
            }),
            body: EntryBody::Item(item("a", Some("9"))),
        }],
    );
    b
}

#[test]
fn where_sequence_and_time_disagree_with_a_snapshot_entry_the_item_is_unknown_not_either_value() {
    let a = "a".to_owned();
    let w = |at_ms: i64, value: u8| Write {
        at_ms,
        item: 0,
        value: Some(value),
        keys_only: false,
    };
    // An older change (9) made in a later second than the entry's change (10): unknown from it.
    let mut b = applied(5_000);
    b.file(
        "f",
        file(vec![change(9, &w(30_000, 1))], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    assert!(matches!(h.lookup_as_of(&a, 25_000), AsOf::Found(v) if v.1 == "9"));
    assert!(matches!(h.lookup_as_of(&a, 30_500), AsOf::Unknown { .. }));
    // A newer change (11) made in an earlier second than the entry's: unknown, not its value.
    let mut b = applied(15_000);
    b.file(
        "f",
        file(vec![change(11, &w(14_000, 2))], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    assert!(matches!(h.lookup_as_of(&a, 25_000), AsOf::Unknown { .. }));
    // An older change of an earlier second is in the entry: dropped.
    let mut b = applied(15_000);
    b.file(
        "f",
        file(vec![change(9, &w(14_000, 3))], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    assert!(matches!(h.lookup_as_of(&a, 25_000), AsOf::Found(v) if v.1 == "9"));
}

#[test]
fn an_item_added_by_a_later_file_takes_its_place_in_key_order_among_those_sharing_its_lookup_key() {
    // Two items share the lookup key "dish" (the value); with LowestKey the lower primary key
    // answers. "b" is in the history first; "a" (lower) arrives in a file added later.
    let decode: Decoder<Value> = Arc::new(|i: Item| match (i.get("item"), i.get("value")) {
        (Some(AttributeValue::S(k)), Some(AttributeValue::S(v))) => Ok((k.clone(), v.clone())),
        _ => Err(DecodeError::new("no item or value")),
    });
    let by_value: LookupKeyFn<Value, String> = Arc::new(|_: &Value| Some("dish".to_owned()));
    let mut b: HistoryBuilder<Value, String> =
        HistoryBuilder::new(&["item"], decode, by_value, Ambiguity::LowestKey, 0);
    b.empty_at_start();
    let at = |item: usize, seq: u64| {
        change(
            seq,
            &Write {
                at_ms: 1_795_650_000_000 + i64::try_from(seq).unwrap() * 1000,
                item,
                value: Some(1),
                keys_only: false,
            },
        )
    };
    b.file("f0", file(vec![at(1, 1)], ChangeKind::Dynamodb, ARN));
    let mut history = b.build(i64::MAX);
    let t = 1_795_650_010_000;
    let dish = "dish".to_owned();
    assert!(matches!(history.lookup_as_of(&dish, t), AsOf::Found(v) if v.0 == "b"));
    history.extend(
        [(
            "f1".to_owned(),
            file(vec![at(0, 2)], ChangeKind::Dynamodb, ARN),
        )],
        i64::MAX,
    );
    assert!(matches!(history.lookup_as_of(&dish, t), AsOf::Found(v) if v.0 == "a"));
    // (before "a" was written, "b" alone had the key)
    assert!(matches!(
        history.lookup_as_of(&dish, 1_795_650_001_500),
        AsOf::Found(v) if v.0 == "b"
    ));
}

#[test]
fn an_item_the_scan_may_or_may_not_hold_is_unknown_until_its_change_and_what_it_made_it_after() {
    // A Scan at 200 s (ended at 210 s) holding a = 1 and b = 1; a changes to 0 during it.
    let mut b = builder(0);
    let mut h = header(200_000);
    h.full_load_end_ms = Some(210_000);
    let entry = |name: &str| SnapshotEntry {
        seq: None,
        stamp: None,
        body: EntryBody::Item(item(name, Some("1"))),
    };
    b.snapshot(&h, vec![entry("a"), entry("b")]);
    let change_a = Write {
        at_ms: 205_000,
        item: 0,
        value: Some(0),
        keys_only: false,
    };
    b.file(
        "f",
        file(vec![change(1, &change_a)], ChangeKind::Dynamodb, ARN),
    );
    let h = b.build(i64::MAX);
    // Before the change: a's value then is in no version (the Scan may have read the change's),
    // so its lookup key is not known either: every lookup is unknown.
    assert!(matches!(
        h.lookup_as_of(&"a".to_owned(), 204_000),
        AsOf::Unknown { .. }
    ));
    assert!(matches!(
        h.lookup_as_of(&"b".to_owned(), 204_000),
        AsOf::Unknown { .. }
    ));
    // From the change on: a is what it made it, b is b.
    assert!(matches!(
        h.lookup_as_of(&"a".to_owned(), 206_000),
        AsOf::Found(v) if v.1 == "0"
    ));
    assert!(matches!(
        h.lookup_as_of(&"b".to_owned(), 206_000),
        AsOf::Found(v) if v.1 == "1"
    ));
    // (and a snapshot that does not say when its Scan ended refuses)
    let mut b = builder(0);
    b.snapshot(&header(200_000), vec![entry("a")]);
    assert!(matches!(
        b.build(i64::MAX).lookup_as_of(&"a".to_owned(), 250_000),
        AsOf::Refused(why) if why.contains("Scan ended")
    ));
}

#[test]
fn a_change_before_the_read_holds_those_before_it_in_sequence_and_not_later_stamped() {
    // A Scan between 100 s and 101 s (margin 5 s: a change before 95 s is in it) read a = 1.
    // c2 (sequence 2, stamped 93 s) is before the read. c1, before it in sequence:
    let at = |ms: i64, v: u8| Write {
        at_ms: ms,
        item: 0,
        value: Some(v),
        keys_only: false,
    };
    let run = |c1_ms: i64| {
        let mut b = scanned(100_000, 101_000);
        let mut c1 = change(1, &at(c1_ms, 3));
        let mut c2 = change(2, &at(93_000, 2));
        c1.sequence_number = SequenceNumber::parse("1001").unwrap();
        c2.sequence_number = SequenceNumber::parse("1002").unwrap();
        b.file("f", file(vec![c1, c2], ChangeKind::Dynamodb, ARN));
        b.build(i64::MAX)
    };
    // - stamped no later than c2 (92 s): in the read too, the read's value stands;
    let h = run(92_000);
    assert!(matches!(
        h.lookup_as_of(&"a".to_owned(), 100_000),
        AsOf::Found(v) if v.1 == "1"
    ));
    // - stamped later (96 s: within the margin) although before c2 in sequence: sequence and
    //   seconds disagree, neither is trusted: unknown, not the read's value nor c1's.
    let h = run(96_000);
    for t in [100_000, 150_000] {
        assert!(matches!(
            h.lookup_as_of(&"a".to_owned(), t),
            AsOf::Unknown { .. }
        ));
    }
}

#[test]
fn a_change_stamped_after_a_later_one_makes_the_item_unknown_from_the_earlier_second() {
    // c_b (sequence 15, stamped 101 s) came before c_a (sequence 20, stamped 100 s): the
    // seconds disagree with the order. Neither order can be trusted from 100 s: unknown there,
    // never the value before both (which an answer at 100.5 s gave before c_b was seen).
    let mut b = builder(0);
    b.empty_at_start();
    let w = |ms: i64, v: u8| Write {
        at_ms: ms,
        item: 0,
        value: Some(v),
        keys_only: false,
    };
    b.file(
        "a",
        file(vec![change(20, &w(100_000, 1))], ChangeKind::Dynamodb, ARN),
    );
    let mut h = b.build(i64::MAX);
    assert!(matches!(h.lookup_as_of(&"a".to_owned(), 100_500), AsOf::Found(v) if v.1 == "1"));
    h.extend(
        [(
            "b".to_owned(),
            file(vec![change(15, &w(101_000, 2))], ChangeKind::Dynamodb, ARN),
        )],
        i64::MAX,
    );
    assert_eq!(h.lookup_as_of(&"a".to_owned(), 99_000), AsOf::Missing);
    for t in [100_000, 100_500, 101_000, 150_000] {
        assert!(
            matches!(h.lookup_as_of(&"a".to_owned(), t), AsOf::Unknown { .. }),
            "{t}: {:?}",
            h.lookup_as_of(&"a".to_owned(), t)
        );
    }
}

#[test]
fn an_item_a_scan_snapshot_lacks_was_not_there_when_the_scan_read_it_and_answers_wait_for_the_reads(
) {
    // A Scan from 100 s to 160 s holds a only; b is removed at 130 s, during the Scan: the
    // Scan may have missed it because it was gone, or read past it before: its value before
    // the removal is in no version.
    let b_removed = Write {
        at_ms: 130_000,
        item: 1,
        value: None,
        keys_only: false,
    };
    let history = |final_through: i64| {
        let mut b = scanned(100_000, 160_000);
        b.file(
            "f",
            file(vec![change(1, &b_removed)], ChangeKind::Dynamodb, ARN),
        );
        b.build(final_through)
    };
    let h = history(i64::MAX);
    assert!(matches!(
        h.lookup_as_of(&"b".to_owned(), 120_000),
        AsOf::Unknown { .. }
    ));
    assert_eq!(h.lookup_as_of(&"b".to_owned(), 131_000), AsOf::Missing);
    // An answer after the position is final only once the Scan's end and the margin are
    // listed: a change made during it may yet turn it unknown.
    assert!(!history(150_000).is_final(110_000));
    assert!(history(170_000).is_final(110_000));
}

proptest! {
    #[test]
    fn a_packed_sequence_number_orders_as_the_number(a in "[1-9][0-9]{0,39}", b in "[1-9][0-9]{0,39}") {
        let (sa, sb) = (SequenceNumber::parse(&a).unwrap(), SequenceNumber::parse(&b).unwrap());
        prop_assert_eq!(Seq::from(&sa).cmp(&Seq::from(&sb)), sa.cmp(&sb));
        prop_assert_eq!(Seq::from(&sa) == Seq::from(&sb), a == b);
    }
}

#[test]
fn a_scan_that_ended_within_the_write_window_of_its_position_refuses() {
    // R carried over, 10 s before the position (W 20 s, margin 5 s): a change made during the
    // Scan may have been in a file visible only after the position, so neither an entry nor a
    // missing one says what the item was.
    let h = scanned(200_000, 190_000).build(i64::MAX);
    assert!(matches!(
        h.lookup_as_of(&"a".to_owned(), 250_000),
        AsOf::Refused(why) if why.contains("Scan ended")
    ));
}

#[test]
fn an_older_change_stamped_after_a_reread_never_leaves_the_item_missing() {
    // A re-read (95 s to 96 s, after change 20) gave a = 1; position 100 s. Change 16 (85 s)
    // was before the read; change 15 (120 s) is older than both in sequence but stamped later.
    let mut b = builder(0);
    b.snapshot(
        &header(100_000),
        vec![SnapshotEntry {
            seq: Some(SequenceNumber::parse("20").unwrap()),
            stamp: Some(stream_refdata_protocol::EntryStamp::Read {
                from_ms: 95_000,
                to_ms: 96_000,
            }),
            body: EntryBody::Item(item("a", Some("1"))),
        }],
    );
    let w = |ms: i64, v: u8| Write {
        at_ms: ms,
        item: 0,
        value: Some(v),
        keys_only: false,
    };
    let mut c16 = change(0, &w(85_000, 2));
    c16.sequence_number = SequenceNumber::parse("16").unwrap();
    let mut c15 = change(0, &w(120_000, 3));
    c15.sequence_number = SequenceNumber::parse("15").unwrap();
    b.file("f", file(vec![c15, c16], ChangeKind::Dynamodb, ARN));
    let h = b.build(i64::MAX);
    for t in [100_000, 110_000, 119_999] {
        let got = h.lookup_as_of(&"a".to_owned(), t);
        assert!(
            matches!(&got, AsOf::Unknown { .. }) || matches!(&got, AsOf::Found(v) if v.1 == "1"),
            "{t}: {got:?}"
        );
    }
    // (from change 15's second, its order against the entry's cannot be told)
    for t in [120_000, 150_000] {
        let got = h.lookup_as_of(&"a".to_owned(), t);
        assert!(matches!(&got, AsOf::Unknown { .. }), "{t}: {got:?}");
    }
}

#[test]
fn a_late_change_that_may_precede_a_reread_is_unknown_not_the_value() {
    // The follower re-read a (1,102.1 s to 1,102.2 s) after an untyped record it saw (seq 120,
    // a file before the window) and got "3"; the entry keeps seq 100. Change 110 (a = "2",
    // made at 1,099.5 s) came in a late file: it may precede the read, which then holds "3"
    // over it. Not "2" from the position: unknown until a later change.
    let mut b = builder(0);
    b.snapshot(
        &header(1_170_000),
        vec![SnapshotEntry {
            seq: Some(SequenceNumber::parse("100").unwrap()),
            stamp: Some(stream_refdata_protocol::EntryStamp::Read {
                from_ms: 1_102_100,
                to_ms: 1_102_200,
            }),
            body: EntryBody::Item(item("a", Some("3"))),
        }],
    );
    let mut c = change(
        0,
        &Write {
            at_ms: 1_099_500,
            item: 0,
            value: Some(2),
            keys_only: false,
        },
    );
    c.sequence_number = SequenceNumber::parse("110").unwrap();
    b.file("late", file(vec![c], ChangeKind::Dynamodb, ARN));
    let h = b.build(i64::MAX);
    for t in [1_170_000, 1_200_000] {
        let got = h.lookup_as_of(&"a".to_owned(), t);
        assert!(matches!(got, AsOf::Unknown { .. }), "{t}: {got:?}");
    }
}

#[test]
fn a_scan_whose_start_the_snapshot_records_places_changes_against_its_reads() {
    // R carried over (190 s, 10 s before the position) but the Scan's start recorded (150 s):
    // a change made before it less the margin (100 s) is in it, one made during it (170 s) may
    // or may not be; no refusal.
    let build = |at_ms: i64| {
        let mut b = builder(0);
        let mut h = header(200_000);
        h.full_load_end_ms = Some(190_000);
        h.full_load_start_ms = Some(150_000);
        b.snapshot(
            &h,
            vec![SnapshotEntry {
                seq: None,
                stamp: None,
                body: EntryBody::Item(item("a", Some("1"))),
            }],
        );
        let w = Write {
            at_ms,
            item: 0,
            value: Some(0),
            keys_only: false,
        };
        b.file("f", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
        b.build(i64::MAX)
    };
    let h = build(100_000);
    assert!(h.refusal().is_none(), "{:?}", h.refusal());
    assert!(matches!(h.lookup_as_of(&"a".to_owned(), 250_000), AsOf::Found(v) if v.1 == "1"));
    // (made during it, before the position: from the position on, what it made it, either way)
    let h = build(170_000);
    assert!(matches!(h.lookup_as_of(&"a".to_owned(), 200_000), AsOf::Found(v) if v.1 == "0"));
    // Without the recorded start the same snapshot refuses (R too close to the position).
    let mut b = builder(0);
    let mut h = header(200_000);
    h.full_load_end_ms = Some(190_000);
    b.snapshot(&h, vec![]);
    assert!(b.build(i64::MAX).refusal().is_some());
}

#[test]
fn a_scan_without_its_start_recorded_starts_at_its_position_only_when_r_is_two_margins_after() {
    // A snapshot of an older compactor (no recorded start), clock margin 5 s, position 200 s; a
    // change made at 212 s, during the Scan. With R two margins or more after the position, the
    // Scan began at the position and the change came after its start (plus the margin): from the
    // change on, the item is its value. With R closer, when the Scan began cannot be told: the
    // change may have been read over by it, and the item is unknown from the change on too.
    let build = |r_ms: i64| {
        let mut b = builder(0);
        let mut h = header(200_000);
        h.full_load_end_ms = Some(r_ms);
        h.clock_margin_ms = 5_000;
        b.snapshot(
            &h,
            vec![SnapshotEntry {
                seq: None,
                stamp: None,
                body: EntryBody::Item(item("a", Some("1"))),
            }],
        );
        let w = Write {
            at_ms: 212_000,
            item: 0,
            value: Some(0),
            keys_only: false,
        };
        b.file("f", file(vec![change(1, &w)], ChangeKind::Dynamodb, ARN));
        b.build(i64::MAX)
    };
    let h = build(215_000);
    assert!(h.refusal().is_none(), "{:?}", h.refusal());
    let got = h.lookup_as_of(&"a".to_owned(), 213_000);
    assert!(matches!(got, AsOf::Found(v) if v.1 == "0"), "{got:?}");
    // At exactly two margins after, the same.
    let h = build(210_000);
    let got = h.lookup_as_of(&"a".to_owned(), 213_000);
    assert!(matches!(got, AsOf::Found(v) if v.1 == "0"), "{got:?}");
    // Closer (R 9 s or 1 s after the position, or at it): R may have been carried over on a
    // clock off by the margin, within the write window and twice the margin: the snapshot refuses,
    // as one whose R is before its position does.
    for r in [209_000, 201_000, 200_000] {
        let h = build(r);
        let got = h.lookup_as_of(&"a".to_owned(), 213_000);
        assert!(
            matches!(got, AsOf::Refused(why) if why.contains("Scan began")),
            "{r}: {got:?}"
        );
    }
}

#[test]
fn items_sharing_a_lookup_key_answer_by_primary_key_whatever_order_they_were_read_in() {
    // Lookup key: the value. Three items of one value, read in reverse key order (a snapshot is
    // written in its table's hash order), and a fourth of it from a change.
    let build = |ambiguity: Ambiguity, reverse: bool| {
        let decode: Decoder<Value> = Arc::new(|i: Item| {
            let text = |k: &str| match i.get(k) {
                Some(AttributeValue::S(s)) => Ok(s.clone()),
                _ => Err(DecodeError::new(format!("no {k}"))),
            };
            Ok((text("item")?, text("value")?))
        });
        let key: LookupKeyFn<Value, String> = Arc::new(|v: &Value| Some(v.1.clone()));
        let mut b = HistoryBuilder::new(&["item"], decode, key, ambiguity, 0);
        let mut h = header(100_000);
        h.full_load_end_ms = Some(120_000);
        h.full_load_start_ms = Some(100_000);
        let mut names = vec!["c", "b", "d"];
        if !reverse {
            names.reverse();
        }
        let entries = names.into_iter().map(|n| SnapshotEntry {
            seq: None,
            stamp: None,
            body: EntryBody::Item(item(n, Some("x"))),
        });
        b.snapshot(&h, entries.collect::<Vec<_>>());
        let w = Write {
            at_ms: 200_000,
            item: 0,
            value: None,
            keys_only: false,
        };
        let mut c = change(1, &w);
        c.event_name = EventName::Insert;
        c.new_image = Some(item("a", Some("x")));
        c.keys = item("a", None);
        b.file("f", file(vec![c], ChangeKind::Dynamodb, ARN));
        b.build(i64::MAX)
    };
    for reverse in [true, false] {
        let h = build(Ambiguity::LowestKey, reverse);
        let at = |t: i64| h.lookup_as_of(&"x".to_owned(), t);
        assert!(
            matches!(at(150_000), AsOf::Found(v) if v.0 == "b"),
            "{:?}",
            at(150_000)
        );
        assert!(
            matches!(at(250_000), AsOf::Found(v) if v.0 == "a"),
            "{:?}",
            at(250_000)
        );
        let h = build(Ambiguity::Reject, reverse);
        let got = h.lookup_as_of(&"x".to_owned(), 250_000);
        assert!(matches!(got, AsOf::Ambiguous(4)), "{got:?}");
    }
}

#[test]
fn an_item_inserted_during_the_scan_it_is_missing_from_is_unknown_until_its_insert() {
    // Scan from 100 s to 160 s: b is not in it; b was inserted at 130 s. The Scan may have read
    // b's place before or after the insert: from the position until the insert, b is unknown,
    // not missing; after it, b.
    let mut b = scanned(100_000, 160_000);
    let w = Write {
        at_ms: 130_000,
        item: 1,
        value: Some(1),
        keys_only: false,
    };
    let mut c = change(1, &w);
    c.event_name = EventName::Insert;
    b.file("f", file(vec![c], ChangeKind::Dynamodb, ARN));
    let h = b.build(i64::MAX);
    let name = ITEMS[1].to_owned();
    let got = h.lookup_as_of(&name, 120_000);
    assert!(matches!(got, AsOf::Unknown { .. }), "{got:?}");
    let got = h.lookup_as_of(&name, 200_000);
    assert!(matches!(got, AsOf::Found(v) if v.1 == "1"), "{got:?}");
}

#[test]
fn a_change_in_two_files_once_typed_once_untyped_answers_the_same_whatever_came_first() {
    // The same change (sequence 1005) typed in one file (a = 2) and untyped in another: the
    // answer after it is unknown (the untyped record does not say what it made a), whether the
    // typed file came first, last, or in a later extension.
    let typed = || {
        let w = Write {
            at_ms: 150_000,
            item: 0,
            value: Some(2),
            keys_only: false,
        };
        file(vec![change(5, &w)], ChangeKind::Dynamodb, ARN)
    };
    let untyped = || {
        let mut f = file(vec![], ChangeKind::Dynamodb, ARN);
        let keys = serde_json::json!({"item": {"S": ITEMS[0]}});
        f.opaque.push(stream_refdata_protocol::OpaqueRecord {
            index: 0,
            reason: "a record the producer could not type".into(),
            sequence_number: Some("1005".into()),
            keys: Some(keys.clone()),
            raw: serde_json::json!({"dynamodb": {"ApproximateCreationDateTime": 150.0, "Keys": keys}}),
        });
        f
    };
    let name = ITEMS[0].to_owned();
    let answers = |h: &History<Value, String>| {
        [120_000, 200_000].map(|t| format!("{:?}", h.lookup_as_of(&name, t)))
    };
    let mut first = scanned(100_000, 110_000);
    first.file("a", untyped());
    first.file("b", typed());
    let expected = answers(&first.build(i64::MAX));
    assert!(expected[1].contains("Unknown"), "{expected:?}");
    let mut second = scanned(100_000, 110_000);
    second.file("b", typed());
    second.file("a", untyped());
    assert_eq!(answers(&second.build(i64::MAX)), expected);
    let mut warm = scanned(100_000, 110_000);
    warm.file("b", typed());
    let mut warm = warm.build(i64::MAX);
    warm.extend([("a".to_owned(), untyped())], i64::MAX);
    assert_eq!(answers(&warm), expected);
}

/// A built history extended file by file answers as one built from every file at once, with
/// the snapshot kinds and changes where settling rewrites versions (Scan snapshots with and
/// without a recorded start, change- and read-stamped entries, entries taken after the
/// position, keys-only and untyped changes, equal sequence numbers with other content,
/// duplicate and late files): an item kept once (its versions as read the same as its kept
/// ones) is settled again from what it keeps. (From the fresh-context review of that change.)
mod extended_as_built {
    use super::*;

    /// A snapshot entry: `kind` 0 a Scan's (no stamp), 1 a change's, 2 a re-read's; value 9 a
    /// tombstone.
    fn entry(kind: u8, item_i: usize, v: u8, seq: u8, at: i64) -> SnapshotEntry {
        let body = if v == 9 {
            EntryBody::Tombstone(item(ITEMS[item_i], None))
        } else {
            EntryBody::Item(item(ITEMS[item_i], Some(&v.to_string())))
        };
        let seq = Some(SequenceNumber::parse(&(1000 + u64::from(seq)).to_string()).unwrap());
        match kind {
            0 => SnapshotEntry {
                seq: None,
                stamp: None,
                body,
            },
            1 => SnapshotEntry {
                seq,
                stamp: Some(stream_refdata_protocol::EntryStamp::Change { created_ms: at }),
                body,
            },
            _ => SnapshotEntry {
                seq,
                stamp: Some(stream_refdata_protocol::EntryStamp::Read {
                    from_ms: at,
                    to_ms: at + 700,
                }),
                body,
            },
        }
    }

    /// A file of one change: `kind` 0 typed, 1 keys-only, 2 a record the producer could not type.
    fn one_change(item_i: usize, v: Option<u8>, seq: u8, at: i64, kind: u8) -> ChangeFile {
        let w = Write {
            at_ms: at,
            item: item_i,
            value: v,
            keys_only: kind == 1,
        };
        let mut c = change(0, &w);
        c.sequence_number = SequenceNumber::parse(&(1000 + u64::from(seq)).to_string()).unwrap();
        if kind == 2 {
            let mut f = file(vec![], ChangeKind::Dynamodb, ARN);
            let keys = serde_json::json!({"item": {"S": ITEMS[item_i]}});
            f.opaque.push(stream_refdata_protocol::OpaqueRecord {
                index: 0,
                reason: "untyped".into(),
                sequence_number: Some((1000 + u64::from(seq)).to_string()),
                keys: Some(keys.clone()),
                raw: serde_json::json!({"dynamodb": {
                    "ApproximateCreationDateTime": (at / 1000) as f64, "Keys": keys}}),
            });
            return f;
        }
        file(vec![c], ChangeKind::Dynamodb, ARN)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn a_history_extended_file_by_file_answers_as_one_built_at_once(
            entries in prop::collection::vec((0u8..3, 0usize..3, 0u8..10, 0u8..12, 80i64..130), 0..4),
            changes in prop::collection::vec(
                (0usize..3, prop::option::weighted(0.8, 0u8..4), 0u8..12, 80i64..135,
                 prop::sample::select(vec![0u8, 0, 0, 1, 2])),
                1..10,
            ),
            r in prop::sample::select(vec![95_000i64, 103_000, 110_000]),
            start_recorded in any::<bool>(),
            scan in any::<bool>(),
            extend_at in 0usize..10,
            steps in 1usize..4,
            order in any::<u64>(),
            twice in prop::collection::vec(any::<bool>(), 0..4),
        ) {
            let position = 100_000;
            let mut h = header(position);
            if scan {
                h.full_load_end_ms = Some(r);
                h.full_load_start_ms = (start_recorded || r < position)
                    .then_some(if r < position { r - 3000 } else { position });
            }
            let entries: Vec<SnapshotEntry> = (entries.into_iter())
                .map(|(k, i, v, s, at)| entry(if scan { k } else { k.max(1) }, i, v, s, at * 1000 + 300))
                .collect();
            let mut files: Vec<(String, ChangeFile)> = (changes.into_iter().enumerate())
                .map(|(n, (i, v, s, at, kind))| (format!("f{n:02}"), one_change(i, v, s, at * 1000 + 400, kind)))
                .collect();
            for (i, again) in twice.iter().enumerate() {
                if *again && i < files.len() {
                    let (k, f) = files[i].clone();
                    files.push((format!("{k}x"), f));
                }
            }
            let mut rng = order;
            for i in (1..files.len()).rev() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                files.swap(i, (rng >> 33) as usize % (i + 1));
            }
            let mut b = builder(0);
            let mut whole = builder(0);
            b.snapshot(&h, entries.clone());
            whole.snapshot(&h, entries);
            let all = files.clone();
            let later = files.split_off(extend_at.min(files.len()));
            for (k, f) in files {
                b.file(&k, f);
            }
            let mut history = b.build(i64::MAX);
            extend_in_steps(&mut history, later, steps);
            for (k, f) in all {
                whole.file(&k, f);
            }
            let whole = whole.build(i64::MAX);
            let mut t = 79_000;
            while t <= 137_000 {
                for name in ITEMS {
                    let got = format!("{:?}", history.lookup_as_of(&name.to_owned(), t));
                    let want = format!("{:?}", whole.lookup_as_of(&name.to_owned(), t));
                    prop_assert_eq!(got, want, "{} at {}", name, t);
                }
                t += 250;
            }
        }
    }
}
