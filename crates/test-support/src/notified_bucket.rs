//! A reference bucket whose notifications for `reference/` go to an SQS queue, as infra/ wires
//! it; the test plays the SQS event source mapping.

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::unique_name;

/// The reference bucket, its queue, and clients.
#[derive(Debug, Clone)]
pub struct NotifiedBucket {
    /// S3 client (path-style).
    pub s3: aws_sdk_s3::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The bucket.
    pub bucket: String,
    /// Notifications are sent for keys under this prefix.
    pub prefix: String,
    /// The queue's URL.
    pub queue_url: String,
    /// The queue's ARN.
    pub queue_arn: String,
}

impl NotifiedBucket {
    /// Creates the bucket and queue and subscribes the queue to created and removed objects
    /// under `reference/`.
    pub async fn create(sdk: &aws_config::SdkConfig) -> NotifiedBucket {
        let s3 = aws_plumbing::s3_client(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let bucket = unique_name("reference");
        let prefix = "reference/".to_owned();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        let queue_url = sqs
            .create_queue()
            .queue_name(unique_name("reference-changes"))
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("queue url");
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("queue arn");
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(&prefix)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let queue = QueueConfiguration::builder()
            .queue_arn(&queue_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .events(Event::from("s3:ObjectRemoved:*"))
            .filter(filter)
            .build()
            .expect("queue configuration");
        s3.put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(queue)
                    .build(),
            )
            .send()
            .await
            .expect("PutBucketNotificationConfiguration");
        NotifiedBucket {
            s3,
            sqs,
            bucket,
            prefix,
            queue_url,
            queue_arn,
        }
    }

    /// Puts an object.
    pub async fn put(&self, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .expect("PutObject");
    }

    /// Deletes an object.
    pub async fn delete(&self, key: &str) {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("DeleteObject");
    }

    /// Receives what is queued as the SQS Lambda event (notifications in AWS's shape) and the
    /// receipt handles to acknowledge; `None` when the queue is empty.
    pub async fn receive(&self) -> Option<(Value, Vec<String>)> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = received.messages();
        if messages.is_empty() {
            return None;
        }
        let event = esm_emulation::sqs_event(&self.queue_arn, "us-east-1", messages);
        let receipts = messages
            .iter()
            .filter_map(|m| m.receipt_handle().map(str::to_owned))
            .collect();
        Some((event, receipts))
    }

    /// Deletes handled messages.
    pub async fn ack(&self, receipts: &[String]) {
        for r in receipts {
            self.sqs
                .delete_message()
                .queue_url(&self.queue_url)
                .receipt_handle(r)
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
}
