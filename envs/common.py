"""Shared pieces of the recgym environments: data loading (cached), observation spaces, contexts."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from recgym.data import Split, split_by_session, split_leave_one_out
from recgym.data.registry import load_split, resolve_data_dir
from recgym.data.session_log import SessionLog
from recgym.data.windows import last_items
from recgym.errors import BadInputError

_CACHE: dict[tuple, Split] = {}
_CACHE_MAX = 8

HOW_TO_GET_DATA = (
    "Put the raw files of source {name!r} in {path} (see recgym/data/sources and the README), set "
    "RECGYM_DATA_DIR to the folder that holds {name}/, or pass download=True to fetch them from "
    "the owner's official address (when the licence allows it)."
)


def job_split_kwargs(*, dataset: str, seed: int, data_params: dict[str, Any], data_dir: str | None,
                     download: bool, cache_dir: Path | None = None,
                     data_file: dict[str, Any] | None = None) -> dict[str, Any]:
    """How an env that replays a job's own split is built on a harness job's data
    (``recgym.experiments``): every loader parameter, ``data_dir`` / ``download`` and the job's split
    seed, so the env's test part is the job's test part. ``data_file``: the job's own file as
    :func:`load_env_split` takes it (``{"data": path, "columns": {...}, "sep": ..., "protocol": ...}``).
    ``cache_dir`` is not used. Also the harness's default for envs without ``job_kwargs``."""
    if data_file is not None:
        return {**data_file, **data_params, "seed": seed}
    kw: dict[str, Any] = dict(data_params)
    if data_dir is not None:
        kw["data_dir"] = data_dir
    kw.update(download=download, seed=seed)
    return kw


def load_env_split(
    source: str | None,
    data: Split | SessionLog | str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    protocol: str | None = None,
    seed: int = 0,
    **params: Any,
) -> Split:
    """The split an env is built on.

    ``data`` bypasses the loaders; it is how tests and users plug in their own logs: a ``Split``; a
    ``SessionLog``, split here (leave-one-out when it has one session per user, else 80/10/10 by
    session with ``seed``; ``protocol`` forces one); or the path of an event file, read with
    :func:`recgym.data.read_table` and ``**params`` (``columns=`` required; ``sep``, ``duplicates``,
    ...), then split like a log. Otherwise ``recgym.data.load_split(source, ...)`` is called once per
    process and cached (envs built by ``make_vec`` share the arrays). ``source=None`` (the generic
    ids ``recgym/Replay-v0`` & co.) needs ``data``.
    """
    if isinstance(data, (str, os.PathLike)):
        from recgym.data import read_table

        if "columns" not in params:
            raise BadInputError(f"data={str(data)!r}: a file needs columns= (e.g. {{'user': 'userId', 'item': 'movieId', "
                                "'time': 'timestamp'}})")
        data = read_table(data, **params)
        params = {}
    if params and data is not None:
        raise BadInputError(f"unknown env argument(s) {sorted(params)} with data= (they go to the source loader)")
    if isinstance(data, Split):
        return data
    if isinstance(data, SessionLog):
        from recgym.data.registry import infer_protocol

        loo = (protocol or infer_protocol(data)) == "loo"
        return split_leave_one_out(data) if loo else split_by_session(data, seed=seed)
    if data is not None:
        raise BadInputError(f"data must be a recgym Split, SessionLog or a file path, got {type(data).__name__}")
    if source is None:
        raise BadInputError("this env id has no dataset of its own: pass data= (a Split, a SessionLog or a file path "
                            "with columns=)")
    root = resolve_data_dir(data_dir)
    key = (source, str(root), seed, tuple(sorted((k, repr(v)) for k, v in params.items())))
    if key in _CACHE:
        return _CACHE[key]
    split = _load(source, root, download, seed, params)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = split
    return split


def _load(source: str, root: Path, download: bool, seed: int, params: dict[str, Any]) -> Split:
    try:
        return load_split(source, root, download=download, seed=seed, **params)
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"recgym: data for source {source!r} not found ({e}). "
            + HOW_TO_GET_DATA.format(name=source, path=root / source)
        ) from e


