//! The flat base of a snapshot: built in bulk by a full load, one `Vec` of items and two
//! open-addressing hash tables (by primary key, and groups by lookup key). Never changes once
//! built.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;

use crate::key::ItemKey;

/// The maps' hasher. foldhash is several times faster than the standard SipHash on these short
/// keys and not DoS-resistant: the keys come from the user's own table (and a feed snapshot of
/// it), not from untrusted input, so a hash-flooding attack would need write access to the
/// reference table itself. Seeded per process.
pub(super) type Hashing = foldhash::fast::RandomState;

/// No next item (the end of a lookup key's chain in the base).
pub(super) const END: u32 = u32::MAX;

/// An item of the base.
pub(super) struct Entry<T, K> {
    pub(super) key: ItemKey,
    pub(super) lookup: Option<K>,
    pub(super) value: Arc<T>,
    /// The next item with the same lookup key, or [`END`].
    pub(super) next: u32,
}

/// The items of the base that share one lookup key: the one with the lowest primary key first,
/// the others chained from it.
#[derive(Clone, Copy)]
pub(super) struct Group {
    pub(super) first: u32,
    pub(super) len: u32,
}

/// The flat part of a snapshot, built by a full load. Never changes once built.
pub(super) struct Base<T, K> {
    pub(super) entries: Vec<Entry<T, K>>,
    /// Index into `entries`, by primary key.
    pub(super) by_key: HashTable<u32>,
    /// Groups of `entries`, by lookup key.
    pub(super) by_lookup: HashTable<Group>,
    pub(super) hashing: Hashing,
}

impl<T, K: Hash + Eq> Base<T, K> {
    pub(super) fn empty() -> Self {
        Base {
            entries: Vec::new(),
            by_key: HashTable::new(),
            by_lookup: HashTable::new(),
            hashing: Hashing::default(),
        }
    }

    /// The base of these items; a key given twice keeps its last value and lookup key.
    pub(super) fn build(entries: impl IntoIterator<Item = (ItemKey, Arc<T>, Option<K>)>) -> Self {
        let entries = entries.into_iter();
        let reserve = entries.size_hint().0;
        let hashing = Hashing::default();
        let mut items: Vec<Entry<T, K>> = Vec::with_capacity(reserve);
        let mut by_key: HashTable<u32> = HashTable::with_capacity(reserve);
        for (key, value, lookup) in entries {
            let hash = hashing.hash_one(&key);
            if let Some(&i) = by_key.find(hash, |&i| items[i as usize].key == key) {
                let e = &mut items[i as usize];
                e.value = value;
                e.lookup = lookup;
                continue;
            }
            let i = u32::try_from(items.len())
                .ok()
                .filter(|&i| i != END)
                .expect("fewer than 2^32 - 1 reference items");
            by_key.insert_unique(hash, i, |&j| hashing.hash_one(&items[j as usize].key));
            items.push(Entry {
                key,
                lookup,
                value,
                next: END,
            });
        }
        // Then the groups, from the unique items: one slot per lookup key.
        let mut by_lookup: HashTable<Group> = HashTable::with_capacity(items.len());
        for i in 0..items.len() {
            let Some(lookup) = &items[i].lookup else {
                continue;
            };
            let hash = hashing.hash_one(lookup);
            let same = |g: &Group| items[g.first as usize].lookup.as_ref() == Some(lookup);
            let Some(group) = by_lookup.find_mut(hash, same) else {
                // (Only items with a lookup key are grouped; hashed as the bare `K`, as found.)
                let rehash = |g: &Group| {
                    let lookup = items[g.first as usize].lookup.as_ref();
                    lookup.map_or(0, |l| hashing.hash_one(l))
                };
                by_lookup.insert_unique(
                    hash,
                    Group {
                        first: i as u32,
                        len: 1,
                    },
                    rehash,
                );
                continue;
            };
            group.len += 1;
            let first = group.first as usize;
            if items[i].key < items[first].key {
                items[i].next = group.first;
                group.first = i as u32;
            } else {
                items[i].next = items[first].next;
                items[first].next = i as u32;
            }
        }
        Base {
            entries: items,
            by_key,
            by_lookup,
            hashing,
        }
    }

    pub(super) fn get(&self, key: &ItemKey) -> Option<&Entry<T, K>> {
        let hash = self.hashing.hash_one(key);
        self.by_key
            .find(hash, |&i| self.entries[i as usize].key == *key)
            .map(|&i| &self.entries[i as usize])
    }

    pub(super) fn group<Q>(&self, lookup: &Q) -> Option<Group>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.by_lookup.is_empty() {
            return None;
        }
        let hash = self.hashing.hash_one(lookup);
        self.by_lookup
            .find(hash, |g| {
                self.entries[g.first as usize]
                    .lookup
                    .as_ref()
                    .is_some_and(|l| l.borrow() == lookup)
            })
            .copied()
    }

    /// The items of a group, lowest primary key first.
    pub(super) fn members(&self, group: Option<Group>) -> impl Iterator<Item = &Entry<T, K>> {
        let mut next = group.map_or(END, |g| g.first);
        std::iter::from_fn(move || {
            let e = self.entries.get(next as usize)?;
            next = e.next;
            Some(e)
        })
    }
}
