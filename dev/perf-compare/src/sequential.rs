//! Scenarios driven one step at a time, so both sides get exactly the same events: start-up,
//! the consumer batch loop with reference changes (CPU, handler time, requests, items read),
//! and peak memory on 1,000-record batches.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::function::ProcessStats;
use crate::workload::{kinesis_batch, Orders};
use crate::world::{synthetic_item, Counted, World};
use crate::FunctionSpec;
use test_support::StreamPump;

const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream";
const SHARD: &str = "shardId-000000000000";
/// How long a change's stream record may take to show.
const STREAM_WAIT: Duration = Duration::from_secs(10);
/// The peer's fixed flag object.
pub const FLAG_KEY: &str = "change_flags/CHANGE_FLAG";

/// Start to ready of one function, over several starts.
#[derive(Clone, Debug)]
pub struct Startup {
    /// The function.
    pub name: String,
    /// One sample per start.
    pub samples: Vec<Duration>,
}

/// Starts each function `runs` times and measures process start to its first request for an
/// event. The functions of both sides, and the minimal `lambda_runtime` binary.
pub async fn startup(world: &World, runs: usize) -> Result<Vec<Startup>> {
    let specs: Vec<FunctionSpec> = vec![
        world.hello(),
        world.our_change_handler(),
        world.our_s3_event_handler("unused-stream"),
        world.our_consumer("startup/", 1000),
        world.peer_flag_lambda(FLAG_KEY),
        world.peer_consumer("startup/", FLAG_KEY),
    ];
    let mut out = Vec::new();
    for spec in specs {
        let mut samples = Vec::new();
        for _ in 0..runs {
            let f = world.start(spec.clone()).await?;
            samples.push(f.startup);
            f.function.stop().await;
        }
        out.push(Startup {
            name: spec.name.clone(),
            samples,
        });
    }
    Ok(out)
}

/// One side's figures of the batch loop.
#[derive(Clone, Debug, Default)]
pub struct SideFigures {
    /// Handler time of each batch after the first (which loads the table).
    pub batch_times: Vec<Duration>,
    /// Whether a reference change came before that batch.
    pub after_change: Vec<bool>,
    /// Requests of each batch other than output writes (PutObject).
    pub refresh_requests: Vec<u64>,
    /// DynamoDB items read after the first batch.
    pub items_read: u64,
    /// CPU time and peak memory of the consumer process, measured after the first batch.
    pub cpu_after_load: Duration,
    /// The consumer's process statistics at the end.
    pub end: ProcessStats,
    /// Requests by operation, whole run.
    pub requests: BTreeMap<String, u64>,
    /// Time and requests of the change function per change.
    pub change_times: Vec<Duration>,
    /// Requests of the change function, by operation.
    pub change_requests: BTreeMap<String, u64>,
}

/// What the batch loop measured.
#[derive(Clone, Debug, Default)]
pub struct Throughput {
    /// Records per batch.
    pub batch_size: usize,
    /// Batches after the first.
    pub batches: usize,
    /// Reference changes.
    pub changes: usize,
    /// Orders with a reference item in the measured batches (both sides enrich exactly these).
    pub matched: usize,
    /// Ours.
    pub ours: SideFigures,
    /// The peer.
    pub peer: SideFigures,
}

fn non_output_requests(c: &Counted) -> u64 {
    c.requests()
        .iter()
        .filter(|(k, _)| k.as_str() != "s3/PutObject")
        .map(|(_, v)| v)
        .sum()
}

/// Which items the reference changes touch: ones the orders ask for, so each change is seen.
fn changed_item(k: usize) -> &'static str {
    ["burger", "pizza", "salad", "ice-cream"][k % 4]
}

