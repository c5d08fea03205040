//! The per-item order of changes (`docs/design.md`, 1.3 applying changes): **Newest wins per
//! item**, **Disagreement means re-read**, **Skip only what is provably older** and **A re-read
//! is stamped with its read time**. Each change applies once and a tombstone keeps a removed
//! item removed; a change whose sequence and creation order disagree, or that has no image, is
//! re-read; and a re-read item is as new as its read, so a change made during or just after the
//! read, with a lower or a higher sequence number, is never skipped or rolled back.

use std::time::Duration;

use change_protocol::EventName;

use crate::test_support::*;

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
