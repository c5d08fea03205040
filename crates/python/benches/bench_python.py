"""Benchmarks of the Python package (issue 20), on the emulator, ratios from one run:

1. a lookup from Python against a lookup in a plain dict of prebuilt dicts (the best a Python job
   can do once its data is loaded);
2. a refresh after one change against the original job's reload of the whole table (a Scan of
   every item, deserialized with boto3's TypeDeserializer into dicts): table reads and time.

Needs AWS_ENDPOINT_URL (an emulator) and PUMP_STREAM (tests/bin/pump-stream: the real change-handler
writing the feed); `scripts/bench-python` runs it with both. Prints Markdown.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import time
import timeit
import uuid

import boto3
from boto3.dynamodb.types import TypeDeserializer

from stream_refdata import TableReference

ROOT = pathlib.Path(__file__).resolve().parents[3]


def create_table(ddb, s3, n):
    table, bucket = f"ProductPriority-{uuid.uuid4().hex[:8]}", f"feed-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "item", "KeyType": "HASH"}, {"AttributeName": "price", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "item", "AttributeType": "S"}, {"AttributeName": "price", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    s3.create_bucket(Bucket=bucket)
    priorities = ["low", "medium", "high", "very high"]
    for start in range(0, n, 25):
        requests = [
            {"PutRequest": {"Item": {"item": {"S": f"dish-{i:06}"}, "price": {"N": "100"}, "priority": {"S": priorities[i % 4]}}}}
            for i in range(start, min(n, start + 25))
        ]
        while requests:
            out = ddb.batch_write_item(RequestItems={table: requests})
            requests = out.get("UnprocessedItems", {}).get(table, [])
    return table, bucket


def original_reload(ddb, table):
    """The original job's reload: the whole table, every micro-batch that saw a flag."""
    deserializer = TypeDeserializer()
    items, start, read = {}, None, 0
    while True:
        kw = {"TableName": table, "ConsistentRead": True}
        if start:
            kw["ExclusiveStartKey"] = start
        page = ddb.scan(**kw)
        for raw in page["Items"]:
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            items[item["item"]] = item
        read += len(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items, read


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    print(f"creating a table of {args.items} items…", file=sys.stderr)
    table, bucket = create_table(ddb, s3, args.items)
    pump = subprocess.Popen([os.environ["PUMP_STREAM"], table, bucket], stderr=subprocess.DEVNULL)
    try:
        ref = TableReference(table, ["item", "price"], "item", bucket, poll_interval_seconds=0.0, clock_margin_seconds=0.0)
        # The pump writes the seed's change files: follow until they are all applied.
        started = time.perf_counter()
        ref.refresh()
        load_time = time.perf_counter() - started
        quiet = 0
        while quiet < 5:
            report = ref.refresh()
            quiet = quiet + 1 if report["files"] == 0 else 0
            time.sleep(0.2)

        # 1. Lookups.
        plain = {i["item"]: dict(i) for i in ref.items()}
        keys = [f"dish-{i:06}" for i in range(0, args.items, max(1, args.items // 1000))]
        reps = 200
        ours = min(timeit.repeat(lambda: [ref.lookup(k) for k in keys], number=reps, repeat=5)) / (reps * len(keys))
        theirs = min(timeit.repeat(lambda: [plain.get(k) for k in keys], number=reps, repeat=5)) / (reps * len(keys))
        t0 = time.perf_counter()
        table_ = ref.lookup_table()
        build = time.perf_counter() - t0
        assert table_ == plain
        via_table = min(timeit.repeat(lambda: [ref.lookup_table().get(k) for k in keys[:1]] and [table_.get(k) for k in keys], number=reps, repeat=5)) / (reps * len(keys))

        # 2. A refresh after one change against the original's reload.
        read_before = ref.metrics()["items_read"]
        ddb.update_item(
            TableName=table,
            Key={"item": {"S": "dish-000001"}, "price": {"N": "100"}},
            UpdateExpression="SET priority = :s",
            ExpressionAttributeValues={":s": {"S": "urgent"}},
        )
        refresh_time = None
        deadline = time.time() + 60
        while time.time() < deadline:
            t0 = time.perf_counter()
            report = ref.refresh()
            elapsed = time.perf_counter() - t0
            if ref.lookup("dish-000001")["priority"] == "urgent":
                refresh_time = elapsed
                break
            time.sleep(0.05)
        assert refresh_time is not None, "the change never arrived"
        refresh_reads = ref.metrics()["items_read"] - read_before
        t0 = time.perf_counter()
        items, reload_reads = original_reload(ddb, table)
        reload_time = time.perf_counter() - t0
        assert items["dish-000001"]["priority"] == "urgent"
    finally:
        pump.kill()
        pump.wait()

    print(f"# The Python package against plain Python and the original's reload (one run)\n")
    print(f"Table of {args.items} items on the emulator (moto); first load (Scan) {load_time:.2f} s.\n")
    print("| measure | stream_refdata | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| lookup, `ref.lookup(k)` (per call) | {ours * 1e9:.0f} ns | {theirs * 1e9:.0f} ns (dict.get on prebuilt dicts) | **{ours / theirs:.1f}×** |")
    print(f"| lookup, `table = ref.lookup_table()` once, then `table.get(k)` | {via_table * 1e9:.0f} ns | {theirs * 1e9:.0f} ns | **{via_table / theirs:.1f}×** (building the table: {build * 1e3:.0f} ms per version) |")
    print(
        f"| table items read to take one change | {refresh_reads} | {reload_reads} (the original's full reload) | "
        f"**{reload_reads / max(refresh_reads, 1):.0f}× fewer**{' (zero reads)' if refresh_reads == 0 else ''} |"
    )
    print(f"| time to take one change | {refresh_time * 1e3:.1f} ms (refresh) | {reload_time * 1e3:.0f} ms (Scan + deserialize) | **{reload_time / refresh_time:.0f}× faster** |")


if __name__ == "__main__":
    main()
