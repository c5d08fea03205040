//! **The full load** (`docs/design.md`, 1.4 full loads and reloads) and the files that force
//! one: **Gaps are announced, never silent** and **Untypeable records are not a batch failure**
//! (1.5 gaps, kinds and untypeable records). The first refresh is a consistent, parallel Scan;
//! afterwards a change with its new image costs no table read, and one stamped before the Scan's
//! end plus the margin is re-read. A gap file, an unreadable change file or an opaque entry
//! without keys forces a reported full reload; an opaque entry with keys, a re-read of those
//! keys.

use stream_refdata_protocol::{AttributeValue, Item, OpaqueRecord};

use crate::test_support::*;
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

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
    let mut r = rig().loaded().await;
    let report = r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    assert_eq!((report.files, report.applied, report.reread), (1, 1, 0));
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
    let m = r.enricher.metrics();
    assert_eq!(m.items_read, 3, "only the first load read the table");
    assert_eq!(r.table.batch_gets(), 0);
    assert_eq!(m.delta_refreshes, 1);
}

#[tokio::test]
async fn changes_stamped_during_the_full_load_are_reread() {
    let mut r = rig();
    r.enricher.refresh().await;
    // Stamped before the load's end plus the margin: the Scan may or may not have seen it.
    r.table.put(product("burger", "high"));
    let report = r
        .deliver(&[modify(10, "burger", "stale-image", 1000)])
        .await;
    assert_eq!(report.reread, 1);
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
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

#[tokio::test]
async fn a_gap_file_makes_every_consumer_reload_fully() {
    let mut r = rig();
    r.enricher.refresh().await;
    r.table.put(product("burger", "high"));
    r.write_gap();
    let report = r.refresh_later().await;
    assert!(matches!(report.full_reload, Some(ReloadReason::Gap { .. })));
    assert_eq!(r.priority("burger").as_deref(), Some("high"));
}

#[tokio::test]
async fn opaque_entries_reread_their_keys_or_force_a_full_reload() {
    let mut r = rig().loaded().await;
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
    let mut r = rig().loaded().await;
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
    let report = r
        .deliver(&[modify(11, "pizza", "high", AFTER_LOAD + 500)])
        .await;
    assert_eq!(report.full_reload, None);
    assert_eq!(r.enricher.metrics().full_refreshes, 2);
}

#[tokio::test]
async fn an_unknown_schema_version_forces_a_full_reload() {
    let mut r = rig().loaded().await;
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
