//! The orders consumer following the feed that the real change-handler writes (moved from the
//! orders-consumer crate, whose own emulator tests need no producer): after the walkthrough's
//! update, burger orders land in `priority=high`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use orders_consumer::{Config, OrdersConsumer};
use serde_json::Value;
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata_aws::s3_client;
use test_support::{FeedRig, MemoryStore};

fn sample() -> Value {
    let path = format!(
        "{}/../events/example-kinesis-orders.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The consumer of `rig`'s table and feed as `main` builds it from its variables (defaults
/// otherwise), writing to `store`.
pub(crate) fn consumer(
    rig: &FeedRig,
    store: Arc<MemoryStore>,
) -> OrdersConsumer<DynamoDbTable, S3Feed, Arc<MemoryStore>> {
    let config = Config::from_lookup(&|var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some("out".to_owned()),
        _ => None,
    })
    .unwrap();
    let table = DynamoDbTable::new(
        aws_sdk_dynamodb::Client::new(&rig.sdk),
        config.reference_table.clone(),
    );
    let feed = S3Feed::new(s3_client(&rig.sdk), rig.bucket.clone());
    OrdersConsumer::new(config, table, feed, store)
}

#[tokio::test]
async fn after_the_walkthrough_update_burger_orders_land_in_priority_high() {
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = consumer(&r, store.clone());
    consumer.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("burger", "high").await;
    r.deliver().await;
    let mut later = sample();
    for rec in later["Records"].as_array_mut().unwrap() {
        let seq = rec["kinesis"]["sequenceNumber"]
            .as_str()
            .unwrap()
            .replace("4959", "4960");
        rec["eventID"] = format!("shardId-000000000002:{seq}").into();
        rec["kinesis"]["sequenceNumber"] = seq.into();
    }
    let (_, summary) = consumer.handle_batch(&later).await.unwrap();
    let partitions: Vec<&String> = summary.output.partitions.keys().collect();
    assert!(
        partitions.contains(&&"item=burger/priority=high/".to_owned()),
        "{partitions:?}"
    );
    assert!(!partitions.contains(&&"item=burger/priority=medium/".to_owned()));
}

/// The consumer of [`consumer`], holding unmatched orders (`UNMATCHED=hold`, with `vars`).
fn holding_consumer(
    rig: &FeedRig,
    store: Arc<MemoryStore>,
    vars: &[(&str, &str)],
) -> OrdersConsumer<DynamoDbTable, S3Feed, Arc<MemoryStore>> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = Config::from_lookup(&|var: &str| match var {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        "OUTPUT_BUCKET" => Some("out".to_owned()),
        "UNMATCHED" => Some("hold".to_owned()),
        "FEED_POLL_INTERVAL_MS" => Some("0".to_owned()),
        other => vars
            .iter()
            .find(|(k, _)| k == other)
            .map(|(_, v)| v.clone()),
    })
    .unwrap();
    let table = DynamoDbTable::new(
        aws_sdk_dynamodb::Client::new(&rig.sdk),
        config.reference_table.clone(),
    );
    let feed = S3Feed::new(s3_client(&rig.sdk), rig.bucket.clone());
    OrdersConsumer::new(config, table, feed, store)
}

/// The sample event with its sequence numbers moved on by `to` (`"4960"`, …): a later batch.
fn later(to: &str) -> Value {
    let mut later = sample();
    for rec in later["Records"].as_array_mut().unwrap() {
        let seq = rec["kinesis"]["sequenceNumber"]
            .as_str()
            .unwrap()
            .replace("4959", to);
        rec["eventID"] = format!("shardId-000000000002:{seq}").into();
        rec["kinesis"]["sequenceNumber"] = seq.into();
    }
    later
}

const DONUT_SEQ: &str = "49590338271490256608559692538361571095921575989136590898";
const FIRST_SEQ: &str = "49590338271490256608559692538361571095921575989136588898";

