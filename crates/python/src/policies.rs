//! The enrichment policies from the constructors' keyword arguments, and the errors of bad
//! arguments.
//!
//! Every default is the `enrichment` crate's, [`Policies::default()`] (with its
//! [`FeedSettings::default()`]): an argument left out arrives as [`Arg::Default`] and is resolved
//! here from those, so no default is restated in this package.

use std::fmt;
use std::time::{Duration, TryFromFloatSecsError};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use stream_refdata::{FeedSettings, Policies, Unmatched};

/// A keyword argument whose default is the library's: [`Arg::Default`] when it was left out (the
/// signature's default, shown as `...`), [`Arg::Given`] with the value otherwise. Extracted as
/// `T` is, so a value of the wrong type raises the same `TypeError`.
#[derive(Debug)]
pub(crate) enum Arg<T> {
    /// Left out: the library's default.
    Default,
    /// Given by the caller.
    Given(T),
}

impl<'a, 'py, T: FromPyObject<'a, 'py>> FromPyObject<'a, 'py> for Arg<T> {
    type Error = T::Error;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self, Self::Error> {
        T::extract(obj).map(Arg::Given)
    }
}

impl<T> Arg<T> {
    /// The value given, or else `default`.
    fn or(self, default: T) -> T {
        match self {
            Arg::Default => default,
            Arg::Given(value) => value,
        }
    }

    /// The value given, converted, or else `default`.
    fn resolve<U, E>(self, default: U, convert: impl FnOnce(T) -> Result<U, E>) -> Result<U, E> {
        match self {
            Arg::Default => Ok(default),
            Arg::Given(value) => convert(value),
        }
    }
}

/// The policy arguments both reference kinds take, as given.
#[derive(Debug)]
pub(crate) struct PolicyArgs {
    /// The feed's key prefix.
    pub(crate) feed_prefix: Arg<String>,
    /// The unmatched-record policy, by name (dead-letter or reject, pass, drop, hold).
    pub(crate) unmatched: Arg<String>,
    /// The staleness limit (`None`: never reject records as stale).
    pub(crate) max_staleness_seconds: Arg<Option<f64>>,
    /// The maximum age of a full load (`None`: never reload without a reason).
    pub(crate) max_age_seconds: Arg<Option<f64>>,
    /// How often the feed is polled at most.
    pub(crate) poll_interval_seconds: Arg<f64>,
    /// This consumer's write window W.
    pub(crate) write_window_seconds: Arg<f64>,
    /// How long change files live.
    pub(crate) retention_days: Arg<u64>,
    /// Where the feed-compactor keeps snapshots (`None`: never look for one).
    pub(crate) snapshot_prefix: Arg<Option<String>>,
    /// The clock margin.
    pub(crate) clock_margin_seconds: Arg<f64>,
}

impl PolicyArgs {
    /// The policies: the library's defaults, with what was given in their place. The arguments
    /// are checked in the order the package has always checked them (a call with several bad
    /// ones raises for the same one).
    pub(crate) fn into_policies(self) -> Result<Policies, ArgumentError> {
        let defaults = Policies::default();
        let feed = defaults.feed;
        let unmatched = self
            .unmatched
            .resolve(defaults.unmatched, |name| unmatched(&name))?;
        let retention = self.retention_days.resolve(feed.retention, retention)?;
        let poll_interval = self
            .poll_interval_seconds
            .resolve(feed.poll_interval, |s| secs("poll_interval_seconds", s))?;
        let write_window = self
            .write_window_seconds
            .resolve(feed.write_window, |s| secs("write_window_seconds", s))?;
        let clock_margin = self
            .clock_margin_seconds
            .resolve(feed.clock_margin, |s| secs("clock_margin_seconds", s))?;
        let max_staleness = self
            .max_staleness_seconds
            .resolve(defaults.max_staleness, |s| {
                optional_secs("max_staleness_seconds", s)
            })?;
        let max_age = self
            .max_age_seconds
            .resolve(defaults.max_age, |s| optional_secs("max_age_seconds", s))?;
        let feed = FeedSettings {
            prefix: self.feed_prefix.or(feed.prefix),
            snapshot_prefix: self.snapshot_prefix.or(feed.snapshot_prefix),
            poll_interval,
            write_window,
            retention,
            clock_margin,
            ..feed
        };
        Ok(Policies {
            unmatched,
            feed,
            max_staleness,
            max_age,
            ..defaults
        })
    }
}

fn unmatched(name: &str) -> Result<Unmatched, ArgumentError> {
    name.parse().map_err(ArgumentError::Unmatched)
}

fn retention(days: u64) -> Result<Duration, ArgumentError> {
    if days < 2 {
        return Err(ArgumentError::Retention(days));
    }
    Ok(Duration::from_secs(days * 24 * 3600))
}

fn secs(what: &'static str, value: f64) -> Result<Duration, ArgumentError> {
    Duration::try_from_secs_f64(value).map_err(|source| ArgumentError::Duration {
        what,
        value,
        source,
    })
}

fn optional_secs(
    what: &'static str,
    value: Option<f64>,
) -> Result<Option<Duration>, ArgumentError> {
    value.map(|s| secs(what, s)).transpose()
}

/// A constructor argument that cannot be used; raised as `ValueError` with this message.
#[derive(Debug)]
pub(crate) enum ArgumentError {
    /// A name that is empty or only white space (the argument's name).
    Blank(&'static str),
    /// `key_attributes` is not one or two names.
    KeyAttributes(Vec<String>),
    /// A bucket name that S3 would refuse.
    Bucket(stream_refdata_aws::ConfigError),
    /// An unknown unmatched policy (the enrichment crate's message).
    Unmatched(String),
    /// A retention too short for the reload rule.
    Retention(u64),
    /// A number of seconds that is not a duration (negative, not finite, too large).
    Duration {
        /// The argument.
        what: &'static str,
        /// Its value.
        value: f64,
        /// Why it is not a duration.
        source: TryFromFloatSecsError,
    },
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentError::Blank(what) => {
                write!(f, "{what} is blank: give the name of what it stands for")
            }
            ArgumentError::KeyAttributes(names) => write!(
                f,
                "key_attributes={names:?}: one or two attribute names (hash key, range key)"
            ),
            ArgumentError::Bucket(e) => e.fmt(f),
            ArgumentError::Unmatched(message) => f.write_str(message),
            ArgumentError::Retention(days) => write!(
                f,
                "retention_days={days}: at least 2 (consumers reload when their last listing is older than this minus a day)"
            ),
            ArgumentError::Duration { what, value, .. } => {
                write!(f, "{what}={value} is not a duration in seconds")
            }
        }
    }
}

impl std::error::Error for ArgumentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The bucket's error is shown as it is (its message is this one's).
            ArgumentError::Bucket(e) => e.source(),
            ArgumentError::Duration { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<stream_refdata_aws::ConfigError> for ArgumentError {
    fn from(e: stream_refdata_aws::ConfigError) -> Self {
        ArgumentError::Bucket(e)
    }
}

/// `value` as the argument `what`, refused when it is empty or only white space (a blank lookup
/// attribute would load every item and then match nothing, without a word).
pub(crate) fn not_blank(what: &'static str, value: &str) -> Result<(), ArgumentError> {
    if value.trim().is_empty() {
        return Err(ArgumentError::Blank(what));
    }
    Ok(())
}

impl From<ArgumentError> for PyErr {
    fn from(e: ArgumentError) -> Self {
        PyValueError::new_err(e.to_string())
    }
}
