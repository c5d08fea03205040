//! Orders like the original's generator, as Kinesis records and Lambda events.

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::Record;
use serde_json::Value;

use crate::world::synthetic_item;

/// The generator's dishes: `donut` is not in the table.
pub const DISHES: [&str; 5] = ["pizza", "burger", "salad", "donut", "ice-cream"];

/// One order's JSON: a dish, a cost of 10..150 and a customer id.
pub fn order(dish: &str, cost: u32, customer_id: u32) -> Vec<u8> {
    format!(r#"{{"dish":"{dish}","cost":{cost},"customer_id":{customer_id}}}"#).into_bytes()
}

/// Deterministic orders: four in five from the generator's dishes (one of those five is the
/// unmatched `donut`), one in five for one of 20 synthetic items spread over the table, so the
/// lookups range over a table of `items` items while a batch writes a few dozen partitions,
/// not hundreds.
#[derive(Debug)]
pub struct Orders {
    rng: fastrand::Rng,
    synthetic: usize,
    matched_only: bool,
}

impl Orders {
    /// Orders over a table of `items` items.
    pub fn new(seed: u64, items: usize) -> Orders {
        Orders {
            rng: fastrand::Rng::with_seed(seed),
            synthetic: items.saturating_sub(5),
            matched_only: false,
        }
    }

    /// The same orders without `donut` (every dish has a row).
    pub fn matched_only(mut self) -> Orders {
        self.matched_only = true;
        self
    }

    /// The next order's dish.
    pub fn dish(&mut self) -> String {
        if self.synthetic > 0 && self.rng.u8(..5) == 0 {
            synthetic_item(self.rng.usize(..20) * self.synthetic / 20)
        } else {
            loop {
                let dish = DISHES[self.rng.usize(..DISHES.len())];
                if !(self.matched_only && dish == "donut") {
                    return dish.to_owned();
                }
            }
        }
    }

    /// The next order.
    pub fn next_order(&mut self) -> Vec<u8> {
        let dish = self.dish();
        order(&dish, self.rng.u32(10..=150), self.rng.u32(1000..10_000))
    }
}

/// A Kinesis Lambda event of `orders` from one shard, sequence numbers from `first_seq` on,
/// as the event source mapping delivers it.
pub fn kinesis_batch(stream_arn: &str, shard: &str, first_seq: u128, orders: &[Vec<u8>]) -> Value {
    let now = DateTime::from_secs(1_764_115_200);
    let records: Vec<Record> = orders
        .iter()
        .enumerate()
        .map(|(i, data)| {
            Record::builder()
                .sequence_number(format!("{:056}", first_seq + i as u128))
                .partition_key(format!("{i}"))
                .data(Blob::new(data.clone()))
                .approximate_arrival_timestamp(now)
                .build()
                .expect("kinesis record")
        })
        .collect();
    event_source_mappings::kinesis_event(stream_arn, shard, "us-east-1", &records)
}