#[tokio::test]
async fn a_held_order_is_released_into_its_partition_when_its_row_arrives() {
    // GIVEN the sample batch (donut has no row) through a consumer that holds
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    // THEN donut is held, durably, under its own identity, not dead-lettered
    let out = &summary.output;
    assert_eq!(out.held, 1, "{out:?}");
    assert_eq!(out.unmatched_dead_lettered, 0);
    assert_eq!(
        out.accounted(),
        summary.records,
        "in = out + held + rejected"
    );
    let held_key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    assert!(
        store.object("out", &held_key).is_some(),
        "{:?}",
        store.put_keys()
    );
    // AND a retry of the batch holds it again under the same name, not twice
    let (_, again) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(again.output.held, 1);
    assert_eq!(consumer.hold_counts().map(|(_, now)| now), Some(1));

    // WHEN donut's row is created (the change-handler writes it to the feed) and the next
    // batch comes, to a consumer that cold-started meanwhile (it knows the held order from S3)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    let cold = holding_consumer(&r, store.clone(), &[]);
    let (response, summary) = cold.handle_batch(&later("4960")).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{summary:?}");
    // THEN the held order is released into donut's partition, under the name its first attempt
    // would have had, and the held object is gone; this batch's own donut is enriched directly
    assert_eq!(summary.output.released, 1, "{:?}", summary.output);
    let donut_object =
        format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    let released = store
        .object("out", &donut_object)
        .expect("released under its first attempt's name");
    let line: Value =
        serde_json::from_slice(released.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(
        (line["customer_id"].as_i64(), line["priority"].as_str()),
        (Some(1003), Some("low"))
    );
    assert_eq!(line["sequence_number"], DONUT_SEQ);
    // AND it is byte for byte what the first attempt would have written had the row existed
    let had_the_row = Arc::new(MemoryStore::new());
    holding_consumer(&r, had_the_row.clone(), &[])
        .handle_batch(&sample())
        .await
        .unwrap();
    assert_eq!(had_the_row.object("out", &donut_object), Some(released));
    assert!(
        store.object("out", &held_key).is_none(),
        "the held object is deleted"
    );
    assert_eq!(
        summary.output.enriched, 4,
        "burger, pizza, ice-cream and this batch's donut"
    );
    assert_eq!(summary.output.accounted(), summary.records);
    let (counts, now) = cold.hold_counts().unwrap();
    assert_eq!((counts.released, now), (1, 0));
}

#[tokio::test]
async fn a_held_order_past_its_grace_is_dead_lettered_and_a_full_hold_dead_letters_at_once() {
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    // (the hold full first, with the default grace: nothing expires however slow the machine)
    let full_hold = holding_consumer(&r, store.clone(), &[("HOLD_MAX_RECORDS", "1")]);
    full_hold.handle_batch(&sample()).await.unwrap();
    // A second batch's donut finds the hold full (one record at most): dead-lettered at once.
    let (_, full) = full_hold.handle_batch(&later("4960")).await.unwrap();
    assert_eq!(
        (full.output.held, full.output.hold_full),
        (0, 1),
        "{:?}",
        full.output
    );
    assert_eq!(full.output.accounted(), full.records);
    let dead = store
        .object(
            "out",
            &format!(
                "dead-letter/shardId-000000000002-{}.jsonl",
                FIRST_SEQ.replace("4959", "4960")
            ),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&dead).contains("the hold is full"));
    // Past the grace (1 s: an environment with that grace, after at least that long), the first
    // donut is dead-lettered under a name of its own, with how long it was held and its first
    // attempt.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let consumer = holding_consumer(
        &r,
        store.clone(),
        &[("HOLD_GRACE_SECS", "1"), ("HOLD_MAX_RECORDS", "1")],
    );
    let (_, expired) = consumer.handle_batch(&later("4961")).await.unwrap();
    assert_eq!(expired.output.expired, 1, "{:?}", expired.output);
    assert_eq!(
        (expired.output.held, expired.output.hold_full),
        (1, 0),
        "the expired order's room is free for this batch's donut"
    );
    let letter = store
        .object(
            "out",
            &format!("dead-letter/held-shardId-000000000002-{DONUT_SEQ}.jsonl"),
        )
        .expect("its own dead letter");
    let letter = String::from_utf8_lossy(&letter);
    assert!(
        letter.contains("unmatched after 1 s") && letter.contains(FIRST_SEQ),
        "{letter}"
    );
    assert!(store
        .object(
            "out",
            &format!("held/shardId-000000000002/{DONUT_SEQ}.json")
        )
        .is_none());
}

