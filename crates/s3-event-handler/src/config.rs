//! Configuration from the environment.

use aws_plumbing::{optional_var, required_var, ConfigError};
use feed_writer::FeedConfig;

/// The s3-event-handler's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `CHANGE_BUCKET`, `CHANGE_PREFIX`, `WRITE_WINDOW_SECS`: where change files go.
    pub feed: FeedConfig,
    /// `FLAG_STREAM`: the data stream (name or ARN) that gets the flags.
    pub flag_stream: String,
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
        let flag_stream = required_var(get, "FLAG_STREAM")?;
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
            flag_stream,
            reference_prefix,
            reference_bucket,
            legacy_flag_payload,
        })
    }
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
        Config::from_lookup(&aws_plumbing::vars::from_pairs(
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
        assert_eq!(c.flag_stream, "SourceKinesisStream");
        assert_eq!(c.feed.prefix, "change_flags/");
        assert!(c.legacy_flag_payload.is_some());
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
