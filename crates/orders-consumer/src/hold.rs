//! Held orders (`UNMATCHED=hold`): an order whose dish has no row yet is kept in S3, named by
//! its own identity, and released into its partition when the row arrives, with the version of
//! the row that resolved it. See `docs/design.md` (5, late rows are held).
//!
//! - **Durable before the batch is acknowledged**: `<HOLD_PREFIX><shard>/<sequence>[-<sub>].json`
//!   in the output bucket, written with the batch's output. A retried batch writes the same
//!   objects; a record already held stays held (never decided twice).
//! - **Known again after a cold start**: the first batch of a shard in an environment lists that
//!   shard's held objects once; later batches use memory. A held object that does not parse, or
//!   names another shard, is reported and left in place.
//! - **Released** with the version that resolved its dish, under the object names its first
//!   attempt would have had (its batch's first record), then deleted; a crash between the two
//!   releases it again under the same names.
//! - **Grace and caps**: past the grace period a held order is dead-lettered ("unmatched after
//!   N s", with its held time and first attempt) under a name of its own; past the per-shard caps
//!   (count, bytes) a new one is dead-lettered at once ("hold full").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use stream_refdata_aws::{ObjectKeeper, S3Error};

use crate::orders::{classify, Product};
use crate::output::Input;

/// How orders are held: where, for how long, and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldSettings {
    /// `HOLD_PREFIX`: where held orders are kept in the output bucket (default `held/`).
    pub prefix: String,
    /// `HOLD_GRACE_SECS`: how long an order waits for its row (default 900 s, the staleness
    /// limit's default: a row later than that is missing, not late).
    pub grace: Duration,
    /// `HOLD_MAX_RECORDS`: held orders per shard at most (default 10,000).
    pub max_records: usize,
    /// `HOLD_MAX_BYTES`: bytes of held orders' data per shard at most (default 16 MiB).
    pub max_bytes: usize,
    /// `HOLD_MAX_PER_DISH`: held orders of one dish per shard at most (default 1,000), so a
    /// dish that never gets a row (the seed's `donut`) cannot fill the hold for the others.
    pub max_per_dish: usize,
}

impl Default for HoldSettings {
    fn default() -> Self {
        HoldSettings {
            prefix: "held/".into(),
            grace: Duration::from_secs(900),
            max_records: 10_000,
            max_bytes: 16 << 20,
            max_per_dish: 1_000,
        }
    }
}

/// A held order as its object holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub(crate) shard: String,
    pub(crate) sequence_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) sub_sequence_number: Option<u64>,
    /// The dish it waits for.
    pub(crate) dish: String,
    /// When it was first held (ms since the epoch).
    pub(crate) held_at_ms: i64,
    /// Its first attempt: its batch's first record (the names of the objects it goes to).
    pub(crate) first_sequence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) first_sub_sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) data_base64: Option<String>,
    /// The version of the row that resolved its dish, written into its object before its
    /// release: a release repeated after a crash (any environment) uses it, not a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resolved_with: Option<Product>,
    /// When an environment decided that it expires (ms since the epoch), written into its
    /// object before its dead letter: every other environment then expires it too, never
    /// releases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expired_at_ms: Option<i64>,
}

/// A held order's identity in its shard: sequence number and sub-sequence number.
type Id = (String, Option<u64>);

fn ended_key(prefix: &str, shard: &str, sequence: &str, sub: Option<u64>) -> String {
    match sub {
        None => format!("{prefix}ended/{shard}/{sequence}"),
        Some(sub) => format!("{prefix}ended/{shard}/{sequence}-{sub}"),
    }
}

/// A held order's object key: the record's own identity under the shard.
fn held_key(prefix: &str, shard: &str, sequence: &str, sub: Option<u64>) -> String {
    match sub {
        None => format!("{prefix}{shard}/{sequence}.json"),
        Some(sub) => format!("{prefix}{shard}/{sequence}-{sub}.json"),
    }
}

