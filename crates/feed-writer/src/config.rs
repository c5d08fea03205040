//! The change-feed settings every producer reads from its environment.

use std::time::Duration;

use stream_refdata_aws::{optional_var, required_var, validate_bucket, ConfigError};
use stream_refdata_protocol::{DEFAULT_WRITE_WINDOW_MS, WRITE_MARGIN_MS};

/// Where and how a producer writes the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedConfig {
    /// `CHANGE_BUCKET`: the bucket that holds the feed (required).
    pub bucket: String,
    /// `CHANGE_PREFIX`: the feed's key prefix (default `change_flags/`).
    pub prefix: String,
    /// `LEGACY_FLAG_KEY`: optional fixed marker object (e.g. `change_flags/CHANGE_FLAG`) also
    /// written after each change file, for consumers of the original design during a migration.
    pub legacy_flag_key: Option<String>,
    /// `WRITE_WINDOW_SECS`: the write window W (default 20 s, more than 5 s). The function's
    /// timeout must exceed it.
    pub write_window: Duration,
}

impl FeedConfig {
    /// Default feed prefix, the original design's.
    pub const DEFAULT_PREFIX: &'static str = "change_flags/";

    /// Reads the feed settings from the process environment.
    pub fn from_env() -> Result<FeedConfig, ConfigError> {
        FeedConfig::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    /// Reads the feed settings through `get` (tests pass a map).
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<FeedConfig, ConfigError> {
        let bucket = required_var(get, "CHANGE_BUCKET")?;
        validate_bucket("CHANGE_BUCKET", &bucket)?;
        let prefix = get("CHANGE_PREFIX").unwrap_or_else(|| Self::DEFAULT_PREFIX.to_owned());
        if prefix.starts_with('/') {
            return Err(ConfigError::Invalid {
                var: "CHANGE_PREFIX",
                value: prefix,
                reason: "S3 keys do not start with '/'".into(),
            });
        }
        let legacy_flag_key = optional_var(get, "LEGACY_FLAG_KEY");
        let write_window = match optional_var(get, "WRITE_WINDOW_SECS") {
            None => Duration::from_millis(DEFAULT_WRITE_WINDOW_MS),
            Some(v) => parse_window(&v)?,
        };
        Ok(FeedConfig {
            bucket,
            prefix,
            legacy_flag_key,
            write_window,
        })
    }

    /// The time a PUT may take and still be acknowledged: `W - 5 s`.
    pub fn write_budget(&self) -> Duration {
        self.write_window
            .saturating_sub(Duration::from_millis(WRITE_MARGIN_MS))
    }
}

fn parse_window(value: &str) -> Result<Duration, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var: "WRITE_WINDOW_SECS",
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let secs: f64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not a number of seconds"))?;
    if !secs.is_finite() || secs * 1000.0 <= WRITE_MARGIN_MS as f64 || secs > 900.0 {
        return Err(invalid(
            "must be more than the 5 s clock margin and at most 900 s (Lambda's longest timeout)",
        ));
    }
    Ok(Duration::from_millis((secs * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults() {
        let c = FeedConfig::from_lookup(&lookup(&[("CHANGE_BUCKET", "feed-bucket")])).unwrap();
        assert_eq!(c.prefix, "change_flags/");
        assert_eq!(c.legacy_flag_key, None);
        assert_eq!(c.write_window, Duration::from_secs(20));
        assert_eq!(c.write_budget(), Duration::from_secs(15));
    }

    #[test]
    fn missing_bucket_names_the_variable() {
        let err = FeedConfig::from_lookup(&lookup(&[])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                var: "CHANGE_BUCKET"
            }
        );
        assert!(err.to_string().contains("CHANGE_BUCKET"));
        let err = FeedConfig::from_lookup(&lookup(&[("CHANGE_BUCKET", "  ")])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                var: "CHANGE_BUCKET"
            }
        );
    }

    #[test]
    fn invalid_values_name_the_variable_and_value() {
        for (var, value) in [
            ("CHANGE_BUCKET", "Bad_Bucket"),
            ("CHANGE_PREFIX", "/abs/"),
            ("WRITE_WINDOW_SECS", "twenty"),
            ("WRITE_WINDOW_SECS", "5"),
            ("WRITE_WINDOW_SECS", "901"),
            ("WRITE_WINDOW_SECS", "NaN"),
        ] {
            let mut pairs = vec![("CHANGE_BUCKET", "feed-bucket")];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = FeedConfig::from_lookup(&lookup(&pairs)).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn window_and_legacy_key() {
        let c = FeedConfig::from_lookup(&lookup(&[
            ("CHANGE_BUCKET", "feed.bucket-1"),
            ("CHANGE_PREFIX", "feed/"),
            ("LEGACY_FLAG_KEY", "change_flags/CHANGE_FLAG"),
            ("WRITE_WINDOW_SECS", "5.5"),
        ]))
        .unwrap();
        assert_eq!(c.prefix, "feed/");
        assert_eq!(
            c.legacy_flag_key.as_deref(),
            Some("change_flags/CHANGE_FLAG")
        );
        assert_eq!(c.write_budget(), Duration::from_millis(500));
    }
}
