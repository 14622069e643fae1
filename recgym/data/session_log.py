"""`SessionLog`: the one offline-dataset container every agent, evaluator and env reads.

Columnar, numpy, CSR-style: session ``s`` owns the events ``offsets[s]:offsets[s+1]`` of the
flat event arrays. Item ids are dense ``0..n_items-1``; the padding id is ``n_items``.
Immutable by convention (arrays are made read-only); every operation returns a new log.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KIND_CLICK = 0
"""Event kind of a click / view (reward 0.2 in the click-purchase scheme)."""
KIND_PURCHASE = 1
"""Event kind of a purchase / add-to-cart (reward 1.0 in the click-purchase scheme)."""

_EVENT_COLUMNS = ("items", "rewards", "kinds", "timestamps")
_OPTIONAL_EVENT_COLUMNS = ("ratings", "propensities")


def _readonly(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    if a.flags.writeable and a.base is None:
        a.setflags(write=False)
    elif a.flags.writeable:
        a = a.copy()
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class SessionLog:
    """Logged sessions over a fixed catalogue.

    Event arrays (length ``n_events``): ``items`` int32, ``rewards`` float32, ``kinds`` int8
    (``KIND_CLICK`` / ``KIND_PURCHASE``), ``timestamps`` float64 (seconds), optional ``ratings``
    float32 (rating sources keep the raw rating here; ``kinds`` is then purchase for rating >= 4),
    optional ``propensities`` float32 (logging probability of the event, bandit logs such as OBD).

    Session arrays (length ``n_sessions``): ``offsets`` int64 ``[n_sessions + 1]``, optional
    ``users`` int64 (dense user id of each session).

    Item metadata (length ``n_items``): optional ``genres`` float32 multi-hot
    ``[n_items, n_genres]`` with ``genre_names``, ``item_ids`` (raw ids as strings), ``titles``.
    Optional ``user_ids``: raw user ids as strings, indexed by the dense ``users``; optional
    ``session_ids``: the raw id of every session as a string (``[n_sessions]``, logs with session ids).
    """

    offsets: np.ndarray
    items: np.ndarray
    rewards: np.ndarray
    kinds: np.ndarray
    timestamps: np.ndarray
    n_items: int
    users: np.ndarray | None = None
    ratings: np.ndarray | None = None
    propensities: np.ndarray | None = None
    genres: np.ndarray | None = None
    genre_names: tuple[str, ...] = ()
    item_ids: np.ndarray | None = None
    titles: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    session_ids: np.ndarray | None = None
    name: str = "log"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cast = {
            "offsets": np.int64,
            "items": np.int32,
            "rewards": np.float32,
            "kinds": np.int8,
            "timestamps": np.float64,
        }
        for key, dtype in cast.items():
            object.__setattr__(self, key, _readonly(np.asarray(getattr(self, key), dtype=dtype)))
        if self.users is not None:
            object.__setattr__(self, "users", _readonly(np.asarray(self.users, dtype=np.int64)))
        for key in _OPTIONAL_EVENT_COLUMNS:
            if getattr(self, key) is not None:
                object.__setattr__(self, key, _readonly(np.asarray(getattr(self, key), dtype=np.float32)))
        if self.genres is not None:
            object.__setattr__(self, "genres", _readonly(np.asarray(self.genres, dtype=np.float32)))
        for key in ("item_ids", "titles", "user_ids", "session_ids"):
            v = getattr(self, key)
            if v is not None:
                object.__setattr__(self, key, _readonly(np.asarray(v).astype(str)))
        object.__setattr__(self, "n_items", int(self.n_items))
        object.__setattr__(self, "genre_names", tuple(self.genre_names))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        o = self.offsets
        if o.ndim != 1 or len(o) < 1 or o[0] != 0:
            raise ValueError(f"SessionLog {self.name!r}: offsets must be 1-D and start at 0")
        if np.any(np.diff(o) < 0):
            raise ValueError(f"SessionLog {self.name!r}: offsets must be non-decreasing")
        n = int(o[-1])
        for key in _EVENT_COLUMNS + _OPTIONAL_EVENT_COLUMNS:
            a = getattr(self, key)
            if a is not None and len(a) != n:
                raise ValueError(f"SessionLog {self.name!r}: {key} has {len(a)} rows, offsets say {n}")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(
                f"SessionLog {self.name!r}: item ids must lie in [0, {self.n_items}); "
                f"found [{self.items.min()}, {self.items.max()}]"
            )
        for key in ("users", "session_ids"):
            a = getattr(self, key)
            if a is not None and len(a) != self.n_sessions:
                raise ValueError(f"SessionLog {self.name!r}: {key} has {len(a)} rows, expected {self.n_sessions}")
        for key in ("genres", "item_ids", "titles"):
            a = getattr(self, key)
            if a is not None and len(a) != self.n_items:
                raise ValueError(f"SessionLog {self.name!r}: {key} has {len(a)} rows, expected n_items={self.n_items}")
        if self.user_ids is not None and self.users is not None and len(self.users) and self.users.max() >= len(self.user_ids):
            raise ValueError(f"SessionLog {self.name!r}: user id {self.users.max()} has no raw id ({len(self.user_ids)} user_ids)")
        if self.genres is not None and len(self.genre_names) not in (0, self.genres.shape[1]):
            raise ValueError(f"SessionLog {self.name!r}: {len(self.genre_names)} genre names for {self.genres.shape[1]} genres")

    # ------------------------------------------------------------------ sizes
    @property
    def n_sessions(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1])

    @property
    def pad_id(self) -> int:
        """The padding item id (``n_items``)."""
        return self.n_items

    @property
    def lengths(self) -> np.ndarray:
        """Session lengths, int64 ``[n_sessions]``."""
        return np.diff(self.offsets)

    @property
    def session_of_event(self) -> np.ndarray:
        """Session index of every event, int64 ``[n_events]``."""
        return np.repeat(np.arange(self.n_sessions, dtype=np.int64), self.lengths)

    @property
    def position_of_event(self) -> np.ndarray:
        """Step index ``t`` of every event inside its session, int64 ``[n_events]``."""
        return np.arange(self.n_events, dtype=np.int64) - np.repeat(self.offsets[:-1], self.lengths)

    def session(self, s: int) -> np.ndarray:
        """Item ids of session ``s``."""
        return self.items[self.offsets[s] : self.offsets[s + 1]]

    def item_counts(self) -> np.ndarray:
        """Event count of every item, int64 ``[n_items]`` (the popularity of this log)."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    def popularity(self) -> np.ndarray:
        """Share of events of every item, float64 ``[n_items]`` (sums to 1 on a non-empty log)."""
        c = self.item_counts().astype(np.float64)
        return c / max(c.sum(), 1.0)

    def stats(self) -> dict[str, Any]:
        """Headline statistics: counts of sessions, users, items, events, clicks, purchases, lengths."""
        lengths = self.lengths
        out: dict[str, Any] = {
            "name": self.name,
            "n_sessions": self.n_sessions,
            "n_items": self.n_items,
            "n_events": self.n_events,
            "n_clicks": int((self.kinds == KIND_CLICK).sum()),
            "n_purchases": int((self.kinds == KIND_PURCHASE).sum()),
            "n_items_seen": int((self.item_counts() > 0).sum()),
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
        }
        if self.users is not None:
            out["n_users"] = int(len(np.unique(self.users)))
        if self.genres is not None:
            out["n_genres"] = int(self.genres.shape[1])
        return out

    # ------------------------------------------------------------------ slicing
    def subset(self, sessions: np.ndarray) -> SessionLog:
        """A new log with the given sessions (indices or boolean mask), in the given order."""
        sessions = np.asarray(sessions)
        if sessions.dtype == bool:
            sessions = np.flatnonzero(sessions)
        sessions = sessions.astype(np.int64)
        lengths = self.lengths[sessions]
        starts = self.offsets[:-1][sessions]
        offsets = np.zeros(len(sessions) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return self.take_events(idx, offsets, users=None if self.users is None else self.users[sessions],
                                session_ids=None if self.session_ids is None else self.session_ids[sessions])

    def take_events(self, idx: np.ndarray, offsets: np.ndarray, users: np.ndarray | None = None,
                    session_ids: np.ndarray | None = None) -> SessionLog:
        """A new log made of events ``idx`` grouped by ``offsets`` (item metadata kept; ``users`` and
        ``session_ids`` of the new sessions, default: the current ones)."""
        return dataclasses.replace(
            self,
            offsets=offsets,
            items=self.items[idx],
            rewards=self.rewards[idx],
            kinds=self.kinds[idx],
            timestamps=self.timestamps[idx],
            ratings=None if self.ratings is None else self.ratings[idx],
            propensities=None if self.propensities is None else self.propensities[idx],
            users=users if users is not None else self.users,
            session_ids=session_ids if session_ids is not None else self.session_ids,
            meta=dict(self.meta),
        )

    def truncate(self, drop_last: int) -> SessionLog:
        """Drop the last ``drop_last`` events of every session (sessions may become empty)."""
        return self.prefix(np.maximum(self.lengths - drop_last, 0))

    def prefix(self, lengths: np.ndarray) -> SessionLog:
        """Keep the first ``lengths[s]`` events of every session ``s``."""
        lengths = np.minimum(np.asarray(lengths, dtype=np.int64), self.lengths)
        offsets = np.zeros(self.n_sessions + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        idx = np.repeat(self.offsets[:-1] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return self.take_events(idx, offsets, users=self.users)

    def last_window(self, max_len: int) -> SessionLog:
        """Keep only the last ``max_len`` events of every session."""
        lengths = np.minimum(self.lengths, max_len)
        offsets = np.zeros(self.n_sessions + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[1:] - lengths
        idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return self.take_events(idx, offsets, users=self.users)

    def with_rewards(self, rewards: np.ndarray, kinds: np.ndarray | None = None) -> SessionLog:
        """Same events with new rewards (and kinds)."""
        return dataclasses.replace(
            self, rewards=rewards, kinds=self.kinds if kinds is None else kinds, meta=dict(self.meta)
        )

    # ------------------------------------------------------------------ views
    def padded(self, max_len: int, side: str = "right") -> tuple[np.ndarray, np.ndarray]:
        """The last ``max_len`` items of every session as a padded matrix.

        Returns ``(ids int64 [n_sessions, max_len], lengths int64 [n_sessions])``; padding is
        ``n_items`` on the ``side`` given ("right": items first; "left": items last).
        """
        from recgym.data.windows import last_items

        return last_items(self.items, self.offsets[:-1], self.offsets[1:], max_len, self.pad_id, side)

    def transitions(self, state_len: int = 10, discount: float = 1.0) -> "Transitions":
        """One replay row per event (see :class:`recgym.data.Transitions`)."""
        from recgym.data.transitions import Transitions

        return Transitions.from_log(self, state_len=state_len, discount=discount)

    # ------------------------------------------------------------------ pandas
    def to_pandas(self):
        """One row per event: session, t, item, reward, kind, timestamp (+ user, rating)."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "session": self.session_of_event,
                "t": self.position_of_event,
                "item": self.items.astype(np.int64),
                "reward": self.rewards,
                "kind": self.kinds,
                "timestamp": self.timestamps,
            }
        )
        if self.users is not None:
            df["user"] = np.repeat(self.users, self.lengths)
        if self.ratings is not None:
            df["rating"] = self.ratings
        if self.propensities is not None:
            df["propensity"] = self.propensities
        return df

    @classmethod
    def from_pandas(cls, df, *, n_items: int, **metadata: Any) -> SessionLog:
        """The inverse of :meth:`to_pandas`: dense ids, explicit order, explicit rewards.

        Needs the columns ``session, t, item, reward, kind, timestamp`` (optional ``user``,
        ``rating``, ``propensity``); ``item`` must hold dense ids in ``[0, n_items)``; events are
        ordered by ``t`` inside each session and sessions keep the order of their first row.
        A raw event table (raw ids, a time column, ratings) goes through
        :func:`recgym.data.from_frame` instead, which encodes, orders and maps rewards.
        """
        from recgym.errors import BadInputError

        hint = "; for a raw event table use recgym.data.from_frame"
        for col in ("session", "t", "item", "reward", "kind", "timestamp"):
            if col not in df.columns:
                raise BadInputError(f"from_pandas: missing column {col!r} (have {list(df.columns)}){hint}")
        if not np.issubdtype(df["item"].to_numpy().dtype, np.integer):
            raise BadInputError(f"from_pandas: column 'item' must hold dense integer ids, got dtype {df['item'].dtype}{hint}")
        items_all = df["item"].to_numpy().astype(np.int64)
        bad = (items_all < 0) | (items_all >= n_items)
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise BadInputError(f"from_pandas: row {r}: item {items_all[r]} is outside [0, n_items={n_items}){hint}")
        sess_codes, _ = _factorize_in_order(df["session"].to_numpy())
        order = np.lexsort((np.arange(len(df)), df["t"].to_numpy(), sess_codes))
        sess_sorted = sess_codes[order]
        n_sessions = int(sess_codes.max()) + 1 if len(df) else 0
        offsets = np.zeros(n_sessions + 1, dtype=np.int64)
        np.cumsum(np.bincount(sess_sorted, minlength=n_sessions), out=offsets[1:])
        items = items_all[order]

        def col(name, default):
            return df[name].to_numpy()[order] if name in df.columns else default

        users = None
        if "user" in df.columns:
            u = df["user"].to_numpy()[order]
            users = u[offsets[:-1]] if n_sessions else np.zeros(0, dtype=np.int64)
        return cls(
            offsets=offsets,
            items=items,
            rewards=col("reward", None),
            kinds=col("kind", None),
            timestamps=col("timestamp", None),
            ratings=col("rating", None),
            propensities=col("propensity", None),
            users=users,
            n_items=n_items,
            **metadata,
        )

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickle) atomically; returns the path."""
        from recgym.data.io import atomic_path

        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                arrays[f.name] = v
        header = {
            "n_items": self.n_items,
            "genre_names": list(self.genre_names),
            "name": self.name,
            "meta": self.meta,
            "format": 1,
        }
        arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SessionLog:
        """Read a log written by :meth:`save` (``allow_pickle=False``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["__header__"]).decode())
                kw = {k: z[k] for k in z.files if k != "__header__"}
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{path}: not a recgym SessionLog file ({e})") from e
        return cls(
            n_items=header["n_items"],
            genre_names=tuple(header["genre_names"]),
            name=header["name"],
            meta=header["meta"],
            **kw,
        )

    def __repr__(self) -> str:
        return (
            f"SessionLog(name={self.name!r}, n_sessions={self.n_sessions}, n_events={self.n_events}, "
            f"n_items={self.n_items})"
        )


def _factorize_in_order(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes in order of first appearance (vectorised)."""
    uniq, first, inv = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    return rank[inv.reshape(-1)], uniq[np.argsort(first, kind="stable")]

