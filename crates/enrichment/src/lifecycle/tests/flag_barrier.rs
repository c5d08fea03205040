//! **No later than the flag** and **A failed refresh at a flag retries the batch**
//! (`docs/design.md`, 3 in-stream flags are a barrier): a batch is walked in order and refreshed
//! at each flag, so every record after a flag sees the change; if that refresh fails, the records
//! after the flag are held for a retry, never enriched with the older data. A table consumer
//! ignores protocol flags (they name S3 objects) and polls the feed, or without a feed reloads
//! the table, at a flag of the original kind.

use crate::test_support::objects::{flag, loaded_then_changed};
use crate::test_support::*;
use crate::testing::MemoryBucket;
use crate::*;

#[tokio::test]
async fn a_flag_in_the_middle_of_a_batch_splits_old_and_new_data_at_its_position() {
    let mut r = rig().loaded().await;
    r.refresh_later().await;
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let records = vec!["burger", "burger", "FLAG", "burger", "burger"];
    let (outcomes, report) = r.enricher.enrich(records, flag_at(Classified::Flag)).await;
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
    let (table, mut e) = without_feed(|c| c);
    e.refresh().await;
    table.put(product("burger", "high"));
    let (outcomes, _) = e
        .enrich(vec!["burger", "FLAG", "burger"], flag_at(Classified::Flag))
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
async fn a_flag_whose_refresh_fails_holds_the_records_after_it_for_a_retry() {
    let body = b"{\"item\":\"burger\",\"priority\":\"high\"}\n";
    let (objects, mut e, f) =
        loaded_then_changed(BadRows::RejectObject, "reference/a.jsonl", body).await;
    objects.set_failing(true);
    let (outcomes, report) = e
        .enrich(
            vec!["burger", "FLAG", "burger", "salad"],
            flag_at(Classified::ChangeFlag(f)),
        )
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

#[tokio::test(start_paused = true)]
async fn a_flag_for_s3_objects_holds_nothing_while_a_table_reload_is_pending() {
    // A table consumer with a reload pending (the table throttles) meets a protocol flag,
    // which names an S3 object: not its data, so the records after it are not held.
    let mut r = rig().loaded().await;
    r.write_gap();
    r.table.set_failing(true);
    r.refresh_later().await;
    assert!(r.enricher.pending_reload().is_some());
    let flag = flag(&MemoryBucket::default(), "reference/menu.csv", false);
    let (_, report) = r
        .enricher
        .enrich(
            vec!["FLAG", "burger"],
            flag_at(Classified::ChangeFlag(flag)),
        )
        .await;
    assert_eq!((report.held, report.retry.clone()), (0, None), "{report:?}");
    assert_eq!(r.enricher.metrics().ignored_flags, 1);
}
