//! **Schema changes follow a policy** (`docs/design.md`, 1.5 gaps, kinds and untypeable
//! records): an attribute added to the items is accepted; an item that stops decoding into the
//! user's type (an attribute renamed or retyped) keeps its last good version, counted and named
//! in the reference's health; a full load in which most items no longer decode is refused, so
//! the last good snapshot keeps serving whole instead of a half-empty table.

use std::time::Duration;

use stream_refdata_protocol::{AttributeValue, Item};

use crate::test_support::*;
use crate::*;

/// The product `item` with `priority` renamed to `prio` (it no longer decodes into `Product`).
fn renamed(item: &str, priority: &str) -> Item {
    let mut i = product(item, priority);
    let p = i.remove("priority").unwrap();
    i.insert("prio".into(), p);
    i
}

/// The product `item` with its priority now a number (it no longer decodes into `Product`).
fn retyped(item: &str) -> Item {
    let mut i = product(item, "x");
    i.insert("priority".into(), AttributeValue::N("3".into()));
    i
}

#[tokio::test]
async fn an_added_attribute_is_accepted() {
    let mut r = rig().loaded().await;
    let mut burger = product("burger", "high");
    burger.insert("calories".into(), AttributeValue::N("540".into()));
    r.table.put(burger);
    r.deliver(&[keys_only(10, "burger", AFTER_LOAD)]).await;
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert_eq!(r.enricher.metrics().undecodable_items, 0);
    assert!(r.enricher.health().rejected.is_empty());
}

#[tokio::test]
async fn an_item_that_stops_decoding_keeps_its_last_good_version_until_it_decodes_again() {
    // GIVEN a loaded consumer, and burger's priority then renamed in the table
    let mut r = rig().loaded().await;
    r.table.put(renamed("burger", "high"));
    // WHEN its change arrives
    let report = r.deliver(&[keys_only(10, "burger", AFTER_LOAD)]).await;
    // THEN burger keeps its last good version, counted and named in the health
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(r.priority("burger").as_deref(), Some("medium"));
    assert_eq!(r.enricher.metrics().undecodable_items, 1);
    let h = r.enricher.health();
    assert_eq!(h.rejected.len(), 1, "{h:?}");
    assert!(h.rejected[0].contains("burger"), "{h:?}");
    assert_eq!(h.state(), "degraded");
    // WHEN it decodes again
    r.table.put(product("burger", "high"));
    r.deliver(&[keys_only(11, "burger", AFTER_LOAD + 200)])
        .await;
    // THEN it is served and no longer named
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    assert!(r.enricher.health().rejected.is_empty());
    assert_eq!(r.enricher.health().state(), "current");
}

#[tokio::test]
async fn a_removed_item_that_did_not_decode_is_no_longer_named() {
    let mut r = rig().loaded().await;
    r.table.put(retyped("pizza"));
    r.deliver(&[keys_only(10, "pizza", AFTER_LOAD)]).await;
    assert_eq!(r.priority("pizza").as_deref(), Some("low"));
    assert_eq!(r.enricher.health().rejected.len(), 1);
    r.table.delete(&keys("pizza"));
    r.deliver(&[keys_only(11, "pizza", AFTER_LOAD + 200)]).await;
    assert_eq!(r.priority("pizza"), None);
    assert!(r.enricher.health().rejected.is_empty());
}

