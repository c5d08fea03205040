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
  reason, instead of being dropped;
- or, with a `Hold` (`--held_path`, `--hold_grace_seconds`), an order whose dish has no row yet
  waits for it: the orders still unmatched are kept as a new generation under the held path
  (`gen=<batch id>`, written again whole if the micro-batch is retried), every later micro-batch
  joins them again with its own orders, and they are written to the output with the first
  version of the row that the job sees (the micro-batch's reference), or dead-lettered with the
  reason "unmatched after N s" once their grace ends. Counts reconcile per micro-batch: orders +
  held before = enriched + held now + dead-lettered.

**Backfill** (`backfill()`, `--backfill_orders_path`): orders already archived, each with its
`arrival` time (seconds since the epoch, as Kinesis' `approximateArrivalTimestamp`), enriched
as of their arrival through a `stream_refdata.TableHistory` (a feed snapshot plus the change files
after it), not with the table as it is now: a day replayed after a bug fix gets the priorities
the orders had then, and a second run writes the same rows. Orders the history cannot answer for
(a gap in the feed, a time before the history, an item changed without its image) are
dead-lettered with the reason. Each distinct (dish, arrival) pair is looked up once, on the
driver; the answers join the orders as a broadcast.

On Glue, run it with `--additional-python-modules` pointing at the package's wheel (see the
crates/python/README.md); `main()` reads the job arguments. Locally, `run()` takes any streaming DataFrame of
orders (the test uses a directory of JSON files) and the same batch function.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from stream_refdata import NotAnswerable, TableHistory, TableReference

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
HELD_SCHEMA = T.StructType(
    ORDER_SCHEMA.fields
    + [
        T.StructField("held_at", T.TimestampType()),
        T.StructField("first_batch", T.LongType()),
    ]
)


@dataclass
class Hold:
    """Unmatched orders wait for their row (`unmatched="hold"` of the package, for Spark): kept
    under `path` one generation per micro-batch, dead-lettered past `grace_seconds`."""

    path: str
    grace_seconds: int = 900
    # The clock held times and the grace are measured on (the driver's; a test moves its own).
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def _fs(self, spark: SparkSession):
        jvm = spark.sparkContext._jvm
        path = jvm.org.apache.hadoop.fs.Path(self.path)
        return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path

    def _generations(self, spark: SparkSession) -> list[int]:
        fs, path = self._fs(spark)
        if not fs.exists(path):
            return []
        names = [status.getPath().getName() for status in fs.listStatus(path)]
        return sorted(int(n[4:]) for n in names if n.startswith("gen=") and n[4:].isdigit())

    def before(self, spark: SparkSession, batch_id: int) -> DataFrame:
        """The orders held when micro-batch `batch_id` starts: the newest generation before it
        (a retried micro-batch reads the same one)."""
        earlier = [g for g in self._generations(spark) if g < batch_id]
        if not earlier:
            return spark.createDataFrame([], HELD_SCHEMA)
        return spark.read.schema(HELD_SCHEMA).parquet(f"{self.path}/gen={earlier[-1]}")

    def keep(self, spark: SparkSession, held: DataFrame, batch_id: int) -> None:
        """Writes the orders still held after `batch_id` (its generation, whole), then drops
        generations older than the one before it."""
        held.select(*HELD_SCHEMA.fieldNames()).write.mode("overwrite").parquet(f"{self.path}/gen={batch_id}")
        fs, _ = self._fs(spark)
        jvm = spark.sparkContext._jvm
        for gen in [g for g in self._generations(spark) if g < batch_id][:-1]:
            fs.delete(jvm.org.apache.hadoop.fs.Path(f"{self.path}/gen={gen}"), True)


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


def process_batch(
    batch: DataFrame, batch_id: int, data: ReferenceData, output: str, dead_letter: str, hold: Hold | None = None
) -> None:
    """One micro-batch: refresh, join, write the enriched orders (CSV, `item=`/`priority=`
    partitions, as the original) and the dead letters (JSON Lines with a reason); with `hold`,
    the orders without a row (and those held before) wait for it instead."""
    spark = batch.sparkSession
    orders = batch.select(
        F.col("dish").cast("string"), F.col("cost").cast(T.DecimalType(10, 2)), F.col("customer_id").cast("long")
    ).where(F.col("dish").isNull() | (F.col("dish") != LEGACY_FLAG))
    if hold is not None:
        # The held orders join again, beside this micro-batch's (each keeps when it was held).
        at = F.lit(hold.now()).cast("timestamp")
        new = orders.withColumn("held_at", at).withColumn("first_batch", F.lit(batch_id).cast("long"))
        orders = new.unionByName(hold.before(spark, batch_id)).cache()
    reference = data.current()
    joined = orders.join(F.broadcast(reference), orders.dish == reference.item, "left")
    held = None
    if data.reference.is_too_stale():
        # Never enrich with data that is not known to be current: dead-letter the whole batch
        # (held orders stay held: their row may exist unseen).
        matched = joined.where(F.lit(False))
        if hold is not None:
            held = orders.where(F.col("first_batch") < batch_id)
            orders = orders.where(F.col("first_batch") == batch_id)
        unmatched = orders.withColumn("reason", F.lit("reference data too stale"))
    else:
        matched = joined.where(F.col("item").isNotNull())
        missing = joined.where(F.col("item").isNull()).select(orders["*"])
        reason = F.concat(F.lit("no reference item for dish "), F.coalesce(F.col("dish"), F.lit("null")))
        if hold is not None:
            waited = F.unix_timestamp(F.lit(hold.now()).cast("timestamp")) - F.unix_timestamp(F.col("held_at"))
            expired = waited > hold.grace_seconds
            held = missing.where(~expired)
            reason = F.concat(
                F.lit(f"unmatched after {hold.grace_seconds} s: "), reason,
                F.lit(" (held "), waited.cast("string"), F.lit(" s; first attempt: micro-batch "),
                F.col("first_batch").cast("string"), F.lit(")"),
            )
            missing = missing.where(expired)
        unmatched = missing.withColumn("reason", reason)
    matched.select("cost", "price", "priority", "customer_id", "item").write.mode("append").partitionBy(
        "item", "priority"
    ).option("header", True).csv(output)
    unmatched.select(*ORDER_SCHEMA.fieldNames(), "reason").withColumn("batch_id", F.lit(batch_id)).write.mode(
        "append"
    ).json(dead_letter)
    if hold is not None:
        hold.keep(spark, held, batch_id)
        orders.unpersist()


def run(
    spark: SparkSession,
    orders: DataFrame,
    data: ReferenceData,
    output: str,
    dead_letter: str,
    checkpoint: str,
    window: str = "10 seconds",
    hold: Hold | None = None,
):
    """Starts the streaming query over `orders` (a streaming DataFrame with ORDER_SCHEMA)."""
    return (
        orders.writeStream.foreachBatch(
            lambda batch, batch_id: process_batch(batch, batch_id, data, output, dead_letter, hold)
        )
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=window)
        .start()
    )


