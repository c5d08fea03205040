//! The immutable reference-data snapshot readers see.
//!
//! A snapshot is a **base** built in bulk by a full load (a Scan, or a feed snapshot) plus the
//! **changes** applied since. The base is flat: one `Vec` of items and two open-addressing hash
//! tables of 4- and 8-byte slots (by primary key, and by the user's lookup key, whose items are
//! chained through the `Vec`). It is built once, shared by every later version through an `Arc`,
//! and never changes. The changes are persistent maps (`imbl`): building the next snapshot from
//! the current one shares structure, so a delta of one change costs O(log n), not a copy of the
//! table, and the old snapshot stays valid for readers that still hold it.
//!
//! Why two structures: a bulk load into the persistent maps walks a trie of 32-slot nodes per
//! insert, which at a million items misses the cache at every level and keeps nodes a third
//! full; the flat base costs one probe per table per item and a few bytes per slot
//! (`docs/performance.md`). The changes since a full load are few by comparison (the next full
//! load starts a new base).
//!
//! How the two agree: an item in the changes map overrides the base's item of the same key
//! (`None` there removes it), and a lookup key in the changes' index is the whole answer for that
//! key. Every change to an item puts the groups of its old and its new lookup key into the
//! changes' index, and an emptied group stays there as [`Indexed::Gone`] when the base has one
//! for it (it is dropped only when the base has none), so for a lookup key the changes' index
//! does not hold, the base's group is still the current one.
//!
//! One cost to know: the first change to a lookup key's group since the base copies the base's
//! members of that group into the changes' index (O(g log g) for a group of g items, then
//! O(log g) for every later change to it). Lookup keys shared by few items (the usual join key,
//! such as the original's dish) do not notice; a lookup key shared by a large part of the table
//! (a category, say) makes its first change after each full load or new base cost a copy of the
//! group: measured 53 ms for a group of 100,000 items, 0.57 s for 1,000,000, paid by the refresh
//! that builds the next snapshot while readers keep the current one.
//!
//! Memory: in the changes, an item's primary key and lookup key are allocated once ([`Keys`]) and
//! shared by both maps (the items map's key, the index's key, a group's member), and the map
//! slots hold pointers only: a HAMT node reserves room for all its slots, so small slots matter.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use crate::key::ItemKey;
use base::{Base, Entry, Hashing};
use keys::{ByKey, ByLookup, Keys, Query};

mod base;
mod keys;

type Map<K, V> = imbl::GenericHashMap<K, V, Hashing, imbl::shared_ptr::DefaultSharedPtr>;

/// What to do when several items share one lookup key (the original joins orders on
/// `dish == item` while the table's key is `(item, price)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ambiguity {
    /// Use the item with the lowest primary key (attribute by attribute, values compared as
    /// text). Deterministic; the default.
    #[default]
    LowestKey,
    /// Treat the lookup as unmatched, with the reason that it is ambiguous.
    Reject,
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a, T> {
    /// The item for the key.
    Found(&'a Arc<T>),
    /// No item has that lookup key.
    Missing,
    /// Several items have it and the policy is [`Ambiguity::Reject`]; how many.
    Ambiguous(usize),
}

#[derive(Debug)]
enum Resolved<T> {
    One(Arc<T>),
    Ambiguous(usize),
}

impl<T> Clone for Resolved<T> {
    fn clone(&self) -> Self {
        match self {
            Resolved::One(t) => Resolved::One(Arc::clone(t)),
            Resolved::Ambiguous(n) => Resolved::Ambiguous(*n),
        }
    }
}

/// The items that share one lookup key, in the changes' index. Most keys have one item: it is
/// the index's key (its [`Keys`]), and the slot holds just its value.
#[derive(Debug)]
enum Indexed<T, K> {
    One(Arc<T>),
    Many(Box<Many<T, K>>),
    /// No item has the lookup key any more, though the base has a group for it.
    Gone,
}

#[derive(Debug)]
struct Many<T, K> {
    members: imbl::OrdSet<ByKey<K>>,
    resolved: Resolved<T>,
}

impl<T, K> Clone for Indexed<T, K> {
    fn clone(&self) -> Self {
        match self {
            Indexed::One(t) => Indexed::One(Arc::clone(t)),
            Indexed::Many(m) => Indexed::Many(Box::new(Many {
                members: m.members.clone(),
                resolved: m.resolved.clone(),
            })),
            Indexed::Gone => Indexed::Gone,
        }
    }
}

/// One version of the reference data. Cheap to clone; never changes once published.
pub struct Snapshot<T, K: Hash + Eq + Clone> {
    base: Arc<Base<T, K>>,
    /// Items changed since the base: `None` removes the base's item of that key.
    items: Map<ByKey<K>, Option<Arc<T>>>,
    /// Every lookup key whose group changed since the base, with its whole group.
    index: Map<ByLookup<K>, Indexed<T, K>>,
    len: usize,
    /// The fewest changes worth a new base ([`COMPACT_AT`]).
    compact_at: usize,
    ambiguity: Ambiguity,
    version: u64,
}

/// The fewest changes since the base for which a snapshot builds a new one (and at least a
/// quarter of the base): below it, the changes map stays small whatever the base's size.
const COMPACT_AT: usize = 4096;

impl<T: fmt::Debug, K: Hash + Eq + Clone + fmt::Debug> fmt::Debug for Snapshot<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("base_items", &self.base.entries.len())
            .field("items", &self.items)
            .field("index", &self.index)
            .field("len", &self.len)
            .field("compact_at", &self.compact_at)
            .field("ambiguity", &self.ambiguity)
            .field("version", &self.version)
            .finish()
    }
}

