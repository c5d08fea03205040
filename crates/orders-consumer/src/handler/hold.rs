//! Step 3b, hold (`UNMATCHED=hold`): what becomes of the orders without a row (held, or
//! dead-lettered when the shard's hold is full, or enriched when a flag later in the batch
//! brought the row), and of the orders held earlier (released with the version that resolved
//! their dish, or dead-lettered past the grace). The objects are written with the batch's
//! output, and the held objects of released and expired orders deleted after it.

use std::collections::HashMap;
use std::sync::Arc;

use stream_refdata::Outcome;
use stream_refdata_aws::{ObjectKeeper, StoreError};
use tracing::warn;

use crate::hold::{now_ms, Held, Hold, Tally};
use crate::orders::{Product, Record};
use crate::output::Input;

/// What a batch does with held orders.
#[derive(Debug, Default)]
pub(crate) struct HoldPlan {
    /// Orders of this batch newly held: their objects are written before it is acknowledged.
    pub(crate) new: Vec<Held>,
    /// Orders of this batch the hold could not take (full, or a damaged object where theirs
    /// goes), with why: dead-lettered.
    pub(crate) hold_full: Vec<(Input, String)>,
    /// Orders of this batch whose held object could not be written (a damaged or foreign object
    /// is there, left in place): dead-lettered instead.
    pub(crate) cannot_hold: Vec<(Held, String)>,
    /// Orders held earlier, released with the version that resolved their dish.
    pub(crate) released: Vec<(Held, Arc<Product>)>,
    /// Orders held earlier, past the grace.
    pub(crate) expired: Vec<Held>,
    /// Held orders whose own batch this is (a retry) and that it enriched, with the version it
    /// enriched them with: claimed in their objects first, then their ends marked.
    pub(crate) done_here: Vec<(Held, Arc<Product>)>,
    /// Orders of this batch that left the hold before (released or expired): not decided
    /// again (one released goes back into this batch's object it was released into).
    pub(crate) already_ended: usize,
    /// Those orders.
    pub(crate) ended_again: Vec<Input>,
    /// The ETags of the held objects of the orders that end, as read just before: the version
    /// that resolved one is written into its object only while no one else changed it.
    pub(crate) tags: HashMap<(String, Option<u64>), String>,
}

