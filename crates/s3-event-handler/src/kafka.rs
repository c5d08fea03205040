//! Change flags on every partition of a Kafka topic (Amazon MSK or a self-managed cluster), the
//! counterpart of the Kinesis flags for an orders stream on Kafka.
//!
//! The client is `rskafka`: pure Rust (nothing to cross-compile for Lambda, where librdkafka
//! through `rdkafka` would be a C build per target), SASL SCRAM and OAUTHBEARER, TLS through
//! rustls. MSK's IAM authentication is OAUTHBEARER with a token `aws-msk-iam-sasl-signer` makes
//! from the function's credentials (a SigV4-presigned `kafka-cluster:Connect`), as AWS's own
//! signer libraries do. Each invocation lists the topic's partitions (a metadata request: a
//! partition added since is not missed) and produces every flag to each, uncompressed and in
//! order; a partition that cannot be written after the retries fails the invocation, as a shard
//! does, and names the partitions that missed it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{
    Client, ClientBuilder, Credentials, OauthBearerCredentials, OauthCallback, SaslConfig,
};
use rskafka::record::Record;
use tokio::sync::Mutex;
use tracing::warn;

use crate::flags::{Delivered, FlagError, FlagSender, FlagStream};

/// How the function authenticates to the cluster (`KAFKA_AUTH`).
#[derive(Clone, PartialEq, Eq)]
pub enum KafkaAuth {
    /// `none`: plaintext, no authentication (a self-managed cluster's, or the local broker's).
    None,
    /// `tls`: TLS, no client authentication (MSK's TLS listener, port 9094).
    Tls,
    /// `scram-sha-512` or `scram-sha-256`: SASL/SCRAM over TLS, with `KAFKA_SASL_USERNAME` and
    /// `KAFKA_SASL_PASSWORD` (MSK's SCRAM listener, port 9096, takes SHA-512).
    Scram {
        /// SHA-512 (else SHA-256).
        sha512: bool,
        /// The user.
        username: String,
        /// Its password.
        password: String,
    },
    /// `iam`: MSK's IAM authentication (SASL/OAUTHBEARER over TLS, port 9098), with the
    /// function's own credentials.
    Iam,
}

impl std::fmt::Debug for KafkaAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (never the password)
        f.write_str(match self {
            KafkaAuth::None => "none",
            KafkaAuth::Tls => "tls",
            KafkaAuth::Scram { sha512: true, .. } => "scram-sha-512",
            KafkaAuth::Scram { sha512: false, .. } => "scram-sha-256",
            KafkaAuth::Iam => "iam",
        })
    }
}

/// The topic that gets the flags, and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTarget {
    /// `KAFKA_BOOTSTRAP_SERVERS`: `host:port` list, comma-separated.
    pub bootstrap_servers: Vec<String>,
    /// `FLAG_KAFKA_TOPIC`: the orders topic.
    pub topic: String,
    /// `KAFKA_AUTH`.
    pub auth: KafkaAuth,
}

/// What the handler needs of the flags' destination: every payload on every partition (or
/// shard), or an error.
pub trait Flags: Send + Sync {
    /// Puts every payload on every partition (or shard) open now.
    fn send(
        &self,
        payloads: &[Vec<u8>],
    ) -> impl Future<Output = Result<Delivered, FlagError>> + Send;
}

impl<F: FlagStream> Flags for FlagSender<F> {
    fn send(
        &self,
        payloads: &[Vec<u8>],
    ) -> impl Future<Output = Result<Delivered, FlagError>> + Send {
        FlagSender::send(self, payloads)
    }
}

/// What the flags need of a Kafka topic: its partitions now, and a produce to one of them. On
/// the cluster it is [`RsKafkaTopic`]; tests pass fakes (a partition that cannot be written).
pub trait TopicWriter: Send + Sync {
    /// The topic's name.
    fn topic(&self) -> &str;
    /// Its partitions, as the cluster's metadata says now (none is an error).
    fn partitions(&self) -> impl Future<Output = Result<Vec<i32>, FlagError>> + Send;
    /// Produces `payloads` to `partition`, in order: how many were written, or why not.
    fn produce(
        &self,
        partition: i32,
        payloads: &[Vec<u8>],
    ) -> impl Future<Output = Result<usize, String>> + Send;
}

/// A topic on a Kafka cluster, through rskafka: a client connected at the first invocation and
/// kept warm across them (connected again after a failed metadata request).
pub struct RsKafkaTopic {
    target: KafkaTarget,
    /// Where the IAM token's credentials and region come from.
    sdk: Option<aws_config::SdkConfig>,
    client: Mutex<Option<Arc<Client>>>,
}