impl<T, K: Hash + Eq + Clone> Clone for Snapshot<T, K> {
    fn clone(&self) -> Self {
        Snapshot {
            base: Arc::clone(&self.base),
            items: self.items.clone(),
            index: self.index.clone(),
            len: self.len,
            compact_at: self.compact_at,
            ambiguity: self.ambiguity,
            version: self.version,
        }
    }
}

impl<T, K: Hash + Eq + Clone> Snapshot<T, K> {
    /// An empty snapshot (version 0: nothing loaded yet).
    pub(crate) fn empty(ambiguity: Ambiguity) -> Self {
        Snapshot::with_base(ambiguity, Base::empty(), 0)
    }

    fn with_base(ambiguity: Ambiguity, base: Base<T, K>, version: u64) -> Self {
        Snapshot {
            len: base.entries.len(),
            base: Arc::new(base),
            items: Map::with_hasher(Hashing::default()),
            index: Map::with_hasher(Hashing::default()),
            compact_at: COMPACT_AT,
            ambiguity,
            version,
        }
    }

    /// A snapshot of the given items, built in bulk (the full load's path). A key given twice
    /// keeps its last value.
    pub(crate) fn from_entries(
        ambiguity: Ambiguity,
        entries: impl IntoIterator<Item = (ItemKey, T, Option<K>)>,
    ) -> Self {
        let entries = entries
            .into_iter()
            .map(|(key, value, lookup)| (key, Arc::new(value), lookup));
        Snapshot::with_base(ambiguity, Base::build(entries), 1)
    }

    /// When the changes since the base have grown to a quarter of it (and at least
    /// `compact_at`), builds a new base of the whole current data, sharing every value: the
    /// changes map and the base's replaced items no longer both stay in memory, and lookups are
    /// one probe again. A copy of the keys, O(n), once per n/4 changes: O(1) per change on
    /// average, paid by the refresh that builds the next snapshot, never by a reader.
    fn compact_if_large(&mut self) {
        let changes = self.items.len();
        if changes < self.compact_at || changes.saturating_mul(4) < self.base.entries.len() {
            return;
        }
        let changed = self.items.iter().filter_map(|(k, v)| {
            Some((k.0.key.clone(), Arc::clone(v.as_ref()?), k.0.lookup.clone()))
        });
        let unchanged = self
            .base
            .entries
            .iter()
            .filter(|e| !self.items.contains_key(&e.key))
            .map(|e| (e.key.clone(), Arc::clone(&e.value), e.lookup.clone()));
        let base = Base::build(changed.chain(unchanged));
        debug_assert_eq!(base.entries.len(), self.len);
        self.base = Arc::new(base);
        self.items = Map::with_hasher(Hashing::default());
        self.index = Map::with_hasher(Hashing::default());
    }

