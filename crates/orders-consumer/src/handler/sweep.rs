//! The sweep (`UNMATCHED=hold`): a scheduled invocation (an EventBridge "Scheduled Event", every
//! few minutes in infra/) that ends the held orders of every shard without waiting for the
//! shard's next batch: a shard closed by a reshard, or one that goes quiet, gets none, and its
//! orders would otherwise wait forever. For each shard under `HOLD_PREFIX` it does what a batch
//! does for the orders held earlier: the reference data refreshed, the orders whose dish
//! resolved released (merged into their first attempt's objects, with the version written into
//! their held objects first), those past the grace dead-lettered, their ends marked. Running
//! beside a live batch of the same shard is safe: both end an order through the same
//! conditional writes and deterministic names (docs/design.md, section 5). It also publishes
//! the hold's metrics when no batch comes (the age alarm needs them).

use stream_refdata::sources::{FeedSource, ObjectSource, TableSource};
use stream_refdata_aws::ObjectKeeper;
use tracing::{error, info};

use super::enrich::enrich;
use super::hold::{forget_held, hold_step, merge_released, still_held, write_held};
use super::register::register_partitions;
use super::write::write;
use super::{BatchSummary, OrdersConsumer};
use crate::hold::Hold;
use crate::output::BatchOutput;

impl<Tb: TableSource, Fd: FeedSource + ObjectSource + Clone, S: ObjectKeeper>
    OrdersConsumer<Tb, Fd, S>
{
    /// Ends what can end of every shard's held orders (the sweep: `docs/design.md`, section 5); a shard that
    /// fails is logged and named in `failed`, the others go on. Nothing to do when the policy
    /// is not `hold`.
    pub async fn sweep(&self) -> BatchSummary {
        let mut summary = BatchSummary::default();
        let Some(hold) = &self.hold else {
            return summary;
        };
        // A round of its own: the feed's answers of the last batch are not this sweep's.
        self.feed.new_round();
        let bucket = &self.config.output_bucket;
        let prefix = &hold.settings.prefix;
        let shards = match self.store.child_prefixes(bucket, prefix).await {
            Ok(shards) => shards,
            Err(e) => {
                error!(error = %e, "sweep: held orders not listed");
                summary.failed = Some(format!("held orders not listed: {e}"));
                self.report_metrics(&summary.output).await;
                return summary;
            }
        };
        let ended = format!("{prefix}ended/");
        let mut failed = Vec::new();
        for shard_prefix in shards.iter().filter(|p| **p != ended) {
            let shard = shard_prefix[prefix.len()..].trim_end_matches('/');
            if let Err(e) = self.sweep_shard(hold, shard, &mut summary.output).await {
                error!(shard, error = %e, "sweep: the shard's held orders not ended; the next sweep or batch tries again");
                failed.push(format!("{shard}: {e}"));
            }
        }
        if !failed.is_empty() {
            summary.failed = Some(failed.join("; "));
        }
        info!(
            shards = shards
                .len()
                .saturating_sub(usize::from(shards.contains(&ended))),
            released = summary.output.released,
            expired = summary.output.expired,
            "sweep of the held orders"
        );
        self.report_metrics(&summary.output).await;
        summary
    }

    /// One shard's sweep, counted into `total`.
    async fn sweep_shard(
        &self,
        hold: &Hold,
        shard: &str,
        total: &mut BatchOutput,
    ) -> Result<(), String> {
        let bucket = &self.config.output_bucket;
        hold.load(&self.store, bucket, shard)
            .await
            .map_err(|e| format!("held orders not read: {e}"))?;
        let (resolved, stale) = {
            let mut table = self.enricher.lock().await;
            table.watch(hold.dishes(shard));
            // (no records: the table refreshed, as at a batch's start)
            enrich(&mut table, Vec::new())
                .await
                .map_err(|e| e.to_string())?;
            (table.take_resolved(), table.is_too_stale())
        };
        let (_, mut plan) = hold_step(hold, shard, ("", None), Vec::new(), resolved, stale);
        if plan.released.is_empty() && plan.expired.is_empty() {
            return Ok(());
        }
        still_held(&self.store, bucket, hold, shard, &mut plan)
            .await
            .map_err(|e| format!("held orders not read: {e}"))?;
        write_held(&self.store, bucket, hold, shard, &mut plan)
            .await
            .map_err(|e| e.to_string())?;
        let menu = match &self.objects {
            Some(objects) => Some(objects.lock().await.reader()),
            None => None,
        };
        let mut output = BatchOutput::default();
        self.add_releases(hold, shard, &plan, menu.as_ref(), &mut output);
        write(&self.store, bucket, &output)
            .await
            .map_err(|e| e.to_string())?;
        merge_released(&self.store, bucket, &output.merges)
            .await
            .map_err(|e| e.to_string())?;
        forget_held(&self.store, bucket, hold, shard, &plan).await;
        if let Some((catalog, registered)) = &self.catalog {
            if let Err(e) = register_partitions(catalog, registered, &self.config, &output).await {
                error!(shard, error = %e, "sweep: partitions not registered; the next batch tries them again");
            }
        }
        total.released += output.released;
        total.expired += output.expired;
        total.longest_held_ms = total.longest_held_ms.max(output.longest_held_ms);
        total.partition_values.extend(output.partition_values);
        Ok(())
    }
}
