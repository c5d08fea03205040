//! **New stream = gap** and **Newer stream by its creation label** (`docs/design.md`, 1.4 full
//! loads and reloads): a change file from a newer stream of the table forces a full reload; files
//! of older streams, even when listed later in the same poll, and of other regions' streams of a
//! global table are ignored and counted.

use crate::test_support::*;
use crate::*;

#[tokio::test]
async fn a_new_stream_arn_forces_a_full_reload_and_old_stream_files_are_ignored() {
    let mut r = rig().loaded().await;
    r.deliver(&[modify(10, "burger", "high", AFTER_LOAD)]).await;
    r.table.put(product("salad", "very high"));
    r.write_file(
        &[modify(1, "salad", "low", AFTER_LOAD + 100)],
        NEW_ARN,
        vec![],
    );
    let report = r.refresh_later().await;
    assert!(matches!(
        report.full_reload,
        Some(ReloadReason::NewStream { .. })
    ));
    assert_eq!(r.priority("salad").as_deref(), Some("very high"));
    r.deliver(&[modify(99, "salad", "old stream", AFTER_LOAD + 200)])
        .await;
    assert_eq!(r.priority("salad").as_deref(), Some("very high"));
    assert_eq!(r.enricher.metrics().ignored_files, 1);
}

#[tokio::test]
async fn a_consumer_loaded_before_a_stream_switch_reloads_at_the_new_streams_first_file() {
    // GIVEN a consumer that loaded while the table's stream was ARN and never saw a file of it
    let mut r = rig().loaded().await;
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
    let mut r = rig().loaded().await;
    // One poll finds a file of the new stream, then a retried file of the old one listed after.
    r.table.set_stream_arn(Some(NEW_ARN));
    r.table.put(product("salad", "new"));
    r.write_file(&[modify(1, "salad", "new", AFTER_LOAD)], NEW_ARN, vec![]);
    r.clock.advance(10);
    let report = r
        .deliver(&[modify(900, "salad", "old stream", AFTER_LOAD)])
        .await;
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
    let report = r
        .deliver(&[modify(901, "salad", "old again", 2 * AFTER_LOAD + 300)])
        .await;
    assert_eq!(report.full_reload, None, "{report:?}");
    assert_eq!(r.priority("salad").as_deref(), Some("newer"));
    assert_eq!(r.enricher.metrics().other_stream_files, 2);
}

#[tokio::test]
async fn regional_streams_of_a_global_table_do_not_flip_flop() {
    let eu = "arn:aws:dynamodb:eu-west-1:123456789012:table/ProductPriority/stream/9";
    let mut r = rig().loaded().await;
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
