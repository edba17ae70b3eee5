"""Interactions: validation, id mapping to a user x item CSR matrix, and the temporal split.

Rules (each documented result is tested):

* ``weight`` is optional (default 1.0); it must be finite and >= 0, else :class:`DataError`
  naming the row.
* Duplicate ``(user_id, item_id)`` rows are aggregated: ``duplicates="sum"`` (default; weights
  add up, the latest timestamp is kept), ``"last"`` (the latest row by timestamp wins, file order
  breaks ties), ``"max"`` or ``"error"``.
* Interactions naming items that are not in the catalogue are counted in the
  :class:`InteractionReport`; they raise :class:`DataError` unless ``drop_unknown=True`` drops
  them. The same holds for users when a user universe is given.
* ``timestamp`` is optional: integer Unix seconds, or ISO-8601 strings or a datetime column
  (converted to seconds; naive times are UTC). Anything else is a :class:`DataError` naming the
  file, line and column; integer times that look like milliseconds are accepted with a warning.
* An empty table is a :class:`DataError`.
* Row order does not matter: the temporal split sorts by ``(timestamp, item_id)`` per user.
  A temporal split needs a ``timestamp`` column without nulls, else :class:`DataError`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import cast

import numpy as np
import polars as pl
import scipy.sparse as sp

from xrec.catalogue.ids import as_type_of
from xrec.catalogue.tables import first_row_where, locate, read_table, require_columns
from xrec.errors import DataError

log = logging.getLogger(__name__)

DUPLICATE_RULES = ("sum", "last", "max", "error")


@dataclass
class InteractionReport:
    """What validation found and did."""

    rows_in: int = 0
    rows_out: int = 0
    duplicates: int = 0  #: rows merged into another row of the same (user, item)
    unknown_items: int = 0  #: rows naming an item outside the catalogue
    unknown_users: int = 0  #: rows naming a user outside the given user universe
    dropped: int = 0  #: rows dropped because of unknown ids (only with drop_unknown=True)
    examples: dict[str, list] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.rows_in} rows in, {self.rows_out} out; {self.duplicates} duplicate rows merged; "
                f"{self.unknown_items} naming unknown items, {self.unknown_users} naming unknown users; "
                f"{self.dropped} dropped")


class IdMap:
    """Maps external ids (int or string) to dense 0-based indices and back."""

    def __init__(self, ids: Sequence | np.ndarray | pl.Series, name: str = "id"):
        series = pl.Series(name, ids) if not isinstance(ids, pl.Series) else ids.alias(name)
        if series.null_count():
            raise DataError(f"{name}: null id at position {first_row_where(series.to_frame(), series.is_null())}")
        if series.is_duplicated().any():
            dup = series.filter(series.is_duplicated())[0]
            raise DataError(f"{name}: duplicate id {dup!r}")
        self.name = name
        self.ids = series
        self._frame = pl.DataFrame({"__id": series, "__idx": np.arange(len(series), dtype=np.int64)})

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: Sequence | np.ndarray | pl.Series, missing: int = -1) -> np.ndarray:
        """Indices of ``ids`` (``missing`` where an id is unknown), int64."""
        query = pl.Series("__id", ids)
        if len(query) and query.dtype != self.ids.dtype:
            query = as_type_of(query, self.ids.dtype)  # the id rule: "28" names item 28, "abc" none
        out = (query.to_frame().join(self._frame, on="__id", how="left", maintain_order="left")
               ["__idx"].fill_null(missing))
        return out.to_numpy().astype(np.int64, copy=False)

    def to_ids(self, index: np.ndarray) -> np.ndarray:
        """External ids at ``index`` (as a numpy array)."""
        return self.ids.to_numpy()[np.asarray(index)]


def read_interactions(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Read an interactions table (parquet, CSV or JSONL) with at least ``user_id`` and ``item_id``."""
    return read_table(path, required=["user_id", "item_id"])


