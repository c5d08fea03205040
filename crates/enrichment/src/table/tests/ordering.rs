//! The per-item order of changes (`docs/design.md`, 1.3 applying changes): **Newest wins per
//! item**, **Disagreement means re-read**, **Skip only what is provably older** and **A re-read
//! is stamped with its read time**. Each change applies once and a tombstone keeps a removed
//! item removed; a change whose sequence and creation order disagree, or that has no image, is
//! re-read; and a re-read item is as new as its read, so a change made during or just after the
//! read, with a lower or a higher sequence number, is never skipped or rolled back.

use std::time::Duration;

use stream_refdata_protocol::EventName;

use crate::test_support::*;
use crate::testing::MemoryBucket;
use crate::TableEnricher;

/// The table now holds `change`'s item at `truth`, and `change` arrives: it is re-read, so the
/// consumer serves the table's value.
async fn a_reread_serves_the_table(r: &mut Rig, truth: &str, change: Change<'_>) {
    let item = change.item;
    r.table.put(product(item, truth));
    let report = r.deliver(&[change]).await;
    assert_eq!(report.reread, 1, "{report:?}");
    assert_eq!(r.priority(item).as_deref(), Some(truth));
}

#[tokio::test]
async fn a_change_written_twice_by_a_retry_is_applied_once() {
    let mut r = rig().loaded().await;
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(30);
    let report = r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    assert_eq!((report.files, report.applied), (2, 1));
    assert_eq!(r.enricher.metrics().changes_skipped, 1);
}

#[tokio::test]
async fn an_older_change_written_later_never_rolls_an_item_back() {
    let mut r = rig().loaded().await;
    r.deliver(&[modify(20, "burger", "high", AFTER_LOAD + 2000)])
        .await;
    // A backlogged batch with the older change arrives afterwards (another shard, a retry).
    r.deliver(&[modify(10, "burger", "low", AFTER_LOAD + 1000)])
        .await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn a_late_older_modify_after_a_remove_does_not_resurrect_the_item() {
    let mut r = rig().loaded().await;
    r.table.delete(&keys("pizza"));
    r.deliver(&[Change {
        seq: 30,
        event: EventName::Remove,
        item: "pizza",
        priority: None,
        created_ms: AFTER_LOAD + 3000,
    }])
    .await;
    assert_eq!(r.priority("pizza"), None);
    r.deliver(&[modify(25, "pizza", "high", AFTER_LOAD + 2000)])
        .await;
    assert_eq!(r.priority("pizza"), None, "the tombstone keeps it removed");
}

#[tokio::test]
async fn creation_time_disagreeing_with_sequence_order_rereads_the_item() {
    let mut r = rig().loaded().await;
    r.deliver(&[modify(20, "burger", "high", AFTER_LOAD + 5000)])
        .await;
    // A larger sequence number from another shard, stamped seconds earlier: re-read the truth.
    let change = modify(30, "burger", "low", AFTER_LOAD + 1000);
    a_reread_serves_the_table(&mut r, "very high", change).await;
}

#[tokio::test]
async fn keys_only_changes_reread_just_those_items() {
    let mut r = rig().loaded().await;
    r.table.put(product("salad", "low"));
    let report = r.deliver(&[keys_only(11, "salad", AFTER_LOAD)]).await;
    assert_eq!((report.applied, report.reread), (0, 1));
    assert_eq!(r.priority("salad").as_deref(), Some("low"));
    assert_eq!(r.table.batch_gets(), 1);
    assert_eq!(r.enricher.metrics().items_read, 3 + 1);
}

#[tokio::test]
async fn an_older_sequence_number_created_later_is_reread() {
    let mut r = rig().loaded().await;
    r.deliver(&[modify(20, "burger", "from seq 20", AFTER_LOAD)])
        .await;
    assert_eq!(r.priority("burger").as_deref(), Some("from seq 20"));
    // An older sequence number not created later is simply skipped.
    let report = r
        .deliver(&[modify(16, "burger", "from seq 16", AFTER_LOAD)])
        .await;
    assert_eq!((report.reread, report.applied), (0, 0));
    // Sequence order says older, creation order says later: only a read can tell.
    r.clock.advance(60_000);
    let change = modify(15, "burger", "from seq 15", AFTER_LOAD + 3_000);
    a_reread_serves_the_table(&mut r, "current", change).await;
    // After the read, a change made well before it (an older sequence number or not) is
    // reflected by the read: skipped.
    let report = r
        .deliver(&[modify(14, "burger", "from seq 14", AFTER_LOAD + 3_500)])
        .await;
    assert_eq!((report.reread, report.applied), (0, 0), "{report:?}");
}

/// A consumer after a KEYS_ONLY change of salad (sequence number `seq`) that it re-read at the
/// clock's time T, 10 s after the change: salad is "read at T". Returns the rig and T, relative
/// to the rig's start.
async fn salad_reread(seq: u64) -> (Rig, i64) {
    let mut r = rig().loaded().await;
    r.table.put(product("salad", "read at T"));
    r.write(&[keys_only(seq, "salad", AFTER_LOAD)]);
    r.clock.advance(10_000);
    let report = r.refresh_later().await;
    assert_eq!(report.reread, 1);
    let read_at = r.clock.ms() - BASE;
    (r, read_at)
}

#[tokio::test]
async fn a_reread_item_is_as_new_as_the_read() {
    let (mut r, read_at) = salad_reread(10).await;
    for (change, applied, priority) in [
        // A change with a higher sequence number but made before the read arrives late: the
        // read already reflects it (or something newer), so its image must not roll the item
        // back.
        (
            modify(11, "salad", "stale image", read_at - 4_000),
            0,
            "read at T",
        ),
        // A change made after the read (plus the margin) applies from its image.
        (
            modify(12, "salad", "after the read", read_at + 6_000),
            1,
            "after the read",
        ),
    ] {
        let report = r.deliver(&[change]).await;
        assert_eq!(report.applied, applied, "{report:?}");
        assert_eq!(r.priority("salad").as_deref(), Some(priority));
    }
}

#[tokio::test]
async fn an_older_sequence_made_just_after_a_reread_is_not_lost() {
    let (mut r, read_at) = salad_reread(20).await;
    // 2 s after the read (inside the margin), from another shard: a lower sequence number.
    r.clock.advance(2_000);
    let change = modify(15, "salad", "after the read", read_at + 2_000);
    a_reread_serves_the_table(&mut r, "after the read", change).await;
}

/// `change` (with its image) is made in the table and written to the feed; 100 ms later `e`
/// refreshes and serves the item's new value: the change was not skipped.
async fn a_change_made_in_the_table_is_served(
    r: &Rig,
    e: &mut TableEnricher<Product, String, SlowTable, MemoryBucket>,
    change: Change<'_>,
) {
    let (item, priority) = (change.item, change.priority.expect("an image"));
    r.table.put(product(item, priority));
    r.write(&[change]);
    r.clock.advance(100);
    let report = e.refresh().await;
    assert_eq!(
        e.reader().lookup(item).unwrap().priority,
        priority,
        "{report:?}"
    );
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
    let change = modify(12, "pizza", "changed after its read", pizza_read_at + 1_000);
    a_change_made_in_the_table_is_served(&r, &mut e, change).await;
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
    let change = modify(11, "salad", "changed at 6.990", 6_990);
    a_change_made_in_the_table_is_served(&r, &mut e, change).await;
}
