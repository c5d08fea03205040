"""The orders enrichment as a PyFlink 2.x job (the line Amazon Managed Service for Apache Flink
runs: 2.2), on stream_refdata.

A table function (`Enrich`, a UDTF) holds a `stream_refdata.TableReference` per parallel
instance: loaded in `open()`, then refreshed from the change feed at most once per
`poll_interval_seconds` as orders pass, and at every in-stream change flag at its position, so
every order after a flag sees the change. A flag is the protocol's (the JSON record with
`stream_refdata_flag`, as the s3-event-handler puts on every shard: the source table reads that
field as a column) or the original design's (`dish == "CHANGE_FLAG"`). Each order comes out
once per run (after a restart from a checkpoint, the orders since it come out again): enriched
with its priority, or with the reason it was not (an unknown dish, data too stale), never
dropped; flags are consumed. The SQL around it is the caller's: `build()` takes a source table of
orders `(dish, cost, customer_id, stream_refdata_flag)` and returns the enriched table.

- **Locally** (and in the test, tests/test_flink_job.py) the source is a directory of JSON files
  that the filesystem connector watches (`--orders-dir`), and the enriched rows are printed as
  JSON lines as they come (`--collect`).
- **On Managed Flink** (no arguments, the application's runtime properties present) orders come
  from a Kinesis stream and go to another through the Kinesis table connector
  (`run_on_managed_flink`); crates/python/README.md shows the deployment. Not run on the service
  from this repository.

Each Python worker needs the `stream_refdata` wheel (`pip install`, or on Managed Flink the
application's `python.requirements`/bundled wheel) and its AWS credentials from the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from pyflink.common import Row
from pyflink.table import DataTypes, EnvironmentSettings, Table, TableEnvironment
from pyflink.table.expressions import col
from pyflink.table.udf import TableFunction, udtf

FLAG = "CHANGE_FLAG"
# The protocol's flag marker (stream-refdata-protocol's FLAG_MARKER): a column of the source
# table, null on an order.
FLAG_MARKER = "stream_refdata_flag"
SOURCE_COLUMNS = f"dish STRING, cost DOUBLE, customer_id BIGINT, {FLAG_MARKER} INT"

RESULT_TYPES = [
    DataTypes.STRING(),  # dish
    DataTypes.DOUBLE(),  # cost
    DataTypes.BIGINT(),  # customer_id
    DataTypes.STRING(),  # priority (None when not enriched)
    DataTypes.STRING(),  # status: enriched, rejected, passed, invalid, …
    DataTypes.STRING(),  # reason (None when enriched)
]
RESULT_NAMES = ["dish", "cost", "customer_id", "priority", "status", "reason"]


class Enrich(TableFunction):
    """One order in, one row out (none for a flag): the order with its reference item's
    priority, or with why it has none."""

    def __init__(self, table: str, key_attributes: list[str], lookup_attribute: str,
                 feed_bucket: str, poll_interval_seconds: float = 1.0):
        self.config = dict(table=table, key_attributes=list(key_attributes),
                           lookup_attribute=lookup_attribute, feed_bucket=feed_bucket,
                           poll_interval_seconds=poll_interval_seconds)
        self.reference = None

    def open(self, function_context):
        # (imported in the worker: the job's driver does not need the package)
        from stream_refdata import TableReference

        c = self.config
        self.reference = TableReference(c["table"], c["key_attributes"], c["lookup_attribute"],
                                        c["feed_bucket"],
                                        poll_interval_seconds=c["poll_interval_seconds"])
        report = self.reference.refresh()
        if report.get("error"):
            # (the first load failed: the job restarts the task rather than enrich with nothing)
            raise RuntimeError(f"the reference could not be loaded: {report['error']}")

    def eval(self, dish, cost, customer_id, flag_marker):
        order = (dish, cost, customer_id, flag_marker)
        # One order at a time, in the stream's order: the library refreshes when its interval is
        # up, and at a flag before the orders after it.
        outcomes, report = self.reference.enrich_batch(
            [order], key=lambda o: o[0], is_flag=lambda o: o[3] is not None or o[0] == FLAG)
        if report.get("retry"):
            # (a flag's refresh failed: the order must not be enriched with data older than the
            # flag; failing the task makes Flink replay from its last checkpoint)
            raise RuntimeError(f"the refresh at a change flag failed: {report}")
        status, _, detail = outcomes[0]
        if status == "flag":
            return
        if status == "enriched":
            yield Row(dish, cost, customer_id, detail.get("priority"), status, None)
        else:
            yield Row(dish, cost, customer_id, None, status, str(detail))


def build(t_env: TableEnvironment, orders: Table, enrich: Enrich) -> Table:
    """The enriched orders: each order of `orders` joined laterally with `enrich`."""
    fn = udtf(enrich, result_types=RESULT_TYPES)
    return (orders.join_lateral(fn(col("dish"), col("cost"), col("customer_id"),
                                   col(FLAG_MARKER))
                                .alias("o_dish", "o_cost", "o_customer_id", "priority", "status",
                                       "reason"))
            .select(col("o_dish").alias("dish"), col("o_cost").alias("cost"),
                    col("o_customer_id").alias("customer_id"), col("priority"), col("status"),
                    col("reason")))


def local_environment(python: str) -> TableEnvironment:
    """A local streaming table environment: one slot (orders keep their order), Python workers
    run by `python`."""
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("python.executable", python)
    conf.set("python.client.executable", python)
    # (rows go out as each order is processed, not in bundles of a thousand)
    conf.set("python.fn-execution.bundle.size", "1")
    conf.set("python.fn-execution.bundle.time", "100")
    return t_env


APPLICATION_PROPERTIES = "/etc/flink/application_properties.json"


def managed_flink_properties(path: str = APPLICATION_PROPERTIES) -> dict | None:
    """The application's runtime properties on Managed Service for Apache Flink (property groups
    by id), or None where the file is not (a local run)."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return {g["PropertyGroupId"]: g["PropertyMap"] for g in json.load(f)}


