//! The orders consumer against the emulator: a real reference table (the original's five items)
//! and an empty change feed, the sample Kinesis event; output to an in-memory store (failure
//! injection). The consumer following changes that the real change-handler writes is a
//! cross-crate scenario, in the workspace's `tests/orders_consumer_feed.rs`.

use std::time::Duration;

use base64::Engine;

use aws_sdk_dynamodb::types::StreamViewType;
use orders_consumer::{Config, OrdersConsumer, ReferenceObjects};
use serde_json::Value;
use stream_refdata::sources::{DynamoDbTable, S3Feed};
use stream_refdata::Unmatched;
use stream_refdata_aws::s3_client;
use test_support::{sample_event, sdk_config, unique_name, MemoryStore, ReferenceTable};

fn sample() -> Value {
    sample_event("example-kinesis-orders.json")
}

/// The reference table with the original's five items, an empty feed bucket, and the store
/// the consumers write to.
pub(crate) struct Rig {
    table: ReferenceTable,
    bucket: String,
    sdk: aws_config::SdkConfig,
    pub(crate) store: MemoryStore,
}

pub(crate) async fn rig() -> Rig {
    let sdk = sdk_config().await;
    let s3 = s3_client(&sdk);
    let table = ReferenceTable::create(
        &aws_sdk_dynamodb::Client::new(&sdk),
        StreamViewType::NewAndOldImages,
    )
    .await;
    table.seed().await;
    let bucket = unique_name("demo-bucket");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    Rig {
        table,
        bucket,
        sdk,
        store: MemoryStore::new(),
    }
}

impl Rig {
    pub(crate) fn config(&self, unmatched: Unmatched) -> Config {
        Config {
            reference_table: self.table.name.clone(),
            key_attributes: vec!["item".into(), "price".into()],
            change_bucket: self.bucket.clone(),
            change_prefix: "change_flags/".into(),
            output_bucket: "out".into(),
            output_prefix: "enriched/".into(),
            dead_letter_prefix: "dead-letter/".into(),
            unmatched,
            hold: None,
            legacy_flag_dish: "CHANGE_FLAG".into(),
            write_window: Duration::from_secs(20),
            max_staleness: Duration::from_secs(900),
            feed_poll_interval: Duration::from_secs(1),
            feed_retention: Duration::from_secs(7 * 24 * 3600),
            reference_objects: None,
            catalog: None,
            as_of: None,
            daily_snapshot_prefix: None,
            snapshot_prefix: None,
        }
    }

    /// A consumer of `config` writing to the rig's store.
    pub(crate) fn consumer(
        &self,
        config: Config,
    ) -> OrdersConsumer<DynamoDbTable, S3Feed, MemoryStore> {
        let table = DynamoDbTable::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            config.reference_table.clone(),
        );
        let feed = S3Feed::new(s3_client(&self.sdk), self.bucket.clone());
        OrdersConsumer::new(config, table, feed, self.store.clone())
    }
}

pub(crate) fn lines(store: &MemoryStore, key: &str) -> Vec<Value> {
    let body = store
        .object("out", key)
        .unwrap_or_else(|| panic!("no object {key}"));
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

const NAME: &str =
    "shardId-000000000002-49590338271490256608559692538361571095921575989136588898.jsonl";

#[tokio::test]
async fn orders_are_enriched_into_partitions_and_nothing_is_lost() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let out = &summary.output;
    assert_eq!(
        (
            out.enriched,
            out.unmatched_dead_lettered,
            out.invalid,
            out.flags
        ),
        (3, 1, 2, 1)
    );
    assert_eq!(out.accounted(), summary.records, "in = out + rejected");
    let burger = lines(
        &r.store,
        &format!("enriched/item=burger/priority=medium/{NAME}"),
    );
    assert_eq!(burger.len(), 1);
    assert_eq!(burger[0]["priority"], "medium");
    assert_eq!(burger[0]["price"], 100);
    assert_eq!(burger[0]["cost"], 42);
    assert_eq!(burger[0]["customer_id"], 1001);
    assert_eq!(burger[0]["shard"], "shardId-000000000002");
    assert!(r
        .store
        .object(
            "out",
            &format!("enriched/item=ice-cream/priority=very very high/{NAME}")
        )
        .is_some());

    let dead = lines(&r.store, &format!("dead-letter/{NAME}"));
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 3);
    assert!(
        reasons[0].contains("no reference item for dish \"donut\""),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("invalid type"), "{reasons:?}");
    assert!(reasons[2].contains("not an order"), "{reasons:?}");
    assert_eq!(dead[2]["data"], "this is not json");
}

