//! The bounded-window write of one change file, then the pointer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use stream_refdata_protocol::{
    format_key_time, head_key, source_label, ChangeFile, ChangeKey, ChangeKind, HeadPointer,
    SequenceRange, Source, SCHEMA_VERSION,
};
use tokio::time::{timeout_at, Instant};

use stream_refdata_aws::{Clock, ObjectStore, SharedClock, StoreError};

use crate::FeedConfig;

/// A change file that was written and acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Its full key.
    pub key: String,
    /// Time from reading the key time to the last acknowledged write.
    pub elapsed: Duration,
}

/// Why a batch's change file does not count as written. Every variant is transient: the
/// producer reports the batch so that it is retried, under a new key.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The PUT did not succeed within `W - 5 s` of reading the key time. It may still become
    /// visible later; consumers then see a copy of changes that the retry writes again.
    #[error("change file {key} was not acknowledged within {budget:?} (write window W minus the 5 s margin)")]
    Late {
        /// The key that was being written.
        key: String,
        /// The budget that ran out.
        budget: Duration,
    },
    /// S3 refused the change file.
    #[error("writing change file failed: {0}")]
    Store(#[source] StoreError),
    /// The change file was written but the pointer or legacy marker was not.
    #[error("change file {key} was written but its pointer was not: {source}")]
    Pointer {
        /// The change file that was written.
        key: String,
        /// The failed pointer write.
        #[source]
        source: StoreError,
    },
}

/// Writes change files for one producer, under [`FeedConfig`]'s rules.
#[derive(Debug)]
pub struct FeedWriter<S> {
    config: FeedConfig,
    store: S,
    clock: SharedClock,
    producer: String,
}

impl<S: ObjectStore> FeedWriter<S> {
    /// `producer` names the writer in each file, e.g. `change-handler 0.1.0`.
    pub fn new(
        config: FeedConfig,
        store: S,
        clock: impl Clock,
        producer: impl Into<String>,
    ) -> Self {
        FeedWriter {
            config,
            store,
            clock: clock.shared(),
            producer: producer.into(),
        }
    }

    /// The feed settings.
    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// Announces a gap: writes a `gap` change file stating `reason` (which changes may be
    /// missing), so every consumer does a full reload. `unique` must differ between gaps (a
    /// second gap with the same `unique` in the same millisecond would replace the first, which
    /// is harmless: both say "reload").
    pub async fn write_gap(&self, reason: &str, unique: &str) -> Result<Written, WriteError> {
        let file = ChangeFile {
            schema_version: SCHEMA_VERSION,
            kind: ChangeKind::Gap,
            written_at: String::new(),
            write_window_ms: 0,
            producer: String::new(),
            source: Source {
                label: source_label("gap"),
                ..Source::default()
            },
            changes: vec![],
            opaque: vec![],
            objects: vec![],
            reason: Some(reason.to_owned()),
        };
        self.write(file, None, Some(unique)).await
    }

    /// Writes `file` under a key made now from its source label and `sequences` (DynamoDB
    /// kind) or `unique` (an id that no other write shares: request or message id). Fills in
    /// the file's `written_at`, `write_window_ms` and `producer`.
    ///
    /// Succeeds only when the change file was acknowledged within `W - 5 s` of reading the key
    /// time and the pointer (and legacy marker, if configured) were written after it.
    pub async fn write(
        &self,
        mut file: ChangeFile,
        sequences: Option<SequenceRange>,
        unique: Option<&str>,
    ) -> Result<Written, WriteError> {
        let started = Instant::now();
        let time = truncate_to_ms(self.clock.now());
        let key = ChangeKey {
            time,
            label: file.source.label.clone(),
            sequences,
            unique: unique.map(str::to_owned),
        }
        .to_key(&self.config.prefix);
        file.written_at = format_key_time(time);
        file.write_window_ms =
            u64::try_from(self.config.write_window.as_millis()).unwrap_or(u64::MAX);
        file.producer.clone_from(&self.producer);
        let body = file.to_vec();

        let budget = self.config.write_budget();
        let deadline = started + budget;
        let late = || WriteError::Late {
            key: key.clone(),
            budget,
        };
        match timeout_at(deadline, self.store.put(&self.config.bucket, &key, body)).await {
            Err(_) => return Err(late()),
            Ok(Err(e)) => return Err(WriteError::Store(e)),
            Ok(Ok(())) if Instant::now() > deadline => return Err(late()),
            Ok(Ok(())) => {}
        }

        let pointer = HeadPointer {
            latest: key.clone(),
            written_at: file.written_at.clone(),
        };
        let pointer = serde_json::to_vec(&pointer).unwrap_or_default();
        let pointer_error = |source| WriteError::Pointer {
            key: key.clone(),
            source,
        };
        self.store
            .put(
                &self.config.bucket,
                &head_key(&self.config.prefix),
                pointer.clone(),
            )
            .await
            .map_err(pointer_error)?;
        if let Some(legacy) = &self.config.legacy_flag_key {
            self.store
                .put(&self.config.bucket, legacy, pointer)
                .await
                .map_err(pointer_error)?;
        }
        Ok(Written {
            key,
            elapsed: started.elapsed(),
        })
    }
}

