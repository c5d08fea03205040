//! Configuration from the environment.

use std::time::Duration;

use stream_refdata::Unmatched;
use stream_refdata_aws::{key_attributes_var, number_var, optional_var, required_var, ConfigError};

/// The orders consumer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `REFERENCE_TABLE`: the reference table (`ProductPriority`).
    pub reference_table: String,
    /// `REFERENCE_KEY_ATTRIBUTES`: its key attributes, hash key first (default `item,price`).
    pub key_attributes: Vec<String>,
    /// `CHANGE_BUCKET`: bucket of the change feed.
    pub change_bucket: String,
    /// `CHANGE_PREFIX`: prefix of the change feed (default `change_flags/`).
    pub change_prefix: String,
    /// `OUTPUT_BUCKET`: where enriched orders go.
    pub output_bucket: String,
    /// `OUTPUT_PREFIX`: their prefix (default `enriched/`).
    pub output_prefix: String,
    /// `DEAD_LETTER_PREFIX`: records that cannot be processed or matched (default `dead-letter/`).
    pub dead_letter_prefix: String,
    /// `UNMATCHED`: `dead-letter` (default), `pass`, `drop` or `hold`.
    pub unmatched: Unmatched,
    /// With `UNMATCHED=hold`: where orders wait for their row, for how long, how many
    /// (`HOLD_PREFIX`, `HOLD_GRACE_SECS`, `HOLD_MAX_RECORDS`, `HOLD_MAX_BYTES`).
    pub hold: Option<crate::hold::HoldSettings>,
    /// `LEGACY_FLAG_DISH`: the original design's flag record (default `CHANGE_FLAG`).
    pub legacy_flag_dish: String,
    /// `WRITE_WINDOW_SECS`: the producers' write window W (default 20).
    pub write_window: Duration,
    /// `MAX_STALENESS_SECS`: past this without a confirmed refresh, orders are dead-lettered as
    /// stale (default 900).
    pub max_staleness: Duration,
    /// `FEED_POLL_INTERVAL_MS`: check the change feed at most this often (default 1000; 0 checks
    /// on every batch). Under load Lambda invokes a shard's batches back to back, so this bounds
    /// the feed requests; it adds up to this much to propagation.
    pub feed_poll_interval: Duration,
    /// `FEED_RETENTION_DAYS`: how long change files live (the feed bucket's lifecycle rule,
    /// infra/'s `ChangeFileRetentionDays`; default 7, at least 2). A consumer whose last listing
    /// is older than this minus a day reloads fully.
    pub feed_retention: Duration,
    /// `SNAPSHOT_PREFIX`: where the feed-compactor keeps snapshots of the table (default
    /// `feed-snapshots/`; `none` never looks): a first load starts from the latest one when it
    /// passes every check, instead of a Scan.
    pub snapshot_prefix: Option<String>,
    /// `DAILY_SNAPSHOT_PREFIX`: where the feed-compactor keeps each day's first snapshot as
    /// well (default `feed-snapshots-daily/`; `none`: not searched). As-of answers
    /// (`ENRICH_AS_OF=arrival`) start from the latest snapshot under either prefix at or before
    /// their time: the daily ones reach further back.
    pub daily_snapshot_prefix: Option<String>,
    /// A second, optional reference kept as objects in S3 (CSV with a header or JSON Lines,
    /// optionally gzip: the format comes from each object's extension), joined on the order's
    /// dish and kept current by the s3-event-handler's flags and change files.
    pub reference_objects: Option<ReferenceObjects>,
    /// `GLUE_DATABASE` and `GLUE_TABLE` (both or neither): the Glue Data Catalog table over
    /// the output, in which each new `item=`/`priority=` partition is registered.
    pub catalog: Option<(String, String)>,
    /// `ENRICH_AS_OF`: `live` (the default: each order gets the reference as it is when its
    /// batch runs, flags at their position) or `arrival` (each order gets the reference as it
    /// was when its record arrived in the stream: a retry, a redrive or a replay writes the
    /// same bytes, unless `AS_OF_RECENT=provisional` answered before the feed was final).
    /// `None` for live.
    pub as_of: Option<AsOfSettings>,
}

