//! Many consumers, concurrent writers: 1,000 random updates (puts, updates of the same key in
//! quick succession, deletes) while three consumers follow the feed, one of them starting its
//! full load in the middle of the writes. At the end every consumer's snapshot equals a fresh
//! Scan of the table: no change lost, none rolled back, no deleted item resurrected. Every third
//! batch is written twice (a retried invocation), so each consumer also meets duplicates.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::StreamViewType;
use test_support::FeedRig;

mod common;

use common::{consumer_with, table_view, Consumer};

const KEYS: usize = 20;
const WRITES_PER_WRITER: usize = 500;

fn consumer(rig: &FeedRig) -> Consumer {
    consumer_with(&rig.sdk, &rig.table.name, &rig.bucket, |c| {
        c.with_scan_segments(3)
    })
}

fn view(c: &Consumer) -> BTreeMap<String, String> {
    common::view(c, (0..KEYS).map(|k| format!("item-{k:02}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_consumers_converge_to_the_table_after_1000_concurrent_random_writes() {
    let rig = FeedRig::new(StreamViewType::NewAndOldImages).await;
    let (table, handler) = (&rig.table, &rig.handler);
    for k in 0..KEYS {
        table.put(&format!("item-{k:02}"), "p0").await;
    }
    let batches = std::sync::atomic::AtomicUsize::new(0);
    let deliver = || async {
        while let Some(event) = rig.next_event().await {
            let r = handler.handle(&event, "req").await.unwrap();
            assert!(r.batch_item_failures.is_empty());
            // Every third batch is written twice, as a retried invocation would.
            if batches.fetch_add(1, Ordering::SeqCst).is_multiple_of(3) {
                handler.handle(&event, "req-retry").await.unwrap();
            }
        }
    };
    deliver().await;

    let done = Arc::new(AtomicBool::new(false));
    let mut a = consumer(&rig);
    let mut b = consumer(&rig);
    let mut late = consumer(&rig);
    a.refresh().await;
    b.refresh().await;

    let writer = |seed: u64| {
        let table = table.clone();
        async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            for n in 0..WRITES_PER_WRITER {
                let item = format!("item-{:02}", rng.usize(..KEYS));
                match rng.u8(..10) {
                    0 | 1 => table.delete(&item).await,
                    2..=5 => table.put(&item, &format!("w{seed}-{n}")).await,
                    _ => {
                        // Same key twice in quick succession.
                        table.put(&item, &format!("w{seed}-{n}a")).await;
                        table.put(&item, &format!("w{seed}-{n}b")).await;
                    }
                }
            }
        }
    };
    let producer = async {
        while !done.load(Ordering::SeqCst) {
            deliver().await;
            tokio::time::sleep(Duration::from_millis(250)).await; // Lambda polls 4 times a second
        }
        deliver().await;
    };
    let writers = async {
        tokio::join!(writer(1), writer(2));
        done.store(true, Ordering::SeqCst);
    };
    let consumers = async {
        let mut started_late = false;
        while !done.load(Ordering::SeqCst) {
            a.refresh().await;
            b.refresh().await;
            if !started_late {
                // A full load (parallel Scan) while the writers are busy.
                tokio::time::sleep(Duration::from_millis(300)).await;
                late.refresh().await;
                started_late = true;
            } else {
                late.refresh().await;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    };
    tokio::join!(producer, writers, consumers);
    deliver().await;

    let truth = table_view(&table.ddb, &table.name).await;
    for _ in 0..3 {
        for c in [&mut a, &mut b, &mut late] {
            c.refresh().await;
        }
    }
    for (name, c) in [("a", &a), ("b", &b), ("late", &late)] {
        let m = c.metrics();
        println!(
            "consumer {name}: {} full loads, {} changes applied from images, {} skipped as duplicates or older, {} items re-read, {} files",
            m.full_refreshes, m.changes_applied, m.changes_skipped, m.items_reread, m.change_files_read
        );
        assert_eq!(view(c), truth, "consumer {name} differs from a fresh Scan");
        assert_eq!(
            m.full_refreshes, 1,
            "consumer {name} followed deltas after its load"
        );
    }
}