BACKFILL_ANSWER_SCHEMA = T.StructType(
    [
        T.StructField("dish", T.StringType()),
        T.StructField("arrival", T.DoubleType()),
        T.StructField("item", T.StringType()),
        T.StructField("price", T.DecimalType(38, 10)),
        T.StructField("priority", T.StringType()),
        T.StructField("reason", T.StringType()),
    ]
)


def backfill(orders: DataFrame, history: TableHistory, output: str, dead_letter: str) -> dict:
    """Enriches `orders` (ORDER_SCHEMA plus `arrival`, seconds since the epoch) as of each
    one's arrival through `history`, writing the enriched orders as the streaming job does (CSV,
    `item=`/`priority=` partitions, plus an `as_of` column) and the others to `dead_letter` with
    the reason. Returns the counts: orders = enriched + dead-lettered."""
    spark = orders.sparkSession
    orders = orders.select(
        F.col("dish").cast("string"),
        F.col("cost").cast(T.DecimalType(10, 2)),
        F.col("customer_id").cast("long"),
        F.col("arrival").cast("double"),
    ).cache()
    answers = []
    for row in orders.select("dish", "arrival").distinct().collect():
        when = datetime.fromtimestamp(row.arrival, timezone.utc).isoformat(timespec="milliseconds")
        if row.dish is None or row.arrival is None:
            answers.append((row.dish, row.arrival, None, None, None, "no dish or no arrival time"))
            continue
        if not history.is_final(row.arrival):
            # (a change made by then may not be in the feed yet: run the backfill later)
            answers.append((row.dish, row.arrival, None, None, None, f"as of {when}: not final when the history was read"))
            continue
        try:
            found = history.lookup(row.dish, row.arrival)
        except NotAnswerable as e:
            answers.append((row.dish, row.arrival, None, None, None, f"as of {when}: {e}"))
            continue
        if found is None:
            answers.append((row.dish, row.arrival, None, None, None, f"no reference item for dish {row.dish}"))
        else:
            answers.append((row.dish, row.arrival, found.get("item"), found.get("price"), found.get("priority"), None))
    answered = spark.createDataFrame(answers, BACKFILL_ANSWER_SCHEMA)
    # (a null dish or arrival never joins: those keep the reason below)
    joined = orders.join(F.broadcast(answered), ["dish", "arrival"], "left").withColumn(
        "reason",
        F.when(F.col("dish").isNull() | F.col("arrival").isNull(), F.lit("no dish or no arrival time")).otherwise(
            F.col("reason")
        ),
    )
    matched = joined.where(F.col("reason").isNull())
    unmatched = joined.where(F.col("reason").isNotNull())
    # (as of the arrival, as a timestamp column beside the original's)
    matched.select(
        "cost", "price", "priority", "customer_id", F.col("arrival").alias("as_of"), "item"
    ).write.mode("overwrite").partitionBy("item", "priority").option("header", True).csv(output)
    unmatched.select(*ORDER_SCHEMA.fieldNames(), "arrival", "reason").write.mode("overwrite").json(dead_letter)
    counts = {"orders": orders.count(), "enriched": matched.count(), "dead_lettered": unmatched.count()}
    orders.unpersist()
    return counts


