//! How an enricher is set up: what it loads ([`TableSpec`] or [`ObjectSpec`]), how records find
//! their reference item (the lookup key), and the [`Policies`] every kind of reference data
//! shares, with their defaults written once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use stream_refdata_protocol::Item;

use crate::feed::FeedSettings;
use crate::policy::{Ambiguity, BadRows, Policies, Unmatched};

/// Turns a DynamoDB item into the user's type. The item is given by value, so a decoder can move
/// its strings into the result instead of copying them (a full load decodes every item once).
pub type Decoder<T> = Arc<dyn Fn(Item) -> Result<T, DecodeError> + Send + Sync>;

/// Why a [`Decoder`] could not turn an item into the user's type. The item is then left out
/// (counted and logged with this text); the error behind it, when there is one, stays the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    message: String,
    #[source]
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DecodeError {
    /// An error that `message` describes, with no underlying error.
    pub fn new(message: impl Into<String>) -> DecodeError {
        DecodeError {
            message: message.into(),
            cause: None,
        }
    }

    /// The error `cause` (e.g. serde's), described by its own text and kept as the source.
    pub fn wrap(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DecodeError {
        let cause = cause.into();
        DecodeError {
            message: cause.to_string(),
            cause: Some(cause),
        }
    }
}
/// Extracts the lookup key from an item; `None` leaves the item out of the lookup index.
pub type LookupKeyFn<T, K> = Arc<dyn Fn(&T) -> Option<K> + Send + Sync>;

/// What a table enricher loads: a DynamoDB table, decoded into `T`.
pub struct TableSpec<T> {
    pub(crate) table_name: String,
    pub(crate) key_attributes: Vec<String>,
    pub(crate) decode: Decoder<T>,
    pub(crate) scan_segments: i32,
}

impl<T> fmt::Debug for TableSpec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableSpec")
            .field("table_name", &self.table_name)
            .field("key_attributes", &self.key_attributes)
            .field("scan_segments", &self.scan_segments)
            .finish_non_exhaustive()
    }
}

/// What an object enricher loads: the objects of a bucket under a prefix.
#[derive(Clone, Debug)]
pub struct ObjectSpec {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) bad_rows: BadRows,
    pub(crate) key_column: Option<String>,
}

/// How an enricher is set up: what it loads (`S`), how a value finds its lookup key, and the
/// shared [`Policies`]. Use the two named forms, [`TableConfig`] for a table and
/// [`ObjectConfig`] for S3 objects.
pub struct ReferenceConfig<S, T, K> {
    pub(crate) spec: S,
    pub(crate) lookup_key: LookupKeyFn<T, K>,
    pub(crate) policies: Policies,
}

/// The configuration of a table [`TableEnricher`](crate::TableEnricher).
pub type TableConfig<T, K = String> = ReferenceConfig<TableSpec<T>, T, K>;
/// The configuration of an [`ObjectEnricher`](crate::ObjectEnricher).
pub type ObjectConfig<T, K = String> = ReferenceConfig<ObjectSpec, T, K>;

impl<S: fmt::Debug, T, K> fmt::Debug for ReferenceConfig<S, T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferenceConfig")
            .field("spec", &self.spec)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

impl<S, T, K> ReferenceConfig<S, T, K> {
    /// The policies in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }
    /// Replaces all policies at once.
    pub fn with_policies(mut self, p: Policies) -> Self {
        self.policies = p;
        self
    }
    /// Sets the policy for several items per lookup key.
    pub fn with_ambiguity(mut self, a: Ambiguity) -> Self {
        self.policies.ambiguity = a;
        self
    }
    /// Sets the unmatched-record policy.
    pub fn with_unmatched(mut self, u: Unmatched) -> Self {
        self.policies.unmatched = u;
        self
    }
    /// Sets how the change feed is followed.
    pub fn with_feed(mut self, f: FeedSettings) -> Self {
        self.policies.feed = f;
        self
    }
    /// Sets the maximum age of a full load (`None`: never reload without a reason).
    pub fn with_max_age(mut self, d: Option<Duration>) -> Self {
        self.policies.max_age = d;
        self
    }
    /// Sets the staleness limit (`None`: never reject records as stale).
    pub fn with_max_staleness(mut self, d: Option<Duration>) -> Self {
        self.policies.max_staleness = d;
        self
    }
}

