//! **One feed follower per consumer** (`docs/design.md`, 1.2 finding new change files): the
//! references of one consumer share its feed through a [`SharedFeed`]: within a round (a batch)
//! one conditional GET of the pointer and one listing answer them all, and each change file is
//! read once. A shared answer counts as taken at the round's start, so a reference that uses it
//! never moves its position past what the answer saw: a file that becomes visible late is still
//! found.

use crate::sources::SharedFeed;
use crate::test_support::*;
use crate::testing::{MemoryBucket, MemoryTable};
use crate::*;

type Shared = TableEnricher<Product, String, MemoryTable, SharedFeed<MemoryBucket>>;

/// A follower of `r`'s table through `feed`.
fn follower(r: &Rig, feed: &SharedFeed<MemoryBucket>) -> Shared {
    TableEnricher::new(
        product_config().with_feed(every_refresh()),
        r.table.clone(),
        Some(feed.clone()),
        r.clock.clone(),
    )
}

fn priority(e: &Shared, item: &str) -> Option<String> {
    e.reader().lookup(item).map(|p| p.priority.clone())
}

#[tokio::test]
async fn two_references_in_one_round_cost_one_pointer_get_one_listing_and_one_read_per_file() {
    // GIVEN two references of one consumer sharing its feed, both loaded
    let r = rig();
    let feed = SharedFeed::new(r.feed.clone(), PREFIX, r.clock.clone());
    let (mut a, mut b) = (follower(&r, &feed), follower(&r, &feed));
    a.refresh().await;
    b.refresh().await;
    r.clock.advance(AFTER_LOAD);
    // WHEN two change files arrive and a batch's round refreshes both
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(1);
    r.write(&[modify(11, "pizza", "medium", AFTER_LOAD + 1)]);
    r.clock.advance(100);
    let (gets, lists) = (r.feed.gets(), r.feed.lists());
    feed.new_round();
    a.refresh().await;
    b.refresh().await;
    // THEN both applied both files, with one pointer GET, one listing and one GET per file
    for e in [&a, &b] {
        assert_eq!(priority(e, "burger").as_deref(), Some("high"));
        assert_eq!(priority(e, "pizza").as_deref(), Some("medium"));
    }
    assert_eq!(
        r.feed.gets() - gets,
        1 + 2,
        "the pointer, then each file once"
    );
    assert_eq!(r.feed.lists() - lists, 1);
    // AND an idle round costs one conditional GET for both
    let gets = r.feed.gets();
    r.clock.advance(100);
    feed.new_round();
    assert!(!a.refresh().await.did_work());
    assert!(!b.refresh().await.did_work());
    assert_eq!(r.feed.gets() - gets, 1);
}

#[tokio::test]
async fn a_shared_listing_counts_from_the_rounds_start_so_a_late_file_is_still_found() {
    // GIVEN two references sharing the feed, both loaded and current
    let r = rig();
    let feed = SharedFeed::new(r.feed.clone(), PREFIX, r.clock.clone());
    let (mut a, mut b) = (follower(&r, &feed), follower(&r, &feed));
    a.refresh().await;
    b.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "salad", "low", AFTER_LOAD)]);
    r.clock.advance(100);
    // WHEN a round starts, `a` lists at once, and `b` refreshes a minute later (a long Scan of
    // its own, a slow batch) from `a`'s listing
    feed.new_round();
    let round_start = r.clock.now();
    a.refresh().await;
    r.clock.advance(60_000);
    b.refresh().await;
    assert_eq!(priority(&b, "salad").as_deref(), Some("low"));
    // AND a producer that read its key time just after the round started makes its file
    // visible only now (its PUT was slow, within W): no listing of the round saw it
    let key_time = round_start + chrono::Duration::milliseconds(1_000);
    r.write_keyed_at(key_time, &[modify(11, "burger", "high", AFTER_LOAD + 200)]);
    r.clock.advance(100);
    // THEN the next round finds it for both: `b`'s position is the round's start, not the
    // moment it used the shared listing
    feed.new_round();
    a.refresh().await;
    b.refresh().await;
    assert_eq!(priority(&a, "burger").as_deref(), Some("high"));
    assert_eq!(
        priority(&b, "burger").as_deref(),
        Some("high"),
        "the late file"
    );
}

#[tokio::test]
async fn outside_a_round_nothing_is_shared() {
    let r = rig();
    let feed = SharedFeed::new(r.feed.clone(), PREFIX, r.clock.clone());
    let (mut a, mut b) = (follower(&r, &feed), follower(&r, &feed));
    a.refresh().await;
    b.refresh().await;
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "burger", "high", AFTER_LOAD)]);
    r.clock.advance(100);
    let gets = r.feed.gets();
    a.refresh().await;
    b.refresh().await;
    assert_eq!(
        r.feed.gets() - gets,
        2 * 2 - 1,
        "each its pointer GET; the file read once"
    );
    assert_eq!(priority(&b, "burger").as_deref(), Some("high"));
}

#[tokio::test(start_paused = true)]
async fn a_newer_pointer_etag_is_never_paired_with_an_older_shared_listing() {
    // GIVEN a reference `a` that loaded, and `b` whose first load comes in the round (it reads
    // a feed snapshot's pointer, which is not the feed's pointer)
    let r = rig();
    let feed = SharedFeed::new(r.feed.clone(), PREFIX, r.clock.clone());
    let mut a = follower(&r, &feed);
    a.refresh().await;
    let mut b = follower(&r, &feed);
    r.clock.advance(AFTER_LOAD);
    r.write(&[modify(10, "salad", "low", AFTER_LOAD)]);
    r.table.put(product("salad", "low"));
    r.clock.advance(100);
    feed.new_round();
    a.refresh().await;
    assert_eq!(b.refresh().await.full_reload, Some(ReloadReason::FirstLoad));
    // WHEN, still in the round, burger changes (its file and the pointer written) and `b`
    // polls at a flag of the batch
    r.clock.advance(100);
    r.table.put(product("burger", "high"));
    r.write(&[modify(11, "burger", "high", AFTER_LOAD + 10_200)]);
    r.clock.advance(100);
    b.process_batch(vec!["FLAG", "burger"], flag_at(Classified::Flag))
        .await;
    // THEN the next batch's flag finds burger's file: `b` did not take the newer pointer ETag
    // with the round's older listing (which would make every later poll "not modified")
    r.clock.advance(500);
    feed.new_round();
    let (outcomes, _) = b
        .process_batch(vec!["FLAG", "burger"], flag_at(Classified::Flag))
        .await;
    match &outcomes[1] {
        Outcome::Enriched { item, .. } => assert_eq!(item.priority, "high"),
        o => panic!("{o:?}"),
    }
}