def main() -> None:  # pragma: no cover - runs on Glue
    from awsglue.context import GlueContext
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext

    args = getResolvedOptions(
        sys.argv,
        ["JOB_NAME", "stream_arn", "reference_table", "feed_bucket", "output_path", "dead_letter_path", "checkpoint_path"],
    )
    # Optional: --held_path (unmatched orders wait for their row) and --hold_grace_seconds.
    hold = None
    if "--held_path" in sys.argv:
        extra = getResolvedOptions(sys.argv, ["held_path"])
        grace = getResolvedOptions(sys.argv, ["hold_grace_seconds"]) if "--hold_grace_seconds" in sys.argv else {}
        hold = Hold(extra["held_path"], int(grace.get("hold_grace_seconds", 900)))
    glue = GlueContext(SparkContext.getOrCreate())
    spark = glue.spark_session
    # Optional: --backfill_orders_path (JSON orders with `arrival`) and --backfill_from (seconds
    # since the epoch, at or before the first arrival): enriched as of arrival, then the job ends.
    if "--backfill_orders_path" in sys.argv:
        extra = getResolvedOptions(sys.argv, ["backfill_orders_path", "backfill_from"])
        history = TableHistory(
            args["reference_table"], ["item", "price"], "item", args["feed_bucket"], float(extra["backfill_from"])
        )
        orders = spark.read.json(extra["backfill_orders_path"])
        print(backfill(orders, history, args["output_path"], args["dead_letter_path"]))
        return
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
        batch_function=lambda batch, batch_id: process_batch(
            batch, batch_id, data, args["output_path"], args["dead_letter_path"], hold
        ),
        options={"windowSize": "10 seconds", "checkpointLocation": args["checkpoint_path"]},
    )


if __name__ == "__main__":  # pragma: no cover
    main()