fn truncate_to_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use stream_refdata_aws::testing::MemoryStore;
    use stream_refdata_protocol::{ChangeKind, SequenceNumber, Source};

    /// A clock that moves one second forward each time it is read.
    struct SteppingClock(AtomicI64);
    impl Clock for SteppingClock {
        fn now(&self) -> DateTime<Utc> {
            let ms = self.0.fetch_add(1000, Ordering::SeqCst);
            DateTime::from_timestamp_millis(ms).unwrap()
        }
    }

    fn config(legacy: Option<&str>) -> FeedConfig {
        FeedConfig {
            bucket: "feed".into(),
            prefix: "change_flags/".into(),
            legacy_flag_key: legacy.map(str::to_owned),
            write_window: Duration::from_secs(20),
        }
    }

    fn file() -> ChangeFile {
        ChangeFile {
            schema_version: 1,
            kind: ChangeKind::Dynamodb,
            written_at: String::new(),
            write_window_ms: 0,
            producer: String::new(),
            source: Source {
                label: stream_refdata_protocol::source_label("arn"),
                ..Source::default()
            },
            changes: vec![],
            opaque: vec![],
            objects: vec![],
            reason: None,
        }
    }

    fn range() -> Option<SequenceRange> {
        Some(SequenceRange {
            first: SequenceNumber::parse("100").unwrap(),
            last: SequenceNumber::parse("200").unwrap(),
        })
    }

    fn writer(legacy: Option<&str>) -> FeedWriter<MemoryStore> {
        FeedWriter::new(
            config(legacy),
            MemoryStore::new(),
            SteppingClock(AtomicI64::new(1_795_650_067_123)),
            "test 1",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn writes_file_then_pointer_then_legacy_marker() {
        let w = writer(Some("change_flags/CHANGE_FLAG"));
        let written = w.write(file(), range(), None).await.unwrap();
        let keys = w.store.put_keys();
        assert_eq!(
            keys,
            [
                written.key.as_str(),
                "change_flags/_head",
                "change_flags/CHANGE_FLAG"
            ]
        );
        let parsed = ChangeKey::parse("change_flags/", &written.key).unwrap();
        assert_eq!(parsed.sequences, range());
        let body = ChangeFile::from_slice(&w.store.object("feed", &keys[0]).unwrap()).unwrap();
        assert_eq!(body.written_at, "20261125T234107.123Z");
        assert_eq!(body.write_window_ms, 20_000);
        assert_eq!(body.producer, "test 1");
        assert!(written
            .key
            .starts_with("change_flags/20261125T234107.123Z-"));
        let pointer = w.store.object("feed", &keys[1]).unwrap();
        let pointer: HeadPointer = serde_json::from_slice(&pointer).unwrap();
        assert_eq!(pointer.latest, written.key);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_is_a_gap_file_with_its_reason_and_the_pointer() {
        let w = writer(None);
        let written = w
            .write_gap("batch 42 discarded", "redrive-1")
            .await
            .unwrap();
        let keys = w.store.put_keys();
        assert_eq!(keys.len(), 2, "the gap file, then the pointer");
        let body = ChangeFile::from_slice(&w.store.object("feed", &keys[0]).unwrap()).unwrap();
        assert_eq!(body.kind, ChangeKind::Gap);
        assert_eq!(body.reason.as_deref(), Some("batch 42 discarded"));
        assert!(body.changes.is_empty() && body.opaque.is_empty());
        let parsed = ChangeKey::parse("change_flags/", &written.key).unwrap();
        assert_eq!(parsed.unique.as_deref(), Some("redrive-1"));
        assert_eq!(parsed.label, stream_refdata_protocol::source_label("gap"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_put_is_an_error_and_no_pointer_is_written() {
        let w = writer(None);
        w.store.fail_next_with("NoSuchBucket");
        let err = w.write(file(), range(), None).await.unwrap_err();
        assert!(matches!(err, WriteError::Store(_)), "{err}");
        assert!(err.to_string().contains("NoSuchBucket"));
        assert!(w.store.put_keys().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_put_slower_than_the_budget_is_late_and_the_retry_gets_a_new_key() {
        let w = writer(None);
        w.store.delay_next(Duration::from_secs(16));
        let err = w.write(file(), range(), None).await.unwrap_err();
        let WriteError::Late {
            key: late_key,
            budget,
        } = err
        else {
            panic!("expected Late, got {err}");
        };
        assert_eq!(budget, Duration::from_secs(15));
        assert!(
            w.store.put_keys().is_empty(),
            "no pointer after a late write"
        );

        let retried = w.write(file(), range(), None).await.unwrap();
        assert_ne!(retried.key, late_key);
        assert!(
            retried.key > late_key,
            "the retry sorts after the late attempt"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_put_just_inside_the_budget_is_acknowledged() {
        let w = writer(None);
        w.store.delay_next(Duration::from_millis(14_900));
        let written = w.write(file(), range(), None).await.unwrap();
        assert!(written.elapsed >= Duration::from_millis(14_900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pointer_fails_the_batch() {
        let w = writer(None);
        // The change file goes through, the pointer after it fails.
        w.store.delay_next(Duration::ZERO);
        w.store.fail_next(1);
        let err = w.write(file(), range(), None).await.unwrap_err();
        assert!(matches!(err, WriteError::Pointer { .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn unique_id_names_files_without_sequence_numbers() {
        let w = writer(None);
        let written = w.write(file(), None, Some("req/1 2")).await.unwrap();
        let parsed = ChangeKey::parse("change_flags/", &written.key).unwrap();
        assert_eq!(parsed.unique.as_deref(), Some("req_1_2"));
        assert_eq!(parsed.sequences, None);
    }
}