def validate_interactions(frame: pl.DataFrame, source: str = "interactions", *,
                          item_ids: Sequence | pl.Series | np.ndarray | None = None,
                          user_ids: Sequence | pl.Series | None = None,
                          drop_unknown: bool = False, duplicates: str = "sum",
                          ) -> tuple[pl.DataFrame, InteractionReport]:
    """Check and normalise an interactions table; returns ``(frame, report)``.

    The result has ``user_id, item_id, weight`` (Float64) and ``timestamp`` when given. See the
    module docstring for the rules.
    """
    require_columns(frame, ["user_id", "item_id"], source)
    if duplicates not in DUPLICATE_RULES:
        raise DataError(f"duplicates={duplicates!r}: use one of {DUPLICATE_RULES}")
    if frame.height == 0:
        raise DataError(f"{source}: no interactions (the table has a header but no rows)")
    report = InteractionReport(rows_in=frame.height)
    cols = ["user_id", "item_id"] + [c for c in ("weight", "timestamp") if c in frame.columns]
    frame = frame.select(cols)
    for col in ("user_id", "item_id"):
        if frame[col].null_count():
            raise DataError(f"{source}: {locate(source, first_row_where(frame, frame[col].is_null()))}: "
                            f"{col} is null")
    if "weight" in frame.columns:
        try:
            weight = frame["weight"].cast(pl.Float64)
        except Exception as exc:
            raise DataError(f"{source}: column 'weight' must be numeric ({exc})") from exc
        bad = weight.is_null() | weight.is_nan() | weight.is_infinite() | (weight < 0)
        if bad.any():
            row = first_row_where(frame, bad)
            raise DataError(f"{source}: {locate(source, row)} (user {frame['user_id'][row]!r}, item "
                            f"{frame['item_id'][row]!r}): weight {frame['weight'][row]!r} is "
                            f"{'negative' if (weight[row] or 0) < 0 else 'missing or not finite'}; "
                            "weights must be finite and >= 0")
        frame = frame.with_columns(weight=weight)
    else:
        frame = frame.with_columns(weight=pl.lit(1.0, dtype=pl.Float64))
    if "timestamp" in frame.columns:
        frame = frame.with_columns(timestamp=unix_seconds(frame["timestamp"], source))
    source_rows = pl.Series("__src", np.arange(frame.height, dtype=np.int64))

    keep = pl.Series(np.ones(frame.height, dtype=bool))
    for col, universe, attr in (("item_id", item_ids, "unknown_items"), ("user_id", user_ids, "unknown_users")):
        if universe is None:
            continue
        given = frame[col]
        ids = IdMap(universe, col)
        frame = frame.with_columns(as_type_of(given, ids.ids.dtype))  # the catalogue's id type decides
        unknown = ~pl.Series(ids.index(frame[col]) >= 0)
        setattr(report, attr, int(unknown.sum()))
        if unknown.any():
            report.examples[col] = given.filter(unknown).unique(maintain_order=True).head(5).to_list()
            keep = keep & ~unknown
    n_unknown = int((~keep).sum())
    if n_unknown:
        msg = (f"{source}: {report.unknown_items} row(s) name items not in the catalogue "
               f"(e.g. {report.examples.get('item_id', [])}), {report.unknown_users} name unknown users "
               f"(e.g. {report.examples.get('user_id', [])})")
        if not drop_unknown:
            raise DataError(msg + "; pass drop_unknown=True (CLI: --drop-unknown) to drop them")
        log.warning("%s; dropped", msg)
        report.dropped = n_unknown
        frame = frame.filter(keep)
        source_rows = source_rows.filter(keep)

    frame = _aggregate(frame, source, duplicates, report, source_rows)
    report.rows_out = frame.height
    return frame, report


def unix_seconds(values: pl.Series, source: str = "interactions") -> pl.Series:
    """A ``timestamp`` column as Int64 Unix seconds (see the module docs for what is accepted)."""
    def refuse(mask: pl.Series, why: str) -> DataError:
        row = int(mask.arg_true()[0])
        return DataError(f"{source}: {locate(source, row)}: column 'timestamp' holds {values[row]!r}; "
                         f"{why}")

    name = values.name
    if values.dtype == pl.Null:
        return values.cast(pl.Int64)
    if values.dtype in (pl.String, pl.Categorical):
        text = values.cast(pl.String).str.strip_chars()
        digits = text.str.contains(r"^-?\d+$")
        if digits.fill_null(True).all():
            values = text.cast(pl.Int64)
        else:
            parsed = _parse_iso(text)
            bad = parsed.is_null() & text.is_not_null()
            if bad.any():
                raise refuse(bad, "expected integer Unix seconds or an ISO-8601 date-time "
                                  "(e.g. 2024-05-01T12:30:00Z)")
            values = parsed
    if values.dtype.is_temporal():
        return values.dt.epoch("s").alias(name)
    if values.dtype.is_float():
        bad = values.is_not_null() & (values.is_nan() | values.is_infinite() | (values != values.floor()))
        if bad.any():
            raise refuse(bad, "expected whole seconds (integer Unix time)")
        values = values.cast(pl.Int64)
    if not values.dtype.is_integer():
        raise refuse(values.is_not_null(), f"a {values.dtype} column; expected integer Unix seconds "
                                           "or ISO-8601 date-times")
    values = values.cast(pl.Int64)
    median = cast("float | None", values.median())  # of an Int64 column
    if median is not None and abs(median) > 1e11:  # after the year 5138 in seconds: milliseconds?
        log.warning("%s: column 'timestamp' values look like milliseconds (median %d is year %d in seconds); "
                    "xrec reads Unix seconds: divide by 1000", source, median,
                    1970 + int(median / 31_556_952))
    return values.alias(name)


