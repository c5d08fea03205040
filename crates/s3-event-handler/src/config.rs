//! Configuration from the environment.

use feed_writer::FeedConfig;
use stream_refdata_aws::{optional_var, required_var, ConfigError};

use crate::kafka::{KafkaAuth, KafkaTarget};

/// Where the flags go: every open shard of a Kinesis data stream, or every partition of a Kafka
/// topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagTarget {
    /// `FLAG_STREAM`: the data stream (name or ARN).
    Kinesis(String),
    /// `FLAG_KAFKA_TOPIC` on `KAFKA_BOOTSTRAP_SERVERS`, authenticated as `KAFKA_AUTH` says.
    Kafka(KafkaTarget),
}

/// The s3-event-handler's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `CHANGE_BUCKET`, `CHANGE_PREFIX`, `WRITE_WINDOW_SECS`: where change files go.
    pub feed: FeedConfig,
    /// Where the flags go: `FLAG_STREAM` (Kinesis), or `FLAG_KAFKA_TOPIC` with
    /// `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_AUTH` (`none`, `tls`, `scram-sha-512`,
    /// `scram-sha-256` with `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`, or `iam`), one of
    /// the two.
    pub flags: FlagTarget,
    /// `REFERENCE_PREFIX`: only objects under it are reference data.
    pub reference_prefix: String,
    /// `REFERENCE_BUCKET` (optional): only objects of this bucket are reference data.
    pub reference_bucket: Option<String>,
    /// `LEGACY_FLAG_PAYLOAD` (optional): a record also put on every shard for consumers of the
    /// original design, e.g. `{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}`.
    pub legacy_flag_payload: Option<Vec<u8>>,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    /// Reads the settings through `get`. Refuses a change feed that overlaps the reference
    /// prefix: the function's own writes would trigger it again.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let feed = FeedConfig::from_lookup(get)?;
        let flags = flag_target(get)?;
        let reference_prefix = required_var(get, "REFERENCE_PREFIX")?;
        let reference_bucket = optional_var(get, "REFERENCE_BUCKET");
        let legacy_flag_payload = match optional_var(get, "LEGACY_FLAG_PAYLOAD") {
            None => None,
            Some(v) => {
                serde_json::from_str::<serde_json::Value>(&v).map_err(|e| {
                    ConfigError::Invalid {
                        var: "LEGACY_FLAG_PAYLOAD",
                        value: v.clone(),
                        reason: format!("not JSON: {e}"),
                    }
                })?;
                Some(v.into_bytes())
            }
        };
        let same_bucket = reference_bucket.as_deref().is_none_or(|b| b == feed.bucket);
        let overlap = reference_prefix.starts_with(&feed.prefix)
            || feed.prefix.starts_with(&reference_prefix);
        if same_bucket && overlap {
            return Err(ConfigError::Invalid {
                var: "CHANGE_PREFIX",
                value: feed.prefix.clone(),
                reason: format!(
                    "overlaps REFERENCE_PREFIX={reference_prefix:?} in the same bucket: the function's own change files would trigger it (set REFERENCE_BUCKET if the buckets differ)"
                ),
            });
        }
        Ok(Config {
            feed,
            flags,
            reference_prefix,
            reference_bucket,
            legacy_flag_payload,
        })
    }
}

