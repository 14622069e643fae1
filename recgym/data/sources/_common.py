"""Helpers shared by the source loaders: checked CSV reading, id encoding, CSR building, rewards.

Every reader here turns a malformed raw file into a ``ValueError`` that names the file and,
where one exists, the line (1-based, as an editor shows it) and the column.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from recgym.data.rewards import rating_rewards
from recgym.data.session_log import SessionLog
from recgym.errors import BadInputError

_INT_KINDS = {"int", "float"}
_DTYPES = {"int": "int64", "float": "float64", "category": "category"}


class RawFileError(BadInputError):
    """A raw file is malformed; the message names the file (and line / column when known)."""


# ---------------------------------------------------------------------- duplicate rows
DUPLICATE_POLICIES = ("warn", "drop", "keep", "error")
"""What to do with exact duplicate rows (module docstring of :mod:`recgym.data.frame`)."""


class DuplicateRowsWarning(UserWarning):
    """A table has exact duplicate rows and they were kept (``duplicates="warn"``)."""


_POLICY: contextvars.ContextVar[str] = contextvars.ContextVar("recgym_duplicates", default="warn")
_FOUND: contextvars.ContextVar[list | None] = contextvars.ContextVar("recgym_duplicates_found", default=None)


@contextlib.contextmanager
def duplicate_policy(policy: str) -> Iterator[list[dict[str, Any]]]:
    """Apply ``policy`` to every raw table read inside the block; yields the list of findings
    (``{"file", "n", "policy"}`` per table with duplicates) so the caller can record them."""
    check_duplicate_policy(policy)
    found: list[dict[str, Any]] = []
    t1, t2 = _POLICY.set(policy), _FOUND.set(found)
    try:
        yield found
    finally:
        _POLICY.reset(t1)
        _FOUND.reset(t2)


def check_duplicate_policy(policy: str) -> str:
    if policy not in DUPLICATE_POLICIES:
        raise BadInputError(f"duplicates must be one of {list(DUPLICATE_POLICIES)}, got {policy!r}")
    return policy


def handle_duplicates(
    df: pd.DataFrame,
    policy: str | None,
    label: str,
    *,
    columns: Sequence[str] | None = None,
    line_of_row: Callable[[int], int] = lambda r: r + 1,
    where: str = "line",
) -> pd.DataFrame:
    """Apply the duplicate-row policy to ``df`` (rows equal in every column of ``columns``, default all).

    ``"warn"``: keep them, warn (:class:`DuplicateRowsWarning`) with the count and the first copy;
    ``"drop"``: keep the first of each group of copies; ``"keep"``: keep them silently;
    ``"error"``: raise :class:`RawFileError` naming the first copy and its original.
    ``policy=None`` uses the one set by :func:`duplicate_policy` (default ``"warn"``). After a drop
    the rows are renumbered, so a later error of the caller names a position in the kept rows.
    """
    policy = check_duplicate_policy(_POLICY.get() if policy is None else policy)
    if len(df) < 2:
        return df
    sub = df if columns is None else df[list(columns)]
    dup = sub.duplicated(keep="first").to_numpy()
    n = int(dup.sum())
    if n == 0:
        return df
    r = int(np.flatnonzero(dup)[0])
    h = pd.util.hash_pandas_object(sub, index=False).to_numpy()
    r0 = int(np.flatnonzero(h == h[r])[0])
    first = f"{where} {line_of_row(r)} repeats {where} {line_of_row(r0)}"
    found = _FOUND.get()
    if found is not None:
        found.append({"file": label, "n": n, "policy": policy})
    if policy == "keep":
        return df
    if policy == "error":
        raise RawFileError(f"{label}, {where} {line_of_row(r)}: exact duplicate of {where} {line_of_row(r0)} "
                           f"({n} duplicate rows in all; duplicates='error')")
    if policy == "drop":
        return df.loc[~dup].reset_index(drop=True)
    warnings.warn(f"{label}: {n} exact duplicate rows kept (first: {first}); pass duplicates='drop' to drop "
                  "them, 'keep' to keep them silently", DuplicateRowsWarning, stacklevel=3)
    return df


def require_file(path: Path, source: str, how: str) -> Path:
    """Return ``path`` or raise ``FileNotFoundError`` saying which file, which folder and how to get it."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{source}: raw file {path.name!r} not found in {path.parent}/ . {how}"
        )
    return path


def check_header(path: Path, expected: Sequence[str], sep: str, encoding: str = "utf-8") -> None:
    """Raise ``RawFileError`` unless line 1 of ``path`` is exactly ``expected`` joined by ``sep``."""
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        first = fh.readline().rstrip("\r\n")
    if not first:
        raise RawFileError(f"{path}: file is empty (expected a header line {sep.join(expected)!r})")
    got = first.split(sep)
    if got != list(expected):
        hint = ""
        if len(got) == 1 and len(expected) > 1:
            hint = f" (wrong delimiter? expected {sep!r})"
        raise RawFileError(f"{path}, line 1: expected header {list(expected)} separated by {sep!r}, got {first!r}{hint}")