def _parse_iso(text: pl.Series) -> pl.Series:
    """ISO-8601 strings (and whole-second integers written as text) as UTC datetimes; null where
    unreadable. Polars parses the common case; Python's ``fromisoformat`` the rest."""
    from datetime import datetime

    digits = text.str.contains(r"^-?\d+$").fill_null(False)
    try:
        fast = text.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")
    except Exception:  # polars could not infer one format for the column
        fast = pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us", "UTC"))
    seconds = (text.cast(pl.Int64, strict=False) * 1_000_000).cast(pl.Datetime("us", "UTC"))
    fast = pl.select(pl.when(digits).then(seconds).otherwise(fast)).to_series().alias(text.name)
    missing = fast.is_null() & text.is_not_null()
    if not missing.any():
        return fast

    def one(value: str) -> datetime | None:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    rows = missing.arg_true().to_list()
    slow = [one(text[r]) for r in rows]
    values = fast.to_list()
    for row, moment in zip(rows, slow):
        values[row] = moment
    return pl.Series(text.name, values, dtype=pl.Datetime("us", "UTC"))


def _aggregate(frame: pl.DataFrame, source: str, rule: str, report: InteractionReport,
               source_rows: pl.Series) -> pl.DataFrame:
    n_groups = frame.select(pl.struct("user_id", "item_id").n_unique()).item() if frame.height else 0
    report.duplicates = frame.height - n_groups
    if not report.duplicates:
        return frame
    if rule == "error":
        repeat = ~frame.select(pl.struct("user_id", "item_id").is_first_distinct()).to_series()
        row = first_row_where(frame, repeat)
        raise DataError(f"{source}: {locate(source, int(source_rows[row]))}: duplicate interaction "
                        f"(user {frame['user_id'][row]!r}, item {frame['item_id'][row]!r})")
    has_ts = "timestamp" in frame.columns
    ordered = frame.with_row_index("__row")
    if has_ts:
        ordered = ordered.sort(["timestamp", "__row"], nulls_last=False)
    aggs = {"sum": pl.col("weight").sum(), "max": pl.col("weight").max(), "last": pl.col("weight").last()}
    exprs = [aggs[rule]]
    if has_ts:
        exprs.append(pl.col("timestamp").max())
    exprs.append(pl.col("__row").min())
    out = ordered.group_by(["user_id", "item_id"]).agg(exprs).sort("__row").drop("__row")
    return out.select(frame.columns)


