//! The live pipeline: orders flowing into a Kinesis shard, reference changes flowing through
//! the table's stream, event source mappings polling at Lambda's rates (DynamoDB stream shards
//! 4 times a second, the Kinesis shard once a second) and invoking the function processes of
//! both sides. Measures propagation (table write to the first enriched record with the new
//! value) and changes lost when several arrive close together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use event_source_mappings::{
    DynamoDbStreamMapping, Invocation, KinesisShardMapping, MappingConfig,
};
use serde_json::Value;
use tokio::sync::watch;

use crate::sequential::FLAG_KEY;
use crate::workload::{order, DISHES};
use crate::world::{synthetic_item, Counted, World};
use crate::Answer;

/// What to run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// A label that keeps this run's outputs apart from other runs'.
    pub label: String,
    /// Which side runs: ours, or the peer. The sides run one after the other, so neither
    /// slows the other down through the shared emulator (the peer's full Scans keep it busy).
    pub ours: bool,
    /// Consumers, all reading the same shard (the peer's share its one flag object).
    pub consumers: usize,
    /// Reference changes spread out, for propagation.
    pub changes: usize,
    /// Time between two of those changes.
    pub change_interval: Duration,
    /// Changes close together at the end, one per item, for lost changes.
    pub burst: usize,
    /// Time between two changes of the burst.
    pub burst_spacing: Duration,
    /// Orders a second from the generator.
    pub orders_per_second: u32,
    /// Our consumers' `FEED_POLL_INTERVAL_MS`.
    pub feed_poll_ms: u64,
}

/// One consumer's figures.
#[derive(Clone, Debug)]
pub struct ConsumerFigures {
    /// `ours A`, `peer B`, …
    pub name: String,
    /// Whether it is one of ours.
    pub ours: bool,
    /// Propagation of each spread-out change; `None` if its value never showed.
    pub propagation: Vec<Option<Duration>>,
    /// Burst changes whose new value the consumer never used, of `burst`.
    pub burst_lost: usize,
    /// Invocations.
    pub invocations: usize,
}

/// The run's result.
#[derive(Clone, Debug)]
pub struct LiveResult {
    /// What ran.
    pub options: LiveOptions,
    /// Per consumer.
    pub consumers: Vec<ConsumerFigures>,
}

type Log = Arc<Mutex<HashMap<String, Instant>>>;

fn invocation(answer: Result<Answer, String>) -> Invocation {
    match answer {
        Ok(Answer::Response(body)) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let ids: Vec<String> = v
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                Invocation::Success
            } else {
                Invocation::PartialFailure(ids)
            }
        }
        Ok(Answer::Error(body)) => Invocation::Error(String::from_utf8_lossy(&body).into_owned()),
        Err(e) => Invocation::Error(e),
    }
}

/// The first sequence number an output object's name carries: ours end
/// `…<shard>-<seq>.jsonl`, the peer's `…part-<seq>.csv`.
fn first_sequence_of(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next()?;
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    stem.rsplit('-').next()
}

async fn keys(world: &World, prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = world
            .s3
            .list_objects_v2()
            .bucket(&world.bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .context("ListObjectsV2")?;
        out.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

async fn put_orders(world: &World, stream: &str, orders: Vec<(String, Vec<u8>)>) -> Result<()> {
    let entries: Vec<PutRecordsRequestEntry> = orders
        .into_iter()
        .map(|(key, data)| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(data))
                .build()
                .expect("record entry")
        })
        .collect();
    world
        .kinesis
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .context("PutRecords")?;
    Ok(())
}

