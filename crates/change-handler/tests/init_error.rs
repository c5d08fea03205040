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
    assert!(!run.status.success(), "{run:?}");
    let sentence =
        "change-handler cannot start: environment variable CHANGE_BUCKET=\"b\" is invalid";
    assert!(run.output.contains(sentence), "{}", run.output);
    assert!(
        !run.output.contains("Invalid {"),
        "a debug dump: {}",
        run.output
    );
    let [posted] = run.requests.as_slice() else {
        panic!("one request to the Runtime API: {:?}", run.requests);
    };
    assert_eq!(
        (posted.method.as_str(), posted.path.as_str()),
        ("POST", "/2018-06-01/runtime/init/error")
    );
    assert_eq!(
        posted.header("Lambda-Runtime-Function-Error-Type"),
        Some("Runtime.InitError")
    );
    let body = posted.json();
    assert!(
        body["errorMessage"].as_str().unwrap().starts_with(sentence),
        "{body}"
    );
    assert_eq!(body["errorType"], "ConfigError");
}