/// The flags' destination: `FLAG_STREAM` or the Kafka variables, one of the two.
fn flag_target(get: &impl Fn(&str) -> Option<String>) -> Result<FlagTarget, ConfigError> {
    let stream = optional_var(get, "FLAG_STREAM");
    let topic = match (stream, optional_var(get, "FLAG_KAFKA_TOPIC")) {
        (Some(s), None) => return Ok(FlagTarget::Kinesis(s)),
        (None, None) => return required_var(get, "FLAG_STREAM").map(FlagTarget::Kinesis),
        (Some(_), Some(t)) => {
            return Err(ConfigError::Invalid {
                var: "FLAG_KAFKA_TOPIC",
                value: t,
                reason: "set with FLAG_STREAM: the flags go to one stream, Kinesis or Kafka".into(),
            })
        }
        (None, Some(t)) => t,
    };
    let servers = required_var(get, "KAFKA_BOOTSTRAP_SERVERS")?;
    let bootstrap_servers: Vec<String> = (servers.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if bootstrap_servers.is_empty() {
        return Err(ConfigError::Invalid {
            var: "KAFKA_BOOTSTRAP_SERVERS",
            value: servers,
            reason: "names no broker (host:port, comma-separated)".into(),
        });
    }
    let auth = optional_var(get, "KAFKA_AUTH").unwrap_or_else(|| "none".into());
    let scram = |sha512: bool| -> Result<KafkaAuth, ConfigError> {
        Ok(KafkaAuth::Scram {
            sha512,
            username: required_var(get, "KAFKA_SASL_USERNAME")?,
            password: required_var(get, "KAFKA_SASL_PASSWORD")?,
        })
    };
    let auth = match auth.as_str() {
        "none" => KafkaAuth::None,
        "tls" => KafkaAuth::Tls,
        "scram-sha-512" => scram(true)?,
        "scram-sha-256" => scram(false)?,
        "iam" => KafkaAuth::Iam,
        _ => {
            return Err(ConfigError::Invalid {
                var: "KAFKA_AUTH",
                value: auth,
                reason: "is none of none, tls, scram-sha-512, scram-sha-256, iam".into(),
            })
        }
    };
    Ok(FlagTarget::Kafka(KafkaTarget {
        bootstrap_servers,
        topic,
        auth,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The required variables, then `pairs`.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let required = [
            ("CHANGE_BUCKET", "feed-bucket"),
            ("FLAG_STREAM", "SourceKinesisStream"),
            ("REFERENCE_PREFIX", "reference/"),
        ];
        Config::from_lookup(&stream_refdata_aws::vars::from_pairs(
            required.into_iter().chain(pairs.iter().copied()),
        ))
    }

    /// `pairs` are refused with an error that names `named`.
    fn assert_refused(pairs: &[(&str, &str)], named: &str) {
        let err = config(pairs).unwrap_err();
        assert!(err.to_string().contains(named), "{err}");
    }

    #[test]
    fn reads_the_variables() {
        let c = config(&[(
            "LEGACY_FLAG_PAYLOAD",
            r#"{"dish":"CHANGE_FLAG","cost":0,"customer_id":0}"#,
        )])
        .unwrap();
        assert_eq!(c.flags, FlagTarget::Kinesis("SourceKinesisStream".into()));
        assert_eq!(c.feed.prefix, "change_flags/");
        assert!(c.legacy_flag_payload.is_some());
    }

    #[test]
    fn reads_the_kafka_variables() {
        let kafka = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("CHANGE_BUCKET", "feed-bucket"),
                ("REFERENCE_PREFIX", "reference/"),
                ("FLAG_KAFKA_TOPIC", "orders"),
                ("KAFKA_BOOTSTRAP_SERVERS", "b-1:9098, b-2:9098"),
            ];
            all.extend_from_slice(pairs);
            Config::from_lookup(&stream_refdata_aws::vars::from_pairs(all))
        };
        let c = kafka(&[("KAFKA_AUTH", "iam")]).unwrap();
        assert_eq!(
            c.flags,
            FlagTarget::Kafka(KafkaTarget {
                bootstrap_servers: vec!["b-1:9098".into(), "b-2:9098".into()],
                topic: "orders".into(),
                auth: KafkaAuth::Iam,
            })
        );
        let c = kafka(&[]).unwrap();
        assert!(matches!(c.flags, FlagTarget::Kafka(t) if t.auth == KafkaAuth::None));
        let c = kafka(&[
            ("KAFKA_AUTH", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "secret"),
        ])
        .unwrap();
        // (the password never printed)
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
        let err = kafka(&[("KAFKA_AUTH", "scram-sha-512")]).unwrap_err();
        assert!(err.to_string().contains("KAFKA_SASL_USERNAME"), "{err}");
        let err = kafka(&[("KAFKA_AUTH", "kerberos")]).unwrap_err();
        assert!(err.to_string().contains("KAFKA_AUTH"), "{err}");
        let err = kafka(&[("FLAG_STREAM", "s")]).unwrap_err();
        assert!(err.to_string().contains("FLAG_KAFKA_TOPIC"), "{err}");
        let err = kafka(&[("KAFKA_BOOTSTRAP_SERVERS", " , ")]).unwrap_err();
        assert!(err.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{err}");
    }

    #[test]
    fn missing_and_invalid_variables_are_named() {
        assert_refused(&[("FLAG_STREAM", "")], "FLAG_STREAM");
        assert_refused(
            &[("LEGACY_FLAG_PAYLOAD", "{not json")],
            "LEGACY_FLAG_PAYLOAD",
        );
    }

    #[test]
    fn a_feed_overlapping_the_reference_prefix_is_refused() {
        assert_refused(
            &[("CHANGE_PREFIX", "reference/changes/")],
            "would trigger it",
        );
        assert_refused(
            &[("REFERENCE_PREFIX", "change_flags/ref/")],
            "CHANGE_PREFIX",
        );
        // Different buckets: no overlap.
        assert!(config(&[
            ("REFERENCE_PREFIX", "change_flags/ref/"),
            ("REFERENCE_BUCKET", "reference-bucket")
        ])
        .is_ok());
    }
}
