//! A `ProductPriority`-shaped reference table in the emulator, for tests.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};

use crate::unique_name;

/// The original's five items: item, priority (price 100 each).
pub const ORIGINAL_ITEMS: [(&str, &str); 5] = [
    ("salad", "high"),
    ("pizza", "low"),
    ("burger", "medium"),
    ("pasta", "very high"),
    ("ice-cream", "very very high"),
];

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
        let name = unique_name("ProductPriority");
        let attr = |n: &str, t| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(t)
                .build()
                .expect("attribute definition")
        };
        let key = |n: &str, t| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(t)
                .build()
                .expect("key schema")
        };
        let created = ddb
            .create_table()
            .table_name(&name)
            .attribute_definitions(attr("item", ScalarAttributeType::S))
            .attribute_definitions(attr("price", ScalarAttributeType::N))
            .key_schema(key("item", KeyType::Hash))
            .key_schema(key("price", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(view)
                    .build()
                    .expect("stream specification"),
            )
            .send()
            .await
            .expect("CreateTable");
        let stream_arn = created
            .table_description()
            .and_then(|d| d.latest_stream_arn())
            .expect("the table has a stream")
            .to_owned();
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
        self.ddb
            .put_item()
            .table_name(&self.name)
            .item("item", AttributeValue::S(item.into()))
            .item("price", AttributeValue::N("100".into()))
            .item("priority", AttributeValue::S(priority.into()))
            .send()
            .await
            .expect("PutItem");
    }

    /// The original walkthrough's `update-item … SET priority = :s`.
    pub async fn set_priority(&self, item: &str, priority: &str) {
        self.ddb
            .update_item()
            .table_name(&self.name)
            .key("item", AttributeValue::S(item.into()))
            .key("price", AttributeValue::N("100".into()))
            .update_expression("SET priority = :s")
            .expression_attribute_values(":s", AttributeValue::S(priority.into()))
            .send()
            .await
            .expect("UpdateItem");
    }

    /// Deletes (item, price 100).
    pub async fn delete(&self, item: &str) {
        self.ddb
            .delete_item()
            .table_name(&self.name)
            .key("item", AttributeValue::S(item.into()))
            .key("price", AttributeValue::N("100".into()))
            .send()
            .await
            .expect("DeleteItem");
    }
}
