//! Change flags into the data stream, on every open shard.
//!
//! The original put one record with a fixed partition key, which lands on one shard of four:
//! consumers of the other shards never saw it. Here each flag goes to every open shard with
//! `ExplicitHashKey` = the shard's starting hash key. PutRecords results are checked one by one:
//! a failed entry (throttling) is retried, and a record that landed on another shard than
//! intended (the stream was resharded) makes the sender list the shards again and put the flag
//! to the shards that missed it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tracing::{debug, warn};

/// Entries per PutRecords call: Kinesis accepts at most 500 (and 5 MiB; flags are a few hundred
/// bytes, so 500 of them stay far below that).
pub const MAX_PUT_RECORDS: usize = 500;

/// An open shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Its id.
    pub id: String,
    /// Its starting hash key: a record with this explicit hash key lands on it.
    pub starting_hash_key: String,
}

/// One PutRecords entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The record's data.
    pub data: Vec<u8>,
    /// Where it must land.
    pub explicit_hash_key: String,
}

/// One PutRecords result, in entry order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutResult {
    /// The shard the record landed on (success).
    pub shard_id: Option<String>,
    /// Why it failed (e.g. `ProvisionedThroughputExceededException`).
    pub error_code: Option<String>,
}

/// A Kinesis call failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on stream {stream} failed: {message}")]
pub struct StreamError {
    /// The operation.
    pub operation: &'static str,
    /// The stream.
    pub stream: String,
    /// What was said (for the SDK's errors, their whole chain).
    pub message: String,
    /// The SDK's error, if the failure was one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// The two Kinesis calls the sender needs. Implemented on the SDK by [`KinesisStream`].
pub trait FlagStream: Send + Sync {
    /// The open shards (no ending sequence number).
    fn open_shards(&self) -> impl Future<Output = Result<Vec<Shard>, StreamError>> + Send;
    /// PutRecords.
    fn put_records(
        &self,
        entries: Vec<Entry>,
    ) -> impl Future<Output = Result<Vec<PutResult>, StreamError>> + Send;
}

/// Why flags could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// A Kinesis call failed outright.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A Kafka request failed outright (connecting, authenticating, listing the topic).
    #[error("Kafka topic {topic}: {message}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What failed, and why.
        message: String,
    },
    /// Some partitions of the Kafka topic still missed the flags after every attempt.
    #[error("flags not produced to partitions {partitions:?} of Kafka topic {topic} after {attempts} attempts (last error: {last_error})")]
    KafkaPartitions {
        /// The topic.
        topic: String,
        /// The partitions that missed them.
        partitions: Vec<i32>,
        /// Attempts made per partition.
        attempts: u32,
        /// The last error.
        last_error: String,
    },
    /// Some shards still missed a flag after every attempt.
    #[error("flags still missing on {missing} shard deliveries after {attempts} attempts (last error: {last_error})")]
    Undelivered {
        /// How many (flag, shard) pairs were not delivered.
        missing: usize,
        /// Attempts made.
        attempts: u32,
        /// The last entry error code.
        last_error: String,
    },
}

/// What a delivery took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Records put successfully (one per flag per shard, plus re-puts after resharding).
    pub records: usize,
    /// Entries that failed and were retried.
    pub retried: usize,
    /// Times the shard list was read again because of resharding.
    pub reshards: usize,
}

/// Puts flags on every open shard, caching the shard list between invocations.
#[derive(Debug)]
pub struct FlagSender<F> {
    stream: F,
    shards: Mutex<Option<Vec<Shard>>>,
    max_attempts: u32,
}

impl<F: FlagStream> FlagSender<F> {
    /// A sender on `stream`.
    pub fn new(stream: F) -> Self {
        FlagSender {
            stream,
            shards: Mutex::new(None),
            max_attempts: 8,
        }
    }

    async fn shards(&self, refresh: bool) -> Result<Vec<Shard>, StreamError> {
        if !refresh {
            if let Some(s) = self
                .shards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                return Ok(s);
            }
        }
        let s = self.stream.open_shards().await?;
        *self.shards.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.clone());
        Ok(s)
    }

    /// Puts every payload on every open shard. Succeeds only when each payload reached each
    /// shard that is open at the end.
    pub async fn send(&self, payloads: &[Vec<u8>]) -> Result<Delivered, FlagError> {
        let mut delivered: HashSet<(usize, String)> = HashSet::new();
        let mut report = Delivered::default();
        let mut refresh = false;
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            let shards = self.shards(refresh).await?;
            refresh = false;
            let pending: Vec<(usize, &Shard)> = payloads
                .iter()
                .enumerate()
                .flat_map(|(p, _)| shards.iter().map(move |s| (p, s)))
                .filter(|(p, s)| !delivered.contains(&(*p, s.id.clone())))
                .collect();
            if pending.is_empty() {
                return Ok(report);
            }
            if attempt > 1 {
                tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
            }
            let mut results = Vec::with_capacity(pending.len());
            for chunk in pending.chunks(MAX_PUT_RECORDS) {
                let entries = chunk
                    .iter()
                    .map(|(p, s)| Entry {
                        data: payloads[*p].clone(),
                        explicit_hash_key: s.starting_hash_key.clone(),
                    })
                    .collect();
                results.extend(self.stream.put_records(entries).await?);
            }
            for ((p, shard), result) in pending.iter().zip(results) {
                match (result.shard_id, result.error_code) {
                    (Some(landed), None) => {
                        report.records += 1;
                        if landed != shard.id {
                            debug!(intended = %shard.id, %landed, "flag landed on another shard; listing shards again");
                            refresh = true;
                        }
                        delivered.insert((*p, landed));
                    }
                    (_, code) => {
                        report.retried += 1;
                        last_error = code.unwrap_or_else(|| "no shard id in the result".into());
                        warn!(shard = %shard.id, error = %last_error, "flag not put; retrying");
                    }
                }
            }
            if refresh {
                report.reshards += 1;
            }
        }
        let shards = self.shards(true).await?;
        let missing = payloads.len() * shards.len()
            - shards
                .iter()
                .map(|s| {
                    (0..payloads.len())
                        .filter(|p| delivered.contains(&(*p, s.id.clone())))
                        .count()
                })
                .sum::<usize>();
        if missing == 0 {
            return Ok(report);
        }
        Err(FlagError::Undelivered {
            missing,
            attempts: self.max_attempts,
            last_error,
        })
    }
}