#[tokio::test]
async fn a_release_whose_end_cannot_be_marked_stays_held_and_ends_with_a_later_batch() {
    // GIVEN a held donut whose row arrives, and ended markers that cannot be written
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    consumer.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    store.fail_puts_under(Some("held/ended/"));
    // WHEN a batch releases it
    let (response, first) = consumer.handle_batch(&later("4960")).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(first.output.released, 1);
    // THEN it is in its first attempt's object, and still held (its object kept, not ended)
    let held_key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    let donut_object =
        format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    let released = store.object("out", &donut_object).expect("released");
    assert!(store.object("out", &held_key).is_some());
    assert_eq!(consumer.hold_counts().unwrap().1, 1, "still held here");
    // AND once markers can be written, the next batch ends it: the same object, the same bytes
    store.fail_puts_under(None);
    let (_, second) = consumer.handle_batch(&later("4961")).await.unwrap();
    assert_eq!(second.output.released, 1);
    assert!(store.object("out", &held_key).is_none());
    assert_eq!(store.object("out", &donut_object), Some(released));
    let (counts, now) = consumer.hold_counts().unwrap();
    assert_eq!((counts.released, now), (1, 0), "ended once");
}

#[tokio::test]
async fn a_release_repeated_after_a_crash_writes_the_same_names_and_a_damaged_held_object_stays() {
    // GIVEN a held donut, released once its row exists
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    holding_consumer(&r, store.clone(), &[])
        .handle_batch(&sample())
        .await
        .unwrap();
    let held_key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    let held = store.object("out", &held_key).unwrap();
    // (and a held object that is not one, under the same shard)
    let junk = "held/shardId-000000000002/not-a-record.json";
    store.insert("out", junk, b"{ not json".to_vec());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    holding_consumer(&r, store.clone(), &[])
        .handle_batch(&later("4960"))
        .await
        .unwrap();
    let released_prefix = "enriched/item=donut/priority=low/";
    let first: Vec<String> = store
        .put_keys()
        .into_iter()
        .filter(|k| k.starts_with(released_prefix))
        .collect();
    // (and another order of the first batch released into the same object since)
    let donut_object = format!("{released_prefix}shardId-000000000002-{FIRST_SEQ}.jsonl");
    let released_once = String::from_utf8(store.object("out", &donut_object).unwrap()).unwrap();
    let later_seq = sample()["Records"][6]["kinesis"]["sequenceNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    let both = format!(
        "{released_once}{}",
        released_once.replace(DONUT_SEQ, &later_seq)
    );
    store.insert("out", &donut_object, both.clone().into_bytes());
    // WHEN the process had crashed after the output write and before the end was marked (the
    // held object is still there, no marker), and a cold environment takes the next batch
    store.insert("out", &held_key, held);
    store.remove(
        "out",
        &format!("held/ended/shardId-000000000002/{DONUT_SEQ}"),
    );
    let cold = holding_consumer(&r, store.clone(), &[]);
    let (_, summary) = cold.handle_batch(&later("4961")).await.unwrap();
    // THEN it releases the order again under the same name (nothing under another), and the
    // held object goes; the damaged one is reported and left in place
    assert_eq!(summary.output.released, 1);
    let mut again: Vec<String> = store
        .put_keys()
        .into_iter()
        .filter(|k| k.starts_with(released_prefix))
        .collect();
    again.sort();
    again.dedup();
    let mut first = first;
    first.sort();
    first.dedup();
    // (this batch's own donut is enriched directly, under this batch's name)
    let own = format!(
        "{released_prefix}shardId-000000000002-{}.jsonl",
        FIRST_SEQ.replace("4959", "4961")
    );
    first.push(own);
    first.sort();
    assert_eq!(again, first, "the same object names, nothing new");
    assert_eq!(
        String::from_utf8(store.object("out", &donut_object).unwrap()).unwrap(),
        both,
        "merged into its first attempt's object: its line once, the other kept"
    );
    assert!(store.object("out", &held_key).is_none());
    assert!(
        store.object("out", junk).is_some(),
        "a damaged held object is left in place"
    );
    assert_eq!(cold.hold_counts().unwrap().0.bad_objects, 1);
}

