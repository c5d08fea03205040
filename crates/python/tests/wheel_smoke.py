"""The installed wheel's smoke test, run by scripts/wheels with the Python of a fresh venv that has
only the wheel installed (no boto3, nothing else): the package imports, its type stubs and
py.typed marker are installed beside it, and a TableReference loads a table from the emulator and
enriches a batch. The table and the feed bucket are made beforehand (SMOKE_TABLE, SMOKE_BUCKET);
SMOKE_MACHINE names the architecture the Python must run on (aarch64 runs under qemu-user on an
x86-64 machine: the wheel's library is then the aarch64 one)."""

import os
import pathlib
import platform
import sys

import stream_refdata
from stream_refdata import TableReference

assert platform.machine() == os.environ["SMOKE_MACHINE"], (platform.machine(), os.environ["SMOKE_MACHINE"])
package = pathlib.Path(stream_refdata.__file__).parent
installed = sorted(p.name for p in package.iterdir())
assert "py.typed" in installed, installed
assert any(name.endswith(".pyi") for name in installed), installed

table, bucket = os.environ["SMOKE_TABLE"], os.environ["SMOKE_BUCKET"]
ref = TableReference(table, ["item", "price"], "item", bucket)
report = ref.refresh()
assert report.get("error") is None, report
assert ref.lookup("pizza")["priority"] == "low", ref.lookup("pizza")
orders = [{"dish": "pizza"}, {"dish": "burger"}, {"dish": "ramen"}]
outcomes, counts = ref.enrich_batch(orders, key=lambda o: o["dish"])
statuses = [status for status, _, _ in outcomes]
assert statuses == ["enriched", "enriched", "rejected"], outcomes
assert counts["records"] == 3, counts
print(f"wheel smoke test: Python {sys.version.split()[0]} on {platform.machine()}, {len(installed)} files in {package.name}/, "
      f"{statuses.count('enriched')} enriched, {statuses.count('rejected')} rejected")
