//! The binary at start-up: a missing variable ends it with a sentence in the log and the
//! function's init error at the Runtime API, not a debug dump.

use test_support::start_function;

#[tokio::test]
async fn a_missing_variable_is_the_init_error_and_the_process_exits() {
    let run = start_function(
        env!("CARGO_BIN_EXE_s3-event-handler"),
        &[
            ("CHANGE_BUCKET", "feed-bucket"),
            ("REFERENCE_PREFIX", "reference/"),
        ],
    )
    .await;
    let sentence =
        "s3-event-handler cannot start: environment variable FLAG_STREAM is required but not set.";
    assert_eq!(run.assert_init_error(sentence)["errorMessage"], sentence);
}
