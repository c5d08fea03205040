//! `write-gap`: announces a gap in the change feed, so every consumer reloads fully.
//!
//! Use it when changes were lost: a batch reached an event source mapping's failure destination,
//! a stream was re-created, a redrive was incomplete. It writes a `gap` change file (and the
//! `_head` pointer) under `CHANGE_BUCKET`/`CHANGE_PREFIX`, like the producers do.
//!
//! ```sh
//! CHANGE_BUCKET=my-feed-bucket cargo run -p feed-writer --bin write-gap -- "batch 4421… discarded by the change-handler mapping"
//! ```

use feed_writer::{FeedConfig, FeedWriter};
use stream_refdata_aws::{s3_client, sdk_config, S3Store, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reason = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    if reason.trim().is_empty() {
        return Err("usage: write-gap <reason> (say which changes may be missing)".into());
    }
    let config = FeedConfig::from_env()?;
    let sdk = sdk_config(Some(config.write_budget())).await;
    let writer = FeedWriter::new(
        config,
        S3Store::new(s3_client(&sdk)),
        SystemClock,
        "write-gap",
    );
    let unique = format!("gap-{}", std::process::id());
    let written = writer.write_gap(&reason, &unique).await?;
    println!("gap announced: {}", written.key);
    Ok(())
}
