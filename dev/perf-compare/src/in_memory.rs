//! Each consumer's own batch code with its AWS calls replaced by memory, timed on the same
//! event: the CPU a consumer spends on enrichment itself (decode, join, encode, build the
//! output objects), without the per-request cost of S3 that dominates the process figures.
//! Ours runs `OrdersConsumer::handle` in this process with an in-memory table, an empty feed
//! and an in-memory store (the same seams the tests use); the peer runs its `handler` under
//! `peer/bench_enrich.py` with its S3 client replaced by a stub and its table loaded once.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use orders_consumer::{Config, HandlerError, OrdersConsumer};
use serde_json::Value;
use stream_refdata::sources::{
    Conditional, DynamoDbTable, FeedSource, ListPage, ObjectBody, ObjectSource, ScanPage,
    SourceError, TableSource,
};
use stream_refdata_protocol::Item;
use test_support::MemoryStore;

use crate::world::World;

/// The whole table, read once.
#[derive(Clone, Debug)]
pub struct InMemoryTable {
    items: Arc<Vec<Item>>,
}

impl InMemoryTable {
    /// Reads every item of `source` (one segment).
    pub async fn read<T: TableSource>(source: &T) -> Result<InMemoryTable, SourceError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = source.scan_page(0, 1, start).await?;
            items.extend(page.items);
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        Ok(InMemoryTable {
            items: Arc::new(items),
        })
    }
}

impl TableSource for InMemoryTable {
    /// A table that is only ever scanned here; its feed is empty, so no stream is followed.
    async fn latest_stream_arn(&self) -> Result<Option<String>, SourceError> {
        Ok(None)
    }

    async fn scan_page(
        &self,
        segment: i32,
        _total: i32,
        _start: Option<Item>,
    ) -> Result<ScanPage, SourceError> {
        Ok(ScanPage {
            items: if segment == 0 {
                self.items.as_ref().clone()
            } else {
                Vec::new()
            },
            next: None,
        })
    }

    async fn batch_get(
        &self,
        _keys: Vec<Item>,
    ) -> Result<stream_refdata::sources::BatchGet, SourceError> {
        Ok(stream_refdata::sources::BatchGet::default())
    }
}

/// A change feed nobody writes to (and a bucket of no reference objects).
#[derive(Clone, Copy, Debug)]
pub struct EmptyFeed;

impl FeedSource for EmptyFeed {
    async fn list(&self, _: &str, _: &str, _: Option<String>) -> Result<ListPage, SourceError> {
        Ok(ListPage::default())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        Err(SourceError::new("GetObject", format!("no object {key}")))
    }

    async fn head_state(&self, _: &str, _: Option<&str>) -> Result<Conditional, SourceError> {
        Ok(Conditional::NotModified)
    }
}

/// Nor holds any reference object.
impl ObjectSource for EmptyFeed {
    async fn list(&self, _: &str, _: Option<String>) -> Result<ListPage, SourceError> {
        Ok(ListPage::default())
    }

    async fn get(&self, _: &str) -> Result<Option<ObjectBody>, SourceError> {
        Ok(None)
    }
}

/// Our consumer on `world`'s table read into memory (once), an empty feed and an in-memory
/// store.
async fn consumer(world: &World) -> Result<OrdersConsumer<InMemoryTable, EmptyFeed, MemoryStore>> {
    let table = InMemoryTable::read(&DynamoDbTable::new(
        aws_sdk_dynamodb::Client::new(&world.sdk),
        world.table.name.clone(),
    ))
    .await
    .map_err(|e| anyhow!("{e}"))?;
    let config = Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(world.table.name.clone()),
        "CHANGE_BUCKET" | "OUTPUT_BUCKET" => Some("memory".to_owned()),
        "FEED_POLL_INTERVAL_MS" => Some("0".to_owned()),
        _ => None,
    })?;
    Ok(OrdersConsumer::new(
        config,
        table,
        EmptyFeed,
        MemoryStore::new(),
    ))
}

/// CPU time per record of our consumer's batch code on `event`, over `reps` repetitions (after
/// one that loads the table). Single-threaded, so wall time on this thread is its CPU time.
pub async fn ours(world: &World, event: &Value, reps: usize) -> Result<Duration> {
    let consumer = consumer(world).await?;
    per_record(event, reps, || consumer.handle(event)).await
}

/// CPU time per record of our consumer's batch code on the JSON text of `event`, as the binary
/// gets it (`OrdersConsumer::handle_raw`), over `reps` repetitions after one that loads the
/// table: the floor phase's figure of our own code without the S3 requests.
pub async fn ours_raw(world: &World, event: &Value, reps: usize) -> Result<Duration> {
    let text = serde_json::to_string(event)?;
    let consumer = consumer(world).await?;
    per_record(event, reps, || consumer.handle_raw(&text)).await
}

/// Wall time per record of `event` of `reps` runs of `batch`, after a first run (which loads
/// the table).
async fn per_record<T, F: Future<Output = Result<T, HandlerError>>>(
    event: &Value,
    reps: usize,
    batch: impl Fn() -> F,
) -> Result<Duration> {
    batch().await.context("first batch")?;
    let records = event["Records"].as_array().map_or(0, Vec::len).max(1);
    let start = Instant::now();
    for _ in 0..reps {
        batch().await.context("batch")?;
    }
    Ok(start.elapsed() / (reps * records) as u32)
}

/// CPU time per record of the peer's handler on `event` (written to `event_path`), over `reps`
/// repetitions, measured by Python's `time.process_time()`.
pub async fn peer(world: &World, event: &Value, reps: usize) -> Result<Duration> {
    let dir = std::env::temp_dir().join(format!("perf-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let event_path = dir.join("event.json");
    std::fs::write(&event_path, serde_json::to_vec(event)?)?;
    let out = tokio::process::Command::new(&world.paths.python)
        .arg("bench_enrich.py")
        .arg(&event_path)
        .arg(reps.to_string())
        .current_dir(&world.paths.peer_dir)
        .env("AWS_ENDPOINT_URL", world.emulator.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("REFERENCE_TABLE", &world.table.name)
        .env("FLAG_BUCKET", "memory")
        .env("OUTPUT_BUCKET", "memory")
        .output()
        .await
        .context("running peer/bench_enrich.py")?;
    std::fs::remove_dir_all(&dir).ok();
    anyhow::ensure!(
        out.status.success(),
        "peer/bench_enrich.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let micros: f64 = text
        .trim()
        .parse()
        .with_context(|| format!("peer/bench_enrich.py printed {text:?}"))?;
    Ok(Duration::from_secs_f64(micros / 1e6))
}
