//! The binary at start-up: an invalid variable ends it with a sentence in the log and the
//! function's init error at the Runtime API, not a debug dump.

use test_support::start_function;

#[tokio::test]
async fn an_invalid_bucket_is_the_init_error_and_the_process_exits() {
    let run = start_function(
        env!("CARGO_BIN_EXE_change-handler"),
        &[("CHANGE_BUCKET", "b")],
    )
    .await;
    let error = run.assert_init_error(
        "change-handler cannot start: environment variable CHANGE_BUCKET=\"b\" is invalid",
    );
    assert_eq!(error["errorType"], "ConfigError");
}
