//! A reference bucket whose notifications for `reference/` go to an SQS queue, as infra/ wires
//! it (made by `local_emulator::provision`, without a dead-letter queue so a test may redeliver
//! a message as often as it likes); the test plays the SQS event source mapping.

use local_emulator::provision::{self, QueueSettings};
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
    /// Creates the bucket and queue and subscribes the queue to created, removed and
    /// lifecycle-expired objects under `reference/`.
    pub async fn create(sdk: &aws_config::SdkConfig) -> NotifiedBucket {
        let s3 = stream_refdata_aws::s3_client(sdk);
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let bucket = unique_name("reference");
        let prefix = provision::REFERENCE_PREFIX.to_owned();
        let provisioned = async {
            // Unversioned, unlike infra/'s reference bucket: the emulator sends no notification
            // for a delete marker (S3 sends ObjectRemoved:DeleteMarkerCreated), so deletes
            // could not be tested on a versioned one. Tests of versions turn it on themselves.
            provision::create_bucket(&s3, &bucket).await?;
            let queue = provision::create_reference_queue(
                &sqs,
                &unique_name("reference-changes"),
                QueueSettings::default(),
            )
            .await?;
            provision::notify_queue(&s3, &bucket, &prefix, &queue.arn).await?;
            Ok::<_, provision::ProvisionError>(queue)
        };
        let queue = provisioned.await.unwrap_or_else(|e| panic!("{e}"));
        NotifiedBucket {
            s3,
            sqs,
            bucket,
            prefix,
            queue_url: queue.url,
            queue_arn: queue.arn,
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
        let event = event_source_mappings::sqs_event(&self.queue_arn, "us-east-1", messages);
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