    /// The item for a lookup key. Synchronous and lock-free: the hot path.
    pub fn lookup<Q>(&self, key: &Q) -> Lookup<'_, T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if !self.index.is_empty() {
            match self.index.get(&Query(key)) {
                Some(Indexed::One(t)) => return Lookup::Found(t),
                Some(Indexed::Many(m)) => {
                    return match &m.resolved {
                        Resolved::One(t) => Lookup::Found(t),
                        Resolved::Ambiguous(n) => Lookup::Ambiguous(*n),
                    };
                }
                Some(Indexed::Gone) => return Lookup::Missing,
                None => {}
            }
        }
        match self.base.group(key) {
            None => Lookup::Missing,
            Some(g) if g.len > 1 && self.ambiguity == Ambiguity::Reject => {
                Lookup::Ambiguous(g.len as usize)
            }
            Some(g) => Lookup::Found(&self.base.entries[g.first as usize].value),
        }
    }

    /// The item with a primary key.
    pub fn get(&self, key: &ItemKey) -> Option<&Arc<T>> {
        if !self.items.is_empty() {
            if let Some(changed) = self.items.get(key) {
                return changed.as_ref();
            }
        }
        self.base.get(key).map(|e| &e.value)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Increases with every published change; 0 before the first load.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Every primary key (unordered).
    pub fn keys(&self) -> impl Iterator<Item = &ItemKey> {
        let changed = self
            .items
            .iter()
            .filter(|(_, value)| value.is_some())
            .map(|(k, _)| &k.0.key);
        let unchanged = self
            .base
            .entries
            .iter()
            .filter(|e| self.items.is_empty() || !self.items.contains_key(&e.key))
            .map(|e| &e.key);
        changed.chain(unchanged)
    }

    pub(crate) fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// Inserts or replaces the item at `key`.
    pub(crate) fn upsert(&mut self, key: ItemKey, value: T, lookup: Option<K>) {
        self.upsert_entry(ByKey(Arc::new(Keys { key, lookup })), Arc::new(value));
    }

    /// Copies the item at `key` in `from` (if any) into this snapshot, sharing its value (and
    /// its keys, when `from` holds them as a change).
    pub(crate) fn copy_from(&mut self, from: &Snapshot<T, K>, key: &ItemKey) {
        let entry = match from.items.get_key_value(key) {
            Some((_, None)) => None,
            Some((keys, Some(value))) => Some((keys.clone(), Arc::clone(value))),
            None => from
                .base
                .get(key)
                .map(|e| (from_base(e), Arc::clone(&e.value))),
        };
        if let Some((keys, value)) = entry {
            self.upsert_entry(keys, value);
        }
    }

    /// The lookup key of the item at `key`: `None` if there is no such item.
    fn current_lookup(&self, key: &ItemKey) -> Option<Option<K>> {
        match self.items.get_key_value(key) {
            Some((_, None)) => None,
            Some((keys, Some(_))) => Some(keys.0.lookup.clone()),
            None => self.base.get(key).map(|e| e.lookup.clone()),
        }
    }

    fn upsert_entry(&mut self, keys: ByKey<K>, value: Arc<T>) {
        let old = self.current_lookup(&keys.0.key);
        if old.is_none() {
            self.len += 1;
        }
        self.items.insert(keys.clone(), Some(value));
        if let Some(Some(old)) = old {
            if Some(&old) != keys.0.lookup.as_ref() {
                self.regroup(&old, |members| {
                    members.remove(&keys.0.key);
                });
            }
        }
        if let Some(lookup) = &keys.0.lookup {
            self.regroup(lookup, |members| {
                // Replaced: the member's keys are this item's current allocation.
                members.remove(&keys.0.key);
                members.insert(keys.clone());
            });
        }
        self.compact_if_large();
    }

    /// Removes the item at `key`, if any.
    pub(crate) fn remove(&mut self, key: &ItemKey) {
        let Some(lookup) = self.current_lookup(key) else {
            return;
        };
        self.len -= 1;
        if self.base.get(key).is_some() {
            let keys = Keys {
                key: key.clone(),
                lookup: None,
            };
            self.items.insert(ByKey(Arc::new(keys)), None);
        } else {
            self.items.remove(key);
        }
        if let Some(lookup) = lookup {
            self.regroup(&lookup, |members| {
                members.remove(key);
            });
        }
        self.compact_if_large();
    }

    /// Changes the group of `lookup` and puts it, resolved again, into the changes' index. The
    /// items map must already hold the values of its members.
    fn regroup(&mut self, lookup: &K, change: impl FnOnce(&mut imbl::OrdSet<ByKey<K>>)) {
        let mut members = match self.index.get_key_value(&Query(lookup)) {
            Some((first, Indexed::One(_))) => imbl::OrdSet::unit(ByKey(Arc::clone(&first.0))),
            Some((_, Indexed::Many(m))) => m.members.clone(),
            Some((_, Indexed::Gone)) => imbl::OrdSet::new(),
            // Not changed since the base: the base's group is the whole of it.
            None => self
                .base
                .members(self.base.group(lookup))
                .map(from_base)
                .collect(),
        };
        change(&mut members);
        let slot = match members.len() {
            0 if self.base.group(lookup).is_none() => {
                self.index.remove(&Query(lookup));
                return;
            }
            0 => {
                let keys = Keys {
                    key: ItemKey::new([]),
                    lookup: Some(lookup.clone()),
                };
                (ByKey(Arc::new(keys)), Indexed::Gone)
            }
            1 => {
                let Some(only) = members.get_min().cloned() else {
                    return;
                };
                let value = self.get(&only.0.key).cloned();
                match value {
                    Some(value) => (only, Indexed::One(value)),
                    None => (only, self.many(members)),
                }
            }
            _ => {
                let Some(low) = members.get_min().cloned() else {
                    return;
                };
                (low, self.many(members))
            }
        };
        // Keyed by a current member, so no removed item's keys stay alive in the index.
        self.index.insert(ByLookup(slot.0 .0), slot.1);
    }

    /// A group of several items, resolved by the policy.
    fn many(&self, members: imbl::OrdSet<ByKey<K>>) -> Indexed<T, K> {
        let resolved = match self.ambiguity {
            Ambiguity::LowestKey => match members.get_min().and_then(|low| self.get(&low.0.key)) {
                Some(value) => Resolved::One(Arc::clone(value)),
                None => Resolved::Ambiguous(members.len()),
            },
            Ambiguity::Reject => Resolved::Ambiguous(members.len()),
        };
        Indexed::Many(Box::new(Many { members, resolved }))
    }
}

