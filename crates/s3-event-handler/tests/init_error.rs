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
    assert!(!run.status.success(), "{run:?}");
    let sentence =
        "s3-event-handler cannot start: environment variable FLAG_STREAM is required but not set.";
    assert!(run.output.contains(sentence), "{}", run.output);
    assert!(
        !run.output.contains("Missing {"),
        "a debug dump: {}",
        run.output
    );
    let [posted] = run.requests.as_slice() else {
        panic!("one request to the Runtime API: {:?}", run.requests);
    };
    assert_eq!(posted.path, "/2018-06-01/runtime/init/error");
    assert_eq!(posted.json()["errorMessage"], sentence);
}