#[tokio::test]
async fn a_release_repeated_after_a_crash_uses_the_version_that_resolved_it_not_a_later_one() {
    release_repeated_after_a_crash(false).await;
}

#[tokio::test]
async fn a_release_repeated_by_the_environment_that_held_it_uses_the_version_in_its_object() {
    release_repeated_after_a_crash(true).await;
}

/// A held donut released with priority low by another environment, which crashed after the
/// version was written into the held object; then donut's priority changes, and the next batch
/// goes to a cold environment, or to the `warm` one that held it (it knows the order, without
/// the version, and has not listed the shard since).
async fn release_repeated_after_a_crash(warm: bool) {
    // GIVEN a held donut, released with priority low, whose held object survived a crash
    // after the version that resolved it was written into it
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let first = holding_consumer(&r, store.clone(), &[]);
    first.handle_batch(&sample()).await.unwrap();
    let held_key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    let held = store.object("out", &held_key).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    holding_consumer(&r, store.clone(), &[])
        .handle_batch(&later("4960"))
        .await
        .unwrap();
    // (the crash: the held object, with the version written into it, was neither marked ended
    // nor deleted)
    let mut survived: Value = serde_json::from_slice(&held).unwrap();
    survived["resolved_with"] =
        serde_json::json!({"item": "donut", "price": 100, "priority": "low"});
    store.insert("out", &held_key, serde_json::to_vec(&survived).unwrap());
    store.remove(
        "out",
        &format!("held/ended/shardId-000000000002/{DONUT_SEQ}"),
    );
    // WHEN donut's priority then changes, and a cold environment (or the warm one) takes the
    // next batch
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("donut", "high").await;
    r.deliver().await;
    let next = if warm {
        first
    } else {
        holding_consumer(&r, store.clone(), &[])
    };
    let (_, summary) = next.handle_batch(&later("4961")).await.unwrap();
    assert_eq!(summary.output.released, 1, "{:?}", summary.output);
    // THEN the order is only ever in priority=low: the version written into its held object
    assert!(store.object("out", &held_key).is_none());
    let keys = store.put_keys();
    let high: Vec<&String> = keys
        .iter()
        .filter(|k| k.contains("item=donut/priority=high/"))
        .filter(|k| {
            let body = store.object("out", k).unwrap_or_default();
            String::from_utf8_lossy(&body).contains(DONUT_SEQ)
        })
        .collect();
    assert!(high.is_empty(), "the held order in priority=high: {high:?}");
}

#[tokio::test]
async fn an_order_counts_as_held_only_once_its_object_is_written() {
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    // (a first batch without donut: the shard's held orders are known, none)
    let mut warm = later("4958");
    warm["Records"].as_array_mut().unwrap().retain(|r| {
        !r["kinesis"]["sequenceNumber"]
            .as_str()
            .unwrap()
            .contains("590898")
    });
    let (_, summary) = consumer.handle_batch(&warm).await.unwrap();
    assert_eq!(summary.output.held, 0);
    // The held object's write fails (the batch's first write to the store): it is retried.
    store.fail_next(1);
    let (response, _) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    // The retry writes it: the order was not taken for held by the failed attempt.
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.output.held, 1);
    assert!(store
        .object(
            "out",
            &format!("held/shardId-000000000002/{DONUT_SEQ}.json")
        )
        .is_some());
}

