//! New output partitions registered in the Glue Data Catalog, so an analyst can query the
//! output (Athena, Spark, Glue jobs) without a crawler or `MSCK REPAIR TABLE`.
//!
//! The consumer registers each `item=…/priority=…` partition the first time it writes to it, as
//! the original job's catalog update did: BatchCreatePartition (an existing partition at the
//! same location is not an error, so it is idempotent), remembered per execution environment so
//! a partition costs one call per environment. A failure to register never fails the batch (the
//! orders are written): it is logged and counted, and the partitions it left unregistered are
//! owed: tried again with the **next batch**, whatever partitions that one writes. A partition
//! that already exists **at another location** (queries would read the wrong place) is an error
//! that names both locations; it is reported once per environment and left for an operator to
//! fix (the consumer does not move a partition it did not create). Partition projection was the alternative; it needs the partition values known in
//! advance (`enum`) or named in every query (`injected`), and "orders per priority" must group by
//! a value nobody lists.

use std::collections::{BTreeMap, HashSet};
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
    /// These partitions exist at another location than the output's: queries of them read the
    /// wrong place. Each with its values, its location in the catalog and the output's.
    #[error(
        "output partitions exist in the Glue Data Catalog at another location (queries miss          the output; fix them by hand): {}",
        misplaced(.0)
    )]
    Misplaced(Vec<Misplaced>),
    /// BatchGetPartition left partitions unread: whether they are in place is not known.
    #[error("reading existing partitions in the Glue Data Catalog: {0} left unprocessed")]
    Unchecked(usize),
    /// BatchGetPartition, to read the locations of existing partitions, failed.
    #[error(
        "reading existing partitions in the Glue Data Catalog failed: BatchGetPartition on          {database}.{table}: {}",
        DisplayErrorContext(.source.as_ref())
    )]
    Read {
        database: String,
        table: String,
        #[source]
        source: Box<SdkError<aws_sdk_glue::operation::batch_get_partition::BatchGetPartitionError>>,
    },
}

/// A partition that exists at another location than the output's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Misplaced {
    values: Vec<String>,
    found: String,
    wanted: String,
}

