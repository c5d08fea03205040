//! The main job: the original walkthrough on the local pipeline, with a summary at the end.
//!
//! Orders stream into the 4-shard stream; one orders consumer per shard (as Lambda runs one
//! invocation per shard at a time) enriches them and writes `item=…/priority=…` partitions.
//! Midway the walkthrough's update (burger: medium → high) goes through the table's stream, the
//! change-handler and the change feed; later a reference object in S3 changes, and the
//! s3-event-handler puts a flag on every shard. Then a new dish goes on sale before its row
//! exists: its first orders are held (`UNMATCHED=hold`) and released into its partition once the
//! demo writes the row. At the end the output is read back from S3.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use change_handler::ChangeHandler;
use event_source_mappings::{
    kafka_failures, DynamoDbStreamMapping, Invocation, KafkaEventSource, KafkaPartitionMapping,
    KinesisShardMapping, MappingStats, S3Destination, SqsMapping,
};
use feed_writer::FeedConfig;
use futures_util::future::join_all;
use orders_consumer::DeployedConsumer;
use serde_json::Value;
use stream_refdata::MetricsSnapshot;
use stream_refdata_aws::S3Store;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::generator::{Generator, SentOrder, Sink};
use local_emulator::provision::{
    mappings, provision, set_priority, Clients, Names, Provisioned, REFERENCE_OBJECT,
};

/// How the scripted walkthrough runs: by count of orders, so it makes its changes at the same
/// places in the stream however busy the machine is.
#[derive(Clone, Debug)]
pub struct Options {
    /// Orders a second.
    pub rate: u32,
    /// Orders put (and consumed) before burger's priority changes from medium to high.
    pub update_after: usize,
    /// Orders put before the S3 reference object changes (and not before every shard's consumer
    /// wrote a burger with the new priority).
    pub s3_change_after: usize,
    /// Orders put after every shard met the S3 change's flag.
    pub orders_after_flags: usize,
    /// How long to wait for the consumers at each step (to consume the orders before the
    /// update, and to drain the stream at the end) before giving up.
    pub drain_timeout: Duration,
    /// Where the orders stream is: the 4-shard Kinesis stream, or a 4-partition Kafka topic.
    pub source: OrdersSource,
}

/// Where the orders stream is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OrdersSource {
    /// The Kinesis data stream infra/ declares (4 shards).
    #[default]
    Kinesis,
    /// A Kafka topic (4 partitions, on the broker at `bootstrap_servers`, as an MSK cluster's
    /// would be): the flags go to every partition, the orders consumer gets Lambda's MSK events.
    Kafka {
        /// The broker.
        bootstrap_servers: Vec<String>,
        /// The orders topic.
        topic: String,
    },
}

impl Default for Options {
    /// About 40 s at 40 orders a second: the update after 15 s of orders, the S3 change after
    /// 25 s.
    fn default() -> Self {
        Options {
            rate: 40,
            update_after: 600,
            s3_change_after: 1000,
            orders_after_flags: 600,
            drain_timeout: Duration::from_secs(60),
            source: OrdersSource::Kinesis,
        }
    }
}

/// The dish that goes on sale during the demo: its first orders arrive before its row, are
/// held (`UNMATCHED=hold`), and are released into its partition once the demo writes the row.
pub const NEW_DISH: &str = "ramen";

/// The priority the demo gives the new dish's row.
pub const NEW_DISH_PRIORITY: &str = "medium";

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
    /// Orders without a reference item dead-lettered when they came (the hold full).
    pub unmatched: usize,
    /// Orders without a reference item held when they came (`UNMATCHED=hold`): released,
    /// expired or still held.
    pub held: usize,
    /// Held orders released into their partitions once their row arrived.
    pub released: usize,
    /// Held orders dead-lettered past the grace period.
    pub expired: usize,
    /// Of the released orders, how long the longest was held.
    pub longest_held: Option<Duration>,
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
    /// Shards whose consumer enriched a salad order in a batch after the one with its last flag.
    pub shards_with_salad_after_flag: usize,
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
    /// Where the orders stream is.
    pub source: OrdersSource,
}