/// The identity an ended marker's key names (under `<prefix>ended/<shard>/`).
fn ended_id(marker_prefix: &str, key: &str) -> Option<Id> {
    let name = key.strip_prefix(marker_prefix)?;
    match name.split_once('-') {
        None => Some((name.to_owned(), None)),
        Some((seq, sub)) => Some((seq.to_owned(), Some(sub.parse().ok()?))),
    }
}

impl Held {
    /// `input` of the batch from `shard` whose first record is (`first`, `first_sub`), held at
    /// `now_ms` waiting for `dish`.
    pub(crate) fn new(
        shard: &str,
        input: &Input,
        dish: &str,
        now_ms: i64,
        first: &str,
        first_sub: Option<u64>,
    ) -> Held {
        let text = std::str::from_utf8(&input.data).ok();
        Held {
            shard: shard.to_owned(),
            sequence_number: input.sequence_number.clone(),
            sub_sequence_number: input.sub_sequence,
            dish: dish.to_owned(),
            held_at_ms: now_ms,
            first_sequence: first.to_owned(),
            first_sub_sequence: first_sub,
            data: text.map(str::to_owned),
            data_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(&input.data)),
            resolved_with: None,
            expired_at_ms: None,
        }
    }

    /// The object's bytes.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn id(&self) -> Id {
        (self.sequence_number.clone(), self.sub_sequence_number)
    }

    /// The key of its ended marker (`<prefix>ended/<shard>/<sequence>[-<sub>]`, empty): written
    /// when it leaves the hold, before its object is deleted, and kept (a lifecycle rule expires
    /// them after the stream's retention) so a redelivered batch does not decide it again.
    pub(crate) fn ended_key(&self, prefix: &str) -> String {
        ended_key(
            prefix,
            &self.shard,
            &self.sequence_number,
            self.sub_sequence_number,
        )
    }

    /// The object's key: the record's own identity under the shard.
    pub(crate) fn key(&self, prefix: &str) -> String {
        held_key(
            prefix,
            &self.shard,
            &self.sequence_number,
            self.sub_sequence_number,
        )
    }

    /// Its data's size, without copying it (for the caps).
    fn size(&self) -> usize {
        match (&self.data, &self.data_base64) {
            (Some(t), _) => t.len(),
            (None, Some(b)) => b.len() / 4 * 3,
            (None, None) => 0,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match (&self.data, &self.data_base64) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// The order as a batch input again.
    pub(crate) fn input(&self, legacy_flag_dish: &str) -> Input {
        let data = self.bytes();
        Input {
            record: classify(&data, legacy_flag_dish),
            sequence_number: self.sequence_number.clone(),
            sub_sequence: self.sub_sequence_number,
            reference_object: None,
            arrival_ms: None,
            as_of: None,
            data,
        }
    }
}

/// One shard's held orders in this environment.
#[derive(Debug, Default)]
struct ShardHold {
    held: BTreeMap<Id, Held>,
    bytes: usize,
    /// When the shard's held objects were last listed (ms since the epoch).
    listed_at_ms: i64,
    /// Keys under the shard that are not held orders (reported once, left in place).
    bad: std::collections::HashSet<String>,
    /// Orders that left the hold (released or expired): a batch that brings one again (a
    /// redelivery, a redrive) does not decide it again.
    ended: std::collections::HashSet<Id>,
    /// The newest sequence number among them, as (length, digits): numeric order.
    newest_ended: Option<(usize, String)>,
    /// Held orders by dish (a release takes one dish's, not the whole set).
    by_dish: HashMap<String, BTreeSet<Id>>,
    /// Held orders by when they were held (expiry takes the oldest, not the whole set).
    by_time: BTreeSet<(i64, Id)>,
    /// Held orders whose objects carry the version that resolved them (a release to repeat).
    with_version: BTreeSet<Id>,
    /// Held orders whose objects say they expire (an expiry to repeat).
    expiring: BTreeSet<Id>,
    /// The newest sequence number ever held here, as (length, digits): numeric order. A batch
    /// that starts after it holds none of the orders held here.
    newest_held: Option<(usize, String)>,
}

/// Counts of some held orders: how many, their bytes, how many of each dish.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    count: usize,
    bytes: usize,
    per_dish: HashMap<String, usize>,
}