/// Each misplaced partition's values and both locations, `; ` between them.
fn misplaced(all: &[Misplaced]) -> String {
    all.iter()
        .map(|m| {
            format!(
                "{:?} is at {}, the output at {}",
                m.values, m.found, m.wanted
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether two S3 locations name the same place (a trailing `/` or not).
fn same_location(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
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
    /// Every chunk is sent; partitions found at another location are reported together after
    /// the last one (any other failure ends the registration: all stay owed).
    async fn register(&self, partitions: &[Partition]) -> Result<(), CatalogError> {
        let mut all_misplaced = Vec::new();
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
            let (existing, refused): (Vec<&PartitionError>, Vec<&PartitionError>) =
                out.errors().iter().partition(|e| {
                    e.error_detail()
                        .and_then(|d| d.error_code())
                        .is_some_and(|c| c == "AlreadyExistsException")
                });
            if !refused.is_empty() {
                return Err(CatalogError::Refused(
                    refused.into_iter().cloned().collect(),
                ));
            }
            // An existing partition counts only where it points at the output.
            let existing: Vec<&Partition> = chunk
                .iter()
                .filter(|p| {
                    existing
                        .iter()
                        .any(|e| e.partition_values() == p.values.as_slice())
                })
                .collect();
            all_misplaced.extend(self.misplaced(&existing).await?);
        }
        if !all_misplaced.is_empty() {
            return Err(CatalogError::Misplaced(all_misplaced));
        }
        Ok(())
    }
}

impl GlueCatalog {
    /// Those of `existing` (partitions the catalog already has) whose location is not theirs.
    async fn misplaced(&self, existing: &[&Partition]) -> Result<Vec<Misplaced>, CatalogError> {
        if existing.is_empty() {
            return Ok(Vec::new());
        }
        let keys = existing
            .iter()
            .map(|p| {
                aws_sdk_glue::types::PartitionValueList::builder()
                    .set_values(Some(p.values.clone()))
                    .build()
                    .expect("values are set")
            })
            .collect();
        let out = self
            .client
            .batch_get_partition()
            .database_name(&self.database)
            .table_name(&self.table)
            .set_partitions_to_get(Some(keys))
            .send()
            .await
            .map_err(|source| CatalogError::Read {
                database: self.database.clone(),
                table: self.table.clone(),
                source: Box::new(source),
            })?;
        // Partitions Glue did not read back are not known to be in place: all stay owed.
        if !out.unprocessed_keys().is_empty() {
            return Err(CatalogError::Unchecked(out.unprocessed_keys().len()));
        }
        let found: BTreeMap<&[String], &str> = out
            .partitions()
            .iter()
            .map(|p| {
                let location = p
                    .storage_descriptor()
                    .and_then(|s| s.location())
                    .unwrap_or_default();
                (p.values(), location)
            })
            .collect();
        Ok(existing
            .iter()
            .filter_map(|p| {
                let at = *found.get(p.values.as_slice())?;
                (!same_location(at, &p.location)).then(|| Misplaced {
                    values: p.values.clone(),
                    found: at.to_owned(),
                    wanted: p.location.clone(),
                })
            })
            .collect())
    }
}

/// The partitions an environment has registered (each is registered once), and those a failed
/// registration left owed (tried again with the next batch, whichever partitions it writes).
#[derive(Debug, Default)]
pub(crate) struct Registered(std::sync::Mutex<Known>);

#[derive(Debug, Default)]
pub(crate) struct Known {
    done: HashSet<Vec<String>>,
    owed: BTreeMap<Vec<String>, Partition>,
}

impl Registered {
    /// Registers those of `partitions` not registered yet by this environment, and every
    /// partition a failed registration left owed. On failure they are all owed, except those
    /// found at another location: those are reported (once) and not tried again.
    pub(crate) async fn register_new<C: PartitionCatalog>(
        &self,
        catalog: &C,
        partitions: Vec<Partition>,
    ) -> Result<usize, CatalogError> {
        let new: Vec<Partition> = {
            let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            for p in partitions {
                if !known.done.contains(&p.values) {
                    known.owed.insert(p.values.clone(), p);
                }
            }
            known.owed.values().cloned().collect()
        };
        if new.is_empty() {
            return Ok(0);
        }
        let result = catalog.register(&new).await;
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            // Registered, or misplaced (an operator's to fix, reported now): none is owed.
            Ok(()) | Err(CatalogError::Misplaced(_)) => {
                for p in &new {
                    known.owed.remove(&p.values);
                    known.done.insert(p.values.clone());
                }
            }
            // All stay owed: the next batch tries them again.
            Err(_) => {}
        }
        result.map(|()| new.len())
    }

    /// How many partitions a failed registration left owed.
    pub(crate) fn owed(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).owed.len()
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

    #[tokio::test]
    async fn a_failed_registration_is_owed_and_tried_with_the_next_batch_whatever_it_writes() {
        // GIVEN a registration of partition c that failed
        let catalog = Fake::default();
        let registered = Registered::default();
        catalog.failing.store(true, Ordering::SeqCst);
        assert!(registered
            .register_new(&catalog, vec![partition("c")])
            .await
            .is_err());
        assert_eq!(registered.owed(), 1);
        // WHEN the next batch writes only partition d, and the catalog is back
        catalog.failing.store(false, Ordering::SeqCst);
        let done = registered
            .register_new(&catalog, vec![partition("d")])
            .await;
        // THEN c is registered with it, and nothing is owed
        assert_eq!(done, Ok(2));
        assert_eq!(registered.owed(), 0);
        assert_eq!(
            registered
                .register_new(&catalog, vec![partition("c"), partition("d")])
                .await,
            Ok(0)
        );
    }

    #[test]
    fn a_location_with_or_without_its_trailing_slash_is_the_same() {
        assert!(same_location("s3://b/p/item=a/", "s3://b/p/item=a"));
        assert!(!same_location("s3://b/p/item=a/", "s3://b/old/item=a/"));
    }
}