#[tokio::test]
async fn two_environments_of_one_shard_never_end_an_order_twice() {
    // GIVEN environment A holds donut #1, then the shard's next batch goes to a cold
    // environment B, which knows #1 from S3 and holds donut #2
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let a = holding_consumer(&r, store.clone(), &[]);
    let b = holding_consumer(&r, store.clone(), &[]);
    a.handle_batch(&sample()).await.unwrap();
    let (_, held) = b.handle_batch(&later("4960")).await.unwrap();
    assert_eq!(held.output.held, 1);
    // WHEN the row is created and A takes a batch (A releases #1), then the row changes and B
    // takes the next one (B still remembers #1)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    let (_, at_a) = a.handle_batch(&later("4961")).await.unwrap();
    assert_eq!(at_a.output.released, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("donut", "high").await;
    r.deliver().await;
    let (_, at_b) = b.handle_batch(&later("4962")).await.unwrap();
    // THEN B releases only #2: #1 ended at A (its held object is gone), never twice
    assert_eq!(at_b.output.released, 1, "{:?}", at_b.output);
    let lines_with = |seq: &str| -> usize {
        store
            .put_keys()
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .iter()
            .filter(|k| k.starts_with("enriched/item=donut/"))
            .map(|k| {
                let body = store.object("out", k).unwrap_or_default();
                String::from_utf8_lossy(&body).matches(seq).count()
            })
            .sum()
    };
    assert_eq!(lines_with(DONUT_SEQ), 1, "donut #1 written once");
    assert_eq!(
        lines_with(&DONUT_SEQ.replace("4959", "4960")),
        1,
        "donut #2 written once"
    );
    assert!(
        store
            .put_keys()
            .iter()
            .all(|k| !k.starts_with("held/shardId") || store.object("out", k).is_none()),
        "nothing left held"
    );
}

/// The sample event with its ice-cream order (the fourth record) made a second donut.
fn two_donuts() -> Value {
    let mut event = sample();
    let rec = &mut event["Records"][6]["kinesis"];
    let data = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        rec["data"].as_str().unwrap(),
    )
    .unwrap();
    let mut order: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(order["dish"], "ice-cream");
    order["dish"] = "donut".into();
    rec["data"] = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        serde_json::to_vec(&order).unwrap(),
    )
    .into();
    event
}

#[tokio::test]
async fn a_batch_redelivered_after_its_held_order_ended_does_not_decide_it_again() {
    // GIVEN two donuts in one batch: the first held, the second dead-lettered (one held per
    // dish at most); then the first released once the row exists, into its batch's object
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let vars = [("HOLD_MAX_PER_DISH", "1")];
    let consumer = holding_consumer(&r, store.clone(), &vars);
    let (_, first) = consumer.handle_batch(&two_donuts()).await.unwrap();
    assert_eq!((first.output.held, first.output.hold_full), (1, 1));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    let (_, released) = consumer.handle_batch(&later("4960")).await.unwrap();
    assert_eq!(released.output.released, 1);
    let donut_object =
        format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    let after_release = store.object("out", &donut_object).expect("released");
    // WHEN its own batch comes again, to a cold environment (a redrive, a redelivery)
    let cold = holding_consumer(&r, store.clone(), &vars);
    let (response, again) = cold.handle_batch(&two_donuts()).await.unwrap();
    // THEN the first donut is not decided again: it ended once, in its release
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(again.output.already_ended, 1, "{:?}", again.output);
    assert_eq!(again.output.accounted(), again.records);
    // AND the batch rewrites its donut object (its second donut is enriched now) with the
    // first one's line kept, as released: nothing the release wrote is lost
    let rewritten = store.object("out", &donut_object).expect("rewritten");
    let seqs: Vec<String> = String::from_utf8_lossy(&rewritten)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["sequence_number"].to_string())
        .collect();
    assert_eq!(seqs.len(), 2, "{seqs:?}");
    assert!(
        seqs[0].contains(DONUT_SEQ),
        "the released donut first (record order)"
    );
    assert!(
        String::from_utf8_lossy(&rewritten).starts_with(&*String::from_utf8_lossy(&after_release)),
        "its line as released"
    );
}

