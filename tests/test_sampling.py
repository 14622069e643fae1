"""Per-user sampling of all-positions training: each target once per epoch, the same targets as the
per-event rows; the epoch sampler; keep_freed_memory as an explicit loop option."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recgym.agents import training
from recgym.agents.sasrec import SASRecAgent
from recgym.agents.training import EpochSampler, train_loop
from recgym.data import SessionLog, Transitions

L = 3
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 1, 10]  # around multiples of L and L + 1


def _unique_log() -> SessionLog:
    """Every event has its own item id (= its event index), so a target names its event."""
    n = int(np.sum(LENGTHS))
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(LENGTHS)]), items=np.arange(n), rewards=np.ones(n),
                      kinds=np.zeros(n, dtype=np.int8), timestamps=np.zeros(n), n_items=n, name="unique")


def _targets(state: np.ndarray, length: np.ndarray, action: np.ndarray) -> list[int]:
    """SASRec all-positions targets of rows, from the definition: positions ``0..l-1`` of the
    window ``x_1..x_l`` predict ``x_2..x_l, a``; an empty window predicts ``a`` from position 0."""
    out: list[int] = []
    for s, n, a in zip(state, length, action):
        out += [int(x) for x in s[1:n]] + [int(a)]
    return out


def test_chunk_rows_give_every_target_once_and_the_per_event_targets():
    log = _unique_log()
    tr = Transitions.from_log(log, state_len=L)
    per_event = Counter(_targets(tr.state, tr.state_len, tr.action))
    rows = tr.chunk_rows()
    per_user = Counter(_targets(tr.state[rows], tr.state_len[rows], tr.action[rows]))
    assert set(per_user) == set(per_event) == set(range(log.n_events))  # the same targets...
    assert set(per_user.values()) == {1}  # ...each once
    assert max(per_event.values()) == L  # the per-event rows repeat them (up to L times)
    n = np.asarray(LENGTHS)
    assert len(rows) == int(np.sum(np.ceil((n - 1) / L) + 1))


def test_chunk_rows_through_the_sasrec_loss_targets():
    """The loss's own target tensor (position p -> item p + 1, last -> action) over the chunk rows."""
    log = _unique_log()
    tr = Transitions.from_log(log, state_len=L)
    agent = SASRecAgent(log.n_items, state_len=L, hidden=8, n_blocks=1, dropout=0.0, tied_output=True,
                        all_positions=True, sampling="per_user")
    rows = agent.epoch_rows(tr)
    b = tr.batch(rows)
    seen: list[int] = []

    def spy_cross_entropy(logits, targets):
        seen.extend(targets.tolist())
        return logits.sum() * 0

    orig = torch.nn.functional.cross_entropy
    torch.nn.functional.cross_entropy = spy_cross_entropy
    try:
        agent.loss(b)
    finally:
        torch.nn.functional.cross_entropy = orig
    assert sorted(seen) == list(range(log.n_events))


def test_epoch_sampler_visits_each_row_once_per_epoch_and_depends_on_step_only():
    tr = Transitions.from_log(_unique_log(), state_len=L)
    rows = tr.chunk_rows()
    B = 4  # does not divide len(rows): batches straddle epochs
    s = EpochSampler(tr, rows, B, seed=7)
    n_epochs = 3
    pos = np.concatenate([s.indices(k) for k in range(int(np.ceil(n_epochs * len(rows) / B)))])
    for e in range(n_epochs):
        assert sorted(pos[e * len(rows):(e + 1) * len(rows)]) == sorted(rows)
    assert not np.array_equal(pos[: len(rows)], pos[len(rows): 2 * len(rows)])  # reshuffled each epoch
    fresh = EpochSampler(tr, rows, B, seed=7)  # e.g. after resuming at step 5
    assert np.array_equal(fresh.indices(5), s.indices(5))
    assert not np.array_equal(EpochSampler(tr, rows, B, seed=8).indices(0), s.indices(0))


def test_train_loop_per_user_epoch_is_one_pass_over_the_chunk_rows():
    log = _unique_log()
    tr = Transitions.from_log(log, state_len=L)
    n_rows = len(tr.chunk_rows())

    class Spy(SASRecAgent):
        name = "spy"
        seen: list[int] = []

        def update(self, batch, step):
            self.seen += _targets(batch["state"].numpy(), batch["state_len"].numpy(), batch["action"].numpy())
            return {"loss": 0.0}

    agent = Spy(log.n_items, state_len=L, hidden=8, n_blocks=1, tied_output=True, all_positions=True,
                sampling="per_user", batch_size=n_rows, epochs=2)
    res = train_loop(agent, log, None, progress=False, log=lambda m: None)
    assert res.steps == 2  # an epoch = ceil(chunk rows / batch) steps
    assert Counter(agent.seen) == Counter({e: 2 for e in range(log.n_events)})
    assert len(res.curve_seconds) == len(res.curves) and res.curve_seconds[-1] > 0


def test_per_user_needs_all_positions():
    with pytest.raises(ValueError, match="all_positions"):
        SASRecAgent(10, sampling="per_user")
    with pytest.raises(ValueError, match="sampling"):
        SASRecAgent(10, sampling="per_session", all_positions=True)


def test_keep_freed_memory_is_explicit_and_restored(monkeypatch):
    calls: list[dict[int, int]] = []
    monkeypatch.setattr(training, "_mallopt", lambda settings: calls.append(dict(settings)) or True)
    log = _unique_log()
    agent = SASRecAgent(log.n_items, state_len=L, hidden=8, n_blocks=1, steps=1)
    train_loop(agent, log, None, progress=False, log=lambda m: None)
    assert calls == []  # off by default: fit() changes nothing process-wide
    train_loop(agent, log, None, progress=False, log=lambda m: None, keep_freed_memory=True)
    assert calls == [{training._M_MMAP_MAX: 0, training._M_TRIM_THRESHOLD: 2**31 - 1}, training._GLIBC_DEFAULTS]
