"""The seed's Glue streaming job, rebuilt on stream_refdata.

The original job reads orders from Kinesis, and in `foreachBatch` reloads the whole
`ProductPriority` table whenever a change flag shows up (a full scan), inner-joins the orders on
`dish == item` (dropping unmatched orders silently) and writes CSV partitioned by `item` and
`priority`. This job keeps the same shape and output, with three differences:

- the reference data is a `stream_refdata.TableReference` that follows the change feed:
  `refresh()` once per micro-batch costs one conditional GET when nothing changed, and a change
  applies as a delta (no table read when the change carries its new image);
- the broadcast reference DataFrame is rebuilt only when the reference's `version` changed;
- unmatched orders (and orders the reference is too stale for) go to a dead-letter path with the
  reason, instead of being dropped.

On Glue, run it with `--additional-python-modules` pointing at the package's wheel (see the
crates/python/README.md); `main()` reads the job arguments. Locally, `run()` takes any streaming DataFrame of
orders (the test uses a directory of JSON files) and the same batch function.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stream_refdata import TableReference

ORDER_SCHEMA = T.StructType(
    [
        T.StructField("dish", T.StringType()),
        T.StructField("cost", T.DecimalType(10, 2)),
        T.StructField("customer_id", T.LongType()),
    ]
)
REFERENCE_SCHEMA = T.StructType(
    [
        T.StructField("item", T.StringType()),
        T.StructField("price", T.DecimalType(38, 10)),
        T.StructField("priority", T.StringType()),
    ]
)
LEGACY_FLAG = "CHANGE_FLAG"


@dataclass
class ReferenceData:
    """The job's reference data: refreshed once per micro-batch; the broadcast DataFrame is
    rebuilt only when the reference's version changed."""

    spark: SparkSession
    reference: TableReference
    version: int | None = None
    frame: DataFrame | None = None
    rebuilds: int = 0
    reports: list = field(default_factory=list)

    def current(self) -> DataFrame:
        self.reports.append(self.reference.refresh())
        if self.reference.version != self.version:
            # One row per lookup key, resolved as `lookup()` resolves it (an item with several
            # prices is one row, by the reference's ambiguity policy): a join on every item
            # would write an order once per price.
            rows = [(i.get("item"), i.get("price"), i.get("priority")) for i in self.reference.lookup_table().values()]
            frame = self.spark.createDataFrame(rows, REFERENCE_SCHEMA).cache()
            if self.frame is not None:
                self.frame.unpersist()
            self.frame, self.version = frame, self.reference.version
            self.rebuilds += 1
        return self.frame


def process_batch(batch: DataFrame, batch_id: int, data: ReferenceData, output: str, dead_letter: str) -> None:
    """One micro-batch: refresh, join, write the enriched orders (CSV, `item=`/`priority=`
    partitions, as the original) and the dead letters (JSON Lines with a reason)."""
    orders = batch.select(
        F.col("dish").cast("string"), F.col("cost").cast(T.DecimalType(10, 2)), F.col("customer_id").cast("long")
    ).where(F.col("dish").isNull() | (F.col("dish") != LEGACY_FLAG))
    reference = data.current()
    joined = orders.join(F.broadcast(reference), orders.dish == reference.item, "left")
    if data.reference.is_too_stale():
        # Never enrich with data that is not known to be current: dead-letter the whole batch.
        matched = joined.where(F.lit(False))
        unmatched = orders.withColumn("reason", F.lit("reference data too stale"))
    else:
        matched = joined.where(F.col("item").isNotNull())
        unmatched = joined.where(F.col("item").isNull()).select(
            orders["*"], F.concat(F.lit("no reference item for dish "), F.coalesce(orders.dish, F.lit("null"))).alias("reason")
        )
    matched.select("cost", "price", "priority", "customer_id", "item").write.mode("append").partitionBy(
        "item", "priority"
    ).option("header", True).csv(output)
    unmatched.withColumn("batch_id", F.lit(batch_id)).write.mode("append").json(dead_letter)


def run(spark: SparkSession, orders: DataFrame, data: ReferenceData, output: str, dead_letter: str, checkpoint: str, window: str = "10 seconds"):
    """Starts the streaming query over `orders` (a streaming DataFrame with ORDER_SCHEMA)."""
    return (
        orders.writeStream.foreachBatch(lambda batch, batch_id: process_batch(batch, batch_id, data, output, dead_letter))
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=window)
        .start()
    )


def main() -> None:  # pragma: no cover - runs on Glue
    from awsglue.context import GlueContext
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext

    args = getResolvedOptions(
        sys.argv,
        ["JOB_NAME", "stream_arn", "reference_table", "feed_bucket", "output_path", "dead_letter_path", "checkpoint_path"],
    )
    glue = GlueContext(SparkContext.getOrCreate())
    spark = glue.spark_session
    reference = TableReference(args["reference_table"], ["item", "price"], "item", args["feed_bucket"])
    data = ReferenceData(spark, reference)
    orders = glue.create_data_frame.from_options(
        connection_type="kinesis",
        connection_options={
            "typeOfData": "kinesis",
            "streamARN": args["stream_arn"],
            "classification": "json",
            "startingPosition": "TRIM_HORIZON",
            "inferSchema": "true",
        },
        transformation_ctx="orders",
    )
    glue.forEachBatch(
        frame=orders,
        batch_function=lambda batch, batch_id: process_batch(batch, batch_id, data, args["output_path"], args["dead_letter_path"]),
        options={"windowSize": "10 seconds", "checkpointLocation": args["checkpoint_path"]},
    )


if __name__ == "__main__":  # pragma: no cover
    main()
