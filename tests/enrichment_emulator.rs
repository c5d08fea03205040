//! The enricher against the local emulator, fed by the real change-handler: real table, real
//! stream records, real change files, real SDK (the rig is `test_support::FeedRig`).

use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use stream_refdata::{Classified, Outcome, ReloadReason};
use stream_refdata_protocol::{head_key, HeadPointer};
use test_support::{FaultProxy, FeedRig};

use crate::common::{Consumer, FeedConsumers};

/// The producer side: table (seeded, the inserts delivered), stream, change-handler, feed bucket.
async fn producer(view: StreamViewType) -> FeedRig {
    FeedRig::seeded(view).await
}

fn priority(c: &Consumer, item: &str) -> Option<String> {
    c.reader().lookup(item).map(|p| p.priority.clone())
}

/// Loads, then takes in the change files written just before the load: their changes are
/// stamped before the load ended, so the full-load rule re-reads those items once.
async fn catch_up(c: &mut Consumer) {
    let first = c.refresh().await;
    assert_eq!(first.full_reload, Some(ReloadReason::FirstLoad));
    let second = c.refresh().await;
    assert_eq!(
        second.applied, 0,
        "changes from before the load are re-read: {second:?}"
    );
}

/// Stream records carry whole seconds; changes made in a later second than the full load are
/// applied from their image (earlier ones are re-read, as the full-load rule says).
async fn next_second() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test]
async fn a_modify_reaches_two_independent_consumers_and_no_file_is_deleted() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let mut a = p.consumer();
    let mut b = p.consumer();
    a.refresh().await;
    b.refresh().await;
    assert_eq!(priority(&a, "burger").as_deref(), Some("medium"));
    next_second().await;

    p.table.set_priority("burger", "high").await;
    p.deliver().await;
    let files_before = p.feed_keys().await;

    a.refresh().await;
    b.refresh().await;
    assert_eq!(priority(&a, "burger").as_deref(), Some("high"));
    assert_eq!(priority(&b, "burger").as_deref(), Some("high"));
    assert_eq!(
        p.feed_keys().await,
        files_before,
        "consumers never delete change files"
    );
    assert_eq!(a.metrics().changes_applied, 1);
    assert_eq!(b.metrics().changes_applied, 1);
}

#[tokio::test]
async fn a_delta_with_a_new_image_costs_zero_dynamodb_reads() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let mut c = p.consumer();
    catch_up(&mut c).await;
    let caught_up = c.metrics();
    assert_eq!(
        caught_up.items_read,
        5 + 5,
        "the Scan, then the seed inserts re-read once"
    );
    next_second().await;

    p.table.set_priority("pizza", "high").await;
    p.table.put("tacos", "low").await;
    p.table.delete("salad").await;
    p.deliver().await;
    let report = c.refresh().await;

    assert_eq!((report.applied, report.reread), (3, 0), "{report:?}");
    let m = c.metrics();
    assert_eq!(
        m.items_read, caught_up.items_read,
        "no DynamoDB read for changes that carry their image"
    );
    assert_eq!(priority(&c, "pizza").as_deref(), Some("high"));
    assert_eq!(priority(&c, "tacos").as_deref(), Some("low"));
    assert_eq!(priority(&c, "salad"), None);
    assert_eq!(c.snapshot().len(), 5);
}

#[tokio::test]
async fn keys_only_changes_trigger_a_targeted_reload() {
    let p = producer(StreamViewType::KeysOnly).await;
    let mut c = p.consumer();
    catch_up(&mut c).await;
    let caught_up = c.metrics();
    next_second().await;
    p.table.set_priority("burger", "high").await;
    p.deliver().await;
    let report = c.refresh().await;
    assert_eq!(
        (report.applied, report.reread, report.full_reload),
        (0, 1, None)
    );
    assert_eq!(priority(&c, "burger").as_deref(), Some("high"));
    let m = c.metrics();
    assert_eq!(
        m.items_read,
        caught_up.items_read + 1,
        "one item re-read, not the table"
    );
    assert_eq!(m.full_refreshes, 1);
}