#[tokio::test]
async fn a_dish_that_never_gets_a_row_cannot_fill_the_hold_for_the_others() {
    // GIVEN a hold of 10 orders per shard, at most 1 per dish, that already holds a donut
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(
        &r,
        store.clone(),
        &[("HOLD_MAX_RECORDS", "10"), ("HOLD_MAX_PER_DISH", "1")],
    );
    consumer.handle_batch(&sample()).await.unwrap();
    // WHEN a batch brings another donut and an eclair (no row either)
    let mut batch = later("4960");
    let eclair = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        br#"{"dish":"eclair","cost":4,"customer_id":2001}"#,
    );
    batch["Records"][1]["kinesis"]["data"] = eclair.into();
    let (_, summary) = consumer.handle_batch(&batch).await.unwrap();
    // THEN the donut finds its dish's share full, and the eclair is held
    assert_eq!(
        (summary.output.held, summary.output.hold_full),
        (1, 1),
        "{:?}",
        summary.output
    );
    assert_eq!(summary.output.accounted(), summary.records);
}

#[tokio::test]
async fn an_order_its_own_batch_answered_stays_in_that_batch_when_the_batch_comes_again() {
    // GIVEN a held donut whose row then arrives, and its own batch retried: the retry enriches
    // it into the batch's own object
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    consumer.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    let own = format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    consumer.handle_batch(&sample()).await.unwrap();
    assert!(store.object("out", &own).is_some());
    // WHEN the batch is delivered once more
    let (_, again) = consumer.handle_batch(&sample()).await.unwrap();
    // THEN donut is not decided again (its end was marked, with the version it was written
    // with), and its line stays in the batch's object
    assert_eq!(again.output.already_ended, 1, "{:?}", again.output);
    let body = store.object("out", &own).expect("the batch's donut object");
    assert_eq!(String::from_utf8_lossy(&body).matches(DONUT_SEQ).count(), 1);
    let marker = store
        .object(
            "out",
            &format!("held/ended/shardId-000000000002/{DONUT_SEQ}"),
        )
        .expect("its end marked");
    assert!(String::from_utf8_lossy(&marker).contains("\"priority\":\"low\""));
}

/// `event` with its second record (pizza) made an eclair order (a dish with no row).
fn with_eclair(mut event: Value) -> Value {
    let eclair = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        br#"{"dish":"eclair","cost":4,"customer_id":2001}"#,
    );
    event["Records"][1]["kinesis"]["data"] = eclair.into();
    event
}

#[tokio::test]
async fn the_sweep_ends_held_orders_of_a_shard_that_gets_no_more_batches() {
    // GIVEN a donut and a (second) eclair held on a shard that then goes quiet
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    // (the default grace: nothing expires here however slow the machine)
    let live = holding_consumer(&r, store.clone(), &[]);
    live.handle_batch(&sample()).await.unwrap();
    let (_, eclair) = live
        .handle_batch(&with_eclair(later("4960")))
        .await
        .unwrap();
    assert_eq!(eclair.output.held, 2, "{:?}", eclair.output);
    // WHEN donut's row arrives, and a sweep runs in the same (warm) environment, with no batch
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    let swept = live.sweep().await;
    // THEN both donuts are released into their first attempts' objects (the sweep followed
    // the feed, not the last batch's answers); the eclair waits (within its grace)
    assert_eq!(swept.failed, None);
    assert_eq!(swept.output.released, 2, "both donuts: {:?}", swept.output);
    let donut_object =
        format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    assert!(store.object("out", &donut_object).is_some());
    assert_eq!(live.hold_counts().unwrap().1, 1, "the eclair still held");
    // AND a sweep in another environment whose grace (1 s) has passed dead-letters the eclair
    // with its reason (only a lower bound on the time: at least the grace has passed)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sweeper = holding_consumer(&r, store.clone(), &[("HOLD_GRACE_SECS", "1")]);
    let swept = sweeper.sweep().await;
    assert_eq!((swept.output.released, swept.output.expired), (0, 1));
    let dead: Vec<String> = store
        .put_keys()
        .into_iter()
        .filter(|k| k.starts_with("dead-letter/held-"))
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let line = String::from_utf8(store.object("out", &dead[0]).unwrap()).unwrap();
    assert!(line.contains("unmatched after 1 s"), "{line}");
    assert!(
        store
            .put_keys()
            .iter()
            .all(|k| !k.starts_with("held/shardId") || store.object("out", k).is_none()),
        "nothing left held"
    );
    // AND the live environment, which still remembers them, does not end them again
    let (_, next) = live.handle_batch(&later("4961")).await.unwrap();
    assert_eq!(
        (next.output.released, next.output.expired),
        (0, 0),
        "{:?}",
        next.output
    );
    let dead_now = (store.put_keys().into_iter())
        .filter(|k| k.starts_with("dead-letter/held-"))
        .count();
    assert_eq!(dead_now, 1, "the eclair dead-lettered once");
    // AND a sweep with nothing held does nothing
    let idle = sweeper.sweep().await;
    assert_eq!(
        (idle.output.released, idle.output.expired, idle.failed),
        (0, 0, None)
    );
}