/// The scripted changes: when the demo made them, and where in the orders.
#[derive(Clone, Copy, Debug, Default)]
struct Changes {
    update_at: Option<Duration>,
    updated_after: Option<usize>,
    applied_after: Option<usize>,
    s3_change_at: Option<Duration>,
    new_dish_row_at: Option<Duration>,
    new_dish_before_row: Option<usize>,
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
    /// How many orders were put (and consumed) before the update.
    pub updated_after: Option<usize>,
    /// How many orders were put before every shard's consumer had written a burger with the
    /// new priority: every later order is enriched with it.
    pub applied_after: Option<usize>,
    /// When the first burger order was written to priority=high.
    pub first_high_burger_at: Option<Duration>,
    /// When the S3 reference object was changed.
    pub s3_change_at: Option<Duration>,
    /// When the new dish's row was written.
    pub new_dish_row_at: Option<Duration>,
    /// Orders of the new dish put before its row was written.
    pub new_dish_before_row: Option<usize>,
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
        // Orders without a row wait for it (the new dish's first orders), 15 minutes at most.
        ("UNMATCHED", "hold".into()),
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
            stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX.into(),
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
            if stream_refdata_protocol::ChangeFlag::parse(&data).is_some() || legacy {
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

/// Runs the scripted walkthrough against `sdk`; `on_progress` is called about twice a second.
/// It is driven by count of orders ([`Options`]), so it makes its changes at the same places
/// in the stream on a quiet machine and on a busy one.
pub async fn run(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    options: &Options,
    on_progress: impl Fn(&Progress),
) -> Result<Summary> {
    drive(
        sdk,
        names,
        Script::<std::future::Pending<()>>::Walkthrough(options.clone()),
        options.rate,
        options.drain_timeout,
        &options.source,
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
        Script::Live(stop),
        options.rate,
        options.drain_timeout,
        &options.source,
        on_progress,
    )
    .await
}

/// The reference object after the demo's S3 change: salad's category becomes
/// [`NEW_SALAD_CATEGORY`].
pub fn changed_reference_object() -> String {
    format!("item,category\nburger,mains\npizza,mains\nsalad,{NEW_SALAD_CATEGORY}\n")
}

/// What orders flow for: the scripted walkthrough, or until a stop (the interactive mode).
enum Script<S> {
    Walkthrough(Options),
    Live(S),
}

/// The functions as deployed, each built through its crate's composition root: one
/// change-handler, one s3-event-handler, and one orders consumer per shard (each shard's
/// batches run in their own Lambda environment).
struct Functions {
    change_handler: ChangeHandler<S3Store>,
    s3_handler: s3_event_handler::DeployedHandler,
    consumers: Vec<DeployedConsumer>,
}

/// Builds the functions with the configuration infra/ gives them.
fn functions(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    shards: usize,
    source: &OrdersSource,
) -> Result<Functions> {
    let feed = || FeedConfig {
        bucket: names.bucket.clone(),
        prefix: names.change_prefix.clone(),
        legacy_flag_key: None,
        write_window: Duration::from_secs(20),
    };
    let s3_config = s3_event_handler::Config {
        feed: feed(),
        flags: match source {
            OrdersSource::Kinesis => s3_event_handler::FlagTarget::Kinesis(names.stream.clone()),
            OrdersSource::Kafka {
                bootstrap_servers,
                topic,
            } => s3_event_handler::FlagTarget::Kafka(s3_event_handler::KafkaTarget {
                bootstrap_servers: bootstrap_servers.clone(),
                topic: topic.clone(),
                auth: s3_event_handler::KafkaAuth::None,
            }),
        },
        reference_prefix: names.reference_prefix.clone(),
        reference_bucket: Some(names.bucket.clone()),
        legacy_flag_payload: None,
    };
    let vars = consumer_variables(names);
    let consumer_config = orders_consumer::Config::from_lookup(&|v: &str| {
        vars.iter()
            .find(|(k, _)| *k == v)
            .map(|(_, value)| value.clone())
    })
    .context("the demo's orders-consumer variables")?;
    Ok(Functions {
        change_handler: change_handler::deployed(feed(), sdk),
        s3_handler: s3_event_handler::deployed(s3_config, sdk),
        consumers: (0..shards)
            .map(|_| orders_consumer::deployed(consumer_config.clone(), sdk))
            .collect(),
    })
}

/// The template's event source mappings (batch sizes, starting positions) at Lambda's rates.
struct Mappings {
    table: DynamoDbStreamMapping,
    queue: SqsMapping,
    shards: Vec<KinesisShardMapping>,
    /// With the orders on Kafka: one per partition (and no shard's).
    partitions: Vec<KafkaPartitionMapping>,
}

impl Mappings {
    /// Orders records the consumers' mappings discarded so far.
    fn discarded_records(&self) -> u64 {
        let shards: u64 = self.shards.iter().map(|m| m.discarded_records()).sum();
        let partitions: u64 = self.partitions.iter().map(|m| m.discarded_records()).sum();
        shards + partitions
    }
}

/// The orders topic's partitions, and a client of its broker.
struct KafkaOrders {
    client: Arc<rskafka::client::Client>,
    bootstrap_servers: Vec<String>,
    topic: String,
    partitions: Vec<i32>,
}

async fn kafka_orders(source: &OrdersSource) -> Result<Option<KafkaOrders>> {
    let OrdersSource::Kafka {
        bootstrap_servers,
        topic,
    } = source
    else {
        return Ok(None);
    };
    let client = rskafka::client::ClientBuilder::new(bootstrap_servers.clone())
        .build()
        .await
        .context("connecting to the Kafka broker")?;
    let partitions: Vec<i32> = (client.list_topics().await.context("listing Kafka topics")?)
        .into_iter()
        .find(|t| t.name == *topic)
        .map(|t| t.partitions.into_iter().collect())
        .with_context(|| format!("the Kafka topic {topic} does not exist"))?;
    Ok(Some(KafkaOrders {
        client: Arc::new(client),
        bootstrap_servers: bootstrap_servers.clone(),
        topic: topic.clone(),
        partitions,
    }))
}

fn event_source_mappings(
    c: &Clients,
    names: &Names,
    p: &Provisioned,
    kafka: Option<&KafkaOrders>,
) -> Mappings {
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
    Mappings {
        table: DynamoDbStreamMapping::new(
            c.streams.clone(),
            p.table_stream_arn.clone(),
            mappings.change_handler,
        )
        .with_on_failure(destination("change-handler")),
        queue: SqsMapping::new(
            c.sqs.clone(),
            p.queue_url.clone(),
            p.queue_arn.clone(),
            mappings.s3_event_handler,
        ),
        shards: (if kafka.is_some() {
            &[][..]
        } else {
            &p.shards[..]
        })
        .iter()
        .map(|s| {
            KinesisShardMapping::new(
                c.kinesis.clone(),
                names.stream.clone(),
                p.stream_arn.clone(),
                s.clone(),
                mappings.orders_consumer.clone(),
            )
            .with_on_failure(destination("orders-consumer"))
        })
        .collect(),
        // (the template's consumer settings, as for the shards; a Kafka mapping's default
        // batching window)
        partitions: (kafka.iter())
            .flat_map(|k| {
                k.partitions.iter().map(|&partition| {
                    KafkaPartitionMapping::new(
                        Arc::clone(&k.client),
                        KafkaEventSource::Msk {
                            cluster_arn: format!(
                                "arn:aws:kafka:us-east-1:000000000000:cluster/{}/local",
                                k.topic
                            ),
                        },
                        k.bootstrap_servers.join(","),
                        k.topic.clone(),
                        partition,
                        mappings.orders_consumer.clone(),
                    )
                    .with_on_failure(destination("orders-consumer"))
                })
            })
            .collect(),
    }
}

/// What the consumers' batches showed while the demo ran.
#[derive(Debug, Default)]
struct Observed {
    progress: Progress,
    /// Per shard, the sequence number of the last flag met.
    flags_at: BTreeMap<String, String>,
    /// Shards whose consumer wrote a burger order to priority=high.
    high_shards: BTreeSet<String>,
    /// Shards whose consumer enriched a salad in a batch after the one with its last flag.
    salad_after_flag: BTreeSet<String>,
    first_high_burger_at: Option<Duration>,
}

impl Observed {
    /// Counts one orders-consumer batch of `shard` that completed.
    fn batch(&mut self, shard: String, summary: &orders_consumer::BatchSummary, at: Duration) {
        let o = &summary.output;
        if let Some(seq) = summary.flags_at.last() {
            self.flags_at.insert(shard.clone(), seq.clone());
            self.salad_after_flag.remove(&shard);
        } else if self.flags_at.contains_key(&shard)
            && o.partition_values.values().any(|(item, _)| item == "salad")
        {
            self.salad_after_flag.insert(shard.clone());
        }
        self.progress.shards_with_salad_after_flag = self.salad_after_flag.len();
        let p = &mut self.progress;
        p.consumed += summary.records;
        p.enriched += o.enriched;
        p.unmatched += o.unmatched_dead_lettered + o.passed + o.dropped + o.hold_full;
        p.held += o.held;
        p.released += o.released;
        p.expired += o.expired;
        if let Some(ms) = o.longest_held_ms {
            let held = Duration::from_millis(ms);
            p.longest_held = Some(p.longest_held.map_or(held, |l| l.max(held)));
        }
        p.rejected += o.invalid + o.too_stale;
        p.flags += o.flags;
        let burgers = |priority: &str| {
            o.partitions
                .get(&format!("item=burger/priority={priority}/"))
                .copied()
                .unwrap_or(0)
        };
        p.burger_medium += burgers("medium");
        let high = burgers("high");
        p.burger_high += high;
        for (item, priority) in o.partition_values.values() {
            p.landing.insert(item.clone(), priority.clone());
        }
        if high > 0 {
            self.high_shards.insert(shard);
            self.first_high_burger_at.get_or_insert(at);
        }
    }
}

/// The running demo as its script sees it: the generator, what the consumers showed, and the
/// scripted changes made so far.
struct Run<'a> {
    c: &'a Clients,
    names: &'a Names,
    shards: usize,
    started: Instant,
    patience: Duration,
    generator: Generator,
    observed: &'a Mutex<Observed>,
    changes: Changes,
}

impl Run<'_> {
    fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts orders until `done(orders put, what the consumers showed)`; gives up (an error
    /// naming `what`) when that has not happened within the patience.
    async fn send_until(
        &mut self,
        what: &str,
        done: impl Fn(usize, &Observed) -> bool,
    ) -> Result<()> {
        let observed = self.observed;
        let lock = || observed.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + self.patience;
        let mut reached = false;
        self.generator
            .send_until(
                |sent| {
                    reached = done(sent, &lock());
                    reached || Instant::now() > deadline
                },
                &mut |_| lock().progress.sent += 1,
            )
            .await?;
        if !reached {
            bail!("sent orders for {:?} without {what}", self.patience);
        }
        Ok(())
    }

    /// Waits (orders not flowing) until `done` holds; gives up after the drain timeout.
    async fn wait_until(&self, what: &str, done: impl Fn(&Observed) -> bool) -> Result<()> {
        let deadline = Instant::now() + self.patience;
        while !done(&self.observed()) {
            if Instant::now() > deadline {
                bail!("waited {:?} for {what}", self.patience);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The walkthrough's script, by count of orders: orders with the old values, all consumed;
    /// the table update; orders until every shard's consumer wrote a burger with the new
    /// priority; orders up to the S3 change; orders until every shard met its flag, and more.
    async fn walkthrough(&mut self, o: &Options) -> Result<()> {
        let shards = self.shards;
        self.send_until("the orders before the update", |sent, _| {
            sent >= o.update_after
        })
        .await?;
        let before = self.generator.sent().len();
        self.wait_until("the orders before the update to be consumed", |w| {
            w.progress.consumed >= before
        })
        .await?;
        self.changes.updated_after = Some(before);
        self.changes.update_at = Some(self.started.elapsed());
        set_priority(&self.c.ddb, &self.names.table, "burger", "high").await?;

        self.send_until("every consumer applying the update", |_, w| {
            w.high_shards.len() >= shards
        })
        .await?;
        self.changes.applied_after = Some(self.generator.sent().len());

        self.send_until("the orders before the S3 change", |sent, _| {
            sent >= o.s3_change_after
        })
        .await?;
        self.changes.s3_change_at = Some(self.started.elapsed());
        let reference_key = format!("{}{REFERENCE_OBJECT}", self.names.reference_prefix);
        self.c
            .s3
            .put_object()
            .bucket(&self.names.bucket)
            .key(&reference_key)
            .body(changed_reference_object().into_bytes().into())
            .send()
            .await
            .context("changing the reference object")?;

        self.send_until("the flag on every shard", |_, w| w.flags_at.len() >= shards)
            .await?;

        // A dish goes on sale before its row exists: its first orders are held, then released
        // into its partition once the row is written.
        self.generator.add_dish(NEW_DISH);
        let new_dish_sent = |g: &Generator| g.sent().iter().filter(|o| o.dish == NEW_DISH).count();
        let target = self.generator.sent().len() + 40;
        self.send_until("the new dish's first orders", |sent, _| sent >= target)
            .await?;
        let put = self.generator.sent().len();
        self.wait_until("the new dish's first orders to be consumed", |w| {
            w.progress.consumed >= put + w.progress.flags
        })
        .await?;
        let before_row = new_dish_sent(&self.generator);
        self.changes.new_dish_before_row = Some(before_row);
        self.changes.new_dish_row_at = Some(self.started.elapsed());
        set_priority(&self.c.ddb, &self.names.table, NEW_DISH, NEW_DISH_PRIORITY).await?;
        self.send_until("the new dish's held orders released", |_, w| {
            w.progress.released >= before_row
        })
        .await?;
        let target = self.generator.sent().len() + o.orders_after_flags;
        self.send_until("the orders after the flags", |sent, _| sent >= target)
            .await
    }

    /// Waits until every order put is consumed and, with `expected_flags`, that many flags
    /// met; a batch discarded after its last retry is accounted for (its orders and flags are
    /// in the failure records, for the redrive), not waited for.
    async fn drain(&self, mappings: &Mappings, expected_flags: usize) -> Result<()> {
        let sent = self.generator.sent().len();
        let deadline = Instant::now() + self.patience;
        loop {
            let (consumed, flags) = {
                let o = self.observed();
                (o.progress.consumed, o.progress.flags)
            };
            let discarded: u64 = mappings.discarded_records();
            let (lost_orders, lost_flags) = if discarded > 0 {
                discarded_orders_and_flags(&self.c.s3, &self.names.bucket).await?
            } else {
                (0, 0)
            };
            let orders = consumed.saturating_sub(flags) + lost_orders;
            if orders >= sent && flags + lost_flags >= expected_flags {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the consumers processed {orders} of {sent} orders and met {flags} of {expected_flags} flags within {:?}",
                    self.patience
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The topic-partition a Kafka event's records came from (its one group's name).
fn partition_of(event: &Value) -> String {
    (event["records"].as_object())
        .and_then(|r| r.keys().next().cloned())
        .unwrap_or_default()
}

/// The shard a Kinesis event's records came from (`shardId:sequenceNumber` event ids).
fn shard_of(event: &Value) -> String {
    event["Records"][0]["eventID"]
        .as_str()
        .and_then(|id| id.split(':').next())
        .unwrap_or_default()
        .to_owned()
}

/// The demo in its steps: provision, functions, mappings, generate (the script), drain,
/// summarise.
async fn drive<S: Future<Output = ()>>(
    sdk: &aws_config::SdkConfig,
    names: &Names,
    script: Script<S>,
    rate: u32,
    patience: Duration,
    source: &OrdersSource,
    on_progress: impl Fn(&Progress),
) -> Result<Summary> {
    let c = Clients::new(sdk);
    let p = provision(&c, names).await?;
    let kafka = kafka_orders(source).await?;
    // (one consumer per shard, or per partition: each runs in its own Lambda environment)
    let streams: Vec<String> = match &kafka {
        None => p.shards.clone(),
        Some(k) => (k.partitions.iter())
            .map(|p| format!("{}-{p}", k.topic))
            .collect(),
    };
    let f = functions(sdk, names, streams.len(), source)?;
    let m = event_source_mappings(&c, names, &p, kafka.as_ref());

    let started = Instant::now();
    let observed = Mutex::new(Observed::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut request = 0u64;
    let table_task = m.table.run(
        |event: Value| {
            request += 1;
            let id = format!("local-{request}");
            let h = &f.change_handler;
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
    let queue_task = m.queue.run(
        |event: Value| {
            let h = &f.s3_handler;
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
    let observed_ = &observed;
    let shard_tasks = join_all(
        m.shards
            .iter()
            .zip(&f.consumers)
            .map(|(mapping, consumer)| {
                mapping.run(
                    move |event: Value| async move {
                        let result = consumer.handle_batch(&event).await;
                        if let Ok((_, summary)) = &result {
                            if summary.failed.is_none() {
                                observed_.lock().unwrap_or_else(|e| e.into_inner()).batch(
                                    shard_of(&event),
                                    summary,
                                    started.elapsed(),
                                );
                            }
                        }
                        Invocation::from_reported(result.map(|(r, _)| {
                            r.batch_item_failures
                                .into_iter()
                                .filter_map(|f| f.item_identifier)
                                .collect()
                        }))
                    },
                    stop_rx.clone(),
                )
            }),
    );
    let partition_tasks = join_all(m.partitions.iter().zip(&f.consumers).map(
        |(mapping, consumer)| {
            let name = mapping.partition_name();
            mapping.run(
                move |event: Value| {
                    let name = name.clone();
                    async move {
                        // (parsed from its text, as the binary parses its payload)
                        let result = match serde_json::from_str(&event.to_string()) {
                            Ok(parsed) => consumer.handle_any(parsed).await,
                            Err(e) => Err(orders_consumer::HandlerError::InvalidKafkaEvent(e)),
                        };
                        if let Ok((_, summary)) = &result {
                            if summary.failed.is_none() {
                                observed_.lock().unwrap_or_else(|e| e.into_inner()).batch(
                                    partition_of(&event),
                                    summary,
                                    started.elapsed(),
                                );
                            }
                        }
                        Invocation::from_reported(result.map(|(r, _)| {
                            let r = serde_json::to_value(r).unwrap_or_default();
                            kafka_failures(&r, &name)
                        }))
                    }
                },
                stop_rx.clone(),
            )
        },
    ));
    let sink = match &kafka {
        None => Sink::Kinesis {
            client: c.kinesis.clone(),
            stream: names.stream.clone(),
        },
        Some(k) => Sink::Kafka {
            client: Arc::clone(&k.client),
            topic: k.topic.clone(),
            partitions: k.partitions.clone(),
        },
    };

    let mut run = Run {
        c: &c,
        names,
        shards: streams.len(),
        started,
        patience,
        generator: Generator::new(sink, rate, started),
        observed: &observed,
        changes: Changes::default(),
    };
    let script = async {
        let expected_flags = match script {
            Script::Walkthrough(options) => {
                run.walkthrough(&options).await?;
                run.shards
            }
            Script::Live(stop) => {
                let observed = &observed;
                run.generator
                    .send_while(stop, &mut |_| {
                        observed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .progress
                            .sent += 1
                    })
                    .await?;
                0
            }
        };
        let drained = run.drain(&m, expected_flags).await;
        let _ = stop_tx.send(true);
        drained?;
        anyhow::Ok(run)
    };
    let ticker = async {
        let mut stop = stop_rx.clone();
        loop {
            {
                let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
                o.progress.elapsed = started.elapsed();
                on_progress(&o.progress);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    };
    let (table_stats, queue_stats, shard_stats, partition_stats, run, ()) = tokio::join!(
        table_task,
        queue_task,
        shard_tasks,
        partition_tasks,
        script,
        ticker
    );
    let run = run?;
    let changes = run.changes;
    let sent = run.generator.into_sent();

    let observed = observed.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut summary = Summary {
        progress: observed.progress,
        sent,
        update_at: changes.update_at,
        updated_after: changes.updated_after,
        applied_after: changes.applied_after,
        s3_change_at: changes.s3_change_at,
        new_dish_row_at: changes.new_dish_row_at,
        new_dish_before_row: changes.new_dish_before_row,
        flags_at: observed.flags_at,
        first_high_burger_at: observed.first_high_burger_at,
        ..Summary::default()
    };
    summary.progress.elapsed = started.elapsed();
    summary
        .mappings
        .push(("change-handler (DynamoDB stream)".into(), table_stats?));
    summary
        .mappings
        .push(("s3-event-handler (SQS)".into(), queue_stats?));
    let consumer_stats = shard_stats.into_iter().chain(partition_stats);
    for (shard, stats) in streams.iter().zip(consumer_stats) {
        summary
            .mappings
            .push((format!("orders-consumer ({shard})"), stats?));
    }
    for consumer in &f.consumers {
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
                if stream_refdata_protocol::ChangeKey::parse(&names.change_prefix, key).is_ok() {
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
