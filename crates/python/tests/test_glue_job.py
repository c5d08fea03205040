"""The seed's Glue streaming job, rebuilt on stream_refdata (examples/glue_job.py), run on a local
PySpark (the Spark line Glue 5 runs) as a real streaming query: orders arrive as files, burger's
priority changes mid-stream (through the real change-handler's feed), and the output read back
must follow the change, dead-letter the unmatched orders instead of dropping them, and rebuild the
broadcast reference only when its version changed."""

import csv
import json
import pathlib
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

pyspark = pytest.importorskip("pyspark", reason="scripts/test installs PySpark (scripts/setup --spark)")
from pyspark.sql import SparkSession  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
import glue_job  # noqa: E402

from stream_refdata import TableReference  # noqa: E402

from conftest import put  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    session = (
        SparkSession.builder.master("local[1]")
        .appName("glue-job-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    yield session
    session.stop()


def write_orders(directory, name, orders):
    (directory / f"{name}.json").write_text("".join(json.dumps(o) + "\n" for o in orders))


def rows(path, item, priority):
    folder = path / f"item={item}" / f"priority={priority}"
    if not folder.exists():
        return []
    out = []
    for f in folder.glob("*.csv"):
        with f.open() as fh:
            out.extend(csv.DictReader(fh))
    return out


def test_the_rebuilt_glue_job_follows_a_change_mid_stream(spark, reference, tmp_path):
    inbox, output, dead, checkpoint = (tmp_path / d for d in ("in", "out", "dead", "checkpoint"))
    inbox.mkdir()
    # pizza at a second price: one item per dish all the same (the lowest key, as lookup() does),
    # never one output row per price.
    put(reference.ddb, reference.table, "pizza", "low", price={"N": "250"})
    ref = TableReference(
        reference.table, ["item", "price"], "item", reference.bucket, poll_interval_seconds=0.0, clock_margin_seconds=0.0
    )
    data = glue_job.ReferenceData(spark, ref)
    stream = spark.readStream.schema(glue_job.ORDER_SCHEMA).json(str(inbox))
    query = glue_job.run(spark, stream, data, str(output), str(dead), str(checkpoint), window="0 seconds")
    try:
        write_orders(inbox, "1", [{"dish": "burger", "cost": 12.5, "customer_id": i} for i in range(5)]
                     + [{"dish": "donut", "cost": 3, "customer_id": 7}, {"dish": "pizza", "cost": 20, "customer_id": 8}])
        query.processAllAvailable()
        rebuilds_before = data.rebuilds

        # The seed's update, mid-stream; the change-handler writes it to the feed.
        reference.set_priority("burger", "high")
        write_orders(inbox, "2", [{"dish": "burger", "cost": 9, "customer_id": 100 + i} for i in range(4)])
        query.processAllAvailable()
        after_change = data.rebuilds

        # A batch without a change: the broadcast reference is not rebuilt.
        write_orders(inbox, "3", [{"dish": "salad", "cost": 7, "customer_id": 200}])
        query.processAllAvailable()
    finally:
        query.stop()

    assert len(rows(output, "burger", "medium")) == 5
    assert len(rows(output, "burger", "high")) == 4, "the orders after the change land in priority=high"
    pizzas = rows(output, "pizza", "low")
    assert len(pizzas) == 1, f"one row per order, not one per price: {pizzas}"
    assert pizzas[0]["price"].startswith("100"), "the lowest key, as lookup() resolves it"
    assert len(rows(output, "salad", "high")) == 1
    assert rows(output, "burger", "high")[0]["price"].startswith("100")
    letters = [json.loads(line) for f in dead.glob("*.json") for line in f.read_text().splitlines()]
    assert [(d["dish"], d["reason"]) for d in letters] == [("donut", "no reference item for dish donut")]
    assert after_change > rebuilds_before, "the change rebuilt the broadcast reference"
    assert data.rebuilds == after_change, "a batch without a change did not"
    assert all(r["error"] is None for r in data.reports)
    assert ref.metrics()["full_refreshes"] == 1, "one load, then deltas: no reload per change"


def test_the_glue_job_holds_orders_until_their_row_arrives(spark, reference, tmp_path):
    inbox, output, dead, checkpoint, held = (tmp_path / d for d in ("in", "out", "dead", "checkpoint", "held"))
    inbox.mkdir()
    ref = TableReference(
        reference.table, ["item", "price"], "item", reference.bucket, poll_interval_seconds=0.0, clock_margin_seconds=0.0
    )
    data = glue_job.ReferenceData(spark, ref)
    # The hold's clock is the test's: the grace passes when the test says so, not with the
    # machine's speed.
    clock = [datetime(2026, 12, 7, 10, 0, 0, tzinfo=timezone.utc)]
    hold = glue_job.Hold(str(held), grace_seconds=60, now=lambda: clock[0])
    stream = spark.readStream.schema(glue_job.ORDER_SCHEMA).json(str(inbox))
    query = glue_job.run(spark, stream, data, str(output), str(dead), str(checkpoint), window="0 seconds", hold=hold)
    try:
        # ramen goes on sale before its row; donut never gets one
        write_orders(inbox, "1", [{"dish": "ramen", "cost": 11, "customer_id": i} for i in range(3)]
                     + [{"dish": "donut", "cost": 3, "customer_id": 7}, {"dish": "burger", "cost": 5, "customer_id": 8}])
        query.processAllAvailable()
        assert rows(output, "ramen", "medium") == [], "held, not written, while the row is missing"
        assert all(not f.read_text() for f in dead.glob("*.json")), "nor dead-lettered"
        # the row arrives (through the feed: waited for until the reference has it), and the
        # next micro-batch, 30 s later, releases the held ramen
        reference.set_priority("ramen", "medium")
        for _ in range(100):
            ref.refresh()
            if ref.lookup("ramen") is not None:
                break
            time.sleep(0.1)
        clock[0] += timedelta(seconds=30)
        write_orders(inbox, "2", [{"dish": "salad", "cost": 7, "customer_id": 200}])
        query.processAllAvailable()
        # past the grace, the next micro-batch dead-letters the donut with its reason
        clock[0] += timedelta(seconds=31)
        write_orders(inbox, "3", [{"dish": "ramen", "cost": 11, "customer_id": 300}])
        query.processAllAvailable()
    finally:
        query.stop()

    ramen = sorted(int(r["customer_id"]) for r in rows(output, "ramen", "medium"))
    assert ramen == [0, 1, 2, 300], "every ramen order once, the held ones released into its partition"
    assert len(rows(output, "burger", "medium")) == 1 and len(rows(output, "salad", "high")) == 1
    letters = [json.loads(line) for f in dead.glob("*.json") for line in f.read_text().splitlines()]
    assert [(d["dish"], d["customer_id"]) for d in letters] == [("donut", 7)], letters
    assert letters[0]["reason"] == (
        "unmatched after 60 s: no reference item for dish donut (held 61 s; first attempt: micro-batch 0)"
    ), letters[0]["reason"]
    # nothing left held: the newest generation is empty
    assert spark.read.schema(glue_job.HELD_SCHEMA).parquet(str(held / f"gen={max(hold._generations(spark))}")).count() == 0


def test_the_glue_job_backfills_a_day_as_of_each_orders_arrival(spark, reference, tmp_path):
    from stream_refdata import TableHistory

    from conftest import endpoint

    window_start = time.time() - 600  # before the table existed: it held nothing then
    before = time.time()  # burger medium (the seed)
    time.sleep(1.1)
    reference.set_priority("burger", "high")
    time.sleep(1.1)
    after = time.time()  # burger high
    time.sleep(1.1)
    reference.set_priority("burger", "low")  # now: low; the backfill must not see it
    orders = [
        {"dish": "burger", "cost": 5, "customer_id": 1, "arrival": before},
        {"dish": "burger", "cost": 5, "customer_id": 2, "arrival": after},
        {"dish": "donut", "cost": 3, "customer_id": 3, "arrival": after},
        {"dish": "burger", "cost": 5, "customer_id": 4, "arrival": window_start - 60},
    ]
    inbox = tmp_path / "orders"
    inbox.mkdir()
    write_orders(inbox, "day", orders)
    def read_history():
        return TableHistory(
            reference.table, ["item", "price"], "item", reference.bucket, window_start,
            look_back_seconds=0.0, empty_at_start=True, endpoint_url=endpoint(),
        )

    # (once the feed holds today's low, and the answers for the orders' arrivals are final: the
    # backfill must answer as of each arrival all the same)
    deadline = time.time() + 60
    while True:
        history = read_history()
        if (history.lookup("burger", time.time()) or {}).get("priority") == "low" and history.is_final(after):
            break
        assert time.time() < deadline, "the pump never wrote the last change, or the answers never became final"
        time.sleep(0.2)
    runs = []
    for n in range(2):
        output, dead = tmp_path / f"out{n}", tmp_path / f"dead{n}"
        counts = glue_job.backfill(spark.read.json(str(inbox)), history, str(output), str(dead))
        assert counts == {"orders": 4, "enriched": 2, "dead_lettered": 2}, counts
        medium, high = rows(output, "burger", "medium"), rows(output, "burger", "high")
        assert [r["customer_id"] for r in medium] == ["1"], "as of its arrival: medium"
        assert [r["customer_id"] for r in high] == ["2"], "as of its arrival: high, not today's low"
        assert rows(output, "burger", "low") == []
        letters = sorted(
            (json.loads(line) for f in dead.glob("*.json") for line in f.read_text().splitlines()),
            key=lambda d: d["customer_id"],
        )
        assert [d["customer_id"] for d in letters] == [3, 4]
        assert letters[0]["reason"] == "no reference item for dish donut"
        assert "before the history" in letters[1]["reason"], letters[1]["reason"]
        runs.append((sorted(map(str, medium + high)), [d["reason"] for d in letters]))
    assert runs[0] == runs[1], "a second run writes the same rows"