def read_table(
    path: Path | io.BytesIO,
    *,
    names: Sequence[str],
    kinds: dict[str, str],
    sep: str = ",",
    skip_header: bool = False,
    encoding: str = "utf-8",
    label: str | None = None,
    line_of_row: Any = None,
    only_kinds: bool = False,
    duplicates: str | None = None,
    check_duplicates: bool = True,
) -> pd.DataFrame:
    """Read a delimited file without header handling magic; validate every required field.

    ``kinds`` maps column name -> ``"int"`` (int64), ``"float"`` (float64), ``"str"`` or
    ``"category"``; columns
    not in ``kinds`` are read as strings and may be empty. The fast path reads typed columns
    with pandas' C parser; on any failure a slower diagnostic pass (strings) finds the first bad
    line and raises ``RawFileError`` naming ``label`` (default: the path), the line and column.
    ``line_of_row`` maps 0-based data rows to file lines (default: row + 1 + skip_header).
    ``only_kinds``: read only the columns in ``kinds`` (the others are still counted per line).
    ``duplicates``: policy for exact duplicate lines (:func:`handle_duplicates`; default: the one
    set by :func:`duplicate_policy`, else ``"warn"``); ``check_duplicates=False`` for tables whose
    rows are not events on their own (the caller applies the policy once the rows are complete).
    """
    label = str(label if label is not None else path)
    if line_of_row is None:
        line_of_row = lambda r: int(r) + 1 + int(skip_header)  # noqa: E731
    if isinstance(path, Path) and path.stat().st_size == 0:
        raise RawFileError(f"{label}: file is empty")
    dtype = {c: _DTYPES.get(k, str) for c, k in kinds.items()}
    kw = dict(
        sep=sep,
        header=None,
        names=list(names),
        skiprows=1 if skip_header else 0,
        encoding=encoding,
        skip_blank_lines=False,
        engine="c",
        na_filter=True,
        keep_default_na=False,
        na_values=[""],
        usecols=list(kinds) if only_kinds else None,
    )
    _rewind(path)
    try:
        df = pd.read_csv(path, dtype=dtype, **kw)
    except pd.errors.EmptyDataError:
        raise RawFileError(f"{label}: file has no data rows") from None
    except pd.errors.ParserError as e:
        raise RawFileError(f"{label}: malformed line ({_short(e)})") from None
    except (ValueError, TypeError, OverflowError):
        _rewind(path)
        _diagnose(path, kw, kinds, label, line_of_row)
        raise  # _diagnose always raises; keep the type checker happy
    for col in kinds:
        bad = df[col].isna().to_numpy()
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise RawFileError(
                f"{label}, line {line_of_row(r)}: missing value in column {col!r} "
                f"(truncated line or wrong delimiter? expected {sep!r})"
            )
    return handle_duplicates(df, duplicates, label, line_of_row=line_of_row) if check_duplicates else df


def _diagnose(path, kw, kinds, label, line_of_row) -> None:
    try:
        df = pd.read_csv(path, dtype=str, **kw)
    except pd.errors.ParserError as e:
        raise RawFileError(f"{label}: malformed line ({_short(e)})") from None
    # report the first bad line; on that line a missing field (truncation, wrong delimiter) wins
    missing = {c: df[c].isna().to_numpy() for c in kinds}
    invalid = {}
    for col, kind in kinds.items():
        if kind in _INT_KINDS:
            vals = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(vals)
            if kind == "int":
                bad = bad | (np.nan_to_num(vals) % 1 != 0)
            invalid[col] = bad & ~missing[col]
    firsts = [(int(np.argmax(m)), 0, c) for c, m in missing.items() if m.any()]
    firsts += [(int(np.argmax(m)), 1, c) for c, m in invalid.items() if m.any()]
    if firsts:
        r, why, col = min(firsts)
        if why == 0:
            raise RawFileError(
                f"{label}, line {line_of_row(r)}: missing value in column {col!r} "
                f"(truncated line or wrong delimiter? expected {kw['sep']!r})"
            )
        kind = kinds[col]
        raise RawFileError(
            f"{label}, line {line_of_row(r)}: column {col!r} must be "
            f"{'an integer' if kind == 'int' else 'a number'}, got {df[col].iloc[r]!r}"
        )
    raise RawFileError(f"{label}: could not be parsed")


def _rewind(path) -> None:
    if hasattr(path, "seek"):
        path.seek(0)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__


def read_double_colon(path: Path, names: Sequence[str], kinds: dict[str, str], encoding: str) -> pd.DataFrame:
    """Read a MovieLens ``::``-separated file fast: swap ``::`` for TAB, then the C parser."""
    raw = path.read_bytes()
    if not raw.strip():
        raise RawFileError(f"{path}: file is empty")
    if b"\t" in raw:
        line = raw[: raw.index(b"\t")].count(b"\n") + 1
        raise RawFileError(f"{path}, line {line}: unexpected TAB in a '::'-separated file")
    first = raw.split(b"\n", 1)[0]
    if b"::" not in first:
        raise RawFileError(f"{path}, line 1: expected '::'-separated fields, got {first[:80]!r} (wrong delimiter?)")
    return read_table(
        io.BytesIO(raw.replace(b"::", b"\t")), names=names, kinds=kinds, sep="\t", encoding=encoding, label=str(path)
    )