/// Before a batch is decided: reads the held objects of its orders this environment holds (a
/// retry or a redelivery of a batch that held some; none otherwise), so that what another
/// environment decided since is followed, not this environment's memory: an object that carries
/// a version or an expiry is taken as it is; one that is gone with its ended marker there ended
/// elsewhere (the batch does not decide it again); one gone without a marker is forgotten. The
/// ETags read go in `tags` (an answer of this batch is claimed over them).
pub(super) async fn own_held<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    shard: &str,
    first_sequence: &str,
    inputs: &[Input],
    tags: &mut HashMap<(String, Option<u64>), String>,
) -> Result<(), stream_refdata_aws::S3Error> {
    if !hold.may_hold(shard, first_sequence) {
        return Ok(());
    }
    let mut ended = Vec::new();
    let mut gone = Vec::new();
    let mut read = Vec::new();
    for input in inputs.iter().filter(|i| hold.is_held(shard, i)) {
        let id = (input.sequence_number.clone(), input.sub_sequence);
        match store
            .read_tagged(bucket, &hold.held_key(shard, input))
            .await?
        {
            Some((body, tag)) => {
                match serde_json::from_slice::<Held>(&body) {
                    Ok(h) if h.id() == id && h.shard == shard => read.push(h),
                    _ => warn!(
                        shard,
                        sequence_number = id.0,
                        "a held object no longer holds its order; left as this environment knew it"
                    ),
                }
                tags.insert(id, tag);
            }
            None => match store
                .read_object(bucket, &hold.ended_key(shard, input))
                .await?
            {
                Some(_) => ended.push(id),
                None => gone.push(id),
            },
        }
    }
    hold.record_versions(&read);
    hold.ended_elsewhere(shard, &ended);
    hold.drop_ids(shard, &gone);
    Ok(())
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
    // Those whose objects say they expire: never answered otherwise, even with a row now.
    let expiring: std::collections::HashSet<(String, Option<u64>)> = (due.expired.iter())
        .filter(|h| h.expired_at_ms.is_some())
        .map(Held::id)
        .collect();
    // While the table is too stale its rows may exist unseen: no order expires as unmatched
    // (unless another environment decided it already).
    if too_stale {
        due.expired.retain(|h| h.expired_at_ms.is_some());
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
    // (a retry or redelivery of a batch with orders held here: each it answers is claimed)
    let own = hold.may_hold(shard, first.0);
    let leaving_any = !due.released.is_empty() || !due.expired.is_empty();
    if !leaving_any
        && !own
        && !may_have_ended
        && !outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Waiting { .. }))
    {
        return (outcomes, plan);
    }
    let releasing: HashMap<(String, Option<u64>), &Arc<Product>> = (due.released.iter())
        .map(|(h, i)| ((h.sequence_number.clone(), h.sub_sequence_number), i))
        .collect();
    let mut out = Vec::with_capacity(outcomes.len());
    // The identities this batch answers itself (a retry of a batch that held some), when
    // orders leave the hold with it.
    let mut here: HashMap<(String, Option<u64>), Option<Arc<Product>>> = HashMap::new();
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
            if let Outcome::Waiting { record } | Outcome::Enriched { record, .. } = outcome {
                plan.ended_again.push(record);
            }
            continue;
        }
        match outcome {
            Outcome::Waiting { record } => {
                let Record::Order(order) = &record.record else {
                    out.push(Outcome::Waiting { record });
                    continue;
                };
                let id = (record.sequence_number.clone(), record.sub_sequence);
                if expiring.contains(&id) {
                    here.insert(id, None);
                    out.push(Outcome::Waiting { record });
                    continue;
                }
                // Held, with the version that resolved it written into its object (another
                // environment released it and stopped): answered with that version, even
                // though this environment sees no row now.
                let version = releasing.get(&id).map(|i| Arc::clone(i));
                if let Some(item) = version.or_else(|| this_batch.get(&order.dish).cloned()) {
                    // (or a flag later in the batch brought the row: released at its position)
                    here.insert(id, Some(Arc::clone(&item)));
                    out.push(Outcome::Enriched { record, item });
                    continue;
                }
                here.insert(id, None);
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
                    let reason = format!(
                        "no reference item for dish {:?}, and the hold is full",
                        order.dish
                    );
                    plan.hold_full.push((record, reason));
                }
            }
            Outcome::Enriched { record, item } => {
                // (no order of this batch is held here: nothing to look up)
                if !own {
                    out.push(Outcome::Enriched { record, item });
                    continue;
                }
                let id = (record.sequence_number.clone(), record.sub_sequence);
                // A held order whose object says it expires: it does, even with a row now
                // (another environment decided so and may have dead-lettered it).
                if expiring.contains(&id) {
                    here.insert(id, None);
                    out.push(Outcome::Waiting { record });
                    continue;
                }
                // A held order its own batch answers (a retry): with the version that resolved
                // it (written into its object, maybe by an earlier release), not a later one.
                let item = releasing.get(&id).map_or(item, |i| Arc::clone(i));
                if releasing.contains_key(&id) || hold.is_held(shard, &record) {
                    here.insert(id, Some(Arc::clone(&item)));
                }
                out.push(Outcome::Enriched { record, item });
            }
            other => out.push(other),
        }
    }
    drop(releasing);
    let mut due_ids: std::collections::HashSet<(String, Option<u64>)> = Default::default();
    for (held, item) in due.released {
        due_ids.insert(held.id());
        let id = (held.sequence_number.clone(), held.sub_sequence_number);
        match here.get(&id) {
            // Its own batch again (a retry or a redrive): the batch answered it.
            Some(Some(used)) => plan.done_here.push((held, Arc::clone(used))),
            Some(None) => {}
            None => plan.released.push((held, item)),
        }
    }
    for held in due.expired {
        due_ids.insert(held.id());
        let id = (held.sequence_number.clone(), held.sub_sequence_number);
        match here.get(&id) {
            Some(Some(used)) => plan.done_here.push((held, Arc::clone(used))),
            // (a retry of its batch past the grace: it expires now, not held again)
            _ => plan.expired.push(held),
        }
    }
    // Held orders this batch answered that are not due here (the version it used was learned
    // before they were held, or not at all): claimed and ended all the same, never left held
    // beside their line.
    for (id, used) in here {
        if let (Some(used), false) = (used, due_ids.contains(&id)) {
            if let Some(held) = hold.held_of(shard, &id) {
                if held.expired_at_ms.is_none() {
                    plan.done_here.push((held, used));
                }
            }
        }
    }
    (out, plan)
}

