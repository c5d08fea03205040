//! What the benches share: the reference type they load (`Product` of the `ProductPriority`
//! table, keyed by `item` and `price`), its items in DynamoDB's typed form, their decoding into
//! snapshot entries, and the `BENCH_ITEMS` size.
// Each bench is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::collections::HashMap;

pub(crate) mod day;

use stream_refdata::key::ItemKey;
use stream_refdata_protocol::{AttributeValue, Item};

/// A product of the `ProductPriority` table.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Product {
    pub(crate) item: String,
    pub(crate) price: u32,
    pub(crate) priority: String,
}

/// A snapshot entry: item key, value, lookup key.
pub(crate) type Entry = (ItemKey, Product, Option<String>);

/// The number of items a bench loads: `BENCH_ITEMS`, default 100,000.
pub(crate) fn bench_items() -> usize {
    std::env::var("BENCH_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The product `item` (price 100) in DynamoDB's typed form.
pub(crate) fn product_item(item: String, priority: &str) -> Item {
    let mut m = HashMap::new();
    m.insert("item".to_owned(), AttributeValue::S(item));
    m.insert("price".to_owned(), AttributeValue::N("100".into()));
    m.insert("priority".to_owned(), AttributeValue::S(priority.into()));
    Item::from(m)
}

/// The table's key attributes, `item` and `price`.
pub(crate) fn key_names() -> [String; 2] {
    ["item".to_owned(), "price".to_owned()]
}

/// `item` decoded as a full load decodes it: its key (for the key attributes `names`), the
/// product, and its lookup key (the item's name).
pub(crate) fn decoded(names: &[String], item: Item) -> Entry {
    let key = ItemKey::from_item(names, &item).unwrap();
    let p: Product = serde_dynamo::from_item(item).unwrap();
    let lookup = Some(p.item.clone());
    (key, p, lookup)
}
