//! The s3-event-handler against the emulator: a real S3 notification through a real SQS queue,
//! a real change file, real flags on a real 4-shard Kinesis stream.

use stream_refdata_protocol::{ChangeFlag, ChangeKind};
use test_support::{records_per_shard, FlagRig};

/// The reference bucket notifying a queue, a feed bucket, a 4-shard stream and the handler
/// (`test_support::FlagRig`); its `deliver` plays the SQS event source mapping.
async fn rig() -> FlagRig {
    FlagRig::new().await
}

#[tokio::test]
async fn an_s3_notification_via_sqs_puts_one_flag_on_each_of_four_shards() {
    let r = rig().await;
    let body = b"{\"item\":\"burger\",\"priority\":\"high\"}\n";
    r.reference
        .put("reference/menu 2026 café.jsonl", body)
        .await;
    r.reference.put("other/not-reference.jsonl", b"{}\n").await;
    // S3 also sends an s3:TestEvent when the notification is configured: ignored gracefully.
    r.deliver().await;

    let files = r.change_files().await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].kind, ChangeKind::S3);
    assert_eq!(files[0].objects[0].key, "reference/menu 2026 café.jsonl");
    assert_eq!(files[0].objects[0].bucket, r.reference.bucket);

    let shards = records_per_shard(&r.kinesis, &r.stream).await;
    assert_eq!(shards.len(), 4);
    for (shard, records) in &shards {
        assert_eq!(
            records.len(),
            1,
            "shard {shard} has {} flags",
            records.len()
        );
        let flag = ChangeFlag::parse(&records[0]).expect("a change flag");
        assert_eq!(flag.change.key, "reference/menu 2026 café.jsonl");
        assert!(!flag.change.removed);
    }
}

#[tokio::test]
async fn a_deletion_flags_a_removal() {
    let r = rig().await;
    r.reference
        .put("reference/products.csv", b"item,priority\nburger,high\n")
        .await;
    r.deliver().await;
    r.reference.delete("reference/products.csv").await;
    r.deliver().await;
    let shards = records_per_shard(&r.kinesis, &r.stream).await;
    for (_, records) in shards {
        let flags: Vec<ChangeFlag> = records
            .iter()
            .filter_map(|b| ChangeFlag::parse(b))
            .collect();
        assert_eq!(flags.len(), 2);
        assert!(flags[1].change.removed);
    }
}