/// [`FlagStream`] on the SDK's Kinesis client; the stream is named by name or ARN.
#[derive(Clone, Debug)]
pub struct KinesisStream {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl KinesisStream {
    /// `stream` is a stream name or ARN (`FLAG_STREAM`).
    pub fn new(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Self {
        KinesisStream {
            client,
            stream: stream.into(),
        }
    }

    fn is_arn(&self) -> bool {
        self.stream.starts_with("arn:")
    }

    fn error(
        &self,
        operation: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> StreamError {
        StreamError {
            operation,
            stream: self.stream.clone(),
            message: DisplayErrorContext(&e).to_string(),
            source: Some(Box::new(e)),
        }
    }
}

impl FlagStream for KinesisStream {
    async fn open_shards(&self) -> Result<Vec<Shard>, StreamError> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut request = self.client.list_shards();
            request = match token.take() {
                Some(t) => request.next_token(t),
                None if self.is_arn() => request.stream_arn(&self.stream),
                None => request.stream_name(&self.stream),
            };
            let out = request
                .send()
                .await
                .map_err(|e| self.error("ListShards", e))?;
            for s in out.shards() {
                let closed = s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some();
                if !closed {
                    shards.push(Shard {
                        id: s.shard_id().to_owned(),
                        starting_hash_key: s
                            .hash_key_range()
                            .map(|h| h.starting_hash_key().to_owned())
                            .unwrap_or_else(|| "0".into()),
                    });
                }
            }
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(shards),
            }
        }
    }

    async fn put_records(&self, entries: Vec<Entry>) -> Result<Vec<PutResult>, StreamError> {
        let records = entries
            .into_iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.data))
                    .partition_key("stream-refdata-flag")
                    .explicit_hash_key(e.explicit_hash_key)
                    .build()
                    .map_err(|e| self.error("PutRecords", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut request = self.client.put_records().set_records(Some(records));
        request = if self.is_arn() {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let out = request
            .send()
            .await
            .map_err(|e| self.error("PutRecords", e))?;
        Ok(out
            .records()
            .iter()
            .map(|r| PutResult {
                shard_id: r.shard_id().map(str::to_owned),
                error_code: r.error_code().map(str::to_owned),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stream of `shards` open shards that records the size of every PutRecords call.
    struct ManyShards {
        shards: usize,
        calls: Mutex<Vec<usize>>,
        largest: AtomicUsize,
    }

    impl FlagStream for ManyShards {
        async fn open_shards(&self) -> Result<Vec<Shard>, StreamError> {
            Ok((0..self.shards)
                .map(|i| Shard {
                    id: format!("shardId-{i:012}"),
                    starting_hash_key: i.to_string(),
                })
                .collect())
        }

        async fn put_records(&self, entries: Vec<Entry>) -> Result<Vec<PutResult>, StreamError> {
            if entries.len() > MAX_PUT_RECORDS {
                return Err(StreamError {
                    operation: "PutRecords",
                    stream: "s".into(),
                    message: format!("{} records: at most 500 per request", entries.len()),
                    source: None,
                });
            }
            self.calls.lock().unwrap().push(entries.len());
            self.largest.fetch_max(entries.len(), Ordering::SeqCst);
            Ok(entries
                .iter()
                .map(|e| PutResult {
                    shard_id: Some(format!(
                        "shardId-{:012}",
                        e.explicit_hash_key.parse::<usize>().unwrap()
                    )),
                    error_code: None,
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn flags_go_out_in_put_records_calls_of_at_most_500_entries() {
        // 300 shards and two payloads per change (the flag and the legacy one): 600 entries.
        let stream = ManyShards {
            shards: 300,
            calls: Mutex::default(),
            largest: AtomicUsize::new(0),
        };
        let sender = FlagSender::new(stream);
        let delivered = sender
            .send(&[b"flag".to_vec(), b"legacy".to_vec()])
            .await
            .unwrap();
        assert_eq!(delivered.records, 600);
        assert_eq!(*sender.stream.calls.lock().unwrap(), vec![500, 100]);

        let wide = FlagSender::new(ManyShards {
            shards: 1200,
            calls: Mutex::default(),
            largest: AtomicUsize::new(0),
        });
        assert_eq!(wide.send(&[b"flag".to_vec()]).await.unwrap().records, 1200);
        assert_eq!(wide.stream.largest.load(Ordering::SeqCst), 500);
    }
}
