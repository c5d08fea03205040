//! Step 3b, hold (`UNMATCHED=hold`): what becomes of the orders without a row (held, or
//! dead-lettered when the shard's hold is full, or enriched when a flag later in the batch
//! brought the row), and of the orders held earlier (released with the version that resolved
//! their dish, or dead-lettered past the grace). The objects are written with the batch's
//! output, and the held objects of released and expired orders deleted after it.

use std::collections::HashMap;
use std::sync::Arc;

use aws_plumbing::{ObjectKeeper, ObjectStore, StoreError};
use enrichment::Outcome;
use tracing::warn;

use crate::hold::{now_ms, Held, Hold, Tally};
use crate::orders::{Product, Record};
use crate::output::Input;

/// What a batch does with held orders.
#[derive(Debug, Default)]
pub(crate) struct HoldPlan {
    /// Orders of this batch newly held: their objects are written before it is acknowledged.
    pub(crate) new: Vec<Held>,
    /// Orders of this batch the full hold could not take: dead-lettered.
    pub(crate) hold_full: Vec<Input>,
    /// Orders held earlier, released with the version that resolved their dish.
    pub(crate) released: Vec<(Held, Arc<Product>)>,
    /// Orders held earlier, past the grace.
    pub(crate) expired: Vec<Held>,
    /// Held orders whose own batch this is (a retry) and that it enriched: their objects go.
    pub(crate) done_here: Vec<Held>,
    /// Orders of this batch that left the hold before (released or expired): left out.
    pub(crate) already_ended: usize,
}

/// Decides the hold for the batch of `shard` whose first record is `first` (and its
/// sub-sequence): `outcomes` with the orders a flag of the batch resolved enriched, and the plan.
/// `resolved` are the versions that resolved watched dishes during the batch; while the table
/// is `too_stale`, nothing expires.
pub(super) fn hold_step(
    hold: &Hold,
    shard: &str,
    first: (&str, Option<u64>),
    outcomes: Vec<Outcome<Input, Product>>,
    resolved: Vec<(String, Arc<Product>)>,
    too_stale: bool,
) -> (Vec<Outcome<Input, Product>>, HoldPlan) {
    let this_batch: HashMap<String, Arc<Product>> = resolved.iter().cloned().collect();
    hold.resolved(resolved);
    let now = now_ms();
    // Those held earlier that leave now (released or expired) free their room first.
    let mut due = hold.due(shard, now);
    // While the table is too stale its rows may exist unseen: no order expires as unmatched.
    if too_stale {
        due.expired.clear();
    }
    let mut leaving = Tally::default();
    for held in (due.released.iter().map(|(h, _)| h)).chain(&due.expired) {
        leaving.add(held);
    }
    let mut pending = Tally::default();
    let mut plan = HoldPlan::default();
    // The steady state (nothing waits, nothing leaves, a batch newer than every order that
    // ended) costs no per-record work.
    let may_have_ended = hold.may_have_ended(shard, first.0);
    let leaving_any = !due.released.is_empty() || !due.expired.is_empty();
    if !leaving_any
        && !may_have_ended
        && !outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Waiting { .. }))
    {
        return (outcomes, plan);
    }
    let mut out = Vec::with_capacity(outcomes.len());
    // The identities this batch answers itself (a retry of a batch that held some), when
    // orders leave the hold with it.
    let mut here: HashMap<(String, Option<u64>), bool> = HashMap::new();
    for outcome in outcomes {
        // An order that left the hold already (its batch redelivered or redriven): not decided
        // again, not written again.
        let ended = may_have_ended
            && match &outcome {
                Outcome::Waiting { record } | Outcome::Enriched { record, .. } => {
                    hold.has_ended(shard, record)
                }
                _ => false,
            };
        if ended {
            plan.already_ended += 1;
            continue;
        }
        match outcome {
            Outcome::Waiting { record } => {
                let Record::Order(order) = &record.record else {
                    out.push(Outcome::Waiting { record });
                    continue;
                };
                let id = (record.sequence_number.clone(), record.sub_sequence);
                if let Some(item) = this_batch.get(&order.dish) {
                    // A flag later in the batch brought the row: released at its position.
                    here.insert(id, true);
                    out.push(Outcome::Enriched {
                        record,
                        item: Arc::clone(item),
                    });
                    continue;
                }
                here.insert(id, false);
                if hold.is_held(shard, &record) {
                    out.push(Outcome::Waiting { record });
                    continue;
                }
                // No row now: a version that resolved the dish before is gone (deleted since).
                hold.unresolve(&order.dish);
                let held = Held::new(shard, &record, &order.dish, now, first.0, first.1);
                if hold.has_room(&held, &pending, &leaving) {
                    pending.add(&held);
                    plan.new.push(held);
                    out.push(Outcome::Waiting { record });
                } else {
                    plan.hold_full.push(record);
                }
            }
            Outcome::Enriched { record, item } => {
                if leaving_any {
                    here.insert((record.sequence_number.clone(), record.sub_sequence), true);
                }
                out.push(Outcome::Enriched { record, item });
            }
            other => out.push(other),
        }
    }
    for (held, item) in due.released {
        let id = (held.sequence_number.clone(), held.sub_sequence_number);
        match here.get(&id) {
            // Its own batch again (a retry or a redrive): the batch answered it.
            Some(true) => plan.done_here.push(held),
            Some(false) => {}
            None => plan.released.push((held, item)),
        }
    }
    for held in due.expired {
        let id = (held.sequence_number.clone(), held.sub_sequence_number);
        match here.get(&id) {
            Some(true) => plan.done_here.push(held),
            // (a retry of its batch past the grace: it expires now, not held again)
            _ => plan.expired.push(held),
        }
    }
    (out, plan)
}

