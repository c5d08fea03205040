//! The main job: the original walkthrough on the local pipeline, with a summary at the end.
//!
//! Orders stream into the 4-shard stream; one orders consumer per shard (as Lambda runs one
//! invocation per shard at a time) enriches them and writes `item=…/priority=…` partitions.
//! Midway the walkthrough's update (burger: medium → high) goes through the table's stream, the
//! change-handler and the change feed; later a reference object in S3 changes, and the
//! s3-event-handler puts a flag on every shard. At the end the output is read back from S3.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_plumbing::{S3Store, SystemClock};
use change_handler::ChangeHandler;
use enrichment::{DynamoDbTable, MetricsSnapshot, S3Feed};
use esm_emulation::{
    DynamoDbStreamMapping, Invocation, KinesisShardMapping, MappingStats, S3Destination, SqsMapping,
};
use feed_writer::{FeedConfig, FeedWriter};
use futures_util::future::join_all;
use orders_consumer::OrdersConsumer;
use s3_event_handler::{KinesisStream, S3EventHandler};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::generator::{generate, SentOrder};
use local_emulator::provision::{
    mappings, provision, set_priority, Clients, Names, REFERENCE_OBJECT,
};

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long orders are generated.
    pub duration: Duration,
    /// Orders a second.
    pub rate: u32,
    /// When the walkthrough's update happens.
    pub update_at: Duration,
    /// When the S3 reference object changes.
    pub s3_change_at: Duration,
    /// How long to wait for the consumers to drain the stream at the end.
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(40),
            rate: 40,
            update_at: Duration::from_secs(15),
            s3_change_at: Duration::from_secs(25),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The menu category the demo gives salad at its S3 change (it was `starters`).
pub const NEW_SALAD_CATEGORY: &str = "salads";

/// Live counts, for the progress line.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Time since start.
    pub elapsed: Duration,
    /// Orders put into the stream.
    pub sent: usize,
    /// Records the consumers processed (orders and flags).
    pub consumed: usize,
    /// Orders enriched.
    pub enriched: usize,
    /// Orders without a reference item (dead-lettered by the default policy).
    pub unmatched: usize,
    /// Records that are not orders.
    pub rejected: usize,
    /// Change flags the consumers met.
    pub flags: usize,
    /// Burger orders written to priority=medium / priority=high.
    pub burger_medium: usize,
    /// See `burger_medium`.
    pub burger_high: usize,
    /// Where each dish landed last: dish → the priority partition of its latest enriched order.
    pub landing: BTreeMap<String, String>,
}

