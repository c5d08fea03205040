//! The shared emulator, table, bucket and streams of a comparison run, and the functions of
//! both sides started against it, each through its own request-counting proxy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, StreamViewType, WriteRequest};
use local_emulator::LocalEmulator;
use test_support::{HttpFaultProxy, ReferenceTable, ORIGINAL_ITEMS};

use crate::{FunctionSpec, LocalFunction};

/// The name of the `n`th synthetic reference item (beyond the original five).
pub fn synthetic_item(n: usize) -> String {
    format!("dish-{n:06}")
}

/// The emulator and the resources every scenario shares.
pub struct World {
    /// Keeps the emulator running (stopped on drop if this run started it).
    pub emulator: LocalEmulator,
    /// SDK configuration for the harness's own calls.
    pub sdk: aws_config::SdkConfig,
    /// The reference table (`item`, `price`; stream NEW_AND_OLD_IMAGES as infra/ deploys it).
    pub table: ReferenceTable,
    /// Items in the table.
    pub items: usize,
    /// The bucket for change files, the peer's flag and both outputs.
    pub bucket: String,
    /// S3 client (path-style).
    pub s3: aws_sdk_s3::Client,
    /// Kinesis client.
    pub kinesis: aws_sdk_kinesis::Client,
    /// DynamoDB Streams client.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// Where the binaries and the peer are.
    pub paths: Paths,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("endpoint", &self.emulator.endpoint())
            .field("table", &self.table.name)
            .field("items", &self.items)
            .finish()
    }
}

/// Where the functions' programs are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The directory of our binaries (`orders-consumer`, `change-handler`, …, `lambda-hello`).
    pub bin_dir: PathBuf,
    /// The Python interpreter that has boto3 and awslambdaric.
    pub python: PathBuf,
    /// The peer's modules.
    pub peer_dir: PathBuf,
}

impl Paths {
    /// Our binaries in `bin_dir`; the repository's `.venv` Python and `peer/` directory.
    pub fn in_repository(bin_dir: PathBuf) -> Paths {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Paths {
            bin_dir,
            python: root.join("../../.venv/bin/python"),
            peer_dir: root.join("peer"),
        }
    }
}

/// A function process and the proxy that counts its AWS requests.
pub struct Counted {
    /// The process.
    pub function: LocalFunction,
    /// Its requests to the emulator.
    pub proxy: HttpFaultProxy,
    /// Start to ready.
    pub startup: Duration,
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted")
            .field("function", &self.function.name())
            .field("startup", &self.startup)
            .finish()
    }
}

impl Counted {
    /// Invokes the function with `event`; an error if it failed or reported failed records.
    pub async fn invoke_ok(&self, event: &serde_json::Value) -> Result<crate::Invoked> {
        let name = self.function.name();
        let invoked = self
            .function
            .invoke(event)
            .await
            .map_err(anyhow::Error::msg)?;
        let response = invoked
            .json()
            .map_err(|e| anyhow::anyhow!("{name} failed: {e}"))?;
        let failures = response
            .get("batchItemFailures")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        anyhow::ensure!(failures == 0, "{name} reported failures: {response}");
        Ok(invoked)
    }

    /// Requests forwarded, by `service/operation`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.proxy.counts() {
            let key = k
                .rsplit_once('/')
                .map_or(k.as_str(), |(op, _)| op)
                .to_owned();
            *out.entry(key).or_insert(0) += v;
        }
        out
    }

    /// All requests forwarded.
    pub fn total_requests(&self) -> u64 {
        self.proxy.counts().values().sum()
    }

    /// DynamoDB items read, all operations.
    pub fn items_read(&self) -> u64 {
        self.proxy.items_read().values().sum()
    }
}