/// The batch loop: `batches + 1` batches of `batch_size` orders, the first loading the table;
/// `changes` reference changes spread over them, each delivered to ours (change-handler, then
/// the change file on the consumer's next batch) and to the peer (flag Lambda, then HEAD +
/// Scan + DELETE on its next batch). Both consumers get the same events in turn.
pub async fn throughput(
    world: &World,
    batch_size: usize,
    batches: usize,
    changes: usize,
) -> Result<Throughput> {
    // Ours checks the feed on every batch here, as the peer HEADs its flag on every batch, so
    // "the first batch after a change" is the one that applies it on both sides.
    let ours = world.start(world.our_consumer("ours/", 0)).await?;
    let peer = world.start(world.peer_consumer("peer/", FLAG_KEY)).await?;
    let our_changes = world.start(world.our_change_handler()).await?;
    let peer_changes = world.start(world.peer_flag_lambda(FLAG_KEY)).await?;
    let mut tail = StreamPump::latest(world.streams.clone(), &world.table.stream_arn).await;
    let mut orders = Orders::new(7, world.items);
    let mut seq: u128 = 1;
    let mut batch = |orders: &mut Orders| -> (Value, usize) {
        let mut matched = 0;
        let data: Vec<Vec<u8>> = (0..batch_size)
            .map(|_| {
                let dish = orders.dish();
                matched += usize::from(dish != "donut");
                crate::workload::order(&dish, 10 + (seq % 140) as u32, 1000 + (seq % 9000) as u32)
            })
            .collect();
        let event = kinesis_batch(STREAM_ARN, SHARD, seq, &data);
        seq += batch_size as u128;
        (event, matched)
    };

    // The first batch: both load the whole table.
    let (event, _) = batch(&mut orders);
    for c in [&ours, &peer] {
        c.invoke_ok(&event).await?;
    }
    let mut result = Throughput {
        batch_size,
        batches,
        changes,
        ..Throughput::default()
    };
    let base_items = [ours.items_read(), peer.items_read()];
    result.ours.cpu_after_load = ours.function.stats().map_err(anyhow::Error::msg)?.cpu;
    result.peer.cpu_after_load = peer.function.stats().map_err(anyhow::Error::msg)?.cpu;
    let every = batches
        .checked_div(changes)
        .map_or(usize::MAX, |e| e.max(1));
    let mut made = 0;
    for i in 1..=batches {
        let change = made < changes && i % every == 0;
        if change {
            world
                .table
                .set_priority(changed_item(made), &format!("p{made:04}"))
                .await;
            let record = tail
                .wait_event(STREAM_WAIT)
                .await
                .context("the change's stream record")?;
            for (c, side) in [
                (&our_changes, &mut result.ours),
                (&peer_changes, &mut result.peer),
            ] {
                side.change_times.push(c.invoke_ok(&record).await?.elapsed);
            }
            made += 1;
        }
        let (event, matched) = batch(&mut orders);
        result.matched += matched;
        for (c, side) in [(&ours, &mut result.ours), (&peer, &mut result.peer)] {
            let before = non_output_requests(c);
            side.batch_times.push(c.invoke_ok(&event).await?.elapsed);
            side.after_change.push(change);
            side.refresh_requests.push(non_output_requests(c) - before);
        }
    }
    for (c, side, base) in [
        (&ours, &mut result.ours, base_items[0]),
        (&peer, &mut result.peer, base_items[1]),
    ] {
        side.end = c.function.stats().map_err(anyhow::Error::msg)?;
        side.items_read = c.items_read() - base;
        side.requests = c.requests();
    }
    result.ours.change_requests = our_changes.requests();
    result.peer.change_requests = peer_changes.requests();
    for c in [ours, peer, our_changes, peer_changes] {
        c.function.stop().await;
    }
    Ok(result)
}

/// Peak resident memory of a function after one 1,000-record batch.
#[derive(Clone, Debug)]
pub struct PeakMemory {
    /// The function.
    pub name: String,
    /// What the batch was.
    pub batch: String,
    /// Peak RSS after start-up, before the batch.
    pub idle: u64,
    /// Peak RSS after the batch.
    pub peak: u64,
}

async fn peak_of(
    world: &World,
    spec: FunctionSpec,
    batch: &str,
    event: &Value,
) -> Result<PeakMemory> {
    let c = world.start(spec).await?;
    let idle = c.function.stats().map_err(anyhow::Error::msg)?.peak_rss;
    c.invoke_ok(event).await?;
    let peak = c.function.stats().map_err(anyhow::Error::msg)?.peak_rss;
    let name = c.function.name().to_owned();
    c.function.stop().await;
    Ok(PeakMemory {
        name,
        batch: batch.to_owned(),
        idle,
        peak,
    })
}

