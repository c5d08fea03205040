//! A `ProductPriority`-shaped reference table in the emulator, for tests: uniquely named,
//! created by the workspace's one provisioning code (`local_emulator::provision`).

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use local_emulator::provision;

use crate::unique_name;

/// The original's five items: item, priority (price 100 each).
pub use provision::ORIGINAL_ITEMS;

/// A uniquely named table with hash key `item` (S), range key `price` (N) and a stream.
#[derive(Debug, Clone)]
pub struct ReferenceTable {
    /// The client it was made with.
    pub ddb: aws_sdk_dynamodb::Client,
    /// Its name.
    pub name: String,
    /// Its stream's ARN.
    pub stream_arn: String,
}

impl ReferenceTable {
    /// Creates the table with a stream of `view` type.
    pub async fn create(ddb: &aws_sdk_dynamodb::Client, view: StreamViewType) -> ReferenceTable {
        let name = unique_name(provision::TABLE_NAME);
        let stream_arn = provision::create_reference_table(ddb, &name, view)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ReferenceTable {
            ddb: ddb.clone(),
            name,
            stream_arn,
        }
    }

    /// Puts the original's five items.
    pub async fn seed(&self) {
        for (item, priority) in ORIGINAL_ITEMS {
            self.put(item, priority).await;
        }
    }

    /// Puts (item, price 100, priority).
    pub async fn put(&self, item: &str, priority: &str) {
        provision::put_item(&self.ddb, &self.name, item, priority)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The original walkthrough's `update-item … SET priority = :s`.
    pub async fn set_priority(&self, item: &str, priority: &str) {
        provision::set_priority(&self.ddb, &self.name, item, priority)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Deletes (item, price 100).
    pub async fn delete(&self, item: &str) {
        self.ddb
            .delete_item()
            .table_name(&self.name)
            .key("item", AttributeValue::S(item.into()))
            .key("price", AttributeValue::N(provision::PRICE.into()))
            .send()
            .await
            .expect("DeleteItem");
    }
}

/// The `priority` of a change's old and new images, as the change file carries them (`None`
/// where the image or the attribute is missing, or is not a string).
pub fn priorities(change: &stream_refdata_protocol::StreamChange) -> (Option<&str>, Option<&str>) {
    (
        priority(change.old_image.as_ref()),
        priority(change.new_image.as_ref()),
    )
}

fn priority(image: Option<&stream_refdata_protocol::Item>) -> Option<&str> {
    match image?.get("priority") {
        Some(stream_refdata_protocol::AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}
