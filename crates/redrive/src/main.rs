//! The redrive binary: a command (`redrive [--dry-run] …`), or, under the Lambda runtime, a
//! function on the failure bucket's `ObjectCreated` notifications. The logic, the mode switch
//! and where the functions' variables come from are in the library (`redrive::cli`).

use aws_lambda_events::event::s3::S3Event;
use clap::Parser;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use redrive::cli::{self, Args, Mode};
use stream_refdata_aws::{init, required_var, sdk_config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mode = Mode::from_env();
    let args = match mode {
        Mode::Command => Args::parse(),
        Mode::Lambda => {
            lambda_runtime::tracing::init_default_subscriber();
            let bucket = required_var(&|v| std::env::var(v).ok(), "FAILURE_BUCKET");
            Args::for_lambda(init::or_exit("redrive", bucket).await)
        }
    };
    let sdk = sdk_config(None).await;
    let redriver = init::or_exit("redrive", cli::redriver(&args, &sdk).await).await;
    if mode == Mode::Command {
        let report = redriver.run().await?;
        println!("{}", cli::render(&report, args.json));
        // Anything not replayed (left, or announced as a gap) is the operator's to follow up.
        if report.unresolved() > 0 {
            std::process::exit(1);
        }
        return Ok(());
    }
    let (redriver, prefix) = (&redriver, &args.prefix);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        let keys = cli::notified_keys(&event.payload, prefix)?;
        let report = redriver.run_keys(&keys).await?;
        println!("{}", cli::render(&report, true));
        cli::lambda_outcome(&report).map_err(Error::from)
    }))
    .await
}