impl Tally {
    /// Counts `held` in.
    pub(crate) fn add(&mut self, held: &Held) {
        self.count += 1;
        self.bytes += held.size();
        *self.per_dish.entry(held.dish.clone()).or_default() += 1;
    }

    fn of(&self, dish: &str) -> usize {
        self.per_dish.get(dish).copied().unwrap_or(0)
    }
}

impl ShardHold {
    /// Holds `held` (indexed by dish and time; replaces one of the same identity).
    fn insert(&mut self, held: Held) {
        let id = held.id();
        let by_number = (id.0.len(), id.0.clone());
        if self.newest_held.as_ref().is_none_or(|n| by_number > *n) {
            self.newest_held = Some(by_number);
        }
        self.remove(&id);
        self.bytes += held.size();
        (self.by_dish.entry(held.dish.clone()).or_default()).insert(id.clone());
        self.by_time.insert((held.held_at_ms, id.clone()));
        if held.resolved_with.is_some() {
            self.with_version.insert(id.clone());
        } else if held.expired_at_ms.is_some() {
            self.expiring.insert(id.clone());
        }
        self.held.insert(id, held);
    }

    /// Forgets the held order `id`, if held.
    fn remove(&mut self, id: &Id) -> Option<Held> {
        let held = self.held.remove(id)?;
        self.bytes = self.bytes.saturating_sub(held.size());
        if let Some(ids) = self.by_dish.get_mut(&held.dish) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_dish.remove(&held.dish);
            }
        }
        self.by_time.remove(&(held.held_at_ms, id.clone()));
        self.with_version.remove(id);
        self.expiring.remove(id);
        Some(held)
    }

    /// How many of `dish` are held.
    fn of(&self, dish: &str) -> usize {
        self.by_dish.get(dish).map_or(0, BTreeSet::len)
    }

    /// Records that the order `id` ended.
    fn end(&mut self, id: Id) {
        let by_number = (id.0.len(), id.0.clone());
        if self.newest_ended.as_ref().is_none_or(|n| by_number > *n) {
            self.newest_ended = Some(by_number);
        }
        self.ended.insert(id);
    }
}

/// How often a shard's held objects are listed again: another environment may have held or
/// ended some of them (Lambda does not keep a shard on one environment). One listing a minute,
/// not one a batch.
const RELIST_MS: i64 = 60_000;

/// What a batch decides about held orders, to write and delete.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    /// Held earlier and resolved: released with the version that resolved their dish.
    pub(crate) released: Vec<(Held, Arc<Product>)>,
    /// Held past the grace period: dead-lettered, then deleted.
    pub(crate) expired: Vec<Held>,
}

/// Counters of held orders in this environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HoldCounts {
    /// Orders released into their partitions (after the batch that held them).
    pub released: u64,
    /// Orders dead-lettered past the grace.
    pub expired: u64,
    /// Orders dead-lettered at once, the hold being full.
    pub hold_full: u64,
    /// Held objects that did not parse or named another record (left in place).
    pub bad_objects: u64,
}

/// The held orders this environment knows, by shard, and the versions that resolved dishes
/// some of them wait for.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    pub(crate) settings: HoldSettings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    shards: HashMap<String, ShardHold>,
    /// Dish → the versions that resolved it, each with when this environment learned it (ms),
    /// oldest first, kept while an order held here waits for it. An order takes the first
    /// learned at or after it was held: one learned before was deleted by then (the order
    /// found no row), or not yet seen where it was held.
    resolutions: HashMap<String, Vec<(i64, Arc<Product>)>>,
    counts: HoldCounts,
}

