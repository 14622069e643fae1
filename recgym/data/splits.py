"""Train / valid / test splits of a `SessionLog`.

Two protocols (evaluated by :mod:`recgym.evaluate`, see docs/evaluation.md):

* ``"session"``: whole sessions go to one part; every event of a valid/test session is a
  prediction target (the SQN/SA2C/PRL/CCQL/LPI protocol).
* ``"loo"`` (leave-one-out per user, as SASRec): ``train`` holds every user's sequence but its
  last two items; ``valid`` holds each sequence without its last item and ``test`` the full
  sequence; in ``valid``/``test`` only the **last event of each session** is a target, the
  events before it are its input. Users with fewer than 3 events keep everything in
  ``train`` and are not evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recgym.data.session_log import SessionLog

PROTOCOLS = ("session", "loo")


@dataclass(frozen=True)
class Split:
    """A ``train``/``valid``/``test`` triple and the protocol that scores it."""

    train: SessionLog
    valid: SessionLog
    test: SessionLog
    protocol: str = "session"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def __iter__(self):
        return iter((self.train, self.valid, self.test))


def split_by_session(
    log: SessionLog, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> Split:
    """Shuffle sessions with ``seed`` and cut them 80/10/10 (by default)."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(log.n_sessions)
    n_train = int(round(f[0] * log.n_sessions))
    n_valid = int(round(f[1] * log.n_sessions))
    parts = np.split(perm, [n_train, n_train + n_valid])
    # keep the original session order inside each part (stable, readable)
    train, valid, test = (log.subset(np.sort(p)) for p in parts)
    return Split(_named(train, log, "train", "session"), _named(valid, log, "valid", "session"),
                 _named(test, log, "test", "session"), "session")


def split_leave_one_out(log: SessionLog) -> Split:
    """SASRec leave-one-out over a log with one session per user, already in (timestamp, file) order."""
    evaluable = log.lengths >= 3
    train = log.prefix(np.where(evaluable, log.lengths - 2, log.lengths))
    ev = log.subset(evaluable)
    valid = ev.truncate(1)
    test = ev
    train = train.subset(train.lengths > 0)
    return Split(_named(train, log, "train", "loo"), _named(valid, log, "valid", "loo"),
                 _named(test, log, "test", "loo"), "loo")


def _named(part: SessionLog, parent: SessionLog, which: str, protocol: str) -> SessionLog:
    """``part`` named after its parent, with ``meta["part"]`` and ``meta["protocol"]`` (how it is
    scored: the shared training loop reads it, so a validation log cannot be scored by the wrong protocol)."""
    import dataclasses

    meta = dict(parent.meta)
    meta["part"], meta["protocol"] = which, protocol
    return dataclasses.replace(part, name=f"{parent.name}:{which}", meta=meta)