/// Before the batch's output: writes the objects of the orders `plan` newly holds (then
/// counts them as held), and into each order it releases the version that resolved it (so a
/// release repeated after a crash, in any environment, uses that version), only over the
/// object [`still_held`] read: an order another writer ended or decided meanwhile is left to
/// it (dropped from `plan`, forgotten here).
pub(super) async fn write_held<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    shard: &str,
    plan: &mut HoldPlan,
) -> Result<(), StoreError> {
    let prefix = &hold.settings.prefix;
    // New holds only where there is no object: one another environment wrote meanwhile (a
    // stale view) is adopted as it is, with what it carries.
    let mut held_now = Vec::with_capacity(plan.new.len());
    for held in std::mem::take(&mut plan.new) {
        let key = held.key(prefix);
        if store
            .put_if_unchanged(bucket, &key, held.to_vec().into(), None)
            .await?
        {
            held_now.push(held);
            continue;
        }
        let found = (store.read_object(bucket, &key).await)
            .map_err(|e| StoreError::new(bucket, &key, e.to_string()))?;
        match found.and_then(|b| serde_json::from_slice::<Held>(&b).ok()) {
            Some(h) if h.id() == held.id() && h.shard == shard => held_now.push(h),
            // A damaged or foreign object where this order's goes: left in place (reported),
            // and the order dead-lettered with why, never stuck.
            _ => {
                warn!(key, "held object is damaged or names another record; left in place, and its order dead-lettered");
                let reason = format!(
                    "no reference item for dish {:?}, and its held object {key} is damaged or foreign (left in place)",
                    held.dish
                );
                plan.cannot_hold.push((held, reason));
            }
        }
    }
    hold.add(&held_now);
    // This batch's answers to held orders of its own are claimed in their objects (the version
    // it wrote them with), over what `own_held` read: another environment that ended one
    // since fails the batch, whose retry follows it.
    let mut versioned = Vec::new();
    for (held, item) in &plan.done_here {
        if held.resolved_with.as_ref() == Some(&**item) {
            continue;
        }
        let mut claimed = held.clone();
        claimed.resolved_with = Some(Product::clone(item));
        claimed.expired_at_ms = None;
        let tag = plan.tags.get(&held.id()).map(String::as_str);
        let key = held.key(prefix);
        if !store
            .put_if_unchanged(bucket, &key, claimed.to_vec().into(), tag)
            .await?
        {
            return Err(StoreError::new(
                bucket,
                &key,
                "a held order of this batch changed in another environment; the batch is retried",
            ));
        }
        versioned.push(claimed);
    }
    // Releases and expiries of orders held earlier claim their objects the same way; one that
    // another environment changed meanwhile is left to it.
    let mut gone = Vec::new();
    let mut released = Vec::with_capacity(plan.released.len());
    for (held, item) in std::mem::take(&mut plan.released) {
        if held.resolved_with.is_some() {
            released.push((held, item));
            continue;
        }
        let mut resolved = held.clone();
        resolved.resolved_with = Some(Product::clone(&item));
        let tag = plan.tags.get(&held.id()).map(String::as_str);
        if store
            .put_if_unchanged(bucket, &held.key(prefix), resolved.to_vec().into(), tag)
            .await?
        {
            versioned.push(resolved.clone());
            released.push((resolved, item));
        } else {
            gone.push(held);
        }
    }
    plan.released = released;
    let now = now_ms();
    let mut expired = Vec::with_capacity(plan.expired.len());
    for held in std::mem::take(&mut plan.expired) {
        if held.expired_at_ms.is_some() {
            expired.push(held);
            continue;
        }
        let mut claimed = held.clone();
        claimed.expired_at_ms = Some(now);
        let tag = plan.tags.get(&held.id()).map(String::as_str);
        if store
            .put_if_unchanged(bucket, &held.key(prefix), claimed.to_vec().into(), tag)
            .await?
        {
            versioned.push(claimed.clone());
            expired.push(claimed);
        } else {
            gone.push(held);
        }
    }
    plan.expired = expired;
    hold.record_versions(&versioned);
    if !gone.is_empty() {
        tracing::info!(
            shard,
            orders = gone.len(),
            "held orders changed elsewhere while this environment ended them; left to it"
        );
        hold.forget(shard, &[], &gone, 0, 0);
    }
    Ok(())
}