/// The held object of the sample batch's donut, with `change` applied to it as JSON (what
/// another environment wrote into it and then stopped).
fn rewrite_held(store: &MemoryStore, change: impl FnOnce(&mut Value)) {
    let key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    let mut held: Value = serde_json::from_slice(&store.object("out", &key).unwrap()).unwrap();
    change(&mut held);
    store.insert("out", &key, serde_json::to_vec(&held).unwrap());
}

#[tokio::test]
async fn an_expiry_another_environment_decided_is_followed_never_undone_by_a_release() {
    // GIVEN a held donut whose object says another environment expired it (then stopped before
    // its dead letter), and donut's row arriving afterwards
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    consumer.handle_batch(&sample()).await.unwrap();
    rewrite_held(&store, |h| h["expired_at_ms"] = 1_795_650_000_000i64.into());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    // WHEN this environment (which remembers it without the expiry) takes the next batch
    let (_, next) = consumer.handle_batch(&later("4960")).await.unwrap();
    // THEN the donut expires, as decided: dead-lettered, not released into the output
    assert_eq!(
        (next.output.released, next.output.expired),
        (0, 1),
        "{:?}",
        next.output
    );
    let released = store.object(
        "out",
        &format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl"),
    );
    assert!(released.is_none(), "never in the output as well");
    assert!(store
        .object(
            "out",
            &format!("dead-letter/held-shardId-000000000002-{DONUT_SEQ}.jsonl")
        )
        .is_some());
}

#[tokio::test]
async fn a_retry_of_its_own_batch_follows_the_version_in_the_held_object_not_memory() {
    // GIVEN a held donut released with priority low by another environment, which stopped
    // after writing the version into the held object; then donut's priority changes
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let warm = holding_consumer(&r, store.clone(), &[]);
    warm.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    rewrite_held(&store, |h| {
        h["resolved_with"] = serde_json::json!({"item": "donut", "price": 100, "priority": "low"});
    });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.set_priority("donut", "high").await;
    r.deliver().await;
    // WHEN the donut's own batch comes again to the environment that held it (its memory has no
    // version)
    let (_, again) = warm.handle_batch(&sample()).await.unwrap();
    // THEN it is answered with the version in its object: priority low, never high
    assert_eq!(again.output.accounted(), again.records);
    let written_in = |priority: &str| {
        let body = store.object(
            "out",
            &format!(
                "enriched/item=donut/priority={priority}/shardId-000000000002-{FIRST_SEQ}.jsonl"
            ),
        );
        body.is_some_and(|b| String::from_utf8_lossy(&b).contains(DONUT_SEQ))
    };
    assert!(written_in("low"));
    assert!(!written_in("high"));
}

