//! The orders consumer on Lambda's Kafka events (Amazon MSK's and a self-managed cluster's), as
//! on Kinesis: each topic-partition a batch of its own, objects named from topic, partition and
//! first offset, a partition that cannot be written reported from its first offset, bad records
//! dead-lettered with why.

use orders_consumer::{KafkaBatchItemFailure, KafkaItemIdentifier};
use stream_refdata::Unmatched;
use test_support::sample_event;

use crate::emulator::{lines, rig};

#[tokio::test]
async fn each_partition_is_enriched_under_names_from_its_topic_partition_and_first_offset() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    let (response, summary) = (consumer)
        .handle_kafka_batch(&sample_event("example-msk-orders.json"))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let out = &summary.output;
    // orders-0: burger, pizza, the flag, salad (bad cost); orders-1: donut (no item), not JSON,
    // ice-cream
    assert_eq!(
        (
            out.enriched,
            out.unmatched_dead_lettered,
            out.invalid,
            out.flags
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(summary.records, 7);
    assert_eq!(out.accounted(), summary.records, "in = out + rejected");
    let burger = lines(
        &r.store,
        "enriched/item=burger/priority=medium/orders-0-15.jsonl",
    );
    assert_eq!(burger.len(), 1);
    assert_eq!(burger[0]["shard"], "orders-0");
    assert_eq!(burger[0]["sequence_number"], "15");
    let ice = "enriched/item=ice-cream/priority=very very high/orders-1-7.jsonl";
    assert_eq!(lines(&r.store, ice).len(), 1);
    let dead = lines(&r.store, "dead-letter/orders-1-7.jsonl");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert!(
        reasons[0].contains("no reference item for dish \"donut\""),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("not an order"), "{reasons:?}");
    assert_eq!(dead[1]["data"], "this is not json");
    // A retry (the same event again) writes the same names, and no others.
    let first = {
        let mut k = r.store.put_keys();
        k.sort();
        k.dedup();
        k
    };
    consumer
        .handle_kafka_batch(&sample_event("example-msk-orders.json"))
        .await
        .unwrap();
    let mut again = r.store.put_keys();
    again.sort();
    again.dedup();
    assert_eq!(again, first);

    // A self-managed cluster's event: the same path.
    let (response, summary) = (consumer)
        .handle_kafka_batch(&sample_event("example-self-managed-kafka-orders.json"))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(summary.output.enriched, 1);
    assert_eq!(summary.output.accounted(), 2);
    lines(
        &r.store,
        "enriched/item=burger/priority=medium/orders-2-100.jsonl",
    );
}

#[tokio::test]
async fn a_partition_that_cannot_be_written_is_reported_from_its_first_offset_alone_with_its_records(
) {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    // (ice-cream is in orders-1 alone)
    r.store.fail_puts_under(Some("enriched/item=ice-cream"));
    let (response, summary) = (consumer)
        .handle_kafka_batch(&sample_event("example-msk-orders.json"))
        .await
        .unwrap();
    assert_eq!(
        response.batch_item_failures,
        [7, 8, 9].map(|offset| KafkaBatchItemFailure {
            item_identifier: KafkaItemIdentifier {
                partition: "orders-1".into(),
                offset,
            }
        })
    );
    assert!(summary.failed.is_some());
    // orders-0 is written (and acknowledged)
    lines(
        &r.store,
        "enriched/item=burger/priority=medium/orders-0-15.jsonl",
    );
    // The response as Lambda's Kafka mapping reads it.
    assert_eq!(
        serde_json::to_value(orders_consumer::Response::Kafka(response)).unwrap(),
        serde_json::json!({"batchItemFailures": [
            {"itemIdentifier": {"partition": "orders-1", "offset": 7}},
            {"itemIdentifier": {"partition": "orders-1", "offset": 8}},
            {"itemIdentifier": {"partition": "orders-1", "offset": 9}}
        ]})
    );
}

#[tokio::test]
async fn records_that_cannot_be_read_are_dead_lettered_with_why_and_the_rest_go_on() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    let (response, summary) = (consumer)
        .handle_kafka_batch(&sample_event("example-msk-bad-records.json"))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let out = &summary.output;
    assert_eq!((out.enriched, out.invalid), (2, 5), "{out:?}");
    assert_eq!(out.accounted(), summary.records, "in = out + rejected");
    let dead = lines(&r.store, "dead-letter/orders-3-40.jsonl");
    let reasons: Vec<(&str, &str)> = (dead.iter())
        .map(|d| {
            let seq = d["sequence_number"].as_str().unwrap();
            (seq, d["reason"].as_str().unwrap())
        })
        .collect();
    let reason = |offset: &str| reasons.iter().find(|(s, _)| *s == offset).unwrap().1;
    assert!(reason("41").contains("not base64"), "{reasons:?}");
    assert!(reason("42").contains("tombstone"), "{reasons:?}");
    assert!(reason("43").contains("tombstone"), "{reasons:?}");
    assert!(reason("44").contains("not a list of bytes"), "{reasons:?}");
    assert!(reason("45").contains("not an order"), "{reasons:?}");
    // (the value that is not base64, as it came)
    let d41 = dead.iter().find(|d| d["sequence_number"] == "41").unwrap();
    assert_eq!(d41["data"], "not base64!");
}