/// `ENRICH_AS_OF=arrival`: how orders are enriched as of their arrival.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsOfSettings {
    /// `AS_OF_RECENT`: what to do with an order younger than the feed's visibility bound.
    pub recent: Recent,
    /// `AS_OF_SNAPSHOT_SETTLE_SECS`: how long a feed snapshot may take to become visible after
    /// its key time (default 900, more than the compactor's timeout). A batch's history starts
    /// from the latest snapshot keyed at least this long before its oldest order: the same
    /// snapshot for every attempt of the batch, so the same answers.
    pub snapshot_settle: Duration,
}

/// `AS_OF_RECENT`: an order whose arrival the feed's visibility bound (W plus the clock margin,
/// and the second of its time) has not passed yet, since a change made before it may still
/// appear in the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recent {
    /// `wait` (the default): the batch waits until the bound passes its newest order (at most
    /// its second, the clock margin, W and the margin: ~31 s by default; a batch that would
    /// wait longer than 90 s is retried), then every answer is final: a retry writes the same
    /// bytes. The batch's latency grows by that much; its throughput does not
    /// (under load the batches it waits for are older than the bound already).
    Wait,
    /// `provisional`: answered with what the feed holds now, the line marked
    /// `"provisional":true`; a retry may answer otherwise.
    Provisional,
}

impl std::str::FromStr for Recent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wait" => Ok(Recent::Wait),
            "provisional" => Ok(Recent::Provisional),
            _ => Err("expected wait or provisional".into()),
        }
    }
}

/// `REFERENCE_OBJECTS_*`: the orders consumer's second reference, objects under a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferenceObjects {
    /// `REFERENCE_OBJECTS_BUCKET` (default `CHANGE_BUCKET`).
    pub bucket: String,
    /// `REFERENCE_OBJECTS_PREFIX`: the objects' prefix (setting it turns the join on).
    pub prefix: String,
    /// `REFERENCE_OBJECTS_KEY`: the column joined with the order's dish (default `item`).
    pub key: String,
    /// `REFERENCE_OBJECTS_FIELD`: the output line's field that holds the row's other columns
    /// (default `menu`).
    pub field: String,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&|k: &str| std::env::var(k).ok())
    }

    /// Reads the settings through `get`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let unmatched = unmatched_var(get)?;
        let key_attributes = key_attributes_var(get)?;
        let change_bucket = required_var(get, "CHANGE_BUCKET")?;
        let reference_objects = reference_objects_vars(get, &change_bucket)?;
        let catalog = catalog_vars(get)?;
        let snapshot_prefix = snapshot_prefix_var(get);
        let hold = match unmatched {
            Unmatched::Hold => Some(hold_vars(get)?),
            _ => None,
        };
        let as_of = as_of_vars(get)?;
        if let Some(why) = as_of.as_ref().and_then(|_| {
            if reference_objects.is_some() {
                Some("the second reference (REFERENCE_OBJECTS_PREFIX) has no history in the feed: unset one or the other")
            } else if hold.is_some() {
                Some("UNMATCHED=hold releases an order with a row that arrived after it, not the reference as of its time: choose dead-letter, pass or drop")
            } else if snapshot_prefix.is_none() {
                Some("as-of answers start from the feed-compactor's snapshots: SNAPSHOT_PREFIX cannot be none")
            } else {
                None
            }
        }) {
            return Err(ConfigError::Invalid {
                var: "ENRICH_AS_OF",
                value: "arrival".into(),
                reason: why.into(),
            });
        }
        Ok(Config {
            as_of,
            daily_snapshot_prefix: match or_default(
                get,
                "DAILY_SNAPSHOT_PREFIX",
                stream_refdata_protocol::DEFAULT_DAILY_SNAPSHOT_PREFIX,
            ) {
                p if p.trim() == "none" => None,
                p => Some(p),
            },
            hold,
            snapshot_prefix,
            catalog,
            reference_objects,
            reference_table: required_var(get, "REFERENCE_TABLE")?,
            key_attributes,
            change_bucket,
            change_prefix: or_default(get, "CHANGE_PREFIX", "change_flags/"),
            output_bucket: required_var(get, "OUTPUT_BUCKET")?,
            output_prefix: or_default(get, "OUTPUT_PREFIX", "enriched/"),
            dead_letter_prefix: or_default(get, "DEAD_LETTER_PREFIX", "dead-letter/"),
            unmatched,
            legacy_flag_dish: or_default(get, "LEGACY_FLAG_DISH", "CHANGE_FLAG"),
            write_window: seconds_var(get, "WRITE_WINDOW_SECS", 20)?,
            max_staleness: seconds_var(get, "MAX_STALENESS_SECS", 900)?,
            feed_retention: feed_retention_var(get)?,
            feed_poll_interval: feed_poll_interval_var(get)?,
        })
    }
}

