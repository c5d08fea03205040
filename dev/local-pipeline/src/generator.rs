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

/// Puts random orders into a stream at a steady rate (in ten batches a second): random dishes,
/// costs 10..150 and customer ids, spread over the shards by partition key. The dishes and keys
/// come from a fixed seed, so the n-th order is the same in every run; the demo drives it by
/// count ([`Generator::send_until`]) between its scripted changes.
#[derive(Debug)]
pub struct Generator {
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    per_tick: usize,
    rng: fastrand::Rng,
    started: Instant,
    sent: Vec<SentOrder>,
    /// Dishes added since the start ([`Generator::add_dish`]).
    added: Vec<String>,
}

impl Generator {
    /// A generator of `rate` orders a second into `stream`; `started` is the demo's start.
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: &str,
        rate: u32,
        started: Instant,
    ) -> Generator {
        Generator {
            kinesis,
            stream: stream.to_owned(),
            per_tick: (rate / 10).max(1) as usize,
            rng: fastrand::Rng::with_seed(0x5eed),
            started,
            sent: Vec::new(),
            added: Vec::new(),
        }
    }

    /// From now on, orders of `dish` too (a dish that goes on sale: the demo writes its row
    /// a few seconds later).
    pub fn add_dish(&mut self, dish: &str) {
        self.added.push(dish.to_owned());
    }

    /// The orders put so far, in the order they were put.
    pub fn sent(&self) -> &[SentOrder] {
        &self.sent
    }

    /// The orders put, once the generator is done.
    pub fn into_sent(self) -> Vec<SentOrder> {
        self.sent
    }

    /// Puts orders until `done(orders put so far)` says so (checked before each batch); `sent`
    /// is called for each order put.
    pub async fn send_until(
        &mut self,
        mut done: impl FnMut(usize) -> bool,
        sent: &mut impl FnMut(&SentOrder),
    ) -> Result<()> {
        self.send_while_pending(std::future::pending(), &mut done, sent)
            .await
    }

    /// Puts orders until `until` completes.
    pub async fn send_while(
        &mut self,
        until: impl Future<Output = ()>,
        sent: &mut impl FnMut(&SentOrder),
    ) -> Result<()> {
        self.send_while_pending(until, &mut |_| false, sent).await
    }

    async fn send_while_pending(
        &mut self,
        until: impl Future<Output = ()>,
        done: &mut impl FnMut(usize) -> bool,
        sent: &mut impl FnMut(&SentOrder),
    ) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let until = std::pin::pin!(until);
        let mut until = until.fuse();
        while !done(self.sent.len()) {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut until => break,
            }
            self.put_batch(sent).await?;
        }
        Ok(())
    }

    async fn put_batch(&mut self, sent: &mut impl FnMut(&SentOrder)) -> Result<()> {
        let rng = &mut self.rng;
        let batch: Vec<(String, Vec<u8>, String)> = (0..self.per_tick)
            .map(|_| {
                let n = rng.usize(..DISHES.len() + self.added.len());
                let dish = DISHES
                    .get(n)
                    .copied()
                    .unwrap_or_else(|| &self.added[n - DISHES.len()]);
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
        let out = self
            .kinesis
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(entries))
            .send()
            .await
            .context("putting orders")?;
        let at = self.started.elapsed();
        for ((dish, _, _), r) in batch.iter().zip(out.records()) {
            if let (Some(shard), Some(seq)) = (r.shard_id(), r.sequence_number()) {
                let order = SentOrder {
                    shard: shard.to_owned(),
                    sequence_number: seq.to_owned(),
                    dish: dish.clone(),
                    at,
                };
                sent(&order);
                self.sent.push(order);
            }
        }
        Ok(())
    }
}