impl World {
    /// Starts (or connects to) the emulator and creates a table of `items` items: the original
    /// five, then synthetic ones, written with BatchWriteItem.
    pub async fn create(items: usize, paths: Paths) -> Result<World> {
        let emulator = LocalEmulator::connect_or_start().context("starting the emulator")?;
        let sdk = emulator.sdk_config().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let table = ReferenceTable::create(&ddb, StreamViewType::NewAndOldImages).await;
        table.seed().await;
        let synthetic = items.saturating_sub(ORIGINAL_ITEMS.len());
        let priorities = ["low", "medium", "high", "very high"];
        for chunk in (0..synthetic).collect::<Vec<_>>().chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|&n| {
                    let put = PutRequest::builder()
                        .item("item", AttributeValue::S(synthetic_item(n)))
                        .item("price", AttributeValue::N(format!("{}", 10 + n % 90)))
                        .item("priority", AttributeValue::S(priorities[n % 4].into()))
                        .build()
                        .expect("put request");
                    WriteRequest::builder().put_request(put).build()
                })
                .collect();
            while !requests.is_empty() {
                let out = ddb
                    .batch_write_item()
                    .request_items(&table.name, requests)
                    .send()
                    .await
                    .context("seeding the table")?;
                requests = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&table.name))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        let s3 = stream_refdata_aws::s3_client(&sdk);
        let bucket = test_support::unique_name("comparison");
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .context("creating the bucket")?;
        Ok(World {
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
            emulator,
            sdk,
            table,
            items: items.max(ORIGINAL_ITEMS.len()),
            bucket,
            s3,
            paths,
        })
    }

    /// Starts `spec` with the emulator behind a fresh counting proxy, and waits until it is
    /// ready for its first event.
    pub async fn start(&self, mut spec: FunctionSpec) -> Result<Counted> {
        let proxy = HttpFaultProxy::start(self.emulator.endpoint(), 0).await;
        spec.env.extend(
            [
                ("AWS_ENDPOINT_URL", proxy.endpoint()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let function = LocalFunction::spawn(spec).await?;
        let startup = function
            .ready(Duration::from_secs(60))
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(Counted {
            function,
            proxy,
            startup,
        })
    }

    fn ours(&self, name: &str, env: &[(&str, String)]) -> FunctionSpec {
        FunctionSpec {
            name: name.to_owned(),
            program: self.paths.bin_dir.join(name),
            args: Vec::new(),
            cwd: None,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn peer(&self, name: &str, handler: &str, env: &[(&str, String)]) -> FunctionSpec {
        FunctionSpec {
            name: name.to_owned(),
            program: self.paths.python.clone(),
            args: vec!["-m".into(), "awslambdaric".into(), handler.into()],
            cwd: Some(self.paths.peer_dir.clone()),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    /// Our orders consumer, writing under `output_prefix`, checking the change feed at most
    /// every `feed_poll_ms` milliseconds (0: every batch).
    pub fn our_consumer(&self, output_prefix: &str, feed_poll_ms: u64) -> FunctionSpec {
        let mut spec = self.ours(
            "orders-consumer",
            &[
                ("FEED_POLL_INTERVAL_MS", feed_poll_ms.to_string()),
                ("REFERENCE_TABLE", self.table.name.clone()),
                ("CHANGE_BUCKET", self.bucket.clone()),
                ("OUTPUT_BUCKET", self.bucket.clone()),
                ("OUTPUT_PREFIX", output_prefix.to_owned()),
                ("DEAD_LETTER_PREFIX", format!("{output_prefix}dead-letter/")),
            ],
        );
        // Its allocator's settings, as infra/ deploys it.
        spec.env.extend(
            orders_consumer::ALLOCATOR_ENVIRONMENT
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        spec
    }

    /// Our change-handler.
    pub fn our_change_handler(&self) -> FunctionSpec {
        self.ours("change-handler", &[("CHANGE_BUCKET", self.bucket.clone())])
    }

    /// Our S3-event handler, putting flags into `stream`. Its change files go to a feed of
    /// their own (`reference-changes/`): the orders consumer follows the table's feed, and
    /// would fetch (then skip) every S3-kind file in a shared one.
    pub fn our_s3_event_handler(&self, stream: &str) -> FunctionSpec {
        self.ours(
            "s3-event-handler",
            &[
                ("CHANGE_BUCKET", self.bucket.clone()),
                ("CHANGE_PREFIX", "reference-changes/".to_owned()),
                ("FLAG_STREAM", stream.to_owned()),
                ("REFERENCE_PREFIX", "reference/".to_owned()),
            ],
        )
    }

    /// The minimal `lambda_runtime` function.
    pub fn hello(&self) -> FunctionSpec {
        self.ours("lambda-hello", &[])
    }

    /// The floor of our consumer's CPU per record (`consumer-floor`): the standard Kinesis
    /// event types and a decode and encode of each order, nothing else.
    pub fn consumer_floor(&self) -> FunctionSpec {
        self.ours("consumer-floor", &[])
    }

    /// The peer's consumer (the Glue job's logic), writing under `output_prefix` and watching
    /// the flag object `flag_key`.
    pub fn peer_consumer(&self, output_prefix: &str, flag_key: &str) -> FunctionSpec {
        self.peer(
            "peer-consumer",
            "consumer.handler",
            &[
                ("REFERENCE_TABLE", self.table.name.clone()),
                ("FLAG_BUCKET", self.bucket.clone()),
                ("FLAG_KEY", flag_key.to_owned()),
                ("OUTPUT_BUCKET", self.bucket.clone()),
                ("OUTPUT_PREFIX", output_prefix.to_owned()),
            ],
        )
    }

    /// The peer's change Lambda, writing the fixed flag object `flag_key`.
    pub fn peer_flag_lambda(&self, flag_key: &str) -> FunctionSpec {
        self.peer(
            "peer-flag-lambda",
            "flag_lambda.handler",
            &[
                ("FLAG_BUCKET", self.bucket.clone()),
                ("FLAG_KEY", flag_key.to_owned()),
            ],
        )
    }
}