/// The fields every output line has: `REFERENCE_OBJECTS_FIELD` cannot name one of them.
const LINE_FIELDS: [&str; 9] = [
    "item",
    "priority",
    "price",
    "cost",
    "customer_id",
    "shard",
    "sequence_number",
    "sub_sequence_number",
    "unmatched",
];

/// `var` through `get`, or `default` when it is unset (or blank).
fn or_default(get: &impl Fn(&str) -> Option<String>, var: &str, default: &str) -> String {
    optional_var(get, var).unwrap_or_else(|| default.to_owned())
}

/// `UNMATCHED`: `dead-letter` (default), `pass` or `drop`.
fn unmatched_var(get: &impl Fn(&str) -> Option<String>) -> Result<Unmatched, ConfigError> {
    let text = or_default(get, "UNMATCHED", "dead-letter");
    text.parse().map_err(|reason| ConfigError::Invalid {
        var: "UNMATCHED",
        value: text.clone(),
        reason,
    })
}

/// `HOLD_*`, with `UNMATCHED=hold` (see [`crate::hold::HoldSettings`] for the defaults).
fn hold_vars(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<crate::hold::HoldSettings, ConfigError> {
    let defaults = crate::hold::HoldSettings::default();
    let count = |var: &'static str, default: usize| -> Result<usize, ConfigError> {
        number_var(get, var, default as u64, 1.., "not a positive whole number")
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    Ok(crate::hold::HoldSettings {
        prefix: or_default(get, "HOLD_PREFIX", &defaults.prefix),
        grace: seconds_var(get, "HOLD_GRACE_SECS", defaults.grace.as_secs())?,
        max_records: count("HOLD_MAX_RECORDS", defaults.max_records)?,
        max_bytes: count("HOLD_MAX_BYTES", defaults.max_bytes)?,
        max_per_dish: count("HOLD_MAX_PER_DISH", defaults.max_per_dish)?,
    })
}

/// `REFERENCE_OBJECTS_*`: the second reference, when its prefix is set (its bucket by default
/// `change_bucket`).
fn reference_objects_vars(
    get: &impl Fn(&str) -> Option<String>,
    change_bucket: &str,
) -> Result<Option<ReferenceObjects>, ConfigError> {
    let Some(prefix) = optional_var(get, "REFERENCE_OBJECTS_PREFIX") else {
        return Ok(None);
    };
    let objects = ReferenceObjects {
        bucket: optional_var(get, "REFERENCE_OBJECTS_BUCKET")
            .unwrap_or_else(|| change_bucket.to_owned()),
        prefix,
        key: or_default(get, "REFERENCE_OBJECTS_KEY", "item"),
        field: or_default(get, "REFERENCE_OBJECTS_FIELD", "menu"),
    };
    if LINE_FIELDS.contains(&objects.field.as_str()) {
        return Err(ConfigError::Invalid {
            var: "REFERENCE_OBJECTS_FIELD",
            value: objects.field,
            reason: "names a field every output line already has".into(),
        });
    }
    Ok(Some(objects))
}

/// `GLUE_DATABASE` and `GLUE_TABLE`: both or neither.
fn catalog_vars(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, ConfigError> {
    match (
        optional_var(get, "GLUE_DATABASE"),
        optional_var(get, "GLUE_TABLE"),
    ) {
        (Some(d), Some(t)) => Ok(Some((d, t))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing { var: "GLUE_TABLE" }),
        (None, Some(_)) => Err(ConfigError::Missing {
            var: "GLUE_DATABASE",
        }),
    }
}

/// `ENRICH_AS_OF` (`live` or `arrival`) and, with `arrival`, `AS_OF_RECENT` and
/// `AS_OF_SNAPSHOT_SETTLE_SECS`.
fn as_of_vars(get: &impl Fn(&str) -> Option<String>) -> Result<Option<AsOfSettings>, ConfigError> {
    match or_default(get, "ENRICH_AS_OF", "live").as_str() {
        "live" => Ok(None),
        "arrival" => {
            let recent = or_default(get, "AS_OF_RECENT", "wait");
            Ok(Some(AsOfSettings {
                recent: recent.parse().map_err(|reason| ConfigError::Invalid {
                    var: "AS_OF_RECENT",
                    value: recent.clone(),
                    reason,
                })?,
                snapshot_settle: seconds_var(get, "AS_OF_SNAPSHOT_SETTLE_SECS", 900)?,
            }))
        }
        other => Err(ConfigError::Invalid {
            var: "ENRICH_AS_OF",
            value: other.to_owned(),
            reason: "expected live or arrival".into(),
        }),
    }
}

/// `SNAPSHOT_PREFIX`: the feed-compactor's default prefix when unset, none when `none`.
fn snapshot_prefix_var(get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    match optional_var(get, "SNAPSHOT_PREFIX") {
        None => Some(stream_refdata_protocol::DEFAULT_SNAPSHOT_PREFIX.to_owned()),
        Some(v) if v.trim() == "none" => None,
        Some(v) => Some(v),
    }
}

/// A positive whole number of seconds in `var`, `default` when unset.
fn seconds_var(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    number_var(
        get,
        var,
        default,
        1..,
        "not a positive whole number of seconds",
    )
    .map(Duration::from_secs)
}

/// `FEED_RETENTION_DAYS`: whole days, at least 2 (default 7).
fn feed_retention_var(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    let days = number_var(
        get,
        "FEED_RETENTION_DAYS",
        7,
        2..=36_500,
        "a whole number of days, at least 2 (consumers reload when their last \
         listing is older than this minus a day)",
    )?;
    Ok(Duration::from_secs(days * 24 * 3600))
}

/// `FEED_POLL_INTERVAL_MS`: whole milliseconds (default 1000).
fn feed_poll_interval_var(get: &impl Fn(&str) -> Option<String>) -> Result<Duration, ConfigError> {
    number_var(
        get,
        "FEED_POLL_INTERVAL_MS",
        1000,
        ..,
        "not a whole number of milliseconds",
    )
    .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The required variables, then `pairs`.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let required = [
            ("REFERENCE_TABLE", "ProductPriority"),
            ("CHANGE_BUCKET", "demo-bucket"),
            ("OUTPUT_BUCKET", "demo-bucket"),
        ];
        Config::from_lookup(&stream_refdata_aws::vars::from_pairs(
            required.into_iter().chain(pairs.iter().copied()),
        ))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.unmatched, Unmatched::Reject);
        assert_eq!(c.output_prefix, "enriched/");
        assert_eq!(c.dead_letter_prefix, "dead-letter/");
        assert_eq!(c.key_attributes, ["item", "price"]);
        assert_eq!(c.legacy_flag_dish, "CHANGE_FLAG");
        assert_eq!(c.feed_poll_interval, Duration::from_secs(1));
        assert_eq!(c.feed_retention, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(c.snapshot_prefix.as_deref(), Some("feed-snapshots/"));
        assert_eq!(
            config(&[("SNAPSHOT_PREFIX", "none")])
                .unwrap()
                .snapshot_prefix,
            None
        );
        assert_eq!(
            config(&[("SNAPSHOT_PREFIX", "snaps/")])
                .unwrap()
                .snapshot_prefix
                .as_deref(),
            Some("snaps/")
        );
        assert_eq!(
            config(&[("FEED_RETENTION_DAYS", "30")])
                .unwrap()
                .feed_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(
            config(&[("FEED_POLL_INTERVAL_MS", "0")])
                .unwrap()
                .feed_poll_interval,
            Duration::ZERO
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("UNMATCHED", "ignore"),
            ("MAX_STALENESS_SECS", "soon"),
            ("WRITE_WINDOW_SECS", "0"),
            ("REFERENCE_KEY_ATTRIBUTES", "a,b,c"),
            ("FEED_POLL_INTERVAL_MS", "1s"),
            ("FEED_RETENTION_DAYS", "1"),
            ("FEED_RETENTION_DAYS", "a week"),
            ("ENRICH_AS_OF", "event-time"),
            ("AS_OF_RECENT", "never"),
            ("AS_OF_SNAPSHOT_SETTLE_SECS", "0"),
        ] {
            let pairs = [("ENRICH_AS_OF", "arrival"), (var, value)];
            let pairs = if var == "ENRICH_AS_OF" {
                &pairs[1..]
            } else {
                &pairs[..]
            };
            if var.starts_with("AS_OF") || var == "ENRICH_AS_OF" {
                let err = config(pairs).unwrap_err();
                assert!(err.to_string().contains(var), "{err}");
                continue;
            }
            let err = config(&[(var, value)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = config(&[
            ("REFERENCE_OBJECTS_PREFIX", "reference/"),
            ("REFERENCE_OBJECTS_FIELD", "priority"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("REFERENCE_OBJECTS_FIELD"), "{err}");
        assert_eq!(config(&[]).unwrap().reference_objects, None);
        let err = config(&[("GLUE_DATABASE", "lake")]).unwrap_err();
        assert!(err.to_string().contains("GLUE_TABLE"), "{err}");
        assert_eq!(
            config(&[("GLUE_DATABASE", "lake"), ("GLUE_TABLE", "orders")])
                .unwrap()
                .catalog,
            Some(("lake".into(), "orders".into()))
        );
        assert_eq!(
            config(&[("REFERENCE_OBJECTS_PREFIX", "reference/")])
                .unwrap()
                .reference_objects,
            Some(ReferenceObjects {
                bucket: "demo-bucket".into(),
                prefix: "reference/".into(),
                key: "item".into(),
                field: "menu".into(),
            })
        );
        let err = config(&[("OUTPUT_BUCKET", "")]).unwrap_err();
        assert!(err.to_string().contains("OUTPUT_BUCKET"), "{err}");
        assert_eq!(
            config(&[("UNMATCHED", "pass")]).unwrap().unmatched,
            Unmatched::Pass
        );
        assert_eq!(
            config(&[("UNMATCHED", "drop")]).unwrap().unmatched,
            Unmatched::Drop
        );
    }

    #[test]
    fn as_of_by_arrival_waits_for_final_answers_by_default_and_refuses_what_has_no_history() {
        assert_eq!(config(&[]).unwrap().as_of, None);
        assert_eq!(config(&[("ENRICH_AS_OF", "live")]).unwrap().as_of, None);
        assert_eq!(
            config(&[("ENRICH_AS_OF", "arrival")]).unwrap().as_of,
            Some(AsOfSettings {
                recent: Recent::Wait,
                snapshot_settle: Duration::from_secs(900),
            })
        );
        assert_eq!(
            config(&[("ENRICH_AS_OF", "arrival"), ("AS_OF_RECENT", "provisional")])
                .unwrap()
                .as_of
                .map(|a| a.recent),
            Some(Recent::Provisional)
        );
        for (var, value, says) in [
            (
                "REFERENCE_OBJECTS_PREFIX",
                "reference/",
                "REFERENCE_OBJECTS_PREFIX",
            ),
            ("UNMATCHED", "hold", "UNMATCHED=hold"),
            ("SNAPSHOT_PREFIX", "none", "SNAPSHOT_PREFIX"),
        ] {
            let err = config(&[("ENRICH_AS_OF", "arrival"), (var, value)]).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("ENRICH_AS_OF") && err.contains(says), "{err}");
        }
    }
}