/// Before the batch's output: writes the objects of the orders `plan` newly holds (then
/// counts them as held), and into each order it releases the version that resolved it (so a
/// release repeated after a crash, in any environment, uses that version).
pub(super) async fn write_held<S: ObjectStore>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    plan: &HoldPlan,
) -> Result<(), StoreError> {
    for held in &plan.new {
        store
            .put(bucket, &held.key(&hold.settings.prefix), held.to_vec())
            .await?;
    }
    hold.add(&plan.new);
    for (held, item) in &plan.released {
        if held.resolved_with.is_none() {
            let mut resolved = held.clone();
            resolved.resolved_with = Some(Product::clone(item));
            store
                .put(bucket, &held.key(&hold.settings.prefix), resolved.to_vec())
                .await?;
        }
    }
    Ok(())
}

/// Deletes the held objects of the orders that left the hold (after the output is written) and
/// forgets them. A delete that fails is logged: the order is released again by a later cold
/// start, under the same names.
pub(super) async fn forget_held<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    shard: &str,
    plan: &HoldPlan,
) {
    let released: Vec<Held> = plan.released.iter().map(|(h, _)| h.clone()).collect();
    // Those that end under names of their own (released, expired): a redelivery of their batch
    // must not write them again, so their end is marked.
    let ended: Vec<Held> = released.iter().chain(&plan.expired).cloned().collect();
    for held in &ended {
        // Its end marked first: a redelivered batch does not decide it again, and a held
        // object that outlives its marker (a failed delete) counts as ended.
        let marker = held.ended_key(&hold.settings.prefix);
        if let Err(e) = store.put(bucket, &marker, Vec::new()).await {
            warn!(marker, error = %e, "a held order left the hold but its end was not marked; its object stays");
            continue;
        }
        let key = held.key(&hold.settings.prefix);
        if let Err(e) = store.delete_object(bucket, &key).await {
            warn!(key, error = %e, "a held order left the hold but its object was not deleted");
        }
    }
    // Those their own batch answered (written in its objects): a redelivery of that batch
    // writes them again under the same names, so no marker; only their held objects go.
    for held in &plan.done_here {
        let key = held.key(&hold.settings.prefix);
        if let Err(e) = store.delete_object(bucket, &key).await {
            warn!(key, error = %e, "a held order its batch answered was not deleted");
        }
    }
    hold.forget(
        shard,
        &ended,
        &plan.done_here,
        released.len() + plan.done_here.len(),
        plan.expired.len(),
    );
}

/// Keeps in `plan` only the held orders to release or expire whose objects still exist: another
/// environment of the same shard (or the redrive) may have ended them since this one listed
/// them. Those gone are forgotten here. One GET per order that ends, none otherwise.
pub(super) async fn still_held<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    shard: &str,
    plan: &mut HoldPlan,
) -> Result<(), aws_plumbing::S3Error> {
    let prefix = &hold.settings.prefix;
    let mut gone = Vec::new();
    let mut released = Vec::with_capacity(plan.released.len());
    for (held, item) in std::mem::take(&mut plan.released) {
        match store.read_object(bucket, &held.key(prefix)).await? {
            Some(_) => released.push((held, item)),
            None => gone.push(held),
        }
    }
    plan.released = released;
    let mut expired = Vec::with_capacity(plan.expired.len());
    for held in std::mem::take(&mut plan.expired) {
        match store.read_object(bucket, &held.key(prefix)).await? {
            Some(_) => expired.push(held),
            None => gone.push(held),
        }
    }
    plan.expired = expired;
    if !gone.is_empty() {
        tracing::info!(
            shard,
            orders = gone.len(),
            "held orders ended elsewhere; forgotten here"
        );
        hold.forget(shard, &[], &gone, 0, 0);
    }
    Ok(())
}