impl Progress {
    /// The landing of every dish, `burger→high pizza→high …`, for the live progress line.
    pub fn landing_line(&self) -> String {
        self.landing
            .iter()
            .map(|(dish, priority)| format!("{dish}→{priority}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// How the interactive mode runs: orders keep flowing until it is told to stop, and the
/// reference data changes only when the user changes it (with the commands it prints).
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Orders a second.
    pub rate: u32,
    /// How long to wait for the consumers to drain the stream after the stop.
    pub drain_timeout: Duration,
}

/// The times of the scripted changes, when the demo made them.
#[derive(Clone, Copy, Debug, Default)]
struct Changes {
    update_at: Option<Duration>,
    s3_change_at: Option<Duration>,
}

/// One line of the output, read back from S3.
#[derive(Clone, Debug)]
pub struct OutputLine {
    /// The partition path.
    pub partition: String,
    /// Source shard.
    pub shard: String,
    /// Source sequence number.
    pub sequence_number: String,
    /// The line's item.
    pub item: String,
    /// Its priority, if enriched.
    pub priority: Option<String>,
    /// Its menu category, from the reference object in S3 (the second reference).
    pub category: Option<String>,
}

/// What the demo measured.
#[derive(Debug, Default)]
pub struct Summary {
    /// Final counts.
    pub progress: Progress,
    /// Orders that were put, with shard, sequence number and time.
    pub sent: Vec<SentOrder>,
    /// Every enriched line in S3.
    pub output: Vec<OutputLine>,
    /// Lines in the dead-letter prefix.
    pub dead_letters: usize,
    /// Lines per partition, from S3.
    pub partitions: BTreeMap<String, usize>,
    /// When the update was made.
    pub update_at: Option<Duration>,
    /// When the first burger order was written to priority=high.
    pub first_high_burger_at: Option<Duration>,
    /// When the S3 reference object was changed.
    pub s3_change_at: Option<Duration>,
    /// Per shard, the sequence number of the S3 change's flag in that shard.
    pub flags_at: BTreeMap<String, String>,
    /// The consumers' counters, summed.
    pub consumer_requests: MetricsSnapshot,
    /// Change files in the feed.
    pub change_files: usize,
    /// Each mapping's counts: change-handler, s3-event-handler, then one per shard.
    pub mappings: Vec<(String, MappingStats)>,
    /// Orders in batches the consumers' mappings discarded (in the failure records).
    pub discarded_orders: usize,
}

impl Summary {
    /// The invocation records of batches the mappings discarded (keys in the demo bucket).
    pub fn failure_records(&self) -> Vec<&str> {
        self.mappings
            .iter()
            .flat_map(|(_, st)| st.failure_records.iter().map(String::as_str))
            .collect()
    }
}

/// The orders consumer's variables in the demo, as infra/ sets them on the function (one
/// bucket here): the demo builds its consumers from them, and the redrive command it prints
/// passes the same ones, so a replay runs with the function's configuration.
pub fn consumer_variables(names: &Names) -> Vec<(&'static str, String)> {
    vec![
        ("REFERENCE_TABLE", names.table.clone()),
        ("CHANGE_BUCKET", names.bucket.clone()),
        ("CHANGE_PREFIX", names.change_prefix.clone()),
        ("OUTPUT_BUCKET", names.bucket.clone()),
        ("OUTPUT_PREFIX", names.output_prefix.clone()),
        ("DEAD_LETTER_PREFIX", names.dead_letter_prefix.clone()),
        ("UNMATCHED", "dead-letter".into()),
        ("WRITE_WINDOW_SECS", "20".into()),
        ("MAX_STALENESS_SECS", "900".into()),
        ("FEED_POLL_INTERVAL_MS", "1000".into()),
        ("FEED_RETENTION_DAYS", "7".into()),
        // The seed's second pattern, joined: the menu categories kept as an object in S3.
        ("REFERENCE_OBJECTS_BUCKET", names.bucket.clone()),
        ("REFERENCE_OBJECTS_PREFIX", names.reference_prefix.clone()),
        ("REFERENCE_OBJECTS_KEY", "item".into()),
        ("REFERENCE_OBJECTS_FIELD", "menu".into()),
        (
            "SNAPSHOT_PREFIX",
            change_protocol::DEFAULT_SNAPSHOT_PREFIX.into(),
        ),
    ]
}

/// The orders and change flags in the Kinesis batches the mappings discarded, from their
/// invocation records under `aws/lambda/` in `bucket` (what the redrive would replay).
pub async fn discarded_orders_and_flags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<(usize, usize)> {
    use base64::Engine;
    let (mut orders, mut flags) = (0, 0);
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix("aws/lambda/")
        .send()
        .await
        .context("listing the failure records")?;
    for key in listed.contents().iter().filter_map(|o| o.key()) {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("reading failure record {key}"))?
            .body
            .collect()
            .await
            .with_context(|| format!("reading failure record {key}"))?
            .into_bytes();
        let record: Value = serde_json::from_slice(&body)
            .with_context(|| format!("failure record {key} is not JSON"))?;
        if record.get("KinesisBatchInfo").is_none() {
            continue;
        }
        let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap_or("{}"))
            .with_context(|| format!("failure record {key}: payload is not JSON"))?;
        for r in payload["Records"].as_array().into_iter().flatten() {
            let data = base64::engine::general_purpose::STANDARD
                .decode(r["kinesis"]["data"].as_str().unwrap_or_default())
                .unwrap_or_default();
            let legacy =
                serde_json::from_slice::<Value>(&data).is_ok_and(|v| v["dish"] == "CHANGE_FLAG");
            if change_protocol::ChangeFlag::parse(&data).is_some() || legacy {
                flags += 1;
            } else {
                orders += 1;
            }
        }
    }
    Ok((orders, flags))
}

/// Kinesis sequence numbers compared as numbers (they run up to 129 digits).
fn seq_key(seq: &str) -> (usize, &str) {
    (seq.len(), seq)
}

/// One shard's view of the S3 change: its flag, the first salad order after it and what that
/// order carried, and how many orders after the flag still carried the old value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlagEffect {
    /// The shard.
    pub shard: String,
    /// The flag's sequence number.
    pub flag_at: String,
    /// The first salad order after the flag: its sequence number and menu category.
    pub first_after: Option<(String, Option<String>)>,
    /// Salad orders after the flag written with a category other than `new`.
    pub old_after: usize,
}