@dataclass
class Interactions:
    """Validated interactions with id maps and the user x item CSR matrix (float32 weights).

    Items are the catalogue's (in catalogue order), so matrix columns line up with item vectors.
    Users are those with at least one interaction, in first-seen order, unless given.
    """

    frame: pl.DataFrame
    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    report: InteractionReport

    @classmethod
    def build(cls, frame: pl.DataFrame, item_ids: Sequence | pl.Series | np.ndarray, *, source: str = "interactions",
              user_ids: Sequence | pl.Series | None = None, drop_unknown: bool = False,
              duplicates: str = "sum") -> Interactions:
        """Validate ``frame`` against the catalogue ``item_ids`` and build the matrix."""
        frame, report = validate_interactions(frame, source, item_ids=item_ids, user_ids=user_ids,
                                              drop_unknown=drop_unknown, duplicates=duplicates)
        items = IdMap(item_ids, "item_id")
        users = IdMap(user_ids if user_ids is not None else frame["user_id"].unique(maintain_order=True),
                      "user_id")
        rows = users.index(frame["user_id"])
        cols = items.index(frame["item_id"])
        weights = frame["weight"].to_numpy().astype(np.float32)
        matrix = sp.csr_matrix((weights, (rows, cols)), shape=(len(users), len(items)), dtype=np.float32)
        matrix.sort_indices()
        return cls(frame=frame, users=users, items=items, matrix=matrix, report=report)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.frame.columns and not self.frame["timestamp"].null_count()

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item (catalogue order)."""
        return np.diff(self.matrix.tocsc().indptr).astype(np.int64)

    def timestamp_matrix(self) -> sp.csr_matrix:
        """User x item CSR of timestamps (seconds), same sparsity as ``matrix``."""
        require_timestamps(self.frame, "interactions")
        rows = self.users.index(self.frame["user_id"])
        cols = self.items.index(self.frame["item_id"])
        ts = self.frame["timestamp"].cast(pl.Float64).to_numpy()
        out = sp.csr_matrix((ts, (rows, cols)), shape=self.matrix.shape, dtype=np.float64)
        out.sort_indices()
        return out


def require_timestamps(frame: pl.DataFrame, source: str) -> None:
    """Raise :class:`DataError` unless ``frame`` has a ``timestamp`` column without nulls."""
    if "timestamp" not in frame.columns:
        raise DataError(f"{source}: a temporal split needs a 'timestamp' column; found {frame.columns}")
    ts = frame["timestamp"]
    if ts.null_count() or (ts.dtype.is_float() and ts.is_nan().any()):
        row = first_row_where(frame, ts.is_null() | (ts.is_nan() if ts.dtype.is_float() else ts.is_null()))
        raise DataError(f"{source}: {locate(source, row)} (user {frame['user_id'][row]!r}): timestamp is missing; "
                        "a temporal split needs every timestamp")


def temporal_split(frame: pl.DataFrame, fraction: float = 0.2, *, source: str = "interactions",
                   min_test: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out the last ``fraction`` of each user's interactions by time: ``(train, test)``.

    Per user, rows are sorted by ``(timestamp, item_id)`` (file order does not matter); the last
    ``ceil(fraction * n)`` rows, at least ``min_test``, go to ``test``. A user with a single
    interaction keeps it in ``train`` only when ``min_test`` is 0.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"fraction={fraction}: must be in [0, 1)")
    require_timestamps(frame, source)
    ordered = frame.sort(["user_id", "timestamp", "item_id"]).with_columns(
        pl.int_range(pl.len()).over("user_id").alias("__pos"), pl.len().over("user_id").alias("__n"))
    n_test = (pl.col("__n").cast(pl.Float64) * fraction).ceil().cast(pl.Int64).clip(lower_bound=min_test)
    is_test = pl.col("__pos") >= pl.col("__n") - n_test
    train = ordered.filter(~is_test).drop("__pos", "__n")
    test = ordered.filter(is_test).drop("__pos", "__n")
    return train, test


def random_split(frame: pl.DataFrame, fraction: float = 0.2, *, seed: int = 0,
                 min_test: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Hold out a seeded random ``fraction`` of each user's interactions: ``(train, test)``.

    For data without timestamps. Per user, ``ceil(fraction * n)`` rows, at least ``min_test``, go
    to ``test`` (a user with a single interaction keeps it in ``train`` only when ``min_test`` is
    0). Rows are put in ``(user_id, item_id)`` order before the draw, so the split depends on the
    rows and ``seed`` only, not on the file's row order.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"fraction={fraction}: must be in [0, 1)")
    ordered = frame.sort(["user_id", "item_id"], maintain_order=True)
    draw = np.random.default_rng(seed).random(ordered.height)
    ordered = ordered.with_columns(pl.Series("__key", draw)).sort(["user_id", "__key"]).with_columns(
        pl.int_range(pl.len()).over("user_id").alias("__pos"), pl.len().over("user_id").alias("__n"))
    n_test = pl.min_horizontal((pl.col("__n").cast(pl.Float64) * fraction).ceil().cast(pl.Int64),
                               pl.col("__n") - 1).clip(lower_bound=min_test)
    is_test = pl.col("__pos") < n_test
    drop = ("__key", "__pos", "__n")
    return ordered.filter(~is_test).drop(drop), ordered.filter(is_test).drop(drop)