#[tokio::test]
async fn a_hold_decided_again_with_a_stale_view_adopts_the_held_object_as_it_is() {
    // GIVEN an environment B that listed the shard's held orders (none) before A held the
    // donut, and A's held object carrying a version (A released it with priority low and
    // stopped); donut has no row in the table
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let b = holding_consumer(&r, store.clone(), &[]);
    b.handle_batch(&later("4958")).await.unwrap();
    let a = holding_consumer(&r, store.clone(), &[]);
    a.handle_batch(&sample()).await.unwrap();
    rewrite_held(&store, |h| {
        h["resolved_with"] = serde_json::json!({"item": "donut", "price": 100, "priority": "low"});
    });
    let held_at = |store: &MemoryStore| -> Value {
        let key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
        serde_json::from_slice::<Value>(&store.object("out", &key).unwrap()).unwrap()["held_at_ms"]
            .clone()
    };
    let first_held_at = held_at(&store);
    // WHEN the donut's batch comes again to B (which does not know it is held, and sees no row)
    let (_, again) = b.handle_batch(&sample()).await.unwrap();
    assert_eq!(again.output.held, 1);
    // THEN B takes the held object as it is (its hold time, its version), not a new hold
    assert_eq!(held_at(&store), first_held_at);
    // AND B's next batch releases it with that version
    let (_, next) = b.handle_batch(&later("4960")).await.unwrap();
    assert_eq!(next.output.released, 1, "{:?}", next.output);
    assert!(store
        .object(
            "out",
            &format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl")
        )
        .is_some());
}

#[tokio::test]
async fn a_released_line_lost_from_its_object_is_merged_back_when_its_batch_comes_again() {
    // GIVEN a held donut released into its first attempt's object, and that object rewritten
    // since without it (a batch that started at the same record and held fewer records)
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let consumer = holding_consumer(&r, store.clone(), &[]);
    consumer.handle_batch(&sample()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.table.put("donut", "low").await;
    r.deliver().await;
    consumer.handle_batch(&later("4960")).await.unwrap();
    let object = format!("enriched/item=donut/priority=low/shardId-000000000002-{FIRST_SEQ}.jsonl");
    let released = store.object("out", &object).expect("released");
    store.remove("out", &object);
    // WHEN the batch with the donut comes again (it decides nothing about it: it ended)
    let (_, again) = holding_consumer(&r, store.clone(), &[])
        .handle_batch(&sample())
        .await
        .unwrap();
    assert_eq!(again.output.already_ended, 1);
    // THEN the donut's line is back in its object, as released
    assert_eq!(store.object("out", &object), Some(released));
}

#[tokio::test]
async fn an_order_whose_held_object_is_damaged_is_dead_lettered_and_the_object_left_in_place() {
    // GIVEN a damaged object where the sample batch's donut would be held
    let r = FeedRig::seeded(StreamViewType::NewAndOldImages).await;
    let store = Arc::new(MemoryStore::new());
    let key = format!("held/shardId-000000000002/{DONUT_SEQ}.json");
    store.insert("out", &key, b"{ damaged".to_vec());
    // WHEN the batch comes (donut has no row)
    let consumer = holding_consumer(&r, store.clone(), &[]);
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    // THEN the batch succeeds: the donut is dead-lettered with why, the object stays as it was,
    // and the counts reconcile
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        summary.failed
    );
    assert_eq!(
        (summary.output.held, summary.output.hold_full),
        (0, 1),
        "{:?}",
        summary.output
    );
    assert_eq!(summary.output.accounted(), summary.records);
    assert_eq!(store.object("out", &key), Some(b"{ damaged".to_vec()));
    let dead = store
        .object(
            "out",
            &format!("dead-letter/shardId-000000000002-{FIRST_SEQ}.jsonl"),
        )
        .unwrap();
    let dead = String::from_utf8(dead).unwrap();
    assert!(
        dead.contains("is damaged or foreign (left in place)"),
        "{dead}"
    );
    assert_eq!(consumer.hold_counts().unwrap().0.bad_objects, 1);
}
