//! Orders like the original's Kinesis Data Generator template.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::time::Instant;

/// The generator's dishes: `donut` is not in the table.
pub const DISHES: [&str; 5] = ["pizza", "burger", "salad", "donut", "ice-cream"];

/// An order that was put into the stream.
#[derive(Clone, Debug)]
pub struct SentOrder {
    /// The shard it landed on.
    pub shard: String,
    /// Its sequence number.
    pub sequence_number: String,
    /// Its dish.
    pub dish: String,
    /// When the put returned, since the demo started.
    pub at: Duration,
}

/// Puts `rate` orders a second until `until` completes (in ten batches a second), with random
/// dishes, costs 10..150 and customer ids, spread over the shards by partition key.
pub async fn generate(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    rate: u32,
    until: impl Future<Output = ()>,
    started: Instant,
    mut sent: impl FnMut(&SentOrder),
) -> Result<Vec<SentOrder>> {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut orders = Vec::new();
    let per_tick = (rate / 10).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let until = std::pin::pin!(until);
    let mut until = until.fuse();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut until => break,
        }
        let batch: Vec<(String, Vec<u8>, String)> = (0..per_tick)
            .map(|_| {
                let dish = DISHES[rng.usize(..DISHES.len())];
                let customer = rng.u32(1000..10_000);
                let body = format!(
                    r#"{{"dish":"{dish}","cost":{},"customer_id":{customer}}}"#,
                    rng.u32(10..=150)
                );
                (dish.to_owned(), body.into_bytes(), customer.to_string())
            })
            .collect();
        let entries = batch
            .iter()
            .map(|(_, data, key)| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(data.clone()))
                    .partition_key(key)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = kinesis
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .context("putting orders")?;
        let at = started.elapsed();
        for ((dish, _, _), r) in batch.iter().zip(out.records()) {
            if let (Some(shard), Some(seq)) = (r.shard_id(), r.sequence_number()) {
                let order = SentOrder {
                    shard: shard.to_owned(),
                    sequence_number: seq.to_owned(),
                    dish: dish.clone(),
                    at,
                };
                sent(&order);
                orders.push(order);
            }
        }
    }
    Ok(orders)
}
