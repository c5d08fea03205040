//! Step 5, write: the batch's objects put in the output bucket.

use futures_util::{StreamExt, TryStreamExt};
use stream_refdata_aws::{ObjectStore, StoreError};

use crate::output::BatchOutput;

/// Output objects written at once per batch: a batch spans a few dozen partitions, and writing
/// them one after the other made S3 latency the larger part of the handler time.
const CONCURRENT_WRITES: usize = 16;

/// Writes the batch's objects to `bucket` through `store`, up to [`CONCURRENT_WRITES`] at a
/// time (each body shared with its put, not copied). Any failure fails the batch (which is
/// retried whole and rewrites the same names).
pub(super) async fn write<S: ObjectStore>(
    store: &S,
    bucket: &str,
    output: &BatchOutput,
) -> Result<(), StoreError> {
    futures_util::stream::iter(&output.objects)
        .map(|(key, body)| store.put(bucket, key, body.clone()))
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect::<()>()
        .await
}
