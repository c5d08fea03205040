//! The s3-event-handler against the emulator: a real S3 notification through a real SQS queue,
//! a real change file, real flags on a real 4-shard Kinesis stream.

use std::time::Duration;

use aws_plumbing::{s3_client, S3Store, SystemClock};
use change_protocol::{ChangeFile, ChangeFlag, ChangeKey, ChangeKind};
use feed_writer::FeedConfig;
use s3_event_handler::{Config, KinesisStream, S3EventHandler};
use test_support::{create_stream, records_per_shard, sdk_config, unique_name, NotifiedBucket};

struct Rig {
    reference: NotifiedBucket,
    s3: aws_sdk_s3::Client,
    kinesis: aws_sdk_kinesis::Client,
    feed_bucket: String,
    stream: String,
}

async fn rig() -> Rig {
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let reference = NotifiedBucket::create(&sdk).await;
    let feed_bucket = unique_name("feed");
    s3.create_bucket()
        .bucket(&feed_bucket)
        .send()
        .await
        .unwrap();
    let stream = create_stream(&kinesis, 4).await;
    Rig {
        reference,
        s3,
        kinesis,
        feed_bucket,
        stream,
    }
}

impl Rig {
    fn handler(&self) -> S3EventHandler<S3Store, KinesisStream, SystemClock> {
        let config = Config {
            feed: FeedConfig {
                bucket: self.feed_bucket.clone(),
                prefix: "change_flags/".into(),
                legacy_flag_key: None,
                write_window: Duration::from_secs(20),
            },
            flag_stream: self.stream.clone(),
            reference_prefix: "reference/".into(),
            reference_bucket: Some(self.reference.bucket.clone()),
            legacy_flag_payload: None,
        };
        S3EventHandler::new(
            config,
            S3Store::new(self.s3.clone()),
            KinesisStream::new(self.kinesis.clone(), self.stream.clone()),
            SystemClock,
        )
    }

    /// What the SQS event source mapping does: receive, invoke, delete what succeeded.
    async fn deliver(&self) {
        while let Some((event, receipts)) = self.reference.receive().await {
            let response = self.handler().handle(&event, "req").await.unwrap();
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
            self.reference.ack(&receipts).await;
        }
    }

    async fn change_files(&self) -> Vec<ChangeFile> {
        let listed = self
            .s3
            .list_objects_v2()
            .bucket(&self.feed_bucket)
            .send()
            .await
            .unwrap();
        let mut files = vec![];
        for key in listed.contents().iter().filter_map(|o| o.key()) {
            if ChangeKey::parse("change_flags/", key).is_err() {
                continue;
            }
            let body = self
                .s3
                .get_object()
                .bucket(&self.feed_bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .body
                .collect()
                .await
                .unwrap()
                .into_bytes();
            files.push(ChangeFile::from_slice(&body).unwrap());
        }
        files
    }
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