impl Hold {
    pub(crate) fn new(settings: HoldSettings) -> Self {
        Hold {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads `shard`'s held orders from `bucket` the first time this environment sees the
    /// shard (one listing, then a GET each). A held object that is damaged or names another
    /// shard is reported (logged, counted) and left in place.
    pub(crate) async fn load<S: ObjectKeeper>(
        &self,
        store: &S,
        bucket: &str,
        shard: &str,
    ) -> Result<(), S3Error> {
        let now = now_ms();
        let (known, bad) = {
            let s = self.state();
            match s.shards.get(shard) {
                Some(h) if now - h.listed_at_ms < RELIST_MS => return Ok(()),
                Some(h) => (
                    h.held
                        .values()
                        .map(|held| (held.key(&self.settings.prefix), held.id()))
                        .collect::<HashMap<String, Id>>(),
                    h.bad.clone(),
                ),
                None => (HashMap::new(), Default::default()),
            }
        };
        let prefix = format!("{}{shard}/", self.settings.prefix);
        let listed = store.list_keys(bucket, &prefix).await?;
        let marker_prefix = format!("{}ended/{shard}/", self.settings.prefix);
        let ended: Vec<Id> = (store.list_keys(bucket, &marker_prefix).await?)
            .iter()
            .filter_map(|k| ended_id(&marker_prefix, k))
            .collect();
        // Only the keys this environment does not know yet are read.
        let mut found = Vec::new();
        let mut new_bad = Vec::new();
        for key in listed
            .iter()
            .filter(|k| !known.contains_key(*k) && !bad.contains(*k))
        {
            let Some(bytes) = store.read_object(bucket, key).await? else {
                continue;
            };
            match serde_json::from_slice::<Held>(&bytes) {
                Ok(h) if h.shard == shard && h.key(&self.settings.prefix) == *key => found.push(h),
                Ok(_) => {
                    tracing::warn!(
                        key,
                        "held object names another record or shard; left in place"
                    );
                    new_bad.push(key.clone());
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "held object does not parse; left in place");
                    new_bad.push(key.clone());
                }
            }
        }
        let listed: std::collections::HashSet<&String> = listed.iter().collect();
        let orphans = {
            let mut s = self.state();
            s.counts.bad_objects += new_bad.len() as u64;
            let h = s.shards.entry(shard.to_owned()).or_default();
            // Those another environment ended since are gone from the listing: forgotten here.
            let prefix_of = &self.settings.prefix;
            let gone: Vec<Id> = (h.held.values())
                .filter(|held| !listed.contains(&held.key(prefix_of)))
                .map(Held::id)
                .collect();
            for id in gone {
                h.remove(&id);
            }
            // An order whose end is marked ended, here too (another environment ended it, and
            // its object's delete failed): forgotten, and its object deleted. Only a marker
            // found in S3 counts, never this environment's memory alone.
            let mut orphans = Vec::new();
            let marked: std::collections::HashSet<Id> = ended.into_iter().collect();
            for id in &marked {
                if let Some(held) = h.remove(id) {
                    orphans.push(held.key(&self.settings.prefix));
                }
                h.end(id.clone());
            }
            for held in found {
                if marked.contains(&held.id()) {
                    orphans.push(held.key(&self.settings.prefix));
                    continue;
                }
                h.insert(held);
            }
            h.bad.extend(new_bad);
            h.listed_at_ms = now;
            orphans
        };
        for key in orphans {
            if let Err(e) = store.delete_object(bucket, &key).await {
                tracing::warn!(key, error = %e, "the object of an order that ended was not deleted");
            }
        }
        Ok(())
    }

    /// The dishes `shard`'s held orders wait for (to watch).
    pub(crate) fn dishes(&self, shard: &str) -> Vec<String> {
        let s = self.state();
        let mut dishes: Vec<String> = s
            .shards
            .get(shard)
            .map(|h| h.by_dish.keys().cloned().collect())
            .unwrap_or_default();
        dishes.sort_unstable();
        dishes
    }

    /// Takes the versions that resolved dishes (from the enricher) for the orders held here,
    /// learned now (a version equal to the last one learned for its dish adds nothing).
    pub(crate) fn resolved(&self, resolved: Vec<(String, Arc<Product>)>) {
        let now = now_ms();
        let mut s = self.state();
        for (dish, item) in resolved {
            let versions = s.resolutions.entry(dish).or_default();
            if versions.last().is_none_or(|(_, last)| **last != *item) {
                versions.push((now, item));
            }
        }
    }

    /// Whether a batch of `shard` whose first record is `first_sequence` may hold an order that
    /// left the hold already: only a batch not newer than the newest such order (sequence
    /// numbers grow within a shard), so a new batch is never checked record by record.
    pub(crate) fn may_have_ended(&self, shard: &str, first_sequence: &str) -> bool {
        let s = self.state();
        s.shards.get(shard).is_some_and(|h| {
            h.newest_ended.as_ref().is_some_and(|(len, digits)| {
                (first_sequence.len(), first_sequence) <= (*len, digits.as_str())
            })
        })
    }

    /// Whether `input` of `shard` left the hold already (released or expired): a batch that
    /// brings it again does not decide it again.
    pub(crate) fn has_ended(&self, shard: &str, input: &Input) -> bool {
        let s = self.state();
        let Some(h) = s.shards.get(shard) else {
            return false;
        };
        !h.ended.is_empty()
            && h.ended
                .contains(&(input.sequence_number.clone(), input.sub_sequence))
    }

    /// The key of the ended marker of `input` of `shard`.
    pub(crate) fn ended_key(&self, shard: &str, input: &Input) -> String {
        ended_key(
            &self.settings.prefix,
            shard,
            &input.sequence_number,
            input.sub_sequence,
        )
    }

    /// Whether a batch of `shard` whose first record is `first_sequence` may bring orders held
    /// here: only a batch not newer than the newest order ever held (a retry, a redelivery), so
    /// a new batch is never checked record by record.
    pub(crate) fn may_hold(&self, shard: &str, first_sequence: &str) -> bool {
        let s = self.state();
        s.shards.get(shard).is_some_and(|h| {
            !h.held.is_empty()
                && h.newest_held.as_ref().is_some_and(|(len, digits)| {
                    (first_sequence.len(), first_sequence) <= (*len, digits.as_str())
                })
        })
    }

    /// Whether `input` of `shard` is held already (a retried batch: it stays held).
    pub(crate) fn is_held(&self, shard: &str, input: &Input) -> bool {
        let id = (input.sequence_number.clone(), input.sub_sequence);
        self.state()
            .shards
            .get(shard)
            .is_some_and(|h| h.held.contains_key(&id))
    }

    /// Whether `held` fits its shard's caps beside the orders `pending` (held by this batch,
    /// not yet written), not counting the held orders `leaving` (they leave the hold with this
    /// batch); `false` (counted) when the hold is full. Nothing is recorded: an order counts as
    /// held only once its object is written ([`Hold::add`]).
    pub(crate) fn has_room(&self, held: &Held, pending: &Tally, leaving: &Tally) -> bool {
        let size = held.size();
        let settings = &self.settings;
        let mut s = self.state();
        let (now, now_bytes, now_dish) = s
            .shards
            .get(&held.shard)
            .map_or((0, 0, 0), |h| (h.held.len(), h.bytes, h.of(&held.dish)));
        let count = (now + pending.count).saturating_sub(leaving.count);
        let bytes = (now_bytes + pending.bytes).saturating_sub(leaving.bytes);
        let dish = (now_dish + pending.of(&held.dish)).saturating_sub(leaving.of(&held.dish));
        if count >= settings.max_records
            || bytes + size > settings.max_bytes
            || dish >= settings.max_per_dish
        {
            s.counts.hold_full += 1;
            return false;
        }
        true
    }

    /// Records `held` (their objects written) as held.
    pub(crate) fn add(&self, held: &[Held]) {
        let mut s = self.state();
        for h in held {
            let shard = s.shards.entry(h.shard.clone()).or_default();
            if !shard.held.contains_key(&h.id()) {
                shard.insert(h.clone());
            }
        }
    }

    /// The held order `id` of `shard`, as this environment knows it.
    pub(crate) fn held_of(&self, shard: &str, id: &Id) -> Option<Held> {
        (self.state().shards.get(shard)).and_then(|h| h.held.get(id).cloned())
    }

    /// The key of the held object of `input` of `shard`.
    pub(crate) fn held_key(&self, shard: &str, input: &Input) -> String {
        held_key(
            &self.settings.prefix,
            shard,
            &input.sequence_number,
            input.sub_sequence,
        )
    }

    /// Forgets the orders `ids` of `shard` as held (their objects are gone, with no marker):
    /// a batch that brings one again decides it as usual.
    pub(crate) fn drop_ids(&self, shard: &str, ids: &[Id]) {
        let mut s = self.state();
        if let Some(h) = s.shards.get_mut(shard) {
            for id in ids {
                h.remove(id);
            }
        }
    }

    /// Records that the orders `ids` of `shard` ended elsewhere (their ended markers were
    /// found): forgotten as held, a batch that brings one again does not decide it again.
    pub(crate) fn ended_elsewhere(&self, shard: &str, ids: &[Id]) {
        let mut s = self.state();
        let h = s.shards.entry(shard.to_owned()).or_default();
        for id in ids {
            h.remove(id);
            h.end(id.clone());
        }
    }

    /// Records that the objects of `held` (still held) now carry the version that resolved
    /// them (or their expiry): a release repeated here (the batch failed after) uses it even if
    /// the dish's resolution is forgotten meanwhile.
    pub(crate) fn record_versions(&self, held: &[Held]) {
        let mut s = self.state();
        for h in held {
            if let Some(shard) = s.shards.get_mut(&h.shard) {
                if shard.held.contains_key(&h.id()) {
                    shard.insert(h.clone());
                }
            }
        }
    }

    /// Forgets the version that resolved `dish`: a lookup just found no row for it (deleted
    /// since), so orders held for it wait for the row again.
    pub(crate) fn unresolve(&self, dish: &str) {
        self.state().resolutions.remove(dish);
    }

    /// `shard`'s held orders at `now_ms`: those whose dish resolved (released) and those past
    /// the grace period (expired); the others stay. Found through the indexes: the work grows
    /// with the orders that leave, not with all held.
    pub(crate) fn due(&self, shard: &str, now_ms: i64) -> Decisions {
        let grace = i64::try_from(self.settings.grace.as_millis()).unwrap_or(i64::MAX);
        let s = self.state();
        let mut d = Decisions::default();
        let Some(h) = s.shards.get(shard) else {
            return d;
        };
        let mut releasing = BTreeSet::new();
        // The version written into its object first (a release repeated after a crash) ...
        for id in &h.with_version {
            if let Some(held) = h.held.get(id) {
                if let Some(item) = held.resolved_with.clone() {
                    releasing.insert(id.clone());
                    d.released.push((held.clone(), Arc::new(item)));
                }
            }
        }
        // An expiry decided before (written into its object) is repeated, never undone.
        let mut expiring = BTreeSet::new();
        for id in &h.expiring {
            if let Some(held) = h.held.get(id) {
                expiring.insert(id.clone());
                d.expired.push(held.clone());
            }
        }
        // ... else the first that resolved its dish here after it was held.
        for (dish, versions) in &s.resolutions {
            for id in h.by_dish.get(dish).into_iter().flatten() {
                let Some(held) = h.held.get(id) else { continue };
                let item = versions.iter().find(|(at, _)| *at >= held.held_at_ms);
                if let Some((_, item)) = item {
                    if !expiring.contains(id) && releasing.insert(id.clone()) {
                        d.released.push((held.clone(), Arc::clone(item)));
                    }
                }
            }
        }
        for (held_at, id) in &h.by_time {
            if now_ms - held_at <= grace {
                break;
            }
            if !releasing.contains(id) && !expiring.contains(id) {
                if let Some(held) = h.held.get(id) {
                    d.expired.push(held.clone());
                }
            }
        }
        d
    }

    /// Forgets orders that left the hold (released or expired, their objects deleted), and the
    /// resolutions no order held here waits for any more.
    /// (`released` and `expired` of them here, counted; the others ended elsewhere.)
    /// `ended` left the hold under names of their own (a release, an expiry): a batch that brings
    /// one again leaves it out. `answered` left it otherwise (their own batch answered them, or
    /// another environment ended them): a batch that brings one again decides it as usual.
    pub(crate) fn forget(
        &self,
        shard: &str,
        ended: &[Held],
        answered: &[Held],
        released: usize,
        expired: usize,
    ) {
        let mut s = self.state();
        if let Some(h) = s.shards.get_mut(shard) {
            for g in ended.iter().chain(answered) {
                h.remove(&g.id());
            }
            for g in ended {
                h.end(g.id());
            }
        }
        s.counts.released += released as u64;
        s.counts.expired += expired as u64;
        let State {
            shards,
            resolutions,
            ..
        } = &mut *s;
        // (and of a dish's versions, only those an order held here can still take)
        resolutions.retain(|dish, versions| {
            let oldest = (shards.values())
                .filter_map(|h| h.by_dish.get(dish))
                .flatten()
                .filter_map(|id| shards.values().find_map(|h| h.held.get(id)))
                .map(|held| held.held_at_ms)
                .min();
            let Some(oldest) = oldest else { return false };
            versions.retain(|(at, _)| *at >= oldest);
            !versions.is_empty()
        });
    }

    /// Held orders now (all shards), and the oldest one's age at `now_ms`.
    pub(crate) fn now(&self, now_ms: i64) -> (usize, Option<Duration>) {
        let s = self.state();
        let count = s.shards.values().map(|h| h.held.len()).sum();
        let oldest = (s.shards.values())
            .filter_map(|h| h.by_time.first().map(|(t, _)| *t))
            .min()
            .map(|t| Duration::from_millis(u64::try_from(now_ms - t).unwrap_or(0)));
        (count, oldest)
    }

    /// The counters so far.
    pub(crate) fn counts(&self) -> HoldCounts {
        self.state().counts
    }
}

/// Now, in milliseconds since the epoch (held orders' times).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::Record;