#[tokio::test]
async fn a_flag_in_the_middle_of_a_batch_splits_old_and_new_data_at_its_position() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let mut c = p.consumer();
    c.refresh().await;
    next_second().await;
    p.table.set_priority("burger", "high").await;
    p.deliver().await;

    let batch = vec!["burger", "burger", "CHANGE_FLAG", "burger", "donut"];
    let (outcomes, report) = c
        .enrich(batch, |dish| match *dish {
            "CHANGE_FLAG" => Classified::Flag,
            d => Classified::Data(d.to_owned()),
        })
        .await;
    let seen: Vec<String> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Enriched { item, .. } => item.priority.clone(),
            Outcome::Flag => "flag".into(),
            Outcome::Rejected { record, reason } => format!("{record}: {reason}"),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seen,
        [
            "medium",
            "medium",
            "flag",
            "high",
            "donut: no reference item"
        ]
    );
    assert!(report.reconciles());
}

#[tokio::test]
async fn a_corrupted_change_file_triggers_a_full_reload() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let mut c = p.consumer();
    c.refresh().await;
    next_second().await;
    p.table.set_priority("pasta", "low").await;
    p.deliver().await;
    // Truncate the newest change file in place.
    let keys = p.feed_keys().await;
    let newest = keys
        .iter()
        .filter(|k| k.ends_with(".json"))
        .max()
        .unwrap()
        .clone();
    p.s3.put_object()
        .bucket(&p.bucket)
        .key(&newest)
        .body(b"{\"schema_version\":1,\"kind\":\"dynam".to_vec().into())
        .send()
        .await
        .unwrap();
    let report = c.refresh().await;
    let reason = report.full_reload.expect("a full reload");
    assert!(
        matches!(reason, ReloadReason::UnreadableFile { .. }),
        "{reason}"
    );
    assert_eq!(priority(&c, "pasta").as_deref(), Some("low"));
    assert_eq!(c.metrics().full_refreshes, 2);
}

#[tokio::test]
async fn the_emulator_going_away_keeps_the_last_snapshot_serving_and_recovery_follows() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let proxy = FaultProxy::start(test_support::emulator().endpoint()).await;
    let mut c = p.consumer_through(proxy.endpoint());
    c.refresh().await;
    next_second().await;

    proxy.set_down(true);
    p.table.set_priority("burger", "high").await;
    p.deliver().await;
    let report = c.refresh().await;
    assert!(report.error.is_some(), "{report:?}");
    let (outcomes, batch) = c
        .enrich(vec!["burger"], |d| Classified::Data((*d).to_owned()))
        .await;
    assert_eq!(batch.enriched, 1, "the last good snapshot keeps serving");
    let Outcome::Enriched { item, .. } = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(item.priority, "medium");
    assert!(proxy.refused() > 0);
    assert_eq!(c.metrics().refresh_errors, 1);

    proxy.set_down(false);
    let report = c.refresh().await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(priority(&c, "burger").as_deref(), Some("high"));
    assert!(c.last_error().is_none());
}

#[tokio::test]
async fn a_consumer_starting_fresh_full_loads_then_follows_the_feed() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    p.table.set_priority("salad", "low").await;
    p.deliver().await;
    let mut c = p.consumer();
    let report = c.refresh().await;
    assert_eq!(report.full_reload, Some(ReloadReason::FirstLoad));
    assert_eq!(priority(&c, "salad").as_deref(), Some("low"));
    next_second().await;

    p.table.set_priority("ice-cream", "low").await;
    p.deliver().await;
    let report = c.refresh().await;
    assert_eq!(report.full_reload, None);
    assert_eq!(priority(&c, "ice-cream").as_deref(), Some("low"));
    assert_eq!(c.metrics().full_refreshes, 1);
}

#[tokio::test]
async fn an_idle_poll_is_one_conditional_get_of_the_pointer() {
    let p = producer(StreamViewType::NewAndOldImages).await;
    let mut c = p.consumer();
    c.refresh().await;
    c.refresh().await; // first poll lists and learns the pointer's ETag
    let before = c.metrics();
    for _ in 0..3 {
        c.refresh().await;
    }
    let after = c.metrics();
    assert_eq!(
        after.feed_lists, before.feed_lists,
        "no listing while nothing changed"
    );
    assert_eq!(after.head_not_modified - before.head_not_modified, 3);

    next_second().await;
    p.table.set_priority("burger", "high").await;
    p.deliver().await;
    let head =
        p.s3.get_object()
            .bucket(&p.bucket)
            .key(head_key("change_flags/"))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
    let head: HeadPointer = serde_json::from_slice(&head).unwrap();
    assert!(head.latest.ends_with(".json"));
    c.refresh().await;
    assert_eq!(priority(&c, "burger").as_deref(), Some("high"));
}
