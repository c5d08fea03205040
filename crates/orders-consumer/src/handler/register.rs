//! Step 6, register the partitions: each output partition the batch wrote, registered in the
//! Glue Data Catalog the first time this environment writes to it.

use crate::catalog::{CatalogError, GlueCatalog, Partition, Registered};
use crate::config::Config;
use crate::output::BatchOutput;

/// Registers in `catalog` those partitions of `output` that `registered` does not hold yet,
/// each located under the output of `config` (`s3://OUTPUT_BUCKET/OUTPUT_PREFIX…`): how many
/// were new.
pub(super) async fn register_partitions(
    catalog: &GlueCatalog,
    registered: &Registered,
    config: &Config,
    output: &BatchOutput,
) -> Result<usize, CatalogError> {
    let base = format!("s3://{}/{}", config.output_bucket, config.output_prefix);
    let partitions = output
        .partition_values
        .iter()
        .map(|(path, (item, priority))| Partition {
            values: vec![item.clone(), priority.clone()],
            location: format!("{base}{path}"),
        })
        .collect();
    registered.register_new(catalog, partitions).await
}
