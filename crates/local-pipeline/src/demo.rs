//! The main job: the walkthrough on the local pipeline, with a summary at the end.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use change_handler::{ChangeHandler, PRODUCER};
use change_protocol::{AttributeValue, ChangeFile, ChangeKey, EventName};
use esm_emulation::{DynamoDbStreamMapping, Invocation, MappingConfig, MappingStats};
use feed_writer::{s3_client, FeedConfig, FeedWriter, S3Store, SystemClock};
use tokio::sync::watch;

use crate::provision::{provision, set_priority, Names};

/// What the demo measured.
#[derive(Debug, Default)]
pub struct Summary {
    /// Change files in the feed at the end.
    pub change_files: usize,
    /// Changes in them, by event name.
    pub inserts: usize,
    /// MODIFY changes.
    pub modifies: usize,
    /// REMOVE changes.
    pub removes: usize,
    /// From the table write to the change file with burger=high being listed.
    pub propagation: Option<Duration>,
    /// What the change-handler's event source mapping did.
    pub mapping: MappingStats,
}

/// Runs the DynamoDB path end to end against `sdk` (the emulator or an account).
pub async fn run(sdk: &aws_config::SdkConfig, names: &Names, timeout: Duration) -> Result<Summary> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let s3 = s3_client(sdk);
    println!(
        "provisioning table {} (stream NEW_AND_OLD_IMAGES, 5 items) and bucket {}",
        names.table, names.bucket
    );
    let stream_arn = provision(&ddb, &s3, names).await?;

    let feed = FeedConfig {
        bucket: names.bucket.clone(),
        prefix: names.change_prefix.clone(),
        legacy_flag_key: None,
        write_window: Duration::from_secs(20),
    };
    let handler = ChangeHandler::new(FeedWriter::new(
        feed,
        S3Store::new(s3.clone()),
        SystemClock,
        PRODUCER,
    ));
    let mapping = DynamoDbStreamMapping::new(
        aws_sdk_dynamodbstreams::Client::new(sdk),
        stream_arn.clone(),
        MappingConfig::default(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let mapping_task = async {
        let mut request = 0u64;
        mapping
            .run(
                |event| {
                    request += 1;
                    let id = format!("local-{request}");
                    let handler = &handler;
                    async move {
                        match handler.handle(&event, &id).await {
                            Ok(r) => Invocation::PartialFailure(
                                r.batch_item_failures
                                    .into_iter()
                                    .filter_map(|f| f.item_identifier)
                                    .collect(),
                            ),
                            Err(e) => Invocation::Error(e.to_string()),
                        }
                    }
                },
                stop_rx,
            )
            .await
    };
    let walkthrough = async {
        let result = walkthrough(&ddb, &s3, names, timeout).await;
        let _ = stop_tx.send(true);
        result
    };
    let (stats, propagation) = tokio::join!(mapping_task, walkthrough);
    let mut summary = summarize(&s3, names).await?;
    summary.mapping = stats?;
    summary.propagation = Some(propagation?);
    Ok(summary)
}

async fn walkthrough(
    ddb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    names: &Names,
    timeout: Duration,
) -> Result<Duration> {
    // Let the mapping pick up the seed inserts first.
    wait_for(s3, names, timeout, |c| c.event_name == EventName::Insert).await?;
    println!("seed items are in the change feed; updating burger: medium -> high");
    let written = Instant::now();
    set_priority(ddb, &names.table, "burger", "high").await?;
    wait_for(s3, names, timeout, |c| {
        c.event_name == EventName::Modify
            && c.new_image.as_ref().and_then(|i| i.get("priority"))
                == Some(&AttributeValue::S("high".into()))
    })
    .await?;
    Ok(written.elapsed())
}

async fn change_files(s3: &aws_sdk_s3::Client, names: &Names) -> Result<Vec<ChangeFile>> {
    let mut files = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(&names.bucket)
        .prefix(&names.change_prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.context("listing the change feed")?.contents() {
            let Some(key) = object.key() else { continue };
            if ChangeKey::parse(&names.change_prefix, key).is_err() {
                continue;
            }
            let body = s3
                .get_object()
                .bucket(&names.bucket)
                .key(key)
                .send()
                .await?
                .body
                .collect()
                .await?;
            files.push(
                ChangeFile::from_slice(&body.into_bytes())
                    .with_context(|| format!("reading {key}"))?,
            );
        }
    }
    Ok(files)
}

async fn wait_for(
    s3: &aws_sdk_s3::Client,
    names: &Names,
    timeout: Duration,
    found: impl Fn(&change_protocol::StreamChange) -> bool,
) -> Result<()> {
    let started = Instant::now();
    loop {
        if change_files(s3, names)
            .await?
            .iter()
            .flat_map(|f| &f.changes)
            .any(&found)
        {
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("the change did not reach the change feed within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn summarize(s3: &aws_sdk_s3::Client, names: &Names) -> Result<Summary> {
    let files = change_files(s3, names).await?;
    let mut summary = Summary {
        change_files: files.len(),
        ..Summary::default()
    };
    for c in files.iter().flat_map(|f| &f.changes) {
        match c.event_name {
            EventName::Insert => summary.inserts += 1,
            EventName::Modify => summary.modifies += 1,
            EventName::Remove => summary.removes += 1,
        }
    }
    Ok(summary)
}
