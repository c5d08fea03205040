//! The comparison's machinery against the emulator: the local Runtime API with a real
//! `lambda_runtime` binary, and the Python peer of the original design behaving as the
//! original does (so the comparison measures the design it claims to).

use std::path::PathBuf;
use std::time::Duration;

use perf_compare::workload::{kinesis_batch, order};
use perf_compare::world::{Paths, World};
use perf_compare::{Answer, FunctionSpec, LocalFunction};
use serde_json::json;
use test_support::StreamPump;

fn paths() -> Paths {
    let hello = PathBuf::from(env!("CARGO_BIN_EXE_lambda-hello"));
    Paths::in_repository(hello.parent().expect("bin dir").to_path_buf())
}

async fn keys(world: &World, prefix: &str) -> Vec<String> {
    test_support::list_keys(&world.s3, &world.bucket, prefix).await
}

#[tokio::test]
async fn a_lambda_runtime_binary_starts_and_answers_through_the_local_runtime_api() {
    let spec = FunctionSpec {
        name: "lambda-hello".into(),
        program: env!("CARGO_BIN_EXE_lambda-hello").into(),
        args: vec![],
        cwd: None,
        env: vec![],
    };
    let f = LocalFunction::spawn(spec).await.expect("spawn");
    let startup = f.ready(Duration::from_secs(30)).await.expect("ready");
    assert!(startup > Duration::ZERO);
    for n in 0..3 {
        let event = json!({ "n": n, "text": "héllo" });
        let invoked = f.invoke(&event).await.expect("invoke");
        assert_eq!(invoked.json().expect("a JSON response"), event);
    }
    let stats = f.stats().expect("/proc stats");
    assert!(stats.peak_rss > 100 * 1024, "peak RSS {}", stats.peak_rss);
    f.stop().await;
}

#[tokio::test]
async fn a_function_that_cannot_start_is_an_error_naming_it() {
    let spec = FunctionSpec {
        name: "missing".into(),
        program: "/nonexistent/bootstrap".into(),
        args: vec![],
        cwd: None,
        env: vec![],
    };
    let err = LocalFunction::spawn(spec)
        .await
        .expect_err("no such program");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[tokio::test]
async fn the_peer_reloads_the_whole_table_on_its_flag_deletes_the_flag_and_drops_unmatched_orders()
{
    let world = World::create(50, paths()).await.expect("world");
    let flag = "change_flags/CHANGE_FLAG";
    let consumer = world
        .start(world.peer_consumer("peer/", flag))
        .await
        .expect("peer consumer starts");
    let flagger = world
        .start(world.peer_flag_lambda(flag))
        .await
        .expect("peer flag lambda starts");
    let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/SourceKinesisStream";
    let shard = "shardId-000000000000";

    // First batch: loads the table; burger is medium; donut has no item and is dropped.
    let batch = vec![order("burger", 20, 1), order("donut", 30, 2)];
    let answer = consumer
        .function
        .invoke(&kinesis_batch(arn, shard, 1, &batch))
        .await
        .expect("invoke");
    assert!(matches!(answer.answer, Answer::Response(_)), "{answer:?}");
    assert_eq!(
        keys(&world, "peer/").await,
        vec![format!(
            "peer/item=burger/priority=medium/part-{:056}.csv",
            1
        )]
    );
    assert_eq!(consumer.items_read(), 50, "the first batch scans the table");

    // A change: the stream record makes the peer's Lambda write the fixed flag.
    let mut tail = StreamPump::latest(world.streams.clone(), &world.table.stream_arn).await;
    world.table.set_priority("burger", "high").await;
    let event = tail
        .wait_event(Duration::from_secs(10))
        .await
        .expect("stream record");
    flagger.function.invoke(&event).await.expect("flag");
    assert_eq!(keys(&world, flag).await, vec![flag.to_owned()]);

    // Next batch: HEAD finds the flag, the whole table is read again, the flag is deleted.
    let batch = vec![order("burger", 25, 3), order("donut", 35, 4)];
    consumer
        .function
        .invoke(&kinesis_batch(arn, shard, 3, &batch))
        .await
        .expect("invoke");
    assert!(keys(&world, flag).await.is_empty(), "the flag was deleted");
    assert!(keys(&world, "peer/item=burger/priority=high/")
        .await
        .contains(&format!(
            "peer/item=burger/priority=high/part-{:056}.csv",
            3
        )));
    assert!(keys(&world, "peer/item=donut").await.is_empty());
    assert_eq!(consumer.items_read(), 100, "one full Scan per change");
    let requests = consumer.requests();
    assert_eq!(requests.get("s3/HeadObject"), Some(&2), "{requests:?}");
    assert_eq!(requests.get("s3/DeleteObject"), Some(&1), "{requests:?}");
}
