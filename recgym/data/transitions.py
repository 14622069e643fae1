"""`Transitions`: one replay row per logged event, what offline agents train on.

Row ``i`` is the event at step ``t`` of session ``session``: ``state`` holds the last
``state_len`` items *before* it (right-padded with ``n_items``), ``action`` is the logged item,
``next_state`` holds the last ``state_len`` items *including* it, ``done`` is true on a session's
last event. ``state_len`` is the true history length (0 for a session's first event; encoders
handle 0: the authors' code wrote 1 there and read a padding position, which is the same thing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from recgym.data.session_log import SessionLog
from recgym.data.windows import last_items

_TENSOR_FIELDS = ("state", "state_len", "action", "reward", "kind", "next_state", "next_len", "done", "t", "rtg", "session")


@dataclass(frozen=True, eq=False)
class Transitions:
    """Replay rows; every array has ``N = n_events`` rows.

    state int32 [N, L], state_len int64 [N], action int64 [N], reward float32 [N], kind int8 [N],
    next_state int32 [N, L], next_len int64 [N], done bool [N], session int64 [N], t int64 [N],
    rtg float32 [N] (discounted return-to-go from this event to the session end, inclusive).
    """

    state: np.ndarray
    state_len: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    kind: np.ndarray
    next_state: np.ndarray
    next_len: np.ndarray
    done: np.ndarray
    session: np.ndarray
    t: np.ndarray
    rtg: np.ndarray
    n_items: int
    discount: float = 1.0

    @property
    def state_len_max(self) -> int:
        return self.state.shape[1]

    @property
    def pad_id(self) -> int:
        return self.n_items

    def __len__(self) -> int:
        return len(self.action)

    @classmethod
    def from_log(cls, log: SessionLog, state_len: int = 10, discount: float = 1.0) -> Transitions:
        """Build every row with array arithmetic, O(N·L) time and memory."""
        if state_len < 1:
            raise ValueError(f"state_len must be >= 1, got {state_len}")
        sess = log.session_of_event
        t = log.position_of_event
        start = log.offsets[:-1][sess]  # first event of each row's session
        state, slen = last_items(log.items, start, start + t, state_len, log.pad_id)
        next_state, nlen = last_items(log.items, start, start + t + 1, state_len, log.pad_id)
        done = t == (log.lengths[sess] - 1)
        return cls(
            state=state.astype(np.int32),
            state_len=slen,
            action=log.items.astype(np.int64),
            reward=log.rewards.astype(np.float32),
            kind=log.kinds.astype(np.int8),
            next_state=next_state.astype(np.int32),
            next_len=nlen,
            done=done,
            session=sess,
            t=t,
            rtg=return_to_go(log.rewards, log.offsets, discount),
            n_items=log.n_items,
            discount=discount,
        )

    def chunk_rows(self) -> np.ndarray:
        """Rows that give every event exactly once as a target of all-positions training, sorted.

        All-positions training (SASRec) reads row ``e`` as ``state_len`` targets: with
        ``L = state_len_max``, row ``e`` of a session predicts events ``max(e - L + 1, 1) .. e`` from
        their prefixes inside the row's window, and row ``0`` predicts event 0 from the empty
        history. Consecutive rows of a session therefore repeat up to ``L - 1`` targets. The rows
        ``e = n - 1, n - 1 - L, n - 1 - 2L, ... (>= 1)`` of each session of ``n`` events, plus row
        ``0``, cut the session into disjoint chunks of ``L`` targets: the same targets, each once.

        Returns:
            int64 ``[M]`` row indices, ``M = Σ_sessions (ceil((n - 1) / L) + 1)`` (1 for ``n = 1``).
        """
        L = self.state_len_max
        to_end = self.steps_to_end
        return np.flatnonzero((self.t == 0) | ((to_end % L == 0) & (self.t >= 1)))

    @property
    def steps_to_end(self) -> np.ndarray:
        """int64 [N]: the session's events after this row's (0 on its last event)."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        last_t = np.zeros(int(self.session.max()) + 1, dtype=np.int64)
        np.maximum.at(last_t, self.session, self.t)
        return last_t[self.session] - self.t

    def batch(self, idx: np.ndarray, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Rows ``idx`` as a dict of torch tensors (ids as int64, rewards float32, done float32)."""
        out: dict[str, torch.Tensor] = {}
        for k in _TENSOR_FIELDS:
            a = getattr(self, k)[idx]
            if a.dtype == np.int32 or a.dtype == np.int8:
                a = a.astype(np.int64)
            elif a.dtype == bool:
                a = a.astype(np.float32)
            out[k] = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        return out

    def sample(self, batch_size: int, rng: np.random.Generator, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """A uniformly sampled mini-batch (with replacement), as the SQN/SAC code samples."""
        return self.batch(rng.integers(0, len(self), size=batch_size), device)

    def iterate(
        self, batch_size: int, rng: np.random.Generator | None = None, device: str | torch.device = "cpu"
    ) -> Iterator[dict[str, torch.Tensor]]:
        """One pass in mini-batches, shuffled when ``rng`` is given."""
        order = rng.permutation(len(self)) if rng is not None else np.arange(len(self))
        for i in range(0, len(order), batch_size):
            yield self.batch(order[i : i + batch_size], device)


def return_to_go(rewards: np.ndarray, offsets: np.ndarray, discount: float = 1.0) -> np.ndarray:
    """``R_t = r_t + γ R_{t+1}`` inside each session, float32 [n_events].

    Vectorised over sessions: one numpy step per position, so O(N) work and O(max_len) steps.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(rewards)
    out = rewards.copy()
    if n == 0:
        return out.astype(np.float32)
    if discount == 1.0:
        # suffix sums via one cumsum: R_t = C[end] - C[t]
        c = np.concatenate([[0.0], np.cumsum(rewards[::-1])])[::-1]  # c[i] = sum rewards[i:]
        lengths = np.diff(offsets)
        end = np.repeat(offsets[1:], lengths)
        return (c[:-1] - c[end]).astype(np.float32)
    lengths = np.diff(offsets)
    end = np.repeat(offsets[1:], lengths)
    pos_from_end = end - 1 - np.arange(n)  # 0 for a session's last event
    order = np.argsort(pos_from_end, kind="stable")
    counts = np.bincount(pos_from_end)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for p in range(1, len(counts)):
        idx = order[bounds[p] : bounds[p + 1]]
        out[idx] = rewards[idx] + discount * out[idx + 1]
    return out.astype(np.float32)