/// Runs the live pipeline once.
pub async fn run(world: &World, options: LiveOptions) -> Result<LiveResult> {
    let stream = test_support::create_stream(&world.kinesis, 1).await;
    let summary = world
        .kinesis
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .context("DescribeStreamSummary")?;
    let stream_arn = summary
        .stream_description_summary()
        .map(|d| d.stream_arn().to_owned())
        .context("stream ARN")?;
    let shard = world
        .kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .context("ListShards")?
        .shards()
        .first()
        .map(|s| s.shard_id().to_owned())
        .context("a shard")?;

    // Functions: the side's change function and its consumers.
    let flag_key = format!("{}/{FLAG_KEY}", options.label);
    let change_function = Arc::new(if options.ours {
        world.start(world.our_change_handler()).await?
    } else {
        world.start(world.peer_flag_lambda(&flag_key)).await?
    });
    let side = if options.ours { "ours" } else { "peer" };
    let mut consumers: Vec<(String, bool, String, Arc<Counted>, Log)> = Vec::new();
    for j in 0..options.consumers {
        let letter = (b'A' + j as u8) as char;
        let prefix = format!("{}/{side}-{letter}/", options.label);
        let spec = if options.ours {
            world.our_consumer(&prefix, options.feed_poll_ms)
        } else {
            world.peer_consumer(&prefix, &flag_key)
        };
        let c = world.start(spec).await?;
        consumers.push((
            format!("{side} {letter}"),
            options.ours,
            prefix,
            Arc::new(c),
            Log::default(),
        ));
    }

    // Event source mappings, each on its own task.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let table_mapping = |batch_size| {
        DynamoDbStreamMapping::new(
            world.streams.clone(),
            world.table.stream_arn.clone(),
            MappingConfig {
                batch_size,
                poll_interval: Duration::from_millis(250),
                trim_horizon: false,
                maximum_retry_attempts: None,
            },
        )
    };
    // Ours with batches of up to 100 records; the original's mapping has BatchSize 1.
    {
        let function = change_function.clone();
        let mapping = table_mapping(if options.ours { 100 } else { 1 });
        let stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            mapping
                .run(
                    |event| {
                        let f = function.clone();
                        async move { invocation(f.function.invoke(&event).await.map(|i| i.answer)) }
                    },
                    stop,
                )
                .await
                .map(|s| s.invocations)
        }));
    }
    let shard_config = MappingConfig {
        batch_size: 100,
        poll_interval: Duration::from_secs(1),
        trim_horizon: false,
        maximum_retry_attempts: None,
    };
    let mut consumer_tasks = Vec::new();
    for (_, _, _, function, log) in &consumers {
        let mapping = KinesisShardMapping::new(
            world.kinesis.clone(),
            stream.clone(),
            stream_arn.clone(),
            shard.clone(),
            shard_config.clone(),
        );
        let (function, log, stop) = (function.clone(), log.clone(), stop_rx.clone());
        consumer_tasks.push(tokio::spawn(async move {
            mapping
                .run(
                    |event: Value| {
                        let (f, log) = (function.clone(), log.clone());
                        async move {
                            let first = event["Records"][0]["kinesis"]["sequenceNumber"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned();
                            let answer = f.function.invoke(&event).await.map(|i| i.answer);
                            log.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(first)
                                .or_insert_with(Instant::now);
                            invocation(answer)
                        }
                    },
                    stop,
                )
                .await
                .map(|s| s.invocations)
        }));
    }

    // The generator: the original's dishes, ten puts a second.
    let (gen_stop_tx, mut gen_stop) = watch::channel(false);
    let generator = {
        let per_tick = (options.orders_per_second / 10).max(1) as usize;
        let world_kinesis = world.kinesis.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(3);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = gen_stop.changed() => return Ok::<(), anyhow::Error>(()),
                }
                let entries: Vec<PutRecordsRequestEntry> = (0..per_tick)
                    .map(|_| {
                        let dish = DISHES[rng.usize(..DISHES.len())];
                        PutRecordsRequestEntry::builder()
                            .partition_key(rng.u32(..).to_string())
                            .data(Blob::new(order(
                                dish,
                                rng.u32(10..=150),
                                rng.u32(1000..10_000),
                            )))
                            .build()
                            .expect("record entry")
                    })
                    .collect();
                world_kinesis
                    .put_records()
                    .stream_name(&stream)
                    .set_records(Some(entries))
                    .send()
                    .await
                    .context("PutRecords")?;
            }
        })
    };

    // Warm up: every consumer has loaded the table and every mapping is at the stream's tail.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Spread-out changes on the dishes the orders carry.
    let mut rng = fastrand::Rng::with_seed(17);
    let mut changes: Vec<(String, String, Instant)> = Vec::new();
    for k in 0..options.changes {
        let item = ["burger", "pizza", "salad", "ice-cream"][k % 4];
        let value = format!("{}-v{k:03}", options.label);
        world.table.set_priority(item, &value).await;
        changes.push((item.to_owned(), value, Instant::now()));
        let jitter = options.change_interval.mul_f64(rng.f64() * 0.5);
        tokio::time::sleep(options.change_interval + jitter).await;
    }

    // A burst: changes close together on items no order carries until the probes.
    let synthetic = world.items.saturating_sub(5).max(1);
    let burst: Vec<(String, String)> = (0..options.burst)
        .map(|k| {
            (
                synthetic_item((k * synthetic / options.burst.max(1) + 7) % synthetic),
                format!("{}-b{k:03}", options.label),
            )
        })
        .collect();
    for (item, value) in &burst {
        world.table.set_priority(item, value).await;
        tokio::time::sleep(options.burst_spacing).await;
    }
    // Let every side settle (several polls and reloads), then one probe order per item.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let probes = burst
        .iter()
        .enumerate()
        .map(|(j, (item, _))| (format!("probe-{j}"), order(item, 50, 900_000 + j as u32)))
        .collect();
    put_orders(world, &stream, probes).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let _ = gen_stop_tx.send(true);
    generator.await.context("generator")??;
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.context("mapping task")?.context("mapping")?;
    }
    let mut invocations = Vec::new();
    for t in consumer_tasks {
        invocations.push(t.await.context("mapping task")?.context("mapping")? as usize);
    }

    let mut figures = Vec::new();
    for ((name, ours, prefix, _, log), invocations) in consumers.iter().zip(invocations) {
        let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut propagation = Vec::new();
        for (item, value, written) in &changes {
            let found = keys(world, &format!("{prefix}item={item}/priority={value}/")).await?;
            let first = found
                .iter()
                .filter_map(|k| first_sequence_of(k))
                .filter_map(|s| log.get(s))
                .min()
                .map(|done| done.saturating_duration_since(*written));
            propagation.push(first);
        }
        let mut burst_lost = 0;
        for (item, value) in &burst {
            if keys(world, &format!("{prefix}item={item}/priority={value}/"))
                .await?
                .is_empty()
            {
                burst_lost += 1;
            }
        }
        figures.push(ConsumerFigures {
            name: name.clone(),
            ours: *ours,
            propagation,
            burst_lost,
            invocations,
        });
    }
    for (_, _, _, c, _) in consumers {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.function.stop().await;
        }
    }
    if let Ok(c) = Arc::try_unwrap(change_function) {
        c.function.stop().await;
    }
    Ok(LiveResult {
        options,
        consumers: figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_carry_the_batch_first_sequence_number() {
        assert_eq!(
            first_sequence_of("r/ours-A/item=burger/priority=high/shardId-000000000000-4960.jsonl"),
            Some("4960")
        );
        assert_eq!(
            first_sequence_of("r/peer-A/item=burger/priority=high/part-4960.csv"),
            Some("4960")
        );
    }
}