impl std::fmt::Debug for RsKafkaTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsKafkaTopic")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl RsKafkaTopic {
    /// `target`'s topic; `sdk` gives the credentials and region of MSK's IAM authentication
    /// (unused otherwise).
    pub fn new(target: KafkaTarget, sdk: Option<aws_config::SdkConfig>) -> Self {
        RsKafkaTopic {
            target,
            sdk,
            client: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<Arc<Client>, FlagError> {
        let mut held = self.client.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(Arc::clone(c));
        }
        let mut builder = ClientBuilder::new(self.target.bootstrap_servers.clone())
            .client_id("stream-refdata-s3-event-handler")
            // (a broker that does not answer fails the invocation within Lambda's time, rather
            // than being retried until it ends: three attempts of at most 10 s each)
            .backoff_config(rskafka::BackoffConfig {
                deadline: Some(Duration::from_secs(10)),
                ..rskafka::BackoffConfig::default()
            });
        if self.target.auth != KafkaAuth::None {
            builder = builder.tls_config(tls_config().map_err(|e| self.error("TLS setup", e))?);
        }
        match &self.target.auth {
            KafkaAuth::None | KafkaAuth::Tls => {}
            KafkaAuth::Scram {
                sha512,
                username,
                password,
            } => {
                let credentials = Credentials::new(username.clone(), password.clone());
                builder = builder.sasl_config(if *sha512 {
                    SaslConfig::ScramSha512(credentials)
                } else {
                    SaslConfig::ScramSha256(credentials)
                });
            }
            KafkaAuth::Iam => {
                let sdk = self.sdk.clone().ok_or_else(|| {
                    self.error("IAM authentication", "no AWS configuration for the token")
                })?;
                builder = builder.sasl_config(SaslConfig::Oauthbearer(OauthBearerCredentials {
                    callback: iam_token(sdk),
                    authz_id: None,
                    bearer_kvs: Vec::new(),
                }));
            }
        }
        let client = Arc::new(
            builder
                .build()
                .await
                .map_err(|e| self.error("connect", e))?,
        );
        *held = Some(Arc::clone(&client));
        Ok(client)
    }

    fn error(&self, operation: &str, e: impl std::fmt::Display) -> FlagError {
        FlagError::Kafka {
            topic: self.target.topic.clone(),
            message: format!("{operation}: {e}"),
        }
    }
}

impl TopicWriter for RsKafkaTopic {
    fn topic(&self) -> &str {
        &self.target.topic
    }

    async fn partitions(&self) -> Result<Vec<i32>, FlagError> {
        let client = self.client().await?;
        let topics = match client.list_topics().await {
            Ok(t) => t,
            Err(e) => {
                // (a connection gone stale between invocations: connect again next time)
                *self.client.lock().await = None;
                return Err(self.error("list topics", e));
            }
        };
        let topic = (topics.into_iter())
            .find(|t| t.name == self.target.topic)
            .ok_or_else(|| self.error("list topics", "the topic does not exist"))?;
        if topic.partitions.is_empty() {
            return Err(self.error("list topics", "the topic has no partitions"));
        }
        Ok(topic.partitions.into_iter().collect())
    }

    async fn produce(&self, partition: i32, payloads: &[Vec<u8>]) -> Result<usize, String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let now = rskafka::chrono::Utc::now();
        let records: Vec<Record> = (payloads.iter())
            .map(|p| Record {
                key: None,
                value: Some(p.clone()),
                headers: Default::default(),
                timestamp: now,
            })
            .collect();
        let pc = (client)
            .partition_client(
                self.target.topic.clone(),
                partition,
                UnknownTopicHandling::Error,
            )
            .await
            .map_err(|e| e.to_string())?;
        let offsets =
            (pc.produce(records, Compression::NoCompression).await).map_err(|e| e.to_string())?;
        Ok(offsets.len())
    }
}

/// The flags on a Kafka topic's partitions, through `W` (the cluster's topic by default).
#[derive(Debug)]
pub struct KafkaFlags<W = RsKafkaTopic> {
    writer: W,
    attempts: u32,
    /// The pause before a partition's second attempt (doubled before each further one).
    pause: Duration,
}

impl KafkaFlags {
    /// Flags on `target`'s partitions; `sdk` gives the credentials and region of MSK's IAM
    /// authentication (unused otherwise).
    pub fn new(target: KafkaTarget, sdk: Option<aws_config::SdkConfig>) -> Self {
        KafkaFlags::with_writer(RsKafkaTopic::new(target, sdk))
    }
}

impl<W: TopicWriter> KafkaFlags<W> {
    /// Flags through `writer`: three attempts per partition, 200 ms then 400 ms apart.
    pub fn with_writer(writer: W) -> Self {
        KafkaFlags {
            writer,
            attempts: 3,
            pause: Duration::from_millis(200),
        }
    }

