//! An init error reaches the Runtime API as Lambda documents it: the path, the error-type
//! header and the JSON error document, with the sentence that names the variable.

use stream_refdata_aws::init::{report, InitError, ERROR_TYPE_HEADER, INIT_ERROR_PATH};
use stream_refdata_aws::ConfigError;
use test_support::RuntimeApiStub;

#[tokio::test]
async fn the_init_error_is_posted_to_the_runtime_api() {
    let api = RuntimeApiStub::start().await;
    let error = InitError::new(
        "change-handler",
        &ConfigError::Invalid {
            var: "CHANGE_BUCKET",
            value: "b".into(),
            reason: "not a bucket name".into(),
        },
    );

    report(api.address(), &error).await.expect("accepted");

    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let posted = &requests[0];
    assert_eq!(posted.method, "POST");
    assert_eq!(posted.path, INIT_ERROR_PATH);
    assert_eq!(posted.path, "/2018-06-01/runtime/init/error");
    assert_eq!(posted.header(ERROR_TYPE_HEADER), Some("Runtime.InitError"));
    assert_eq!(
        posted.json(),
        serde_json::json!({
            "errorMessage": "change-handler cannot start: environment variable CHANGE_BUCKET=\"b\" is invalid: not a bucket name.",
            "errorType": "ConfigError",
        })
    );
}
