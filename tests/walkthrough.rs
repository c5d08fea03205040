//! The walkthrough end to end on the local pipeline, as `scripts/demo` runs it (shorter): orders
//! stream into 4 shards, burger's priority changes midway, an S3 reference object changes, and
//! the output read back from S3 must follow the change without losing or duplicating an order.
//! The walkthrough is driven by count of orders, so it asserts the same on a busy machine. The
//! same walkthrough with the orders on a 4-partition Kafka topic (`scripts/demo --source kafka`)
//! asserts the same, per partition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use local_emulator::provision::Names;
use local_pipeline::demo::{run, Options, OrdersSource, Summary};
use test_support::{kafka_bootstrap_servers, kafka_client, kafka_topic, sdk_config, unique_name};

fn names() -> Names {
    Names {
        table: unique_name("ProductPriority"),
        bucket: unique_name("demo-bucket"),
        stream: unique_name("SourceKinesisStream"),
        queue: unique_name("reference-data-changes"),
        ..Names::default()
    }
}

async fn walkthrough(source: OrdersSource) -> Summary {
    let options = Options {
        rate: 40,
        update_after: 120,
        s3_change_after: 240,
        orders_after_flags: 200,
        drain_timeout: Duration::from_secs(120),
        source,
    };
    run(&sdk_config().await, &names(), &options, |_| {})
        .await
        .expect("the walkthrough runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burger_orders_follow_the_update_and_nothing_is_lost() {
    assert_followed(walkthrough(OrdersSource::Kinesis).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_burger_orders_follow_the_update_and_the_s3_change_reaches_every_partition() {
    let client = kafka_client().await;
    let (topic, partitions) = kafka_topic(&client, "orders").await;
    assert_eq!(partitions.len(), 4);
    let s = walkthrough(OrdersSource::Kafka {
        bootstrap_servers: kafka_bootstrap_servers(),
        topic: topic.clone(),
    })
    .await;
    // (the orders' "shards" are the topic's partitions)
    let prefix = format!("{topic}-");
    assert!(s.sent.iter().all(|o| o.shard.starts_with(&prefix)));
    assert_eq!(s.flags_at.len(), 4, "{:?}", s.flags_at);
    assert_followed(s);
}

/// The walkthrough's checks: every order accounted for, the update followed shard by shard (or
/// partition by partition), the S3 change's flag on every one, the new dish held then released.
fn assert_followed(s: Summary) {
    let p = &s.progress;
    // Each order's place in the order it was put.
    let sent: HashMap<(String, String), usize> = s
        .sent
        .iter()
        .enumerate()
        .map(|(i, o)| ((o.shard.clone(), o.sequence_number.clone()), i))
        .collect();
    assert!(s.sent.len() >= 300, "{} orders", s.sent.len());

    // GIVEN every order is accounted for: in = enriched + held + unmatched + rejected, and the
    // held ones were released, expired or are held still
    assert_eq!(p.enriched + p.held + p.unmatched + p.rejected, s.sent.len());
    assert_eq!(
        s.output.len(),
        p.enriched + p.released,
        "every enriched or released order is in S3"
    );
    let donuts = s.sent.iter().filter(|o| o.dish == "donut").count();
    assert_eq!(
        (p.held - p.released - p.expired, p.unmatched, p.expired),
        (donuts, 0, 0),
        "the donuts (never in the table) are held, within their grace, and nothing else is"
    );
    assert_eq!(s.dead_letters, 0, "nothing is dead-lettered");

    // AND the new dish's orders that came before its row were held, then all released into
    // its partition: every one of its orders is in the output, once, none dead-lettered
    let new_dish = local_pipeline::demo::NEW_DISH;
    let before_row = s.new_dish_before_row.unwrap();
    assert!(before_row > 0, "orders of {new_dish} came before its row");
    assert!(p.released >= before_row, "{} released", p.released);
    let sent_new: HashSet<(&str, &str)> = (s.sent.iter())
        .filter(|o| o.dish == new_dish)
        .map(|o| (o.shard.as_str(), o.sequence_number.as_str()))
        .collect();
    let written_new: Vec<(&str, &str)> = (s.output.iter())
        .filter(|l| l.item == new_dish)
        .map(|l| {
            assert_eq!(
                l.partition,
                format!(
                    "item={new_dish}/priority={}/",
                    local_pipeline::demo::NEW_DISH_PRIORITY
                )
            );
            (l.shard.as_str(), l.sequence_number.as_str())
        })
        .collect();
    assert_eq!(written_new.len(), sent_new.len());
    assert_eq!(written_new.into_iter().collect::<HashSet<_>>(), sent_new);
    assert!(p.longest_held.is_some());

    // AND no order is written twice
    let unique: HashSet<(&str, &str)> = s
        .output
        .iter()
        .map(|l| (l.shard.as_str(), l.sequence_number.as_str()))
        .collect();
    assert_eq!(unique.len(), s.output.len());

    // THEN burger orders consumed before the update are medium, and those put after every
    // shard's consumer applied it are high: on each shard the switch happens once, in stream
    // order. Orders in between may see either value (`docs/design.md` section 3, "No later
    // than the flag").
    let (before, applied) = (s.updated_after.unwrap(), s.applied_after.unwrap());
    let mut by_shard: BTreeMap<&str, Vec<(u128, &str)>> = BTreeMap::new();
    for line in s.output.iter().filter(|l| l.item == "burger") {
        let order = sent[&(line.shard.clone(), line.sequence_number.clone())];
        let priority = line.priority.as_deref().unwrap();
        assert_eq!(line.partition, format!("item=burger/priority={priority}/"));
        if order < before {
            assert_eq!(
                priority, "medium",
                "order {order}, consumed before the update (after order {before})"
            );
        }
        if order >= applied {
            assert_eq!(
                priority, "high",
                "order {order}, put after every consumer applied the update (order {applied})"
            );
        }
        by_shard
            .entry(line.shard.as_str())
            .or_default()
            .push((line.sequence_number.parse().unwrap(), priority));
    }
    for (shard, mut burgers) in by_shard.clone() {
        burgers.sort();
        let switched = burgers.windows(2).filter(|w| w[0].1 != w[1].1).count();
        assert!(switched <= 1, "{shard}: {burgers:?}");
        assert!(
            burgers
                .iter()
                .skip_while(|b| b.1 == "medium")
                .all(|b| b.1 == "high"),
            "{shard}"
        );
    }
    // AND consumers of different shards all followed it
    let shards_with_high = by_shard
        .values()
        .filter(|b| b.iter().any(|x| x.1 == "high"))
        .count();
    assert!(shards_with_high >= 2, "{by_shard:?}");
    // AND it reached every consumer through the change feed's pointer, not the once-a-minute
    // safety listing: within 400 orders (10 s at the nominal 40 a second; 60 s of orders would
    // be 2,400). Counted in orders, so a busy machine (which slows the orders too) cannot fail it.
    println!("propagation: {:?}", s.propagation());
    assert!(
        applied - before <= 400,
        "every consumer applied the update only {} orders after it",
        applied - before
    );

    // AND the S3 change put one flag on each of the 4 shards, handled as flags, not orders
    assert_eq!(p.flags, 4);
    assert_eq!(p.rejected, 0);
    // AND on every shard, no salad order after its flag carries the old menu category, and
    // salads before the change carried the old one (the S3 reference is joined)
    let effects = s.flag_effects(local_pipeline::demo::NEW_SALAD_CATEGORY);
    assert_eq!(effects.len(), 4, "{effects:?}");
    for e in &effects {
        assert_eq!(
            e.old_after, 0,
            "an order after the flag has the old value: {e:?}"
        );
    }
    assert!(
        effects
            .iter()
            .filter_map(|e| e.first_after.as_ref())
            .all(|(_, c)| c.as_deref() == Some("salads")),
        "{effects:?}"
    );
    assert!(s
        .output
        .iter()
        .any(|l| l.item == "salad" && l.category.as_deref() == Some("starters")));
    assert_eq!(
        s.consumer_requests.full_refreshes, 4,
        "one full load per consumer, then deltas"
    );
}
