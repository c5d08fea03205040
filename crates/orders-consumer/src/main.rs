//! The orders-consumer binary: configuration, clients, runtime. The logic is in the library.
#![recursion_limit = "256"]

use lambda_runtime::{service_fn, Error, LambdaEvent};
use orders_consumer::{Config, Invocation};
use stream_refdata_aws::{init, sdk_config};

/// The binary's allocator (the library leaves it to its users). With glibc's malloc each
/// 5,000-order batch freed megabytes back to the kernel and faulted them in again, and
/// malloc/free were ~22% of the process's CPU (docs/performance.md, the floor section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One thread: Lambda gives the function about one vCPU below 1,769 MB, and a multi-thread
/// runtime's work stealing and wake-ups between its workers cost CPU per batch. The batch's
/// concurrent output writes still overlap on I/O (they are futures on this thread).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // A bad variable ends the process with a sentence, reported as the function's init error.
    let config = init::or_exit("orders-consumer", Config::from_env()).await;
    let sdk = sdk_config(None).await;
    let consumer = orders_consumer::deployed(config, &sdk).with_embedded_metrics(true);
    let consumer = &consumer;
    // The event (Kinesis, or Kafka from Amazon MSK or a self-managed cluster) parsed once,
    // straight from the invocation's bytes, into the fields the consumer reads (each record's
    // data base64-decoded as it is parsed); the response is the one its mapping reads.
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Invocation>| async move {
            consumer
                .handle_any(event.payload)
                .await
                .map(|(response, _)| response)
        },
    ))
    .await
}