impl<T: serde::de::DeserializeOwned, K> TableConfig<T, K> {
    /// A table `table_name` with key attributes `key_attributes` (hash key first, e.g.
    /// `["item", "price"]`), items decoded into `T` with serde_dynamo and indexed by
    /// `lookup_key`. Defaults: 4 parallel Scan segments and the [`Policies`] defaults (lowest
    /// key wins, unmatched records rejected, feed `change_flags/` with W = 20 s, reload at least
    /// every 6 h, records rejected as stale after 15 min without a confirmed refresh).
    pub fn new(
        table_name: impl Into<String>,
        key_attributes: &[&str],
        lookup_key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        let decode = |item: Item| serde_dynamo::from_item(item).map_err(DecodeError::wrap);
        TableConfig::decoded(table_name, key_attributes, Arc::new(decode), lookup_key)
    }
}

impl<T, K> TableConfig<T, K> {
    /// Like [`new`](TableConfig::new), with the items decoded by `decode` instead of serde
    /// (for items that are not a Rust type, such as the Python package's objects).
    pub fn decoded(
        table_name: impl Into<String>,
        key_attributes: &[&str],
        decode: Decoder<T>,
        lookup_key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        ReferenceConfig {
            spec: TableSpec {
                table_name: table_name.into(),
                key_attributes: key_attributes.iter().map(|s| (*s).to_owned()).collect(),
                decode,
                scan_segments: 4,
            },
            lookup_key: Arc::new(lookup_key),
            policies: Policies::default(),
        }
    }
}

impl<K> TableConfig<Item, K> {
    /// Like [`TableConfig::new`], but items are kept as raw attribute maps (no user type).
    pub fn raw(
        table_name: impl Into<String>,
        key_attributes: &[&str],
        lookup_key: impl Fn(&Item) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        TableConfig::decoded(
            table_name,
            key_attributes,
            Arc::new(|item: Item| Ok(item)),
            lookup_key,
        )
    }
}

impl<T, K> TableConfig<T, K> {
    /// The reference table's name; change files of other tables are ignored.
    pub fn table_name(&self) -> &str {
        &self.spec.table_name
    }
    /// Sets the number of parallel Scan segments of a full load (at least 1).
    pub fn with_scan_segments(mut self, n: i32) -> Self {
        self.spec.scan_segments = n.max(1);
        self
    }
    /// Replaces the decoder (e.g. to keep raw items: `Arc::new(|i| Ok(i))`).
    pub fn with_decoder(mut self, d: Decoder<T>) -> Self {
        self.spec.decode = d;
        self
    }
}

impl<T, K> ObjectConfig<T, K> {
    /// The objects of `bucket` under `prefix` (flags and change files of other buckets or
    /// prefixes are ignored), rows indexed by `lookup_key`. Defaults: a bad row rejects its
    /// object ([`BadRows::RejectObject`]) and the [`Policies`] defaults.
    pub fn new(
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        lookup_key: impl Fn(&T) -> Option<K> + Send + Sync + 'static,
    ) -> Self {
        ReferenceConfig {
            spec: ObjectSpec {
                bucket: bucket.into(),
                prefix: prefix.into(),
                bad_rows: BadRows::default(),
                key_column: None,
            },
            lookup_key: Arc::new(lookup_key),
            policies: Policies::default(),
        }
    }
    /// Sets the bad-row policy.
    pub fn with_bad_rows(mut self, b: BadRows) -> Self {
        self.spec.bad_rows = b;
        self
    }

    /// Names the column the lookup key comes from. A CSV object whose header lacks it is
    /// rejected whole with a reason naming it (whatever the bad-row policy: every row would be
    /// without a key), and a row without a lookup key is a bad row naming it. Without a key
    /// column, a row whose lookup key is `None` is kept but never found.
    pub fn with_key_column(mut self, column: impl Into<String>) -> Self {
        self.spec.key_column = Some(column.into());
        self
    }
}