/// Merges each released order's line into its first attempt's object (`output.merges`): read,
/// merged by record identity, written back only if no one wrote it meanwhile (else read again).
/// A merge repeated after a crash writes the same bytes.
pub(super) async fn merge_released<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    merges: &[(String, stream_refdata_aws::Bytes)],
) -> Result<(), StoreError> {
    /// Tries before the batch fails (and is retried): each failed try means another writer
    /// wrote the object between this one's read and write.
    const TRIES: usize = 8;
    for (key, lines) in merges {
        let mut written = false;
        for _ in 0..TRIES {
            let read = (store.read_tagged(bucket, key).await)
                .map_err(|e| StoreError::new(bucket, key, e.to_string()))?;
            let (body, tag) = match &read {
                Some((body, tag)) => (body.as_slice(), Some(tag.as_str())),
                None => (&[][..], None),
            };
            let merged = crate::output::merge_lines(body, lines);
            if store
                .put_if_unchanged(bucket, key, merged.into(), tag)
                .await?
            {
                written = true;
                break;
            }
        }
        if !written {
            return Err(StoreError::new(
                bucket,
                key,
                format!(
                    "released orders not merged: the object changed under each of {TRIES} tries"
                ),
            ));
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
    // Those that ended with this batch (released, expired): a redelivery of their batch must
    // not decide them again, so their end is marked. A released order's marker keeps it with
    // the version it was released with (a redelivery of its first batch writes it again into
    // the same object, as released); an expired one's is empty.
    let released = plan.released.iter().map(|(h, item)| {
        let mut h = h.clone();
        h.resolved_with = Some(Product::clone(item));
        let body = h.to_vec();
        (h, body)
    });
    // (this batch's own answers likewise: a redelivery of it merges their lines back)
    let answered = plan.done_here.iter().map(|(h, item)| {
        let mut h = h.clone();
        h.resolved_with = Some(Product::clone(item));
        let body = h.to_vec();
        (h, body)
    });
    let released = released.chain(answered);
    let expired = plan.expired.iter().map(|h| (h.clone(), Vec::new()));
    let mut ended =
        Vec::with_capacity(plan.released.len() + plan.done_here.len() + plan.expired.len());
    let (mut released_here, mut expired_here) = (0, 0);
    for (held, body) in released.chain(expired) {
        // Its end marked first: a held object that outlives its marker (a failed delete)
        // counts as ended. One whose marker could not be written stays held, here and in S3:
        // a later batch ends it again, the same way (the same merge, the version in its object).
        let marker = held.ended_key(&hold.settings.prefix);
        let is_release = !body.is_empty();
        if let Err(e) = store.put(bucket, &marker, body).await {
            warn!(marker, error = %e, "a held order left the hold but its end was not marked; it stays held and ends again later");
            continue;
        }
        if let Err(e) = store
            .delete_object(bucket, &held.key(&hold.settings.prefix))
            .await
        {
            warn!(key = held.key(&hold.settings.prefix), error = %e, "a held order left the hold but its object was not deleted");
        }
        if is_release {
            released_here += 1;
        } else {
            expired_here += 1;
        }
        ended.push(held);
    }
    hold.forget(shard, &ended, &[], released_here, expired_here);
}

/// Keeps in `plan` only the held orders to release or expire whose objects still exist: another
/// environment of the same shard (or the redrive) may have ended them since this one listed
/// them. Those gone are forgotten here. An object that carries the version that resolved its
/// order (written by an environment that stopped before the end) releases it with that version.
/// One GET per order that ends, none otherwise.
pub(super) async fn still_held<S: ObjectKeeper>(
    store: &S,
    bucket: &str,
    hold: &Hold,
    shard: &str,
    plan: &mut HoldPlan,
) -> Result<(), stream_refdata_aws::S3Error> {
    let prefix = &hold.settings.prefix;
    let mut gone = Vec::new();
    let mut versioned = Vec::new();
    let mut released = Vec::with_capacity(plan.released.len());
    let ending = (std::mem::take(&mut plan.released).into_iter())
        .map(|(h, i)| (h, Some(i)))
        .chain(
            std::mem::take(&mut plan.expired)
                .into_iter()
                .map(|h| (h, None)),
        );
    for (held, item) in ending {
        let Some((body, tag)) = store.read_tagged(bucket, &held.key(prefix)).await? else {
            gone.push(held);
            continue;
        };
        // The version another environment wrote into the object (it released the order, then
        // stopped before its end was marked) wins over this one's: the order is released with
        // it, never with a later one, and never expires.
        // And an expiry written into it is followed, never undone.
        let written = (serde_json::from_slice::<crate::hold::Held>(&body).ok())
            .filter(|h| h.id() == held.id());
        let (version, expiring) = match &written {
            Some(h) => (h.resolved_with.clone(), h.expired_at_ms),
            None => (None, None),
        };
        match (version, expiring, item) {
            (Some(version), _, _) => {
                let mut held = held;
                held.resolved_with = Some(version.clone());
                versioned.push(held.clone());
                released.push((held, Arc::new(version)));
            }
            (None, Some(at), _) => {
                let mut held = held;
                held.expired_at_ms = Some(at);
                versioned.push(held.clone());
                plan.expired.push(held);
            }
            (None, None, Some(item)) => {
                plan.tags.insert(held.id(), tag);
                released.push((held, item));
            }
            (None, None, None) => {
                plan.tags.insert(held.id(), tag);
                plan.expired.push(held);
            }
        }
    }
    plan.released = released;
    hold.record_versions(&versioned);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::HoldSettings;
    use crate::orders::classify;

    fn input(seq: &str, dish: &str) -> Input {
        let data = format!(r#"{{"dish":"{dish}","cost":1,"customer_id":1}}"#).into_bytes();
        Input {
            sequence_number: seq.to_owned(),
            sub_sequence: None,
            record: classify(&data, "CHANGE_FLAG"),
            data,
            reference_object: None,
            arrival_ms: None,
            as_of: None,
        }
    }

    fn product(priority: &str) -> Arc<Product> {
        Arc::new(Product {
            item: "donut".into(),
            price: 100.into(),
            priority: priority.into(),
        })
    }

    #[test]
    fn a_held_order_its_batch_answers_is_claimed_even_when_not_due_here() {
        // GIVEN an order held (by another environment, after this one learned donut's version)
        let hold = Hold::new(HoldSettings::default());
        let seq = "49590338271490256608559692538361571095921575989136590898";
        let x = input(seq, "donut");
        hold.resolved(vec![("donut".into(), product("low"))]);
        let later = now_ms() + 60_000;
        hold.add(&[Held::new("s", &x, "donut", later, seq, None)]);
        assert!(hold.due("s", now_ms()).released.is_empty(), "not due here");
        // WHEN its own batch comes again and the lookup answers it (the row is there)
        let outcomes = vec![Outcome::Enriched {
            record: x,
            item: product("low"),
        }];
        let (out, plan) = hold_step(&hold, "s", (seq, None), outcomes, Vec::new(), false);
        // THEN it is written, and its end claimed and marked with the version used
        assert!(matches!(out[0], Outcome::Enriched { .. }));
        assert_eq!(plan.done_here.len(), 1);
        assert_eq!(plan.done_here[0].1.priority, "low");
    }

    #[test]
    fn an_order_whose_object_says_it_expires_is_never_answered_by_its_batch() {
        let hold = Hold::new(HoldSettings::default());
        let seq = "49590338271490256608559692538361571095921575989136590898";
        let x = input(seq, "donut");
        let mut held = Held::new("s", &x, "donut", now_ms(), seq, None);
        held.expired_at_ms = Some(now_ms());
        hold.add(&[held]);
        // Its batch again, a flag later in it bringing the row (resolved during the batch),
        // and the lookup answering it with the row in another run
        for outcome in [
            Outcome::Waiting { record: x.clone() },
            Outcome::Enriched {
                record: x.clone(),
                item: product("low"),
            },
        ] {
            let (out, plan) = hold_step(
                &hold,
                "s",
                (seq, None),
                vec![outcome],
                vec![("donut".into(), product("low"))],
                false,
            );
            assert!(matches!(out[0], Outcome::Waiting { .. }), "{out:?}");
            assert!(plan.done_here.is_empty());
            assert_eq!(plan.expired.len(), 1, "it expires, as decided");
        }
    }
}