# ---------------------------------------------------------------------------------------------
# observation pieces
# ---------------------------------------------------------------------------------------------
def id_box(n_items: int, shape: tuple[int, ...]) -> spaces.Box:
    """Item ids as an integer Box ``[0, n_items]`` (``n_items`` = padding); never MultiDiscrete,
    which SB3 would one-hot into ``shape × n_items`` inputs."""
    return spaces.Box(0, n_items, shape=shape, dtype=np.int64)


def count_box(high: int) -> spaces.Box:
    """A count ``[0, high]`` as a ``(1,)`` integer Box (SB3's flatten extractor needs a dim)."""
    return spaces.Box(0, high, shape=(1,), dtype=np.int64)


def contexts_of(log: SessionLog, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out contexts of every non-empty session: the session without its last event.

    Returns ``(histories int64 [S, L], lengths int64 [S], targets int64 [S], session index [S])``.
    """
    keep = np.flatnonzero(log.lengths >= 1)
    starts, ends = log.offsets[keep], log.offsets[keep + 1]
    hist, lengths = last_items(log.items, starts, ends - 1, L, log.n_items)
    return hist, lengths, log.items[ends - 1].astype(np.int64), keep


def logged_contexts(log: SessionLog, L: int, protocol: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The decision points the logged metrics score (:mod:`recgym.evaluate`): every event of every
    session under the ``"session"`` protocol, the last event of each session under ``"loo"``. An
    event's history is its session's items before it (the last ``L``; empty for a first event).

    Returns ``(histories int64 [N, L] right-padded with n_items, lengths int64 [N], targets int64 [N],
    event index [N])``.
    """
    if protocol not in ("session", "loo"):
        raise ValueError(f"protocol must be 'session' or 'loo', got {protocol!r}")
    if protocol == "loo":
        events = log.offsets[1:][log.lengths >= 1] - 1
    else:
        events = np.arange(log.n_events, dtype=np.int64)
    starts = log.offsets[:-1][log.session_of_event[events]]
    hist, lengths = last_items(log.items, starts, events, L, log.n_items)
    return hist, lengths, log.items[events].astype(np.int64), events


def check_action(action: Any, n: int, name: str) -> int:
    """An item id in ``[0, n)`` (numpy scalars / 0-d / 1-element arrays accepted) or ``ValueError``."""
    a = np.asarray(action)
    if a.size != 1 or not np.issubdtype(a.dtype, np.integer):
        raise BadInputError(f"{name}: action must be one integer item id in [0, {n}), got {action!r}")
    a = int(a.reshape(()))
    if not 0 <= a < n:
        raise BadInputError(f"{name}: action {a} is outside the action space Discrete({n})")
    return a


def check_actions(actions: Any, shape: tuple[int, ...], n: int, name: str) -> np.ndarray:
    """A batch of item ids of ``shape``, each in ``[0, n)``, as int64, or ``BadInputError``.
    Float actions are refused, as the single envs do, never truncated."""
    a = np.asarray(actions)
    if a.size != math.prod(shape) or not np.issubdtype(a.dtype, np.integer):
        raise BadInputError(f"{name}: actions must be {math.prod(shape)} integer item ids in [0, {n}), got {actions!r}")
    a = a.reshape(shape).astype(np.int64)
    if a.min() < 0 or a.max() >= n:
        raise BadInputError(f"{name}: actions must lie in [0, {n}), got [{a.min()}, {a.max()}]")
    return a


def check_num_envs(num_envs: Any, name: str) -> int:
    """``num_envs`` as a positive int, or ``BadInputError`` naming it."""
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, numbers.Integral) or num_envs < 1:
        raise BadInputError(f"{name}: num_envs must be a positive integer, got {num_envs!r}")
    return int(num_envs)


def check_weight(value: Any, arg: str, name: str) -> float:
    """A reward weight as a finite float, or ``BadInputError`` naming the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise BadInputError(f"{name}: {arg} must be a finite number, got {value!r}")
    return float(value)


def episode_over(name: str) -> ResetNeeded:
    """The error of a ``step`` after the episode ended (Gymnasium's ``ResetNeeded``)."""
    return ResetNeeded(f"{name}: the episode has ended; call reset() before step()")