    /// The pause before a partition's second attempt (tests: none).
    pub fn with_pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

impl<W: TopicWriter> Flags for KafkaFlags<W> {
    async fn send(&self, payloads: &[Vec<u8>]) -> Result<Delivered, FlagError> {
        let partitions = self.writer.partitions().await?;
        let topic = self.writer.topic();
        // Every partition at once; each retried on its own.
        let results = join_all(partitions.iter().map(|&partition| async move {
            let mut last = String::new();
            for attempt in 1..=self.attempts {
                if attempt > 1 {
                    tokio::time::sleep(self.pause * (1 << (attempt - 2))).await;
                }
                match self.writer.produce(partition, payloads).await {
                    Ok(written) => return (partition, Ok((written, attempt - 1))),
                    Err(e) => {
                        last = e;
                        warn!(%topic, partition, attempt, error = %last, "flag not produced to the partition; retrying");
                    }
                }
            }
            (partition, Err(last))
        }))
        .await;
        let mut delivered = Delivered::default();
        let mut missing = Vec::new();
        let mut last_error = String::new();
        for (partition, result) in results {
            match result {
                Ok((records, retried)) => {
                    delivered.records += records;
                    delivered.retried += retried as usize;
                }
                Err(e) => {
                    missing.push(partition);
                    last_error = e;
                }
            }
        }
        if missing.is_empty() {
            Ok(delivered)
        } else {
            Err(FlagError::KafkaPartitions {
                topic: topic.to_owned(),
                partitions: missing,
                attempts: self.attempts,
                last_error,
            })
        }
    }
}

/// TLS with the system's root certificates (Amazon's CAs for MSK), on the AWS SDK's crypto
/// provider.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // (a certificate the store cannot take is skipped, as the platform's verifiers do)
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("no root certificates found ({:?})", found.errors));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// MSK's IAM token for OAUTHBEARER, from `sdk`'s credentials and region.
fn iam_token(sdk: aws_config::SdkConfig) -> OauthCallback {
    Arc::new(move || {
        let sdk = sdk.clone();
        Box::pin(async move {
            let region = sdk
                .region()
                .cloned()
                .ok_or("no AWS region for the IAM token")?;
            let provider = sdk
                .credentials_provider()
                .ok_or("no AWS credentials for the IAM token")?;
            let (token, _expires_ms) =
                aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(
                    region, provider,
                )
                .await?;
            Ok(token)
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex as StdMutex;

    use super::*;

    /// A topic whose partitions fail as told: partition -> failures before it takes a produce.
    #[derive(Default)]
    struct FakeTopic {
        partitions: Vec<i32>,
        failures: StdMutex<HashMap<i32, u32>>,
        written: StdMutex<HashMap<i32, Vec<Vec<u8>>>>,
    }

    impl TopicWriter for FakeTopic {
        fn topic(&self) -> &str {
            "orders"
        }
        async fn partitions(&self) -> Result<Vec<i32>, FlagError> {
            Ok(self.partitions.clone())
        }
        async fn produce(&self, partition: i32, payloads: &[Vec<u8>]) -> Result<usize, String> {
            let mut failures = self.failures.lock().unwrap();
            if let Some(n) = failures.get_mut(&partition).filter(|n| **n > 0) {
                *n -= 1;
                return Err("NOT_LEADER_OR_FOLLOWER".into());
            }
            (self.written.lock().unwrap().entry(partition).or_default())
                .extend(payloads.iter().cloned());
            Ok(payloads.len())
        }
    }

    fn topic(partitions: &[i32], failures: &[(i32, u32)]) -> FakeTopic {
        FakeTopic {
            partitions: partitions.to_vec(),
            failures: StdMutex::new(failures.iter().copied().collect()),
            ..FakeTopic::default()
        }
    }

    #[tokio::test]
    async fn every_flag_goes_to_every_partition_a_failed_produce_retried() {
        let flags =
            KafkaFlags::with_writer(topic(&[0, 1, 2, 3], &[(2, 2)])).with_pause(Duration::ZERO);
        let payloads = vec![b"flag".to_vec(), b"legacy".to_vec()];
        let delivered = flags.send(&payloads).await.unwrap();
        assert_eq!((delivered.records, delivered.retried), (8, 2));
        let written = flags.writer.written.lock().unwrap();
        for p in 0..4 {
            assert_eq!(written[&p], payloads, "partition {p}");
        }
    }

    #[tokio::test]
    async fn a_partition_that_cannot_be_written_fails_the_send_and_is_named() {
        // (partition 1 fails every attempt; the others are written)
        let flags =
            KafkaFlags::with_writer(topic(&[0, 1, 2], &[(1, 99)])).with_pause(Duration::ZERO);
        let err = flags.send(&[b"flag".to_vec()]).await.unwrap_err();
        match &err {
            FlagError::KafkaPartitions {
                partitions,
                attempts,
                last_error,
                ..
            } => {
                assert_eq!((partitions.as_slice(), *attempts), (&[1][..], 3));
                assert!(last_error.contains("NOT_LEADER"), "{last_error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("partitions [1]"), "{err}");
    }
}