    fn held(shard: &str, seq: u64, dish: &str, held_at_ms: i64) -> Held {
        let data = format!(r#"{{"dish":"{dish}","cost":1,"customer_id":{seq}}}"#).into_bytes();
        let input = Input {
            sequence_number: format!("{seq:056}"),
            sub_sequence: None,
            record: classify(&data, "CHANGE_FLAG"),
            data,
            reference_object: None,
            arrival_ms: None,
            as_of: None,
        };
        assert!(matches!(input.record, Record::Order(_)));
        Held::new(shard, &input, dish, held_at_ms, &format!("{seq:056}"), None)
    }

    fn product(priority: &str) -> Arc<Product> {
        Arc::new(Product {
            item: "donut".into(),
            price: 100.into(),
            priority: priority.into(),
        })
    }

    #[test]
    fn an_order_takes_the_first_version_learned_after_it_was_held_never_an_older_one() {
        let hold = Hold::new(HoldSettings::default());
        let now = now_ms();
        // A version learned now; an order held before it, and one held (elsewhere) after it:
        // the row was deleted between, so that version is not the later order's.
        hold.add(&[held("s1", 1, "donut", now - 60_000)]);
        hold.resolved(vec![("donut".into(), product("low"))]);
        hold.add(&[held("s2", 2, "donut", now + 60_000)]);
        let early = hold.due("s1", now);
        assert_eq!(early.released.len(), 1);
        assert_eq!(early.released[0].1.priority, "low");
        assert!(
            hold.due("s2", now).released.is_empty(),
            "waits for a newer version"
        );
        // The same version learned again adds nothing; a new one after the later order's hold
        // releases it, and still not the earlier version.
        hold.resolved(vec![("donut".into(), product("low"))]);
        assert!(hold.due("s2", now).released.is_empty());
        {
            let mut s = hold.state();
            let versions = s.resolutions.get_mut("donut").unwrap();
            assert_eq!(versions.len(), 1);
            // (as if learned two minutes later)
            versions.push((now + 120_000, product("high")));
        }
        let late = hold.due("s2", now + 120_000);
        assert_eq!(late.released.len(), 1);
        assert_eq!(late.released[0].1.priority, "high");
    }
}
