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
    run.assert_init_error(
        "orders-consumer cannot start: environment variable UNMATCHED=\"ignore\" is invalid",
    );
}