/// A base item's keys as a change's (a copy: the base keeps its own).
fn from_base<T, K: Clone>(e: &Entry<T, K>) -> ByKey<K> {
    ByKey(Arc::new(Keys {
        key: e.key.clone(),
        lookup: e.lookup.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyValue;

    fn key(item: &str, price: &str) -> ItemKey {
        ItemKey::from_iter([KeyValue::S(item.into()), KeyValue::N(price.into())])
    }

    #[test]
    fn upsert_remove_and_lookup() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("burger", "100"), "medium".into(), Some("burger".into()));
        assert_eq!(
            s.lookup("burger"),
            Lookup::Found(&Arc::new("medium".to_owned()))
        );
        let before = s.clone();
        s.upsert(key("burger", "100"), "high".into(), Some("burger".into()));
        assert_eq!(
            s.lookup("burger"),
            Lookup::Found(&Arc::new("high".to_owned()))
        );
        // The old version is untouched: readers holding it keep their view.
        assert_eq!(
            before.lookup("burger"),
            Lookup::Found(&Arc::new("medium".to_owned()))
        );
        s.remove(&key("burger", "100"));
        assert_eq!(s.lookup("burger"), Lookup::Missing);
        assert!(s.is_empty());
    }

    #[test]
    fn several_items_per_lookup_key() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("burger", "200"), "b".into(), Some("burger".into()));
        s.upsert(key("burger", "100"), "a".into(), Some("burger".into()));
        assert_eq!(s.lookup("burger"), Lookup::Found(&Arc::new("a".to_owned())));
        s.remove(&key("burger", "100"));
        assert_eq!(s.lookup("burger"), Lookup::Found(&Arc::new("b".to_owned())));

        let mut r: Snapshot<String, String> = Snapshot::empty(Ambiguity::Reject);
        r.upsert(key("burger", "200"), "b".into(), Some("burger".into()));
        r.upsert(key("burger", "100"), "a".into(), Some("burger".into()));
        assert_eq!(r.lookup("burger"), Lookup::Ambiguous(2));
    }

    #[test]
    fn changing_the_lookup_key_moves_the_item() {
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.upsert(key("x", "1"), "v".into(), Some("old".into()));
        s.upsert(key("x", "1"), "v".into(), Some("new".into()));
        assert_eq!(s.lookup("old"), Lookup::Missing);
        assert!(matches!(s.lookup("new"), Lookup::Found(_)));
        s.upsert(key("x", "1"), "v".into(), None);
        assert_eq!(s.lookup("new"), Lookup::Missing);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn from_entries_keeps_the_last_of_a_duplicate_key_with_its_lookup_key() {
        let s: Snapshot<String, String> = Snapshot::from_entries(
            Ambiguity::LowestKey,
            [
                (key("x", "1"), "a".to_owned(), Some("old".to_owned())),
                (key("y", "1"), "b".to_owned(), Some("other".to_owned())),
                (key("x", "1"), "c".to_owned(), Some("new".to_owned())),
            ],
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s.version(), 1);
        assert_eq!(s.lookup("old"), Lookup::Missing);
        assert_eq!(s.lookup("new"), Lookup::Found(&Arc::new("c".to_owned())));
        assert_eq!(s.get(&key("x", "1")), Some(&Arc::new("c".to_owned())));
        let mut keys: Vec<String> = s.keys().map(ToString::to_string).collect();
        keys.sort();
        assert_eq!(keys, ["x/1", "y/1"]);
    }

    #[test]
    fn groups_from_entries_resolve_and_shrink_by_policy() {
        let entries = || {
            [
                (key("b", "3"), "b3".to_owned(), Some("b".to_owned())),
                (key("b", "1"), "b1".to_owned(), Some("b".to_owned())),
                (key("b", "2"), "b2".to_owned(), Some("b".to_owned())),
                (key("n", "1"), "none".to_owned(), None),
            ]
        };
        let mut s: Snapshot<String, String> =
            Snapshot::from_entries(Ambiguity::LowestKey, entries());
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b1".to_owned())));
        s.remove(&key("b", "1"));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b2".to_owned())));
        s.upsert(key("b", "2"), "b2'".into(), Some("b".into()));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b2'".to_owned())));
        s.remove(&key("b", "2"));
        assert_eq!(s.lookup("b"), Lookup::Found(&Arc::new("b3".to_owned())));
        s.remove(&key("b", "3"));
        assert_eq!(s.lookup("b"), Lookup::Missing);
        assert_eq!(s.len(), 1);

        let mut r: Snapshot<String, String> = Snapshot::from_entries(Ambiguity::Reject, entries());
        assert_eq!(r.lookup("b"), Lookup::Ambiguous(3));
        r.remove(&key("b", "3"));
        assert_eq!(r.lookup("b"), Lookup::Ambiguous(2));
        r.upsert(key("b", "1"), "moved".into(), Some("c".into()));
        assert_eq!(r.lookup("b"), Lookup::Found(&Arc::new("b2".to_owned())));
        assert_eq!(r.lookup("c"), Lookup::Found(&Arc::new("moved".to_owned())));
    }

    #[test]
    fn copy_from_shares_the_value_and_indexes_it() {
        let from: Snapshot<String, String> = Snapshot::from_entries(
            Ambiguity::LowestKey,
            [(key("x", "1"), "v".to_owned(), Some("l".to_owned()))],
        );
        let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
        s.copy_from(&from, &key("x", "1"));
        s.copy_from(&from, &key("missing", "1"));
        assert_eq!(s.len(), 1);
        match (s.lookup("l"), from.lookup("l")) {
            (Lookup::Found(a), Lookup::Found(b)) => assert!(Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Any sequence of upserts and removals resolves every lookup key like a plain model:
        /// the item with the lowest primary key among those sharing it.
        #[test]
        fn lookups_match_a_simple_model(ops in proptest::collection::vec((0u8..8, 0u8..3, proptest::bool::ANY), 0..60), compact_at in 1usize..6) {
            let mut s: Snapshot<String, String> = Snapshot::empty(Ambiguity::LowestKey);
            // from every `compact_at` changes on, the changes become a new base
            s.compact_at = compact_at;
            let mut model: std::collections::BTreeMap<ItemKey, (String, String)> = Default::default();
            for (i, (k, l, insert)) in ops.into_iter().enumerate() {
                let item = key(&format!("i{k}"), "1");
                let lookup = format!("l{l}");
                if insert {
                    s.upsert(item.clone(), format!("v{i}"), Some(lookup.clone()));
                    model.insert(item, (format!("v{i}"), lookup));
                } else {
                    s.remove(&item);
                    model.remove(&item);
                }
                for l in 0..3 {
                    let lookup = format!("l{l}");
                    let expected = model.iter().find(|(_, (_, lk))| *lk == lookup).map(|(_, (v, _))| v.clone());
                    let got = match s.lookup(lookup.as_str()) {
                        Lookup::Found(v) => Some((**v).clone()),
                        _ => None,
                    };
                    proptest::prop_assert_eq!(got, expected);
                }
                proptest::prop_assert_eq!(s.len(), model.len());
            }
        }

        /// A bulk build of any entries (duplicate keys, shared lookup keys, items without one)
        /// answers every lookup like one upsert after another, and like a plain model, under
        /// both policies; and so does every snapshot after further changes to it.
        #[test]
        fn bulk_build_matches_upserts_and_the_model(
            entries in proptest::collection::vec((0u8..12, 0u8..4, 0u8..5), 0..40),
            ops in proptest::collection::vec((0u8..12, 0u8..5, proptest::bool::ANY), 0..20),
            reject in proptest::bool::ANY,
            compact_at in proptest::option::of(1usize..6),
        ) {
            let ambiguity = if reject { Ambiguity::Reject } else { Ambiguity::LowestKey };
            let mut model = Model::new();
            let mut one_by_one: Snapshot<String, String> = Snapshot::empty(ambiguity);
            let mut bulk = Vec::new();
            for (i, (k, v, l)) in entries.into_iter().enumerate() {
                let value = format!("v{i}-{v}");
                one_by_one.upsert(r_item(k), value.clone(), r_lookup(l));
                model.insert(r_item(k), (value.clone(), r_lookup(l)));
                bulk.push((r_item(k), value, r_lookup(l)));
            }
            let mut s = Snapshot::from_entries(ambiguity, bulk);
            // a new base from every `compact_at` changes on (and a quarter of the base), or never
            s.compact_at = compact_at.unwrap_or(usize::MAX);
            r_check(&s, &model, ambiguity)?;
            r_check(&one_by_one, &model, ambiguity)?;
            let before = s.clone();
            let before_model = model.clone();
            for (i, (k, l, insert)) in ops.into_iter().enumerate() {
                r_change(&mut s, &mut model, k, insert.then(|| (format!("u{i}"), l)));
                r_check(&s, &model, ambiguity)?;
            }
            // the bulk-built version is untouched by the changes to its successor
            r_check(&before, &before_model, ambiguity)?;
        }
    }

    type Model = std::collections::BTreeMap<ItemKey, (String, Option<String>)>;

    #[derive(Clone, Debug)]
    enum Op {
        Upsert(u8, u8),
        Remove(u8),
        /// copy item k from a kept version (index modulo the kept count), or from `other`
        CopyFrom(usize, u8),
        CopyFromOther(u8),
        Keep,
        Compact,
        SetCompactAt(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            6 => (0u8..12, 0u8..5).prop_map(|(k, l)| Op::Upsert(k, l)),
            4 => (0u8..12).prop_map(Op::Remove),
            2 => (0usize..8, 0u8..12).prop_map(|(i, k)| Op::CopyFrom(i, k)),
            2 => (0u8..12).prop_map(Op::CopyFromOther),
            1 => Just(Op::Keep),
            1 => Just(Op::Compact),
            1 => (0usize..6).prop_map(Op::SetCompactAt),
        ]
    }

    fn r_item(k: u8) -> ItemKey {
        key(&format!("i{}", k % 4), &format!("{}", k / 4))
    }
    fn r_lookup(l: u8) -> Option<String> {
        (l < 4).then(|| format!("l{l}"))
    }

    /// Item `k` upserted with a value and lookup key `l` (`Some`) or removed (`None`), in a
    /// snapshot and in its model alike.
    fn r_change(
        s: &mut Snapshot<String, String>,
        model: &mut Model,
        k: u8,
        change: Option<(String, u8)>,
    ) {
        match change {
            Some((value, l)) => {
                s.upsert(r_item(k), value.clone(), r_lookup(l));
                model.insert(r_item(k), (value, r_lookup(l)));
            }
            None => {
                s.remove(&r_item(k));
                model.remove(&r_item(k));
            }
        }
    }

    /// A snapshot built in bulk from `entries` (item, lookup key), the i-th valued
    /// `{prefix}{i}`, and its model.
    fn r_bulk(
        ambiguity: Ambiguity,
        entries: Vec<(u8, u8)>,
        prefix: &str,
    ) -> (Snapshot<String, String>, Model) {
        let mut model = Model::new();
        let mut bulk = Vec::new();
        for (i, (k, l)) in entries.into_iter().enumerate() {
            model.insert(r_item(k), (format!("{prefix}{i}"), r_lookup(l)));
            bulk.push((r_item(k), format!("{prefix}{i}"), r_lookup(l)));
        }
        (Snapshot::from_entries(ambiguity, bulk), model)
    }

    fn r_check(
        s: &Snapshot<String, String>,
        model: &Model,
        ambiguity: Ambiguity,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert_eq!(s.len(), model.len());
        proptest::prop_assert_eq!(s.is_empty(), model.is_empty());
        for l in 0..5 {
            let lk = format!("l{l}");
            let group: Vec<&String> = model
                .values()
                .filter(|(_, g)| g.as_deref() == Some(lk.as_str()))
                .map(|(v, _)| v)
                .collect();
            let expected = match (group.len(), ambiguity) {
                (0, _) => None,
                (1, _) | (_, Ambiguity::LowestKey) => Some(Ok(group[0].clone())),
                (n, Ambiguity::Reject) => Some(Err(n)),
            };
            let got = match s.lookup(lk.as_str()) {
                Lookup::Found(v) => Some(Ok((**v).clone())),
                Lookup::Ambiguous(n) => Some(Err(n)),
                Lookup::Missing => None,
            };
            proptest::prop_assert_eq!(&got, &expected, "lookup {}", lk);
            // and by the owned key type
            let got2 = match s.lookup(&lk) {
                Lookup::Found(v) => Some(Ok((**v).clone())),
                Lookup::Ambiguous(n) => Some(Err(n)),
                Lookup::Missing => None,
            };
            proptest::prop_assert_eq!(got2, expected);
        }
        for k in 0..12 {
            let item = r_item(k);
            proptest::prop_assert_eq!(
                s.get(&item).map(|v| (**v).clone()),
                model.get(&item).map(|(v, _)| v.clone())
            );
        }
        let mut keys: Vec<&ItemKey> = s.keys().collect();
        keys.sort();
        proptest::prop_assert_eq!(keys, model.keys().collect::<Vec<_>>());
        Ok(())
    }

    proptest::proptest! {

        /// Any sequence of bulk build, upserts, removals, copies (from kept versions and from
        /// another snapshot), forced compactions and kept clones: every version, the current and
        /// every kept one, answers like its model.
        #[test]
        fn every_kept_version_matches_its_model_through_copies_and_compactions(
            entries in proptest::collection::vec((0u8..12, 0u8..5), 0..20),
            other_entries in proptest::collection::vec((0u8..12, 0u8..5), 0..20),
            other_ops in proptest::collection::vec((0u8..12, 0u8..5, proptest::bool::ANY), 0..12),
            ops in proptest::collection::vec(op(), 0..60),
            reject in proptest::bool::ANY,
            start_empty in proptest::bool::ANY,
            compact_at in 0usize..6,
        ) {
            let ambiguity = if reject { Ambiguity::Reject } else { Ambiguity::LowestKey };
            // another snapshot, with items in its base, changed and removed
            let (mut other, mut other_model) = r_bulk(ambiguity, other_entries, "o");
            other.compact_at = usize::MAX;
            for (i, (k, l, ins)) in other_ops.into_iter().enumerate() {
                r_change(&mut other, &mut other_model, k, ins.then(|| (format!("ou{i}"), l)));
            }
            r_check(&other, &other_model, ambiguity)?;

            let (mut s, mut model) = if start_empty {
                (Snapshot::empty(ambiguity), Model::new())
            } else {
                r_bulk(ambiguity, entries, "b")
            };
            s.compact_at = compact_at;
            r_check(&s, &model, ambiguity)?;
            let mut kept: Vec<(Snapshot<String, String>, Model)> = vec![(s.clone(), model.clone())];
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Upsert(k, l) => r_change(&mut s, &mut model, k, Some((format!("u{i}"), l))),
                    Op::Remove(k) => r_change(&mut s, &mut model, k, None),
                    Op::CopyFrom(j, k) => {
                        let (from, from_model) = &kept[j % kept.len()];
                        s.copy_from(from, &r_item(k));
                        if let Some(e) = from_model.get(&r_item(k)) {
                            model.insert(r_item(k), e.clone());
                        }
                    }
                    Op::CopyFromOther(k) => {
                        s.copy_from(&other, &r_item(k));
                        if let Some(e) = other_model.get(&r_item(k)) {
                            model.insert(r_item(k), e.clone());
                        }
                    }
                    Op::Keep => kept.push((s.clone(), model.clone())),
                    Op::Compact => {
                        let at = s.compact_at;
                        s.compact_at = 0;
                        s.compact_if_large();
                        s.compact_at = at;
                    }
                    Op::SetCompactAt(n) => s.compact_at = n,
                }
                r_check(&s, &model, ambiguity)?;
            }
            for (v, m) in &kept {
                r_check(v, m, ambiguity)?;
            }
            r_check(&other, &other_model, ambiguity)?;
        }
    }

    /// Large data with the default threshold: real compactions, the tables' growth (a bulk
    /// build from an iterator without a size hint), groups of many items.
    #[test]
    fn a_large_table_under_many_random_changes_matches_a_model() {
        use std::collections::BTreeMap;
        let mut rng: u64 = 0x9E3779B97F4A7C15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for ambiguity in [Ambiguity::LowestKey, Ambiguity::Reject] {
            let n_keys = 12_000u64;
            let n_lookups = 2_000u64;
            let item = |k: u64| key(&format!("i{}", k % 97), &format!("{}", k / 97));
            let lookup = |l: u64| (l < n_lookups).then(|| format!("l{l}"));
            let mut model: BTreeMap<ItemKey, (String, Option<String>)> = BTreeMap::new();
            let mut bulk = Vec::new();
            for i in 0..8_000 {
                let k = next() % n_keys;
                let l = next() % (n_lookups + 200);
                let v = format!("b{i}");
                model.insert(item(k), (v.clone(), lookup(l)));
                bulk.push((item(k), v, lookup(l)));
            }
            // no size hint: the bulk build's tables grow (their rehash)
            let mut s: Snapshot<String, String> =
                Snapshot::from_entries(ambiguity, bulk.into_iter().filter(|_| true));
            let full =
                |s: &Snapshot<String, String>,
                 model: &BTreeMap<ItemKey, (String, Option<String>)>| {
                    assert_eq!(s.len(), model.len());
                    let mut groups: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
                    for (v, l) in model.values() {
                        if let Some(l) = l {
                            groups.entry(l.as_str()).or_default().push(v);
                        }
                    }
                    for l in 0..n_lookups + 200 {
                        let lk = format!("l{l}");
                        let expected = match groups.get(lk.as_str()) {
                            None => None,
                            Some(g) if g.len() > 1 && ambiguity == Ambiguity::Reject => {
                                Some(Err(g.len()))
                            }
                            Some(g) => Some(Ok(g[0].clone())),
                        };
                        let got = match s.lookup(lk.as_str()) {
                            Lookup::Found(v) => Some(Ok((**v).clone())),
                            Lookup::Ambiguous(n) => Some(Err(n)),
                            Lookup::Missing => None,
                        };
                        assert_eq!(got, expected, "{lk}");
                    }
                    for k in 0..n_keys {
                        assert_eq!(
                            s.get(&item(k)).map(|v| (**v).clone()),
                            model.get(&item(k)).map(|(v, _)| v.clone())
                        );
                    }
                    let mut keys: Vec<&ItemKey> = s.keys().collect();
                    keys.sort();
                    assert_eq!(keys, model.keys().collect::<Vec<_>>());
                };
            full(&s, &model);
            let mut kept = Vec::new();
            let mut bases = 0;
            for i in 0..16_000u64 {
                let before = Arc::as_ptr(&s.base);
                let k = next() % n_keys;
                if next() % 3 == 0 {
                    s.remove(&item(k));
                    model.remove(&item(k));
                } else {
                    // lookup keys concentrated, to make groups change and grow
                    let l = next() % (n_lookups + 200);
                    s.upsert(item(k), format!("u{i}"), lookup(l));
                    model.insert(item(k), (format!("u{i}"), lookup(l)));
                }
                if Arc::as_ptr(&s.base) != before {
                    bases += 1;
                    full(&s, &model);
                }
                if i % 4000 == 0 {
                    full(&s, &model);
                    kept.push((s.clone(), model.clone()));
                }
            }
            assert!(bases >= 2, "{bases}");
            full(&s, &model);
            for (v, m) in &kept {
                full(v, m);
            }
        }
    }
}
