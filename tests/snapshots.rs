//! Feed snapshots on the emulator, through the real producers: the feed-compactor follows the
//! change-handler's feed while two writers make 1,000 random writes; consumers that start from
//! the snapshots mid-way read no table item for their load and converge to a fresh consistent
//! Scan. Under injected S3 and DynamoDB faults the compactor fails runs but never publishes a
//! snapshot that loses or rolls back a change: a consumer started from *each* snapshot it
//! published converges to the table.

use aws_sdk_dynamodb::types::StreamViewType;
use feed_compactor::{Config, DeployedCompactor};
use std::collections::BTreeMap;
use stream_refdata_aws::s3_client;
use stream_refdata_protocol::{snapshot_pointer_key, DEFAULT_SNAPSHOT_PREFIX};
use test_support::{through_proxy, Fault, FeedRig, HttpFaultProxy, Rule};

use crate::common::{consumer_with, table_view, writes_while, Consumer, Rounds, KEYS};

fn compactor(rig: &FeedRig, sdk: &aws_config::SdkConfig) -> DeployedCompactor {
    let config = Config::from_lookup(&|k: &str| match k {
        "REFERENCE_TABLE" => Some(rig.table.name.clone()),
        "CHANGE_BUCKET" => Some(rig.bucket.clone()),
        _ => None,
    })
    .expect("configuration");
    feed_compactor::deployed(config, sdk)
}

fn consumer(rig: &FeedRig) -> Consumer {
    consumer_with(&rig.sdk, &rig.table.name, &rig.bucket, |c| {
        c.with_scan_segments(3)
    })
}

fn view(c: &Consumer) -> BTreeMap<String, String> {
    crate::common::view(c, (0..KEYS).map(|k| format!("item-{k:02}")))
}

async fn seed(rig: &FeedRig) {
    for k in 0..KEYS {
        rig.table.put(&format!("item-{k:02}"), "p0").await;
    }
    while let Some(event) = rig.next_event().await {
        rig.handler.handle(&event, "req").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_started_from_snapshots_mid_way_converge_to_the_table_without_a_scan() {
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    seed(&rig).await;
    let mut compactor = compactor(&rig, &rig.sdk);
    let first = compactor.run_once().await.expect("first run");
    assert!(first.published.is_some(), "{first:?}");
    let mut scanning = consumer(&rig);
    scanning.refresh().await;
    let mut from_snapshots: Vec<Consumer> = Vec::new();

    writes_while(&rig, async |rounds: &Rounds| {
        let mut round = 0;
        while rounds.next().await {
            round += 1;
            compactor.run_once().await.expect("a compactor run");
            scanning.refresh().await;
            for c in &mut from_snapshots {
                c.refresh().await;
            }
            // Two consumers start from whatever snapshot is latest, in the second and the
            // fourth round.
            if round == 2 || round == 4 {
                let mut c = consumer(&rig);
                let report = c.refresh().await;
                assert!(
                    report.snapshot.is_some(),
                    "started from a snapshot: {report:?}"
                );
                from_snapshots.push(c);
            }
        }
    })
    .await;
    assert_eq!(
        from_snapshots.len(),
        2,
        "the scenario has more than four rounds"
    );

    let truth = table_view(&rig.table.ddb, &rig.table.name).await;
    compactor.run_once().await.expect("last run");
    let mut last = consumer(&rig);
    last.refresh().await;
    for _ in 0..3 {
        scanning.refresh().await;
        for c in &mut from_snapshots {
            c.refresh().await;
        }
    }
    assert_eq!(view(&scanning), truth, "the Scan consumer");
    for (i, c) in from_snapshots.iter().chain([&last]).enumerate() {
        let m = c.metrics();
        println!(
            "snapshot consumer {i}: {} table items read (re-reads only), {} changes applied, {} skipped, {} files",
            m.items_read, m.changes_applied, m.changes_skipped, m.change_files_read
        );
        assert_eq!(
            view(c),
            truth,
            "consumer {i} started from a snapshot differs from a Scan"
        );
        assert_eq!((m.snapshot_loads, m.scan_loads), (1, 0), "consumer {i}");
        assert_eq!(
            m.full_refreshes, 1,
            "consumer {i} followed deltas after its load"
        );
    }
    let m = compactor.metrics();
    assert_eq!(
        m.scan_loads, 1,
        "the compactor scanned once, at its first run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_faults_every_snapshot_the_compactor_published_converges_to_the_table() {
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    seed(&rig).await;
    let proxy = HttpFaultProxy::start(test_support::emulator().endpoint(), 11).await;
    let mut compactor = compactor(&rig, &through_proxy(&rig.sdk, proxy.endpoint()));
    compactor
        .run_once()
        .await
        .expect("first run, before the faults");
    // Faults in every other round: a run that failed part-way is followed by one that must
    // publish (the writes of two rounds since), so the scenario meets both however many runs
    // the faults break.
    let faults: Vec<Rule> = [
        ("s3", "PutObject"),
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
        ("dynamodb", "BatchGetItem"),
    ]
    .into_iter()
    .flat_map(|(service, operation)| {
        [Fault::ServerError, Fault::Reset].map(|fault| Rule {
            service,
            operation,
            fault,
            rate: 0.02,
        })
    })
    .collect();
    let pointer_key = snapshot_pointer_key(DEFAULT_SNAPSHOT_PREFIX, &rig.table.name);
    let mut pointers: Vec<Vec<u8>> = vec![rig.read(&pointer_key).await];
    let (mut failed, mut published) = (0, 0);

    writes_while(&rig, async |rounds: &Rounds| {
        let mut round = 0;
        while rounds.next().await {
            round += 1;
            proxy.set_rules(if round % 2 == 1 {
                faults.clone()
            } else {
                Vec::new()
            });
            match compactor.run_once().await {
                Ok(r) if r.published.is_some() => {
                    published += 1;
                    pointers.push(rig.read(&pointer_key).await);
                }
                Ok(_) => {}
                Err(e) => {
                    failed += 1;
                    println!("run failed: {e}");
                }
            }
        }
    })
    .await;
    println!(
        "compactor: {published} snapshots published, {failed} runs failed, {} faults injected",
        proxy.injected()
    );
    assert!(failed > 0, "the faults reached the compactor");
    assert!(published >= 3, "and it still published");

    // Every snapshot it published, made the latest again in turn: a consumer starting from it
    // and following the feed from its position ends equal to the table.
    let truth = table_view(&rig.table.ddb, &rig.table.name).await;
    let s3 = s3_client(&rig.sdk);
    pointers.dedup();
    for (i, pointer) in pointers.iter().enumerate() {
        s3.put_object()
            .bucket(&rig.bucket)
            .key(&pointer_key)
            .body(pointer.clone().into())
            .send()
            .await
            .unwrap();
        let mut c = consumer(&rig);
        let report = c.refresh().await;
        assert!(report.snapshot.is_some(), "snapshot {i}: {report:?}");
        c.refresh().await;
        assert_eq!(
            view(&c),
            truth,
            "a consumer from snapshot {i} differs from a Scan"
        );
        assert_eq!(c.metrics().scan_loads, 0, "snapshot {i}");
    }
}
