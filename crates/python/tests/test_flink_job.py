"""The orders enrichment as a PyFlink 2.x job (examples/flink_job.py), run on a local PyFlink
(apache-flink 2.2, the line Managed Service for Apache Flink runs, with Flink's own jars, on
Debian's OpenJDK) as a real streaming job: orders arrive as files in a watched directory,
burger's priority changes mid-stream (through the real change-handler's feed), and the rows the
job emits must follow the change at the in-stream flag's position, not before it, and report the
unmatched order instead of dropping it.

PyFlink lives in its own venv (.venv-flink, requirements-flink.txt, made by scripts/setup --flink
with this package installed into it): its pins (apache-beam, pyarrow, protobuf) are not the
other tools'. The job runs as its own process; the test reads its rows as they come."""

import json
import os
import pathlib
import queue
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
FLINK_PYTHON = ROOT / ".venv-flink" / "bin" / "python"
JOB = ROOT / "crates" / "python" / "examples" / "flink_job.py"
# (a guard against a job that never starts, not a measure: the first rows wait for the JVM)
GUARD_SECONDS = 300


def write_orders(directory, name, orders):
    """A file of orders, appearing whole (the source skips names starting with a dot)."""
    hidden = directory / f".{name}"
    hidden.write_text("".join(json.dumps(o) + "\n" for o in orders))
    hidden.rename(directory / name)


class Job:
    def __init__(self, reference, orders_dir):
        assert FLINK_PYTHON.exists(), f"{FLINK_PYTHON} is missing: scripts/test makes it (scripts/setup --flink)"
        self.proc = subprocess.Popen(
            [str(FLINK_PYTHON), str(JOB), "--table", reference.table, "--feed-bucket",
             reference.bucket, "--orders-dir", str(orders_dir), "--collect",
             # (polled only at flags after the first load: the change reaches exactly the
             # orders after the flag)
             "--poll-interval-seconds", "3600"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )
        self.rows = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.rows.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append), daemon=True).start()

    @staticmethod
    def _read(stream, put):
        for line in stream:
            put(line)

    def take(self, n):
        """The next `n` rows the job emits."""
        out = []
        while len(out) < n:
            try:
                out.append(json.loads(self.rows.get(timeout=GUARD_SECONDS)))
            except queue.Empty:
                raise AssertionError(
                    f"the job emitted {len(out)} of {n} rows; exit {self.proc.poll()}; stderr:\n"
                    + "".join(self.stderr[-40:])
                ) from None
        return out

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_the_job_follows_a_change_made_mid_stream_at_the_flags_position(reference, tmp_path):
    orders_dir = tmp_path / "orders"
    orders_dir.mkdir()
    write_orders(orders_dir, "1.json", [
        {"dish": "pizza", "cost": 10.0, "customer_id": 1},
        {"dish": "burger", "cost": 7.5, "customer_id": 2},
        {"dish": "ramen", "cost": 5.0, "customer_id": 3},
    ])
    job = Job(reference, orders_dir)
    try:
        first = job.take(3)
        assert [(r["dish"], r["status"], r["priority"]) for r in first] == [
            ("pizza", "enriched", "low"),
            ("burger", "enriched", "medium"),
            ("ramen", "rejected", None),
        ], first
        assert "ramen" in first[2]["reason"]

        # Mid-stream: burger's priority changes in the table; the change-handler writes it to
        # the feed; then an order, the original design's in-stream flag, another order.
        reference.set_priority("burger", "high")
        write_orders(orders_dir, "2.json", [
            {"dish": "burger", "cost": 7.5, "customer_id": 4},
            {"dish": "CHANGE_FLAG", "cost": 0.0, "customer_id": 0},
            {"dish": "burger", "cost": 7.5, "customer_id": 5},
        ])
        second = job.take(2)
        assert [(r["customer_id"], r["priority"]) for r in second] == [(4, "medium"), (5, "high")], second

        # Again with the protocol's flag, shaped as the s3-event-handler writes it (a record with
        # no order fields: consumed as a flag, not an invalid order).
        reference.set_priority("burger", "low")
        write_orders(orders_dir, "3.json", [
            {"dish": "burger", "cost": 7.5, "customer_id": 6},
            {"stream_refdata_flag": 1, "change": {"bucket": "refdata", "key": "prices.csv",
                                                  "event": "ObjectCreated:Put"}},
            {"dish": "burger", "cost": 7.5, "customer_id": 7},
        ])
        third = job.take(2)
        assert [(r["customer_id"], r["priority"]) for r in third] == [(6, "high"), (7, "low")], third
        # Counts reconcile: 9 records in (two flags, consumed), 7 rows out, each order once.
        assert sorted(r["customer_id"] for r in first + second + third) == [1, 2, 3, 4, 5, 6, 7]
    finally:
        job.stop()
