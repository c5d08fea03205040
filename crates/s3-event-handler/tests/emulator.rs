//! The s3-event-handler against the emulator: a real S3 notification through a real SQS queue,
//! a real change file, real flags on a real 4-shard Kinesis stream.

use std::time::Duration;

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use change_protocol::{ChangeFile, ChangeFlag, ChangeKey, ChangeKind};
use feed_writer::{s3_client, FeedConfig, S3Store, SystemClock};
use s3_event_handler::{Config, KinesisStream, S3EventHandler};
use test_support::{create_stream, records_per_shard, sdk_config, sqs_event, unique_name};

struct Rig {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    kinesis: aws_sdk_kinesis::Client,
    reference_bucket: String,
    feed_bucket: String,
    queue_url: String,
    queue_arn: String,
    stream: String,
}

async fn rig() -> Rig {
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let reference_bucket = unique_name("reference");
    let feed_bucket = unique_name("feed");
    for b in [&reference_bucket, &feed_bucket] {
        s3.create_bucket().bucket(b).send().await.unwrap();
    }
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("reference-changes"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value("reference/")
                        .build(),
                )
                .build(),
        )
        .build();
    s3.put_bucket_notification_configuration()
        .bucket(&reference_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(&queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .events(Event::from("s3:ObjectRemoved:*"))
                        .filter(filter)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let stream = create_stream(&kinesis, 4).await;
    Rig {
        s3,
        sqs,
        kinesis,
        reference_bucket,
        feed_bucket,
        queue_url,
        queue_arn,
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
            reference_bucket: Some(self.reference_bucket.clone()),
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
    async fn deliver(&self) -> usize {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        if messages.is_empty() {
            return 0;
        }
        let event = sqs_event(&self.queue_arn, "us-east-1", messages);
        let response = self.handler().handle(&event, "req").await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        for m in messages {
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages.len()
    }

    async fn put(&self, key: &str, body: &str) {
        self.s3
            .put_object()
            .bucket(&self.reference_bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
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
    r.put(
        "reference/menu 2026 café.jsonl",
        "{\"item\":\"burger\",\"priority\":\"high\"}\n",
    )
    .await;
    r.put("other/not-reference.jsonl", "{}\n").await; // outside the prefix
                                                      // S3 also sends an s3:TestEvent when the notification is configured: ignored gracefully.
    assert!(r.deliver().await >= 1);

    let files = r.change_files().await;
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].kind, ChangeKind::S3);
    assert_eq!(files[0].objects[0].key, "reference/menu 2026 café.jsonl");
    assert_eq!(files[0].objects[0].bucket, r.reference_bucket);

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
    r.put("reference/products.csv", "item,priority\nburger,high\n")
        .await;
    r.deliver().await;
    r.s3.delete_object()
        .bucket(&r.reference_bucket)
        .key("reference/products.csv")
        .send()
        .await
        .unwrap();
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