#[tokio::test]
async fn a_retried_batch_overwrites_its_own_objects() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    consumer.handle_batch(&sample()).await.unwrap();
    let first: Vec<String> = r.store.put_keys();
    consumer.handle_batch(&sample()).await.unwrap();
    let all = r.store.put_keys();
    let mut distinct = all.clone();
    distinct.sort();
    distinct.dedup();
    let mut first_sorted = first.clone();
    first_sorted.sort();
    assert_eq!(distinct, first_sorted, "the retry wrote the same names");
}

#[tokio::test]
async fn an_output_failure_reports_the_first_record() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    r.store.fail_next(1);
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    let ids: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["49590338271490256608559692538361571095921575989136588898"]
    );
    assert!(summary.failed.unwrap().contains("injected"));
}

#[tokio::test]
async fn unmatched_pass_writes_an_unmatched_partition() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Pass));
    let (_, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(summary.output.passed, 1);
    let donut = lines(
        &r.store,
        &format!("enriched/item=donut/priority=__unmatched__/{NAME}"),
    );
    assert_eq!(donut[0]["priority"], Value::Null);
    assert!(donut[0]["unmatched"]
        .as_str()
        .unwrap()
        .contains("no reference item"));
}

#[tokio::test]
async fn reference_data_that_cannot_be_loaded_fails_the_batch_not_the_init() {
    let r = rig().await;
    let mut config = r.config(Unmatched::Reject);
    config.reference_table = "NoSuchTable".into();
    let consumer = r.consumer(config);
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    let failed = summary.failed.unwrap();
    assert!(failed.contains("DescribeTable"), "{failed}");
    assert!(r.store.put_keys().is_empty());
}

#[tokio::test]
async fn other_payloads_are_invocation_errors() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    let ddb = sample_event("example-dynamodb-insert.json");
    assert!(consumer.handle(&ddb).await.is_err());
    assert!(consumer.handle(&serde_json::json!("x")).await.is_err());
    // A Kinesis record whose data is not base64, or without a sequence number: named errors.
    let mut bad = sample();
    bad["Records"][0]["kinesis"]["data"] = serde_json::json!("not base64!");
    let err = consumer.handle(&bad).await.unwrap_err().to_string();
    assert!(err.contains("Records[0].kinesis.data"), "{err}");
    let mut bad = sample();
    bad["Records"][0]["kinesis"]
        .as_object_mut()
        .unwrap()
        .remove("sequenceNumber");
    let err = consumer.handle(&bad).await.unwrap_err().to_string();
    assert!(err.contains("sequenceNumber"), "{err}");
    let empty = consumer
        .handle(&serde_json::json!({"Records": []}))
        .await
        .unwrap();
    assert!(empty.batch_item_failures.is_empty());
}

/// A reference's health as the enricher reports it.
fn health(reference: &str, staleness_ms: Option<u64>) -> stream_refdata::Health {
    stream_refdata::Health {
        reference: reference.into(),
        loaded: staleness_ms.is_some(),
        staleness: staleness_ms.map(Duration::from_millis),
        too_stale: false,
        last_error: None,
        pending_reload: None,
        rejected: Vec::new(),
        metrics: Default::default(),
    }
}