impl Summary {
    /// Per shard, what the S3 change did to salad orders (`new` is the changed category).
    pub fn flag_effects(&self, new: &str) -> Vec<FlagEffect> {
        self.flags_at
            .iter()
            .map(|(shard, flag_at)| {
                let mut after: Vec<&OutputLine> = self
                    .output
                    .iter()
                    .filter(|l| {
                        l.shard == *shard
                            && l.item == "salad"
                            && seq_key(&l.sequence_number) > seq_key(flag_at)
                    })
                    .collect();
                after.sort_by(|a, b| seq_key(&a.sequence_number).cmp(&seq_key(&b.sequence_number)));
                FlagEffect {
                    shard: shard.clone(),
                    flag_at: flag_at.clone(),
                    first_after: after
                        .first()
                        .map(|l| (l.sequence_number.clone(), l.category.clone())),
                    old_after: after
                        .iter()
                        .filter(|l| l.category.as_deref() != Some(new))
                        .count(),
                }
            })
            .collect()
    }

    /// Table write to the first enriched burger=high record.
    pub fn propagation(&self) -> Option<Duration> {
        Some(self.first_high_burger_at?.saturating_sub(self.update_at?))
    }
}

fn add(total: &mut MetricsSnapshot, m: &MetricsSnapshot) {
    total.feed_lists += m.feed_lists;
    total.feed_gets += m.feed_gets;
    total.head_polls += m.head_polls;
    total.head_not_modified += m.head_not_modified;
    total.items_read += m.items_read;
    total.items_reread += m.items_reread;
    total.full_refreshes += m.full_refreshes;
    total.delta_refreshes += m.delta_refreshes;
    total.change_files_read += m.change_files_read;
    total.flags += m.flags;
}

/// Runs the walkthrough against `sdk`; `on_progress` is called about twice a second.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    options: &Options,
    on_progress: impl Fn(&Progress),
) -> Result<Summary> {
    let reference_key = format!("{}{REFERENCE_OBJECT}", names.reference_prefix);
    let names_ = names.clone();
    let (update_at, s3_change_at) = (options.update_at, options.s3_change_at);
    // The walkthrough's two changes, made while orders flow.
    let changes = move |c: Clients, started: Instant| async move {
        tokio::time::sleep_until(started + update_at).await;
        let update_at = started.elapsed();
        set_priority(&c.ddb, &names_.table, "burger", "high").await?;
        tokio::time::sleep_until(started + s3_change_at).await;
        let s3_at = started.elapsed();
        c.s3.put_object()
            .bucket(&names_.bucket)
            .key(&reference_key)
            .body(changed_reference_object().into_bytes().into())
            .send()
            .await
            .context("changing the reference object")?;
        anyhow::Ok(Changes {
            update_at: Some(update_at),
            s3_change_at: Some(s3_at),
        })
    };
    let duration = options.duration;
    drive(
        sdk,
        names,
        options.rate,
        options.drain_timeout,
        move |started| tokio::time::sleep_until(started + duration),
        changes,
        // The S3 change's flag, on every shard.
        true,
        on_progress,
    )
    .await
}

