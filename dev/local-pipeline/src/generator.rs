//! Orders like the original's Kinesis Data Generator template, into a Kinesis stream or a Kafka
//! topic.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::time::Instant;

/// The generator's dishes: `donut` is not in the table.
pub const DISHES: [&str; 5] = ["pizza", "burger", "salad", "donut", "ice-cream"];

/// Where the orders go.
#[derive(Clone)]
pub enum Sink {
    /// A Kinesis data stream (spread over its shards by partition key).
    Kinesis {
        /// The client.
        client: aws_sdk_kinesis::Client,
        /// The stream's name.
        stream: String,
    },
    /// A Kafka topic (spread over its partitions by customer, as a keyed producer does).
    Kafka {
        /// The client.
        client: Arc<rskafka::client::Client>,
        /// The topic.
        topic: String,
        /// Its partitions.
        partitions: Vec<i32>,
    },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Kinesis { stream, .. } => write!(f, "Kinesis({stream})"),
            Sink::Kafka { topic, .. } => write!(f, "Kafka({topic})"),
        }
    }
}

/// An order that was put into the stream.
#[derive(Clone, Debug)]
pub struct SentOrder {
    /// The shard it landed on (Kafka: its `<topic>-<partition>`).
    pub shard: String,
    /// Its sequence number (Kafka: its offset).
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
    sink: Sink,
    per_tick: usize,
    rng: fastrand::Rng,
    started: Instant,
    sent: Vec<SentOrder>,
    /// Dishes added since the start ([`Generator::add_dish`]).
    added: Vec<String>,
}

impl Generator {
    /// A generator of `rate` orders a second into `sink`; `started` is the demo's start.
    pub fn new(sink: Sink, rate: u32, started: Instant) -> Generator {
        Generator {
            sink,
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
        let at = |started: Instant| started.elapsed();
        let landed: Vec<(String, String)> = match &self.sink {
            Sink::Kinesis { client, stream } => {
                let entries = batch
                    .iter()
                    .map(|(_, data, key)| {
                        PutRecordsRequestEntry::builder()
                            .data(Blob::new(data.clone()))
                            .partition_key(key)
                            .build()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let out = client
                    .put_records()
                    .stream_name(stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .context("putting orders")?;
                (out.records().iter())
                    .map(|r| {
                        let shard = r.shard_id().unwrap_or_default().to_owned();
                        (shard, r.sequence_number().unwrap_or_default().to_owned())
                    })
                    .collect()
            }
            Sink::Kafka {
                client,
                topic,
                partitions,
            } => {
                // (by customer, as a keyed producer partitions; each partition's orders in one
                // produce request, in order)
                let partition_of = |key: &str| {
                    let n: usize = key.bytes().map(usize::from).sum();
                    partitions[n % partitions.len()]
                };
                let mut offsets = vec![(String::new(), String::new()); batch.len()];
                for &p in partitions {
                    let mine: Vec<usize> = (0..batch.len())
                        .filter(|&i| partition_of(&batch[i].2) == p)
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let records = (mine.iter())
                        .map(|&i| rskafka::record::Record {
                            key: Some(batch[i].2.clone().into_bytes()),
                            value: Some(batch[i].1.clone()),
                            headers: Default::default(),
                            timestamp: rskafka::chrono::Utc::now(),
                        })
                        .collect();
                    let pc = client
                        .partition_client(
                            topic.clone(),
                            p,
                            rskafka::client::partition::UnknownTopicHandling::Retry,
                        )
                        .await
                        .context("the orders topic's partition")?;
                    let assigned = pc
                        .produce(
                            records,
                            rskafka::client::partition::Compression::NoCompression,
                        )
                        .await
                        .context("producing orders")?;
                    for (&i, offset) in mine.iter().zip(assigned) {
                        offsets[i] = (format!("{topic}-{p}"), offset.to_string());
                    }
                }
                offsets
            }
        };
        let at = at(self.started);
        for ((dish, _, _), (shard, seq)) in batch.iter().zip(landed) {
            if shard.is_empty() || seq.is_empty() {
                continue;
            }
            let order = SentOrder {
                shard,
                sequence_number: seq,
                dish: dish.clone(),
                at,
            };
            sent(&order);
            self.sent.push(order);
        }
        Ok(())
    }
}
