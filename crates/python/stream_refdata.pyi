"""Streaming enrichment with fast-changing reference data, from Python.

The stream-refdata engine (the Rust `enrichment` crate) behind two classes: a reference kept in a
DynamoDB table (`TableReference`) and one kept as objects in S3 (`ObjectReference`). Each follows
the change feed the stream-refdata producers write, applying each change as a delta; call
`refresh()` (or `enrich_batch()`, which does) once per micro-batch.

Items are plain Python values, converted once when they are loaded or changed (a lookup returns
the same object: copy it before changing it): numbers are `decimal.Decimal`, string and number
sets `set`, maps `dict`, lists `list`, booleans `bool`, NULL `None`, as boto3's
`TypeDeserializer` gives them; binary values are `bytes` (boto3 wraps them in its `Binary`).
"""

from typing import Any, Callable, Optional, Sequence, TypedDict

from typing_extensions import Unpack

__version__: str

Outcome = tuple[str, Any, Any]
"""`(status, record, detail)`: status is one of enriched, passed, rejected, dropped, waiting,
flag, invalid, held; detail is the item for enriched, the reason otherwise, None for a flag."""

class _Reference:
    def refresh(self) -> dict[str, Any]:
        """Bring the data up to date: a full load the first time (from the feed-compactor's
        snapshot when there is a usable one, else a Scan), then the change feed. Never raises for
        AWS errors: the last good data keeps serving and the report's `error` says why. Keys:
        full_reload, files, applied, reread, error, reload_error, problems, snapshot,
        snapshot_refused."""
    def lookup(self, key: str) -> Optional[Any]:
        """The item for a lookup key, or None. Lock-free, safe from several threads."""
    def lookup_table(self) -> dict[str, Any]:
        """The current data as a plain dict, lookup key -> item, built once per version: take it
        once per micro-batch (after refresh) and use `.get()` on it in hot loops. Its keys are
        those `lookup()` takes (a number's digits as stored: `0.0000001`, never `1E-7`), one item
        each, resolved as `lookup()` resolves several items under one key. Do not change it."""
    @property
    def version(self) -> int:
        """Increases with every change published; 0 before the first load."""
    @property
    def staleness_seconds(self) -> Optional[float]:
        """Seconds since the data was last confirmed current; None before the first load."""
    def is_loaded(self) -> bool: ...
    def is_too_stale(self) -> bool:
        """Whether the data is past the staleness limit (not to be used for enrichment)."""
    def items(self) -> list[Any]:
        """Every item, in no particular order."""
    def health(self) -> dict[str, Any]:
        """The reference's health: reference (the table's name, or s3://bucket/prefix), state
        (never loaded, too stale, degraded, current), loaded, staleness_seconds, too_stale,
        last_error, pending_reload, rejected (what is rejected now and served from its last good
        version)."""
    def watch(self, keys: Sequence[str]) -> None:
        """Watch the lookup keys of records the job holds (unmatched="hold"); enrich_batch
        watches those it answers "waiting" by itself."""
    def take_resolved(self) -> list[tuple[str, Any]]:
        """The watched keys that resolved since the last call, each with the version of its
        item that resolved it (never a later one), in the order they resolved."""
    def metrics(self) -> dict[str, Any]:
        """Counters (hits, misses, items_read, changes_applied, full_refreshes, snapshot_loads,
        feed_lists, …) and staleness_seconds."""
    def enrich_batch(
        self,
        records: Sequence[Any],
        key: Callable[[Any], Optional[str]],
        is_flag: Optional[Callable[[Any], bool]] = None,
    ) -> tuple[list[Outcome], dict[str, Any]]:
        """Refresh, then enrich `records` in order. `key(record)` is the lookup key (None: the
        record is invalid); `is_flag(record)` marks in-stream change flags, which refresh at
        their position. Returns one outcome per record and the counts (records, enriched,
        passed, rejected, dropped, flags, invalid, held, retry, refreshes); `retry` is set when
        the batch must be retried (a flag's refresh failed)."""
    def __len__(self) -> int: ...

class _Options(TypedDict, total=False):
    """The keyword arguments both reference classes take. An argument left out takes the
    library's default (the package README's table)."""

    unmatched: str
    """dead-letter (rejected with a reason), pass, drop or hold (answered "waiting"; see
    watch() and take_resolved())."""
    max_staleness_seconds: Optional[float]
    """The staleness limit; None never rejects records as stale."""
    max_age_seconds: Optional[float]
    """The maximum age of a full load; None never reloads without a reason."""
    poll_interval_seconds: float
    write_window_seconds: float
    retention_days: int
    clock_margin_seconds: float
    endpoint_url: Optional[str]

class TableReference(_Reference):
    def __init__(
        self,
        table: str,
        key_attributes: Sequence[str],
        lookup_attribute: str,
        feed_bucket: str,
        feed_prefix: str = ...,
        *,
        snapshot_prefix: Optional[str] = ...,
        **options: Unpack[_Options],
    ) -> None:
        """A reference to a DynamoDB table keyed by `key_attributes` (hash key first), looked up
        by `lookup_attribute`. `snapshot_prefix`: None never looks for a feed snapshot; the
        other keyword arguments are `_Options`. Nothing is read until the first refresh.
        Raises ValueError on a bad argument."""

class ObjectReference(_Reference):
    def __init__(
        self,
        bucket: str,
        prefix: str,
        key_column: str,
        feed_bucket: str,
        feed_prefix: str = ...,
        **options: Unpack[_Options],
    ) -> None:
        """A reference to the objects under `prefix` in `bucket` (CSV with a header or JSON
        Lines, optionally gzip), rows looked up by `key_column`; the other arguments are
        `TableReference`'s."""

class NotAnswerable(LookupError):
    """The history cannot say what a key held at that time: before what it holds, changed without
    saying to what (no image in the stream), or refused (a gap, an unreadable change file, a
    stream switch in the window). The message says which."""

class TableHistory:
    """A table as it was at any time from `from_time` on (seconds since the epoch), read once from
    the change feed: the latest feed snapshot written at or before `from_time` (under
    `snapshot_prefix`, or the compactor's daily ones under `daily_snapshot_prefix`, kept longer),
    then every change file after it. A record stamped within the same second as a change sees
    it."""

    def __init__(
        self,
        table: str,
        key_attributes: Sequence[str],
        lookup_attribute: str,
        feed_bucket: str,
        from_time: float,
        *,
        feed_prefix: str = "change_flags/",
        snapshot_prefix: str = "feed-snapshots/",
        daily_snapshot_prefix: Optional[str] = "feed-snapshots-daily/",
        look_back_seconds: float = 25.0,
        retention_days: int = 7,
        empty_at_start: bool = False,
        endpoint_url: Optional[str] = None,
    ) -> None: ...
    def lookup(self, key: str, as_of: float) -> Optional[Any]:
        """The item whose lookup key was `key` at `as_of` (seconds since the epoch), or None when
        there was none; raises NotAnswerable when the history cannot say."""
    def is_final(self, as_of: float) -> bool:
        """Whether every change made at or before `as_of` was visible when the history was read."""
    @property
    def starts_at(self) -> float:
        """Where the history starts: the snapshot's position, or `from_time` without one."""
