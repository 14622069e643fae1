"""Your own data: an event table (a pandas frame or a CSV / TSV / Parquet file) -> `SessionLog`.

:func:`from_frame` maps your columns to the roles recgym needs (``user``, ``item`` and optionally
``time``, ``rating``, ``reward``, ``kind``, ``session``) and does what a source loader does:

* **ids**: raw user / item / session ids (numbers or strings) are encoded densely in sorted raw-id
  order; ``log.item_ids[i]``, ``log.user_ids[u]`` and ``log.session_ids[s]`` give the raw id back
  (as strings).
* **order**: events are ordered by ``time`` inside each session, ties (and tables without a
  ``time`` column) in file order (a stable sort); ``time`` may be numbers (seconds) or dates.
* **sessions**: without ``session`` every user is one session (one chronological sequence per
  user: the leave-one-out protocol); with it, each session id is one session.
* **rewards and kinds** (:mod:`recgym.data.rewards`): a ``reward`` column is used as is; else a
  ``rating`` column goes through ``reward_scheme`` (``"rating"``: < 3 -> 0, [3, 4) -> 0.5,
  >= 4 -> 1; kind purchase for rating >= 4); else a ``kind`` column gives click (0.2) / purchase
  (1.0) (values in ``purchase_values`` are purchases); else every event is a click (0.2).
  A ``kind`` column always sets the kinds.
* **duplicates**: rows equal in every mapped column. ``"warn"`` (default) keeps them and warns
  with the count and the first copy; ``"drop"`` keeps the first copy; ``"keep"`` keeps them
  silently; ``"error"`` raises. Warn is the default because recgym cannot tell a genuine repeat
  (an item viewed twice in the same second) from a copying accident (a file concatenated with
  itself): dropping would silently change real data, keeping silently can inflate metrics (a
  duplicated ML-100k lifts the Markov chain's test NDCG@10 from 0.090 to 0.617, because the test
  item's copy sits in the training history).
* **filters**: ``min_user`` / ``min_item`` events per user (session) / item, applied once in
  that order, or repeated until both hold with ``k_core=True``.

Bad input raises :class:`recgym.errors.BadInputError` naming the column and the row (the file
line for :func:`read_table`).
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from recgym.data.rewards import REWARD_SCHEMES, click_purchase, rating_rewards
from recgym.data.session_log import KIND_CLICK, SessionLog
from recgym.data.sources._common import build_log, check_duplicate_policy, handle_duplicates
from recgym.errors import BadInputError

ROLES = ("user", "item", "time", "rating", "reward", "kind", "session")
"""Column roles of :func:`from_frame` (``user`` and ``item`` are required)."""
PURCHASE_VALUES = ("purchase", "buy", "transaction", "cart", "addtocart", "add_to_cart", 1, True)
"""Values of a ``kind`` column that count as purchases by default (strings compared case-insensitively)."""


def from_frame(
    df: pd.DataFrame,
    *,
    user: str,
    item: str,
    time: str | None = None,
    rating: str | None = None,
    reward: str | None = None,
    kind: str | None = None,
    session: str | None = None,
    name: str | None = None,
    reward_scheme: str = "rating",
    purchase_values: Sequence[Any] = PURCHASE_VALUES,
    duplicates: str = "warn",
    min_user: int = 1,
    min_item: int = 1,
    k_core: bool = False,
) -> SessionLog:
    """A `SessionLog` from an event table (module docstring for ids, order, rewards, duplicates).

    Args:
        df: one row per event.
        user, item: column names of the user and item ids (any hashable values; required).
        time: column of event times: numbers (seconds) or dates/strings pandas can parse.
        rating: column of ratings in [0, 5] (mapped by ``reward_scheme``; kept in ``log.ratings``).
        reward: column of rewards (float; wins over ``rating`` for the rewards).
        kind: column of event types (``purchase_values`` -> purchase, anything else -> click).
        session: column of session ids (default: one session per user).
        name: the log's name (default: ``"frame"`` or the file name).
        reward_scheme: ``"rating"`` or ``"click-purchase"`` for a ``rating`` column.
        duplicates: ``"warn"``, ``"drop"``, ``"keep"`` or ``"error"`` for rows equal in every mapped column.
        min_user, min_item: minimum events per user (session) and per item.
        k_core: repeat the two filters until both hold.

    Returns:
        The log: ``item_ids`` [n_items], ``user_ids`` [n_users] and (with ``session``)
        ``session_ids`` [n_sessions] map dense ids back to raw ids;
        ``meta`` records the columns, the scheme and what duplicates / filters removed.
    """
    return _from_frame(df, "from_frame", None, user=user, item=item, time=time, rating=rating, reward=reward, kind=kind,
                       session=session, name=name, reward_scheme=reward_scheme, purchase_values=purchase_values,
                       duplicates=duplicates, min_user=min_user, min_item=min_item, k_core=k_core)


def _from_frame(
    df: pd.DataFrame, label: str, line_of_row: Callable[[int], int] | None, *, user: str, item: str, time: str | None = None,
    rating: str | None = None, reward: str | None = None, kind: str | None = None, session: str | None = None,
    name: str | None = None, reward_scheme: str = "rating", purchase_values: Sequence[Any] = PURCHASE_VALUES,
    duplicates: str = "warn", min_user: int = 1, min_item: int = 1, k_core: bool = False,
) -> SessionLog:
    """:func:`from_frame` with error messages naming ``label`` and ``line_of_row(row)`` (file lines)."""
    line = line_of_row or (lambda r: int(r))
    where = "line" if line_of_row is not None else "row"
    roles = {"user": user, "item": item, "time": time, "rating": rating, "reward": reward, "kind": kind, "session": session}
    roles = {r: c for r, c in roles.items() if c is not None}
    for role, col in roles.items():
        if col not in df.columns:
            raise BadInputError(f"{label}: column {col!r} ({role}=) is not in the table; its columns are {list(df.columns)}")
    if reward_scheme not in REWARD_SCHEMES:
        raise BadInputError(f"{label}: reward_scheme must be one of {list(REWARD_SCHEMES)}, got {reward_scheme!r}")
    check_duplicate_policy(duplicates)
    if min(min_user, min_item) < 1:
        raise BadInputError(f"{label}: min_user and min_item must be >= 1, got {min_user}, {min_item}")
    t = df[list(dict.fromkeys(roles.values()))].reset_index(drop=True)
    for role, col in roles.items():
        missing = t[col].isna().to_numpy()
        if missing.any():
            r = int(np.flatnonzero(missing)[0])
            raise BadInputError(f"{label}, {where} {line(r)}: missing value in column {col!r} ({role}=)")
    n_in = len(t)
    if n_in == 0:
        raise BadInputError(f"{label}: the table has no rows")

    # parse every column once, vectorised; rows are the table's rows (error messages, file order)
    rows = np.arange(n_in, dtype=np.int64)
    ts = _times(t[time], label, line, where, rows) if time else rows.astype(np.float64)
    ratings = _numbers(t[rating], rating, label, line, where, rows) if rating else None
    if ratings is not None:
        bad = (ratings < 0) | (ratings > 5)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise BadInputError(
                f"{label}, {where} {line(r)}: rating {ratings[r]:g} in column {rating!r} is outside [0, 5] "
                "(the rating scheme is for 0.5-5 stars: rescale the column or map it to reward=)"
            )
    rewards = _numbers(t[reward], reward, label, line, where, rows) if reward else None
    parsed = {"user": _ids(t[user]), "item": _ids(t[item]), "time": ts, "rating": ratings, "reward": rewards,
              "kind": t[kind].to_numpy() if kind else None, "session": _ids(t[session]) if session else None}
    parsed = {r: v for r, v in parsed.items() if v is not None and (r != "time" or time)}

    # duplicates: rows equal in every mapped column (compared as parsed: "4" and "4.0" are one rating)
    kept = handle_duplicates(pd.DataFrame({**parsed, "__row__": rows}), duplicates, label, columns=list(parsed),
                             line_of_row=line, where=where)["__row__"].to_numpy()
    n_dup = n_in - len(kept)
    rows, ts = rows[kept], ts[kept]
    ratings = None if ratings is None else ratings[kept]
    rewards = None if rewards is None else rewards[kept]
    u_raw = parsed["user"][kept]
    i_raw = parsed["item"][kept]
    s_raw = parsed["session"][kept] if session else u_raw
    kind_raw = parsed["kind"][kept] if kind else None

    # filters, vectorised: bincounts per pass, a k-core repeats until nothing changes
    keep = np.ones(len(rows), dtype=bool)
    while True:
        before = int(keep.sum())
        for key, lo in ((s_raw, min_user), (i_raw, min_item)):
            if lo > 1:
                codes = np.unique(key[keep], return_inverse=True)[1].reshape(-1)
                keep[np.flatnonzero(keep)[np.bincount(codes)[codes] < lo]] = False
        if not k_core or int(keep.sum()) == before:
            break
    if not keep.any():
        raise BadInputError(f"{label}: no event is left after min_user={min_user}, min_item={min_item} filtering")
    n_filtered = int((~keep).sum())

    u_uniq, u_codes = np.unique(u_raw[keep], return_inverse=True)
    s_uniq, s_codes = np.unique(s_raw[keep], return_inverse=True)
    s_codes = s_codes.reshape(-1)
    i_uniq, i_codes = np.unique(i_raw[keep], return_inverse=True)
    u_codes, i_codes = u_codes.reshape(-1), i_codes.reshape(-1)
    n = int(keep.sum())
    if kind:
        kinds, kp_rewards = click_purchase(_is_purchase(kind_raw[keep], purchase_values))
    if reward:
        rew = rewards[keep].astype(np.float32)
        knd = kinds if kind else (rating_rewards(ratings[keep])[0] if rating else np.full(n, KIND_CLICK, np.int8))
    elif rating:
        knd, rew = rating_rewards(ratings[keep], reward_scheme)
        if kind:
            knd = kinds
    elif kind:
        knd, rew = kinds, kp_rewards
    else:
        knd, rew = click_purchase(np.zeros(n, dtype=bool))
    if session:
        _check_one_user_per_session(s_codes, u_codes, rows[keep], label, line, where, user, session)
    meta = {
        "source": "frame",
        "columns": roles,
        "reward_scheme": reward_scheme if rating and not reward else ("column" if reward else "click-purchase"),
        "duplicates": {"policy": duplicates, "n_dropped": n_dup},
        "n_rows": n_in,
        "n_filtered": n_filtered,
        "filters": {"min_user": min_user, "min_item": min_item, "k_core": k_core},
    }
    # sort by (session, time, file order): build_log's stable lexsort, on file order already
    log = build_log(
        s_codes, i_codes, ts[keep], knd, rew, len(i_uniq), users=u_codes,
        ratings=None if ratings is None else ratings[keep].astype(np.float32),
        item_ids=i_uniq.astype(str), name=name or "frame", meta=meta,
    )  # fmt: skip
    return dataclasses.replace(log, user_ids=u_uniq.astype(str), session_ids=s_uniq.astype(str) if session else None)


def read_table(
    path: str | os.PathLike,
    *,
    columns: Mapping[str, str] | str,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    **options: Any,
) -> SessionLog:
    """Read a CSV / TSV / Parquet event file and build its log with :func:`from_frame`.

    Args:
        path: the file (``.parquet`` / ``.pq`` is read as Parquet, anything else as delimited text).
        columns: role -> column name, e.g. ``{"user": "userId", "item": "movieId", "time":
            "timestamp", "rating": "rating"}`` or the same as ``"user=userId,item=movieId,..."``.
        sep: the delimiter (``","``, ``";"``, ``"\\t"``, ``"|"``, ``"::"``); default: guessed from
            the first line among those.
        names: column names of a file without a header line (e.g. ML-100k's ``u.data``).
        encoding: text encoding.
        **options: the other arguments of :func:`from_frame` (``duplicates``, ``min_user``, ...).

    Errors name the file and its line (1-based, as an editor shows it).
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    roles = parse_columns(columns) if isinstance(columns, str) else dict(columns)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise BadInputError(f"{path}: unknown column role(s) {unknown}; roles are {list(ROLES)}")
    for need in ("user", "item"):
        if need not in roles:
            raise BadInputError(f"{path}: columns must name the {need!r} column (e.g. {need}=<column name>)")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise BadInputError(f"{path}: not a readable Parquet file ({e})") from None
        line = None  # messages give the 0-based row
        where_label = str(path)
    else:
        raw = path.read_bytes()
        if not raw.strip():
            raise BadInputError(f"{path}: file is empty")
        text = raw.decode(encoding, errors="replace")
        sep = sep or _guess_sep(text.split("\n", 1)[0], path)
        if sep == "::":
            text, sep = text.replace("::", "\t"), "\t"
        header = names is None
        ids = {roles[r]: str for r in ("user", "item", "session", "kind") if r in roles}  # raw ids exactly as written
        try:
            df = pd.read_csv(io.StringIO(text), sep=sep, header=0 if header else None, names=None if header else list(names),
                             skip_blank_lines=False, keep_default_na=False,
                             na_values=[""], dtype=ids, engine="c")
        except pd.errors.ParserError as e:
            raise BadInputError(f"{path}: malformed line ({str(e).strip().splitlines()[-1]})") from None
        offset = 2 if header else 1
        line = lambda r: int(r) + offset  # noqa: E731
        where_label = str(path)
    options.setdefault("name", path.stem)
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise BadInputError(f"{path}: unknown option(s) {unknown}; read_table accepts {sorted(_OPTIONS)}")
    return _from_frame(df, where_label, line, **roles, **options)


_OPTIONS = {"name", "reward_scheme", "purchase_values", "duplicates", "min_user", "min_item", "k_core"}


def parse_columns(spec: str) -> dict[str, str]:
    """``"user=userId,item=movieId,time=timestamp"`` -> ``{"user": "userId", ...}`` (the CLI's form)."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        role, eq, col = part.partition("=")
        if not eq or not role.strip() or not col.strip():
            raise BadInputError(f"columns: expected role=column, got {part!r} (roles: {', '.join(ROLES)})")
        if role.strip() not in ROLES:
            raise BadInputError(f"columns: unknown role {role.strip()!r} (roles: {', '.join(ROLES)})")
        out[role.strip()] = col.strip()
    return out


# ---------------------------------------------------------------------- helpers
def _guess_sep(first: str, path: Path) -> str:
    if path.suffix.lower() == ".tsv" or "\t" in first:
        return "\t"
    if "::" in first:
        return "::"
    counts = {s: first.count(s) for s in (",", ";", "|")}
    best = max(counts, key=counts.get)
    if counts[best] == 0:
        raise BadInputError(f"{path}, line 1: cannot guess the delimiter of {first[:80]!r}; pass sep=")
    return best


def _ids(col: pd.Series) -> np.ndarray:
    """Raw ids as a sortable array: integers (and strings that print as those integers, so the raw
    id round-trips) sort as numbers; anything else as strings."""
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(col.dtype):
        v = col.to_numpy(dtype=np.float64)
        return v.astype(np.int64) if np.all(v == np.round(v)) else v
    s = col.astype(str)
    if s.str.fullmatch(r"-?(?:0|[1-9][0-9]{0,17})").all():
        return s.to_numpy().astype(np.int64)
    return s.to_numpy()


def _numbers(col: pd.Series, name: str, label: str, line, where: str, rows: np.ndarray) -> np.ndarray:
    v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(v)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{label}, {where} {line(rows[r])}: column {name!r} must be a number, got {col.iloc[r]!r}")
    return v


def _times(col: pd.Series, label: str, line, where: str, rows: np.ndarray) -> np.ndarray:
    """Seconds (float64) from numbers, datetimes or date strings."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return _numbers(col, col.name, label, line, where, rows)
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        dt = col
    else:
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            return _numbers(num, col.name, label, line, where, rows)
        dt = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
    if getattr(dt.dt, "tz", None) is None:
        dt = dt.dt.tz_localize("UTC")
    bad = dt.isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{label}, {where} {line(rows[r])}: column {col.name!r} is not a number or a date: {col.iloc[r]!r}")
    return (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)


def _is_purchase(values: np.ndarray, purchase_values: Sequence[Any]) -> np.ndarray:
    strs = {str(v).lower() for v in purchase_values}
    return np.isin(pd.Series(values).astype(str).str.lower().to_numpy(), list(strs))


def _check_one_user_per_session(s_codes, u_codes, rows, label, line, where, user: str, session: str) -> None:
    first = np.full(s_codes.max() + 1, -1, dtype=np.int64)
    first[s_codes[::-1]] = u_codes[::-1]  # the user of each session's first row
    bad = first[s_codes] != u_codes
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise BadInputError(f"{label}, {where} {line(rows[r])}: this session has another {user!r} than its first row; "
                            f"column {session!r} must identify sessions of one user")


__all__ = ["PURCHASE_VALUES", "ROLES", "from_frame", "parse_columns", "read_table"]