/// The interactive mode: the pipeline runs, orders flow, until `stop` completes (Ctrl-C in the
/// binary); the user changes the reference data with the AWS CLI meanwhile. Then the stream is
/// drained and the output read back, as at the end of [`run`].
pub async fn live(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    options: &LiveOptions,
    stop: impl Future<Output = ()>,
    on_progress: impl Fn(&Progress),
) -> Result<Summary> {
    drive(
        sdk,
        names,
        options.rate,
        options.drain_timeout,
        move |_| stop,
        |_, _| async { anyhow::Ok(Changes::default()) },
        false,
        on_progress,
    )
    .await
}

/// The reference object after the demo's S3 change: salad's category becomes
/// [`NEW_SALAD_CATEGORY`].
pub fn changed_reference_object() -> String {
    format!("item,category\nburger,mains\npizza,mains\nsalad,{NEW_SALAD_CATEGORY}\n")
}

/// Provisions, runs the functions behind their mappings while orders are generated until
/// `until(started)` completes and `changes` has made its changes, drains the stream (every order
/// consumed, and with `flag_on_every_shard` the S3 change's flag met on every shard), and reads
/// the output back.
#[allow(clippy::too_many_arguments)]
async fn drive<U, Ch, ChF>(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    rate: u32,
    drain_timeout: Duration,
    until: impl FnOnce(Instant) -> U,
    changes: Ch,
    flag_on_every_shard: bool,
    on_progress: impl Fn(&Progress),
) -> Result<Summary>
where
    U: Future<Output = ()>,
    Ch: FnOnce(Clients, Instant) -> ChF,
    ChF: Future<Output = Result<Changes>>,
{
    let c = Clients::new(sdk);
    let p = provision(&c, names).await?;

    let feed = |prefix: &str| FeedConfig {
        bucket: names.bucket.clone(),
        prefix: prefix.to_owned(),
        legacy_flag_key: None,
        write_window: Duration::from_secs(20),
    };
    let change_handler = ChangeHandler::new(FeedWriter::new(
        feed(&names.change_prefix),
        S3Store::new(c.s3.clone()),
        SystemClock,
        change_handler::PRODUCER,
    ));
    let s3_handler = S3EventHandler::new(
        s3_event_handler::Config {
            feed: feed(&names.change_prefix),
            flag_stream: names.stream.clone(),
            reference_prefix: names.reference_prefix.clone(),
            reference_bucket: Some(names.bucket.clone()),
            legacy_flag_payload: None,
        },
        S3Store::new(c.s3.clone()),
        KinesisStream::new(c.kinesis.clone(), names.stream.clone()),
        SystemClock,
    );
    let vars = consumer_variables(names);
    let consumer_config = orders_consumer::Config::from_lookup(&|v: &str| {
        vars.iter()
            .find(|(k, _)| *k == v)
            .map(|(_, value)| value.clone())
    })
    .context("the demo's orders-consumer variables")?;
    // One consumer per shard: each shard's batches run in their own Lambda environment.
    let consumers: Vec<_> = p
        .shards
        .iter()
        .map(|_| {
            OrdersConsumer::new(
                consumer_config.clone(),
                DynamoDbTable::new(c.ddb.clone(), names.table.clone()),
                S3Feed::new(c.s3.clone(), names.bucket.clone()),
                // As the binary writes its output (here to the emulator, over http).
                S3Store::new(c.s3.clone()).with_unsigned_payloads(),
            )
            .with_reference_objects(
                S3Feed::new(c.s3.clone(), names.bucket.clone()),
                S3Feed::new(c.s3.clone(), names.bucket.clone()),
            )
        })
        .collect();

    let started = Instant::now();
    let progress = Arc::new(Mutex::new(Progress::default()));
    let first_high = Arc::new(Mutex::new(None::<Duration>));
    let flags_at = Arc::new(Mutex::new(BTreeMap::<String, String>::new()));
    let (stop_tx, stop_rx) = watch::channel(false);

    // The template's event source mappings (batch sizes, starting positions) at Lambda's rates.
    let mappings = mappings();
    // Discarded batches go where infra/'s FailureBucket would hold them: Lambda's invocation
    // records under `aws/lambda/` (in the demo's one bucket), for the redrive to replay.
    let destination = |function: &str| {
        S3Destination::new(
            c.s3.clone(),
            names.bucket.clone(),
            format!("arn:aws:lambda:us-east-1:000000000000:function:{function}"),
        )
    };
    let table_mapping = DynamoDbStreamMapping::new(
        c.streams.clone(),
        p.table_stream_arn.clone(),
        mappings.change_handler,
    )
    .with_on_failure(destination("change-handler"));
    let queue_mapping = SqsMapping::new(
        c.sqs.clone(),
        p.queue_url.clone(),
        p.queue_arn.clone(),
        mappings.s3_event_handler,
    );
    let shard_config = mappings.orders_consumer;
    let shard_mappings: Vec<_> = p
        .shards
        .iter()
        .map(|s| {
            KinesisShardMapping::new(
                c.kinesis.clone(),
                names.stream.clone(),
                p.stream_arn.clone(),
                s.clone(),
                shard_config.clone(),
            )
            .with_on_failure(destination("orders-consumer"))
        })
        .collect();

    let mut request = 0u64;
    let table_task = table_mapping.run(
        |event: Value| {
            request += 1;
            let id = format!("local-{request}");
            let h = &change_handler;
            async move {
                Invocation::from_reported(h.handle(&event, &id).await.map(|r| {
                    r.batch_item_failures
                        .into_iter()
                        .filter_map(|f| f.item_identifier)
                        .collect()
                }))
            }
        },
        stop_rx.clone(),
    );
    let queue_task = queue_mapping.run(
        |event: Value| {
            let h = &s3_handler;
            async move {
                Invocation::from_reported(h.handle(&event, "local").await.map(|r| {
                    r.batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect()
                }))
            }
        },
        stop_rx.clone(),
    );
    let shard_tasks = join_all(
        shard_mappings
            .iter()
            .zip(&consumers)
            .map(|(mapping, consumer)| {
                let progress = progress.clone();
                let first_high = first_high.clone();
                let flags_at = flags_at.clone();
                mapping.run(
                    move |event: Value| {
                        let progress = progress.clone();
                        let first_high = first_high.clone();
                        let flags_at = flags_at.clone();
                        async move {
                            let result = consumer.handle_batch(&event).await;
                            if let Ok((_, summary)) = &result {
                                if summary.failed.is_none() {
                                    if let Some(seq) = summary.flags_at.last() {
                                        let shard = event["Records"][0]["eventID"]
                                            .as_str()
                                            .and_then(|id| id.split(':').next())
                                            .unwrap_or_default()
                                            .to_owned();
                                        flags_at
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .insert(shard, seq.clone());
                                    }
                                    let o = &summary.output;
                                    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                                    p.consumed += summary.records;
                                    p.enriched += o.enriched;
                                    p.unmatched += o.unmatched_dead_lettered + o.passed + o.dropped;
                                    p.rejected += o.invalid;
                                    p.flags += o.flags;
                                    p.burger_medium += o
                                        .partitions
                                        .get("item=burger/priority=medium/")
                                        .copied()
                                        .unwrap_or(0);
                                    let high = o
                                        .partitions
                                        .get("item=burger/priority=high/")
                                        .copied()
                                        .unwrap_or(0);
                                    p.burger_high += high;
                                    for (item, priority) in o.partition_values.values() {
                                        p.landing.insert(item.clone(), priority.clone());
                                    }
                                    if high > 0 {
                                        first_high
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .get_or_insert(started.elapsed());
                                    }
                                }
                            }
                            Invocation::from_reported(result.map(|(r, _)| {
                                r.batch_item_failures
                                    .into_iter()
                                    .filter_map(|f| f.item_identifier)
                                    .collect()
                            }))
                        }
                    },
                    stop_rx.clone(),
                )
            }),
    );

    let sent_count = Arc::new(Mutex::new(0usize));
    let shard_count = p.shards.len();
    let script = async {
        let generator = generate(
            &c.kinesis,
            &names.stream,
            rate,
            until(started),
            started,
            |_| {
                *sent_count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            },
        );
        let events = changes(c.clone(), started);
        let (sent, times) = tokio::join!(generator, events);
        let sent = sent?;
        let times = times?;
        // Drain: every order consumed, and (scripted) the S3 change's flag seen on every shard.
        let expected_flags = if flag_on_every_shard { shard_count } else { 0 };
        let deadline = Instant::now() + drain_timeout;
        loop {
            let (consumed, flags) = {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                (p.consumed, p.flags)
            };
            // A batch discarded after its last retry is accounted for (its orders and flags
            // are in the failure records, for the redrive), not waited for.
            let discarded: u64 = shard_mappings.iter().map(|m| m.discarded_records()).sum();
            let (lost_orders, lost_flags) = if discarded > 0 {
                discarded_orders_and_flags(&c.s3, &names.bucket).await?
            } else {
                (0, 0)
            };
            let orders = consumed.saturating_sub(flags) + lost_orders;
            if orders >= sent.len() && flags + lost_flags >= expected_flags {
                break;
            }
            if Instant::now() > deadline {
                let _ = stop_tx.send(true);
                bail!(
                    "the consumers processed {orders} of {} orders and met {flags} of {expected_flags} flags within {drain_timeout:?}",
                    sent.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = stop_tx.send(true);
        anyhow::Ok((sent, times))
    };
    let ticker = async {
        let mut stop = stop_rx.clone();
        loop {
            {
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.elapsed = started.elapsed();
                p.sent = *sent_count.lock().unwrap_or_else(|e| e.into_inner());
                on_progress(&p);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    };
    let (table_stats, queue_stats, shard_stats, script, ()) =
        tokio::join!(table_task, queue_task, shard_tasks, script, ticker);
    let (sent, changes) = script?;

    let mut summary = Summary {
        progress: progress.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        sent,
        update_at: changes.update_at,
        s3_change_at: changes.s3_change_at,
        flags_at: flags_at.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        first_high_burger_at: *first_high.lock().unwrap_or_else(|e| e.into_inner()),
        ..Summary::default()
    };
    summary.progress.elapsed = started.elapsed();
    summary
        .mappings
        .push(("change-handler (DynamoDB stream)".into(), table_stats?));
    summary
        .mappings
        .push(("s3-event-handler (SQS)".into(), queue_stats?));
    for (shard, stats) in p.shards.iter().zip(shard_stats) {
        summary
            .mappings
            .push((format!("orders-consumer ({shard})"), stats?));
    }
    for consumer in &consumers {
        add(&mut summary.consumer_requests, &consumer.metrics().await);
    }
    if !summary.failure_records().is_empty() {
        summary.discarded_orders = discarded_orders_and_flags(&c.s3, &names.bucket).await?.0;
    }
    read_back(&c.s3, names, &mut summary).await?;
    Ok(summary)
}

/// Reads the output and dead letters back from S3: what a downstream reader would see.
async fn read_back(s3: &aws_sdk_s3::Client, names: &Names, summary: &mut Summary) -> Result<()> {
    let mut pages = s3
        .list_objects_v2()
        .bucket(&names.bucket)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page?.contents() {
            let Some(key) = object.key() else { continue };
            if key.starts_with(&names.change_prefix) {
                if change_protocol::ChangeKey::parse(&names.change_prefix, key).is_ok() {
                    summary.change_files += 1;
                }
                continue;
            }
            let is_output = key.starts_with(&names.output_prefix);
            if !is_output && !key.starts_with(&names.dead_letter_prefix) {
                continue;
            }
            let body = s3
                .get_object()
                .bucket(&names.bucket)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if !is_output {
                    summary.dead_letters += 1;
                    continue;
                }
                let v: Value =
                    serde_json::from_slice(line).with_context(|| format!("a line of {key}"))?;
                let rest = &key[names.output_prefix.len()..];
                let partition = rest.rsplit_once('/').map_or(rest, |(p, _)| p).to_owned() + "/";
                *summary.partitions.entry(partition.clone()).or_default() += 1;
                let s = |f: &str| v[f].as_str().unwrap_or_default().to_owned();
                summary.output.push(OutputLine {
                    partition,
                    shard: s("shard"),
                    sequence_number: s("sequence_number"),
                    item: s("item"),
                    priority: v["priority"].as_str().map(str::to_owned),
                    category: v["menu"]["category"].as_str().map(str::to_owned),
                });
            }
        }
    }
    Ok(())
}