def run_on_managed_flink(p: dict) -> None:
    """On Managed Flink: orders from a Kinesis stream, enriched orders to another, both through
    the Kinesis table connector (bundled with the application), configured by the property group
    `Enrichment`: table, feed_bucket, orders_stream_arn, output_stream_arn, region, and optionally
    poll_interval_seconds. (The service sets parallelism and checkpoints, and refuses most
    configuration set in code: none is.) Not run on the service from this repository."""
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    columns = "dish STRING, cost DOUBLE, customer_id BIGINT"
    t_env.execute_sql(f"""
        CREATE TABLE orders ({SOURCE_COLUMNS}) WITH (
          'connector' = 'kinesis', 'stream.arn' = '{p["orders_stream_arn"]}',
          'aws.region' = '{p["region"]}', 'source.init.position' = 'LATEST', 'format' = 'json')""")
    t_env.execute_sql(f"""
        CREATE TABLE enriched_orders ({columns}, priority STRING, status STRING, reason STRING)
        WITH ('connector' = 'kinesis', 'stream.arn' = '{p["output_stream_arn"]}',
              'aws.region' = '{p["region"]}', 'format' = 'json')""")
    enrich = Enrich(p["table"], ["item", "price"], "item", p["feed_bucket"],
                    float(p.get("poll_interval_seconds", "1.0")))
    build(t_env, t_env.from_path("orders"), enrich).execute_insert("enriched_orders")


def main(argv: list[str]) -> None:
    properties = managed_flink_properties()
    if properties is not None and not argv:
        run_on_managed_flink(properties["Enrichment"])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--feed-bucket", required=True)
    parser.add_argument("--orders-dir", required=True,
                        help="a directory of JSON files of orders, watched for new ones")
    parser.add_argument("--poll-interval-seconds", type=float, default=1.0)
    parser.add_argument("--collect", action="store_true",
                        help="print the enriched rows as JSON lines as they come")
    args = parser.parse_args(argv)
    t_env = local_environment(sys.executable)
    t_env.execute_sql(f"""
        CREATE TABLE orders ({SOURCE_COLUMNS}) WITH (
          'connector' = 'filesystem', 'path' = '{pathlib.Path(args.orders_dir).resolve().as_uri()}', 'format' = 'json',
          'source.monitor-interval' = '200ms')""")
    enriched = build(t_env, t_env.from_path("orders"),
                     Enrich(args.table, ["item", "price"], "item", args.feed_bucket,
                            args.poll_interval_seconds))
    if not args.collect:
        enriched.execute().print()
        return
    with enriched.execute().collect() as rows:
        for row in rows:
            print(json.dumps(dict(zip(RESULT_NAMES, row))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
