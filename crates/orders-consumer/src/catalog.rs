//! New output partitions registered in the Glue Data Catalog, so an analyst can query the
//! output (Athena, Spark, Glue jobs) without a crawler or `MSCK REPAIR TABLE`.
//!
//! The consumer registers each `item=…/priority=…` partition the first time it writes to it, as
//! the original job's catalog update did: BatchCreatePartition (an existing partition is not an
//! error, so it is idempotent), remembered per execution environment so a partition costs one
//! call per environment. A failure to register never fails the batch (the orders are written):
//! it is logged and counted, and the partition is tried again with the next batch that writes
//! to it. Partition projection was the alternative; it needs the partition values known in
//! advance (`enum`) or named in every query (`injected`), and "orders per priority" must group by
//! a value nobody lists.

use std::collections::HashSet;
use std::future::Future;

use aws_sdk_glue::error::{DisplayErrorContext, SdkError};
use aws_sdk_glue::operation::batch_create_partition::BatchCreatePartitionError;
use aws_sdk_glue::types::builders::StorageDescriptorBuilder;
use aws_sdk_glue::types::{PartitionError, PartitionInput, SerDeInfo, StorageDescriptor};

/// One output partition: its values (item, priority, as written) and its S3 location.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Partition {
    /// The partition values, in the table's partition-key order (`item`, `priority`).
    pub(crate) values: Vec<String>,
    /// `s3://bucket/prefix/item=…/priority=…/`.
    pub(crate) location: String,
}

/// A registration that failed; the message names the call and the partitions.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CatalogError {
    /// The BatchCreatePartition call on `database.table` failed: the SDK's error.
    #[error(
        "registering partitions in the Glue Data Catalog failed: BatchCreatePartition on \
         {database}.{table}: {}",
        DisplayErrorContext(.source.as_ref())
    )]
    Call {
        database: String,
        table: String,
        #[source]
        source: Box<SdkError<BatchCreatePartitionError>>,
    },
    /// Glue refused these partitions (for another reason than that they exist): its error of
    /// each, with the partition's values.
    #[error(
        "registering partitions in the Glue Data Catalog failed: {}",
        refused(.0)
    )]
    Refused(Vec<PartitionError>),
}

/// Each refused partition's values and Glue's message, `; ` between them.
fn refused(errors: &[PartitionError]) -> String {
    errors
        .iter()
        .map(|e| {
            format!(
                "{:?}: {}",
                e.partition_values(),
                e.error_detail()
                    .and_then(|d| d.error_message())
                    .unwrap_or("no message")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Registers partitions. Implemented on the Glue client by [`GlueCatalog`]; tests pass fakes.
pub(crate) trait PartitionCatalog: Send + Sync {
    /// Registers `partitions` (existing ones are not an error).
    fn register(
        &self,
        partitions: &[Partition],
    ) -> impl Future<Output = Result<(), CatalogError>> + Send;
}

/// The partition catalog on the SDK's Glue client, for one table whose data is JSON Lines: what
/// [`OrdersConsumer::with_catalog`](crate::OrdersConsumer::with_catalog) registers partitions in.
#[derive(Clone, Debug)]
pub struct GlueCatalog {
    client: aws_sdk_glue::Client,
    database: String,
    table: String,
}

impl GlueCatalog {
    /// The table `database.table` (`GLUE_DATABASE`, `GLUE_TABLE`).
    pub fn new(
        client: aws_sdk_glue::Client,
        database: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        GlueCatalog {
            client,
            database: database.into(),
            table: table.into(),
        }
    }
}

/// How the output under `location` is stored, as its table and each partition declare it:
/// JSON Lines as text, read with the OpenX JSON SerDe. The table's columns are the caller's to
/// add.
pub fn json_lines_storage(location: impl Into<String>) -> StorageDescriptorBuilder {
    StorageDescriptor::builder()
        .location(location)
        .input_format("org.apache.hadoop.mapred.TextInputFormat")
        .output_format("org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat")
        .serde_info(
            SerDeInfo::builder()
                .serialization_library("org.openx.data.jsonserde.JsonSerDe")
                .build(),
        )
}

/// Glue takes at most 100 partitions a BatchCreatePartition call.
const PER_CALL: usize = 100;

impl PartitionCatalog for GlueCatalog {
    async fn register(&self, partitions: &[Partition]) -> Result<(), CatalogError> {
        for chunk in partitions.chunks(PER_CALL) {
            let inputs = chunk
                .iter()
                .map(|p| {
                    PartitionInput::builder()
                        .set_values(Some(p.values.clone()))
                        .storage_descriptor(json_lines_storage(&p.location).build())
                        .build()
                })
                .collect();
            let out = self
                .client
                .batch_create_partition()
                .database_name(&self.database)
                .table_name(&self.table)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|source| CatalogError::Call {
                    database: self.database.clone(),
                    table: self.table.clone(),
                    source: Box::new(source),
                })?;
            let refused: Vec<PartitionError> = out
                .errors()
                .iter()
                .filter(|e| {
                    e.error_detail()
                        .and_then(|d| d.error_code())
                        .is_none_or(|c| c != "AlreadyExistsException")
                })
                .cloned()
                .collect();
            if !refused.is_empty() {
                return Err(CatalogError::Refused(refused));
            }
        }
        Ok(())
    }
}

/// The partitions an environment has registered: each is registered once.
#[derive(Debug, Default)]
pub(crate) struct Registered(std::sync::Mutex<HashSet<Vec<String>>>);

impl Registered {
    /// Registers those of `partitions` not registered yet by this environment. On failure none
    /// of them is remembered, so the next batch that writes to them tries again.
    pub(crate) async fn register_new<C: PartitionCatalog>(
        &self,
        catalog: &C,
        partitions: Vec<Partition>,
    ) -> Result<usize, CatalogError> {
        let new: Vec<Partition> = {
            let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            partitions
                .into_iter()
                .filter(|p| !known.contains(&p.values))
                .collect()
        };
        if new.is_empty() {
            return Ok(0);
        }
        catalog.register(&new).await?;
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(new.iter().map(|p| p.values.clone()));
        Ok(new.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        failing: AtomicBool,
    }

    impl PartitionCatalog for Fake {
        async fn register(&self, _: &[Partition]) -> Result<(), CatalogError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                Err(CatalogError::Refused(Vec::new()))
            } else {
                Ok(())
            }
        }
    }

    /// Errors compare by what they say (an SDK error has no equality of its own).
    impl PartialEq for CatalogError {
        fn eq(&self, other: &Self) -> bool {
            self.to_string() == other.to_string()
        }
    }

    fn partition(item: &str) -> Partition {
        Partition {
            values: vec![item.into(), "high".into()],
            location: format!("s3://b/p/item={item}/priority=high/"),
        }
    }

    #[tokio::test]
    async fn each_partition_is_registered_once_and_a_failure_is_tried_again() {
        let catalog = Fake::default();
        let registered = Registered::default();
        assert_eq!(
            registered
                .register_new(&catalog, vec![partition("a"), partition("b")])
                .await,
            Ok(2)
        );
        assert_eq!(
            registered
                .register_new(&catalog, vec![partition("a")])
                .await,
            Ok(0)
        );
        assert_eq!(catalog.calls.load(Ordering::SeqCst), 1, "cached");
        catalog.failing.store(true, Ordering::SeqCst);
        assert!(registered
            .register_new(&catalog, vec![partition("c")])
            .await
            .is_err());
        catalog.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            registered
                .register_new(&catalog, vec![partition("c")])
                .await,
            Ok(1),
            "not remembered after a failure"
        );
    }
}