# ---------------------------------------------------------------------- encoding / CSR
def encode(values: np.ndarray, catalogue: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Label-encode ``values`` against the sorted unique ``catalogue`` (default: the values).

    Returns ``(codes int64, sorted_uniques)``; values missing from a given catalogue raise.
    """
    uniq = np.unique(values) if catalogue is None else np.unique(catalogue)
    codes = np.searchsorted(uniq, values)
    if catalogue is not None and len(values):
        ok = (codes < len(uniq)) & (uniq[np.minimum(codes, len(uniq) - 1)] == values)
        if not ok.all():
            raise ValueError(f"item {values[~ok][0]!r} is not in the catalogue")
    return codes.astype(np.int64), uniq


def offsets_from_sorted(session_codes: np.ndarray) -> np.ndarray:
    """CSR offsets of a session-code column where every session's events are contiguous."""
    n = len(session_codes)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, session_codes[1:] != session_codes[:-1]])
    return np.r_[starts, n].astype(np.int64)


def build_log(
    sessions: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    kinds: np.ndarray,
    rewards: np.ndarray,
    n_items: int,
    *,
    users: np.ndarray | None = None,
    **fields: Any,
) -> SessionLog:
    """Sort events by ``(session, time, file order)`` (stable) and build a `SessionLog`.

    ``sessions`` are integer keys (sessions come out in increasing key order); ``users`` is a
    per-event column whose value at a session's first event becomes that session's user.
    Per-event optional columns (``ratings``, ``propensities``) go in ``fields`` and are sorted too.
    """
    perm = np.lexsort((np.arange(len(sessions)), timestamps, sessions))
    s = sessions[perm]
    offsets = offsets_from_sorted(s)
    for key in ("ratings", "propensities"):
        if fields.get(key) is not None:
            fields[key] = np.asarray(fields[key])[perm]
    return SessionLog(
        offsets=offsets,
        items=items[perm],
        rewards=rewards[perm],
        kinds=kinds[perm],
        timestamps=timestamps[perm],
        n_items=n_items,
        users=None if users is None else np.asarray(users)[perm][offsets[:-1]],
        **fields,
    )


def check_ratings(ratings: np.ndarray, label: str, line_of_row=lambda r: r + 1, lo: float = 0.5, hi: float = 5.0) -> None:
    """Raise ``RawFileError`` on the first rating outside ``[lo, hi]``."""
    bad = (ratings < lo) | (ratings > hi)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise RawFileError(f"{label}, line {line_of_row(r)}: rating {ratings[r]} outside [{lo}, {hi}]")


def check_timestamps(ts: np.ndarray, label: str, line_of_row=lambda r: r + 1, column: str = "timestamp") -> None:
    """Raise ``RawFileError`` on the first negative or non-finite timestamp (a sign or unit error
    upstream; time order would silently put those events first)."""
    bad = ~(np.asarray(ts, dtype=np.float64) >= 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise RawFileError(f"{label}, line {line_of_row(r)}: {column} {ts[r]} is negative or not finite")


def multi_hot(lists: Sequence[Sequence[str]], names: Sequence[str] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Multi-hot float32 ``[len(lists), n_names]`` of string lists (names sorted when not given)."""
    if names is None:
        names = sorted({g for gs in lists for g in gs})
    col = {g: j for j, g in enumerate(names)}
    rows = np.repeat(np.arange(len(lists)), [len(gs) for gs in lists])
    cols = np.fromiter((col[g] for gs in lists for g in gs), dtype=np.int64, count=len(rows))
    out = np.zeros((len(lists), len(names)), dtype=np.float32)
    out[rows, cols] = 1.0
    return out, tuple(names)


def sequences_by_user(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    scheme: str,
    *,
    catalogue: np.ndarray | None = None,
    max_len: int | None = None,
    min_len: int = 1,
    **metadata: Any,
) -> SessionLog:
    """One chronological session per user, ordered by ``(timestamp, file order)``.

    Users with fewer than ``min_len`` ratings are dropped first; then only the last ``max_len``
    ratings of each user are kept. Items are label-encoded (sorted raw ids, or ``catalogue``);
    ``users`` holds dense user ids in sorted raw-id order.
    """
    ucode, uniq_users = encode(users)
    counts = np.bincount(ucode, minlength=len(uniq_users))
    keep = counts[ucode] >= min_len
    if not keep.any():
        raise ValueError(f"no user has >= {min_len} ratings")
    users, items, ratings, timestamps = users[keep], items[keep], ratings[keep], timestamps[keep]
    ucode, uniq_users = encode(users)
    icode, uniq_items = encode(items, catalogue)
    kinds, rewards = rating_rewards(ratings, scheme)
    metadata.setdefault("item_ids", uniq_items.astype(str))
    log = build_log(
        ucode, icode, timestamps.astype(np.float64), kinds, rewards, len(uniq_items), users=ucode,
        ratings=ratings.astype(np.float32), **metadata,
    )
    if max_len is not None:
        log = log.last_window(max_len)
    return log