#[tokio::test]
async fn a_full_load_keeps_the_last_good_version_of_a_few_items_that_stopped_decoding() {
    // GIVEN a loaded consumer, then one item of three retyped and another changed
    let mut r = rig().loaded().await;
    r.table.put(retyped("burger"));
    r.table.put(product("salad", "low"));
    // WHEN a gap makes it reload
    r.write_gap();
    let report = r.refresh_later().await;
    // THEN the load succeeds: salad is new, burger keeps its last good version
    assert!(report.error.is_none(), "{report:?}");
    assert!(matches!(report.full_reload, Some(ReloadReason::Gap { .. })));
    assert_eq!(r.priority("salad").as_deref(), Some("low"));
    assert_eq!(r.priority("burger").as_deref(), Some("medium"));
    assert_eq!(r.enricher.health().rejected.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_schema_change_that_breaks_most_items_keeps_the_last_good_snapshot_whole() {
    // GIVEN a loaded consumer, then `priority` renamed in two items of three
    let mut r = rig().loaded().await;
    r.table.put(renamed("burger", "high"));
    r.table.put(renamed("salad", "low"));
    r.table.put(product("pizza", "medium"));
    // WHEN a gap makes it reload
    r.write_gap();
    let report = r.refresh_later().await;
    // THEN the load is refused with the reason: every item keeps serving as it was
    let error = report.error.expect("refused").to_string();
    assert!(
        error.contains("schema change: 2 of 3 items no longer decode"),
        "{error}"
    );
    assert_eq!(r.priority("burger").as_deref(), Some("medium"));
    assert_eq!(r.priority("salad").as_deref(), Some("high"));
    assert_eq!(
        r.priority("pizza").as_deref(),
        Some("low"),
        "not half-applied"
    );
    let h = r.enricher.health();
    assert!(
        h.pending_reload.is_some() && h.last_error.is_some(),
        "{h:?}"
    );
    assert_eq!(h.state(), "degraded");
    // AND it is not Scanned again every minute: the next attempt waits 10 minutes
    let scans = r.table.scans();
    tokio::time::advance(Duration::from_secs(120)).await;
    r.refresh_later().await;
    assert_eq!(r.table.scans(), scans, "no Scan within 10 minutes");
    // WHEN the items are fixed, the reload is tried again after its backoff and succeeds
    r.table.put(product("burger", "high"));
    r.table.put(product("salad", "low"));
    tokio::time::advance(Duration::from_secs(481)).await;
    let report = r.refresh_later().await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(r.priority("pizza").as_deref(), Some("medium"));
    assert_eq!(r.enricher.health().state(), "current");
}

#[tokio::test]
async fn a_first_load_serves_what_decodes_there_being_no_last_good_snapshot() {
    let r = rig();
    r.table.put(renamed("burger", "high"));
    r.table.put(renamed("salad", "low"));
    let mut r = r;
    let report = r.enricher.refresh().await;
    assert!(report.error.is_none(), "{report:?}");
    assert_eq!(r.priority("pizza").as_deref(), Some("low"));
    assert_eq!(r.priority("burger"), None);
    assert_eq!(r.enricher.health().rejected.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reload_from_a_feed_snapshot_follows_the_same_policy() {
    // GIVEN a loaded consumer (change files kept 3 days), then `priority` retyped in two items
    // of three, and a feed snapshot of the table as it is now
    let mut r = rig_with(|c| c.with_max_age(None).with_feed(retention_days(3)));
    r.enricher.refresh().await;
    r.table.put(retyped("salad"));
    r.table.put(retyped("pizza"));
    // WHEN it is idle past the retention and reloads: the snapshot is its first choice
    let idle = Duration::from_secs(2 * 24 * 3600 + 60);
    tokio::time::advance(idle).await;
    r.clock.advance(idle.as_millis() as i64);
    r.publish_first_snapshot().await;
    let report = r.enricher.refresh().await;
    // THEN the snapshot is refused for the schema change, the Scan refuses as well, and the
    // last good snapshot serves whole
    assert!(
        matches!(
            r.enricher.pending_reload(),
            Some(ReloadReason::BeyondRetention)
        ),
        "{report:?}"
    );
    let refused = report.snapshot_refused.expect("the snapshot refused");
    assert!(
        refused.contains("2 of 3 items no longer decode"),
        "{refused}"
    );
    let error = report.error.expect("the Scan refused").to_string();
    assert!(error.contains("schema change: 2 of 3"), "{error}");
    assert_eq!(r.priority("salad").as_deref(), Some("high"));
    assert_eq!(r.priority("pizza").as_deref(), Some("low"));
}

#[tokio::test]
async fn a_first_load_from_a_feed_snapshot_names_what_does_not_decode() {
    let mut r = rig();
    r.table.put(retyped("salad"));
    r.publish_first_snapshot().await;
    let report = r.enricher.refresh().await;
    assert!(report.snapshot.is_some(), "{report:?}");
    assert_eq!(
        r.enricher.health().rejected.len(),
        1,
        "{:?}",
        r.enricher.health()
    );
    assert_eq!(r.priority("pizza").as_deref(), Some("low"));
}
