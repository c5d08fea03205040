//! The binary at start-up: an invalid variable ends it with a sentence in the log and the
//! function's init error at the Runtime API, not a debug dump.

use test_support::start_function;

#[tokio::test]
async fn an_invalid_policy_is_the_init_error_and_the_process_exits() {
    let run = start_function(
        env!("CARGO_BIN_EXE_orders-consumer"),
        &[
            ("REFERENCE_TABLE", "ProductPriority"),
            ("CHANGE_BUCKET", "feed-bucket"),
            ("OUTPUT_BUCKET", "output-bucket"),
            ("UNMATCHED", "ignore"),
        ],
    )
    .await;
    assert!(!run.status.success(), "{run:?}");
    let sentence =
        "orders-consumer cannot start: environment variable UNMATCHED=\"ignore\" is invalid";
    assert!(run.output.contains(sentence), "{}", run.output);
    assert!(
        !run.output.contains("Invalid {"),
        "a debug dump: {}",
        run.output
    );
    let [posted] = run.requests.as_slice() else {
        panic!("one request to the Runtime API: {:?}", run.requests);
    };
    assert_eq!(posted.path, "/2018-06-01/runtime/init/error");
    assert!(posted.json()["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with(sentence));
}