/// An SQS event of `n` S3 notifications (object created under `reference/`), as the S3 →
/// SQS → Lambda path delivers it.
fn sqs_s3_event(bucket: &str, n: usize) -> Value {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let s3 = json!({"Records": [{
                "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventTime": "2026-11-26T03:00:00.000Z", "eventName": "ObjectCreated:Put",
                "userIdentity": {"principalId": "AWS:EXAMPLE"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {"x-amz-request-id": format!("REQ{i:08}"), "x-amz-id-2": "EXAMPLE"},
                "s3": {"s3SchemaVersion": "1.0", "configurationId": "reference-changes",
                       "bucket": {"name": bucket, "ownerIdentity": {"principalId": "EXAMPLE"},
                                  "arn": format!("arn:aws:s3:::{bucket}")},
                       "object": {"key": format!("reference/part-{i:05}.jsonl"), "size": 120,
                                  "eTag": "0123456789abcdef0123456789abcdef",
                                  "sequencer": format!("{:016X}", 1_000 + i)}}
            }]});
            json!({
                "messageId": format!("00000000-0000-4000-8000-{i:012}"),
                "receiptHandle": format!("handle-{i}"),
                "body": s3.to_string(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764126000000",
                               "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1764126000001"},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:reference-changes",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Peak RSS of each function on a 1,000-record batch: the consumers on 1,000 orders, the
/// change functions on 1,000 DynamoDB stream records, our S3-event handler on 1,000 S3
/// notifications through SQS, and the minimal binary on a 1,000-record event it echoes.
pub async fn peak_memory(world: &World) -> Result<Vec<PeakMemory>> {
    let mut orders = Orders::new(11, world.items);
    let data: Vec<Vec<u8>> = (0..1000).map(|_| orders.next_order()).collect();
    let orders_event = kinesis_batch(STREAM_ARN, SHARD, 1, &data);

    let mut tail = StreamPump::latest(world.streams.clone(), &world.table.stream_arn).await;
    for i in 0..1000 {
        world
            .table
            .set_priority(
                &synthetic_item(i % world.items.saturating_sub(5).max(1)),
                "memory",
            )
            .await;
    }
    let mut records = Vec::new();
    while records.len() < 1000 {
        let event = tail
            .wait_event(STREAM_WAIT)
            .await
            .context("stream records")?;
        records.extend(event["Records"].as_array().cloned().unwrap_or_default());
    }
    records.truncate(1000);
    let stream_event = json!({ "Records": records });

    let kinesis_stream = test_support::create_stream(&world.kinesis, 1).await;
    let s3_event = sqs_s3_event(&world.bucket, 1000);
    Ok(vec![
        peak_of(world, world.hello(), "1,000 orders (echoed)", &orders_event).await?,
        peak_of(
            world,
            world.our_consumer("memory/", 1000),
            "1,000 orders",
            &orders_event,
        )
        .await?,
        peak_of(
            world,
            world.peer_consumer("memory-peer/", "memory/FLAG"),
            "1,000 orders",
            &orders_event,
        )
        .await?,
        peak_of(
            world,
            world.our_change_handler(),
            "1,000 stream records",
            &stream_event,
        )
        .await?,
        peak_of(
            world,
            world.peer_flag_lambda("memory/FLAG"),
            "1,000 stream records",
            &stream_event,
        )
        .await?,
        peak_of(
            world,
            world.our_s3_event_handler(&kinesis_stream),
            "1,000 S3 notifications (SQS)",
            &s3_event,
        )
        .await
        .context("the S3-event handler on 1,000 notifications")?,
    ])
}

/// Our consumer against the floor binary (`consumer-floor`) on the same batches: process CPU
/// per record, measured after a warm-up batch (ours loads the table on it).
#[derive(Clone, Debug, Default)]
pub struct Floor {
    /// Records per batch.
    pub batch_size: usize,
    /// Measured batches (after the warm-up).
    pub batches: usize,
    /// Our consumer's process CPU over the measured batches.
    pub ours_cpu: Duration,
    /// The floor's process CPU over the measured batches.
    pub floor_cpu: Duration,
    /// Our handler time per measured batch.
    pub ours_times: Vec<Duration>,
    /// The floor's handler time per measured batch.
    pub floor_times: Vec<Duration>,
    /// Our consumer's AWS requests over the measured batches, by operation.
    pub ours_requests: BTreeMap<String, u64>,
    /// Bytes of our consumer's output objects over the measured batches.
    pub ours_output_bytes: u64,
    /// Per record, our consumer's own batch code on the warm-up batch's text in this process,
    /// its AWS calls replaced by memory (no runtime, no S3 requests).
    pub ours_in_memory: Duration,
}

impl Floor {
    /// Records handed to each side in the measured batches.
    pub fn records(&self) -> usize {
        self.batch_size * self.batches
    }

    /// Process CPU per record, ours then the floor's.
    pub fn per_record(&self) -> (Duration, Duration) {
        let n = self.records().max(1) as u32;
        (self.ours_cpu / n, self.floor_cpu / n)
    }
}

/// The floor scenario: `batches + 1` Kinesis events of `batch_size` generator orders (the
/// first a warm-up, not measured), each handed to the floor and then to our consumer, which
/// is configured as in the batch loop (output to the emulator's S3, the table loaded once on
/// the warm-up batch, the change feed checked on every batch).
pub async fn floor(
    world: &World,
    batch_size: usize,
    batches: usize,
    matched_only: bool,
) -> Result<Floor> {
    let prefix = "floor-ours/";
    let ours = world.start(world.our_consumer(prefix, 0)).await?;
    let floor = world.start(world.consumer_floor()).await?;
    let mut orders = Orders::new(13, world.items);
    if matched_only {
        orders = orders.matched_only();
    }
    let mut seq: u128 = 1;
    let mut batch = || {
        let data: Vec<Vec<u8>> = (0..batch_size).map(|_| orders.next_order()).collect();
        let event = kinesis_batch(STREAM_ARN, SHARD, seq, &data);
        seq += batch_size as u128;
        event
    };
    let warm_up = batch();
    for c in [&floor, &ours] {
        c.invoke_ok(&warm_up).await?;
    }
    let cpu = |c: &Counted| {
        c.function
            .stats()
            .map(|s| s.cpu)
            .map_err(anyhow::Error::msg)
    };
    let (ours_start, floor_start) = (cpu(&ours)?, cpu(&floor)?);
    let requests_start = ours.requests();
    let bytes_start = prefix_bytes(world, prefix).await?;
    let mut result = Floor {
        batch_size,
        batches,
        ..Floor::default()
    };
    for _ in 0..batches {
        let event = batch();
        result
            .floor_times
            .push(floor.invoke_ok(&event).await?.elapsed);
        result
            .ours_times
            .push(ours.invoke_ok(&event).await?.elapsed);
    }
    result.ours_cpu = cpu(&ours)?.saturating_sub(ours_start);
    result.floor_cpu = cpu(&floor)?.saturating_sub(floor_start);
    result.ours_requests = ours.requests();
    for (op, n) in &requests_start {
        if let Some(v) = result.ours_requests.get_mut(op) {
            *v -= n;
        }
    }
    result.ours_requests.retain(|_, v| *v > 0);
    result.ours_output_bytes = prefix_bytes(world, prefix).await? - bytes_start;
    for c in [ours, floor] {
        c.function.stop().await;
    }
    result.ours_in_memory = crate::in_memory::ours_raw(world, &warm_up, 10).await?;
    Ok(result)
}

/// Bytes of all objects under `prefix` of the world's bucket.
async fn prefix_bytes(world: &World, prefix: &str) -> Result<u64> {
    let mut total = 0;
    let mut pages = world
        .s3
        .list_objects_v2()
        .bucket(&world.bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.context("listing the floor scenario's output")?;
        total += page
            .contents()
            .iter()
            .filter_map(|o| o.size())
            .map(|s| s as u64)
            .sum::<u64>();
    }
    Ok(total)
}