#[test]
fn embedded_metrics_name_the_staleness_metric_the_alarm_watches() {
    let output = orders_consumer::output::BatchOutput {
        enriched: 3,
        flags: 1,
        too_stale: 2,
        ..Default::default()
    };
    let references = [
        health("ProductPriority", Some(1500)),
        health("s3://ref/reference/", Some(900)),
    ];
    let line = orders_consumer::handler::batch_metrics(&output, &references);
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Namespace"], "StreamRefdata");
    assert!(declared["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["Name"] == "ReferenceStalenessSeconds"));
    assert_eq!(line["Function"], "orders-consumer");
    // The stalest reference: one alarm watches them all.
    assert_eq!(line["ReferenceStalenessSeconds"], 1.5);
    assert_eq!(line["EnrichedOrders"], 3);
    assert_eq!(line["TooStaleOrders"], 2);
    assert_eq!(line["DeadLetteredRecords"], 2);
    let template = std::fs::read_to_string(format!(
        "{}/../../infra/template.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    assert!(
        template.contains("MetricName: ReferenceStalenessSeconds")
            && template.contains("Namespace: StreamRefdata")
    );
}

/// The `StreamRefdata` metrics the template's alarms (a `MetricName` in a resource whose
/// `Namespace` is `StreamRefdata`) and dashboard (`"StreamRefdata", "<name>"` in a widget's
/// metric) name.
fn watched_metrics(template: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut resource: (bool, Vec<String>) = (false, Vec::new());
    let flush = |r: &mut (bool, Vec<String>), names: &mut std::collections::BTreeSet<String>| {
        if r.0 {
            names.extend(r.1.drain(..));
        }
        *r = (false, Vec::new());
    };
    for line in template.lines() {
        let top = line.starts_with("  ") && !line.starts_with("   ");
        if top || !line.starts_with(' ') {
            flush(&mut resource, &mut names);
        }
        let line = line.trim();
        if line == "Namespace: StreamRefdata" {
            resource.0 = true;
        } else if let Some(name) = line.strip_prefix("MetricName: ") {
            resource.1.push(name.to_owned());
        }
    }
    flush(&mut resource, &mut names);
    for part in template.split("\"StreamRefdata\", \"").skip(1) {
        names.insert(part.split('"').next().unwrap().to_owned());
    }
    names
}

#[test]
fn every_metric_that_infra_watches_is_one_the_consumer_publishes() {
    // The names each line declares.
    let references = [health("ProductPriority", None)];
    // (the hold's metrics too: UNMATCHED=hold)
    let batch = orders_consumer::handler::batch_metrics_with(
        &Default::default(),
        &references,
        Some((0, None)),
    );
    let reference = orders_consumer::handler::reference_metrics(&references[0], None);
    let mut published = std::collections::BTreeSet::new();
    for line in [&batch, &reference] {
        for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
        {
            let name = m["Name"].as_str().unwrap().to_owned();
            assert!(line.get(&name).is_some(), "{name} declared without a value");
            published.insert(name);
        }
    }
    // Every StreamRefdata metric an alarm or the dashboard in infra/ names.
    let template = std::fs::read_to_string(format!(
        "{}/../../infra/template.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let watched = watched_metrics(&template);
    assert!(watched.len() >= 6, "{watched:?}");
    let compactor = ["SnapshotAgeSeconds"];
    for name in &watched {
        assert!(
            published.contains(name) || compactor.contains(&name.as_str()),
            "infra/ watches {name}, which nothing publishes"
        );
    }
    // The dashboard's body is JSON once CloudFormation has substituted its `${…}`.
    let body: String = template
        .split_once("DashboardBody: !Sub |\n")
        .expect("a dashboard")
        .1
        .lines()
        .take_while(|l| l.starts_with("        ") || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let mut substituted = String::new();
    let mut rest = body.as_str();
    while let Some((before, after)) = rest.split_once("${") {
        substituted.push_str(before);
        substituted.push('1');
        rest = after.split_once('}').expect("a closed ${…}").1;
    }
    substituted.push_str(rest);
    let dashboard: Value = serde_json::from_str(&substituted).expect("the dashboard is JSON");
    assert!(dashboard["widgets"].as_array().unwrap().len() >= 5);
    // And the dashboard shows each reference's state, its rejections and the dead letters.
    for name in [
        "ReferenceStalenessSeconds",
        "ReferenceLoaded",
        "ReferenceRejectedObjects",
        "RejectedRows",
        "UndecodableItems",
        "TooStaleOrders",
        "DeadLetteredRecords",
    ] {
        assert!(watched.contains(name), "infra/ does not watch {name}");
    }
}

#[tokio::test]
async fn a_crash_after_part_of_the_output_is_retried_without_duplicates() {
    let r = rig().await;
    let consumer = r.consumer(r.config(Unmatched::Reject));
    // The first object is written, the second write fails after the others finished (the
    // function "crashes"): the batch is reported and the event source mapping retries it from
    // its first record.
    r.store.delay_next(Duration::ZERO);
    r.store.fail_next_after(Duration::from_millis(50));
    let (response, _) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1);
    let partial = r.store.put_keys();
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(
        !partial.is_empty() && partial.len() < summary.output.objects.len(),
        "part of the output was written: {partial:?}"
    );

    // No object written under two names: the retry rewrote the partial one.
    let keys = r.store.put_keys();
    let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), summary.output.objects.len());
    assert!(distinct.contains(&partial[0]));
    // De-duplicated by (shard, sequence number), every record that is written appears once.
    let mut seen = std::collections::BTreeMap::new();
    for key in distinct {
        for line in lines(&r.store, key) {
            *seen
                .entry((
                    line["shard"].as_str().unwrap().to_owned(),
                    line["sequence_number"].as_str().unwrap().to_owned(),
                ))
                .or_insert(0) += 1;
        }
    }
    let records = sample()["Records"].as_array().unwrap().len();
    assert_eq!(
        seen.len(),
        records - 1,
        "every record but the flag is in the output once"
    );
    assert!(seen.values().all(|n| *n == 1));
}

/// A Glue database and a table over the output, partitioned by item and priority (what infra/
/// declares), on the emulator.
async fn glue_table(sdk: &aws_config::SdkConfig) -> (aws_sdk_glue::Client, String, String) {
    use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
    let glue = aws_sdk_glue::Client::new(sdk);
    let database = unique_name("lake").replace('-', "_");
    glue.create_database()
        .database_input(DatabaseInput::builder().name(&database).build().unwrap())
        .send()
        .await
        .unwrap();
    let column =
        |name: &str, kind: &str| Column::builder().name(name).r#type(kind).build().unwrap();
    glue.create_table()
        .database_name(&database)
        .table_input(
            TableInput::builder()
                .name("orders")
                .table_type("EXTERNAL_TABLE")
                .partition_keys(column("item", "string"))
                .partition_keys(column("priority", "string"))
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .columns(column("cost", "double"))
                        .location("s3://out/enriched/")
                        .serde_info(
                            SerDeInfo::builder()
                                .serialization_library("org.openx.data.jsonserde.JsonSerDe")
                                .build(),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    (glue, database, "orders".into())
}

#[tokio::test]
async fn new_output_partitions_are_registered_in_the_glue_catalog() {
    // GIVEN a catalog table over the output
    let r = rig().await;
    let (glue, database, table) = glue_table(&r.sdk).await;
    let catalog = orders_consumer::catalog::GlueCatalog::new(glue.clone(), &database, &table);
    let consumer = r
        .consumer(r.config(Unmatched::Reject))
        .with_catalog(catalog.clone());
    // WHEN a batch is written (twice: a retry, or a later batch to the same partitions)
    let (_, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(summary.catalog_error, None);
    consumer.handle_batch(&sample()).await.unwrap();
    // THEN each partition it wrote is in the catalog, with its location, once
    let partitions = glue
        .get_partitions()
        .database_name(&database)
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let mut got: Vec<(Vec<String>, String)> = partitions
        .partitions()
        .iter()
        .map(|p| {
            (
                p.values().to_vec(),
                p.storage_descriptor()
                    .and_then(|s| s.location())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), summary.output.partitions.len(), "{got:?}");
    assert!(got.contains(&(
        vec!["burger".into(), "medium".into()],
        "s3://out/enriched/item=burger/priority=medium/".into()
    )));
    assert!(got.contains(&(
        vec!["ice-cream".into(), "very very high".into()],
        "s3://out/enriched/item=ice-cream/priority=very very high/".into()
    )));
    // AND another environment registering the same partitions is not an error (idempotent)
    let other = r
        .consumer(r.config(Unmatched::Reject))
        .with_catalog(catalog);
    let (_, summary) = other.handle_batch(&sample()).await.unwrap();
    assert_eq!(summary.catalog_error, None);
}

#[tokio::test]
async fn a_partition_already_in_the_catalog_at_another_location_is_reported_not_taken_as_registered(
) {
    // GIVEN a catalog table whose burger/medium partition points at an old output prefix
    let r = rig().await;
    let (glue, database, table) = glue_table(&r.sdk).await;
    glue.create_partition()
        .database_name(&database)
        .table_name(&table)
        .partition_input(
            aws_sdk_glue::types::PartitionInput::builder()
                .set_values(Some(vec!["burger".into(), "medium".into()]))
                .storage_descriptor(
                    orders_consumer::catalog::json_lines_storage(
                        "s3://out/old-prefix/item=burger/priority=medium/",
                    )
                    .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let catalog = orders_consumer::catalog::GlueCatalog::new(glue.clone(), &database, &table);
    let consumer = r
        .consumer(r.config(Unmatched::Reject))
        .with_catalog(catalog);
    // WHEN a batch writes to it
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    // THEN the batch is written, and the misplaced partition is reported with both locations
    assert!(response.batch_item_failures.is_empty());
    let error = summary.catalog_error.expect("reported");
    assert!(
        error.contains("another location")
            && error.contains("s3://out/old-prefix/item=burger/priority=medium/")
            && error.contains("s3://out/enriched/item=burger/priority=medium/"),
        "{error}"
    );
    assert_eq!(consumer.catalog_errors(), 1);
    // AND the other partitions are registered; the next batch does not report it again
    let (_, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert_eq!(summary.catalog_error, None);
    let pizza = glue
        .get_partition()
        .database_name(&database)
        .table_name(&table)
        .set_partition_values(Some(vec!["pizza".into(), "low".into()]))
        .send()
        .await;
    assert!(pizza.is_ok(), "{pizza:?}");
}

#[tokio::test]
async fn a_catalog_that_fails_never_fails_the_batch() {
    let r = rig().await;
    let glue = aws_sdk_glue::Client::new(&r.sdk);
    let missing = orders_consumer::catalog::GlueCatalog::new(glue, "no_such_database", "orders");
    let consumer = r
        .consumer(r.config(Unmatched::Reject))
        .with_catalog(missing);
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert!(!r.store.put_keys().is_empty(), "the orders are written");
    let error = summary.catalog_error.expect("the failure is reported");
    assert!(error.contains("BatchCreatePartition"), "{error}");
    assert_eq!(consumer.catalog_errors(), 1);
}

#[tokio::test]
async fn an_archived_reference_object_is_rejected_and_the_batch_is_still_enriched() {
    // GIVEN the menu as two objects in S3: burger's readable, pizza's archived to GLACIER
    // (GetObject answers 403 InvalidObjectState), and a consumer that joins them
    let r = rig().await;
    let s3 = s3_client(&r.sdk);
    for (key, body, class) in [
        ("reference/menu.csv", "item,category\nburger,mains\n", None),
        (
            "reference/archived.csv",
            "item,category\npizza,mains\n",
            Some(aws_sdk_s3::types::StorageClass::Glacier),
        ),
    ] {
        s3.put_object()
            .bucket(&r.bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .set_storage_class(class)
            .send()
            .await
            .unwrap();
    }
    let mut config = r.config(Unmatched::Reject);
    config.reference_objects = Some(ReferenceObjects {
        bucket: r.bucket.clone(),
        prefix: "reference/".into(),
        key: "item".into(),
        field: "menu".into(),
    });
    let objects = S3Feed::new(s3.clone(), r.bucket.clone());
    let metric_lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = metric_lines.clone();
    let consumer = r
        .consumer(config)
        .with_reference_objects(objects)
        .with_metrics_sink(move |line| sink.lock().unwrap().push(line.clone()));
    // WHEN a cold environment gets the sample batch
    let (response, summary) = consumer.handle_batch(&sample()).await.unwrap();
    // THEN the batch succeeds as without the second reference: the archived object is
    // rejected, not retried for ever, and only its rows are missing
    assert!(response.batch_item_failures.is_empty(), "{summary:?}");
    let out = &summary.output;
    assert_eq!(
        (out.enriched, out.unmatched_dead_lettered, out.invalid),
        (3, 1, 2)
    );
    assert_eq!(out.accounted(), summary.records, "in = out + rejected");
    let burger = lines(
        &r.store,
        &format!("enriched/item=burger/priority=medium/{NAME}"),
    );
    assert_eq!(burger[0]["menu"]["category"], "mains");
    let pizza_key = r
        .store
        .put_keys()
        .into_iter()
        .find(|k| k.starts_with("enriched/item=pizza/"))
        .expect("pizza is enriched from the table");
    let pizza = lines(&r.store, &pizza_key);
    assert!(pizza[0].get("menu").is_none(), "{:?}", pizza[0]);
    // AND the objects reference's health line names the rejection; the table's is current
    let metric_lines = metric_lines.lock().unwrap();
    let reference = |name: &str| {
        metric_lines
            .iter()
            .find(|l| l["Reference"] == name)
            .unwrap_or_else(|| panic!("no line for {name}: {metric_lines:?}"))
    };
    let menu = reference(&format!("s3://{}/reference/", r.bucket));
    assert_eq!(menu["ReferenceRejectedObjects"], 1);
    assert_eq!(menu["RejectedObjectReads"], 1);
    assert_eq!(menu["RejectedKeys"][0], "reference/archived.csv");
    assert_eq!(menu["ReferenceState"], "degraded");
    assert_eq!(menu["ReferenceLoaded"], 1);
    let table = reference(&r.table.name);
    assert_eq!(table["ReferenceState"], "current");
    assert_eq!(table["ReferenceRejectedObjects"], 0);
}

#[tokio::test]
async fn a_misplaced_partition_does_not_keep_the_next_hundred_from_being_registered() {
    // GIVEN 150 dishes in the table, and the first one's partition misplaced in the catalog
    let r = rig().await;
    let dishes: Vec<String> = (0..150).map(|i| format!("d{i:03}")).collect();
    for dish in &dishes {
        r.table.put(dish, "high").await;
    }
    let (glue, database, table) = glue_table(&r.sdk).await;
    glue.create_partition()
        .database_name(&database)
        .table_name(&table)
        .partition_input(
            aws_sdk_glue::types::PartitionInput::builder()
                .set_values(Some(vec!["d000".into(), "high".into()]))
                .storage_descriptor(
                    orders_consumer::catalog::json_lines_storage("s3://elsewhere/d000/").build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let catalog = orders_consumer::catalog::GlueCatalog::new(glue.clone(), &database, &table);
    let consumer = r
        .consumer(r.config(Unmatched::Reject))
        .with_catalog(catalog);
    // WHEN one batch writes an order of each (150 partitions: two BatchCreatePartition calls)
    let records: Vec<Value> = dishes
        .iter()
        .enumerate()
        .map(|(i, dish)| {
            let seq = format!("49590338271490256608559692538361571095921575989136{i:06}");
            let data = base64::engine::general_purpose::STANDARD
                .encode(format!(r#"{{"dish":"{dish}","cost":1,"customer_id":{i}}}"#));
            serde_json::json!({
                "kinesis": {"partitionKey": "1", "sequenceNumber": seq, "data": data},
                "eventSource": "aws:kinesis",
                "eventID": format!("shardId-000000000001:{seq}"),
            })
        })
        .collect();
    let (_, summary) = consumer
        .handle_batch(&serde_json::json!({ "Records": records }))
        .await
        .unwrap();
    // THEN the misplaced one is reported, and every other is registered, the last chunk too
    assert_eq!(summary.output.enriched, 150);
    let error = summary
        .catalog_error
        .expect("the misplaced partition reported");
    assert!(error.contains("s3://elsewhere/d000/"), "{error}");
    for dish in ["d001", "d099", "d100", "d149"] {
        let got = glue
            .get_partition()
            .database_name(&database)
            .table_name(&table)
            .set_partition_values(Some(vec![dish.into(), "high".into()]))
            .send()
            .await;
        assert!(got.is_ok(), "{dish}: {got:?}");
    }
}
