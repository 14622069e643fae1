"""Per-user sampling beyond SASRec: BERT4Rec's disjoint per-user windows (each item a candidate
masked target once per epoch, resumable), and μ̂ of the LPI family trained on all positions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recgym.agents.bert4rec import BERT4RecAgent, cloze_mask
from recgym.agents.training import EpochSampler, train_loop
from recgym.data import SessionLog

L = 3
LENGTHS = [1, 2, 3, 4, 5, 7, 8, 1, 10]  # around multiples of L and L + 1
N = int(np.sum(LENGTHS))


def _unique_log() -> SessionLog:
    """Every event has its own item id (= its event index), so an item names its (user, position)."""
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(LENGTHS)]), items=np.arange(N), rewards=np.ones(N),
                      kinds=np.zeros(N, dtype=np.int8), timestamps=np.zeros(N), n_items=N, name="unique")


def _bert(**kw) -> BERT4RecAgent:
    return BERT4RecAgent(N, state_len=L, hidden=8, n_blocks=1, n_heads=2, dropout=0.0, sampling="per_user", **kw)


def _rows_items(seq: np.ndarray) -> list[list[int]]:
    """The items of each left-padded row, padding (id N) dropped, checking the padding is on the left."""
    out = []
    for row in seq:
        valid = row != N
        assert not np.any(valid[:-1] & ~valid[1:]), row  # once an item starts, no padding follows
        out.append([int(x) for x in row[valid]])
    return out


def test_bert4rec_per_user_windows_hold_each_position_once_within_max_len():
    log = _unique_log()
    tr = _bert().make_transitions(log)
    rows = tr.chunk_rows()
    assert len(rows) == sum(-(-n // L) for n in LENGTHS)
    windows = _rows_items(tr.batch(rows)["seq"].numpy())
    assert all(1 <= len(w) <= L for w in windows)
    session = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    for w in windows:  # consecutive positions of one user's sequence, oldest first
        assert w == list(range(w[0], w[0] + len(w))) and len(set(session[w])) == 1
    assert Counter(i for w in windows for i in w) == Counter(range(N))  # each (user, position) once
    # anchored at the end: every user's newest L items form one full window
    ends = np.cumsum(LENGTHS)
    assert {tuple(w) for w in windows} >= {tuple(range(e - min(n, L), e)) for e, n in zip(ends, LENGTHS)}


def test_bert4rec_per_user_epoch_through_train_loop_and_masks():
    log = _unique_log()
    n_windows = len(_bert().make_transitions(log).chunk_rows())
    B = 4  # does not divide the number of windows: batches straddle epochs
    seen: list[np.ndarray] = []
    masks: list[tuple[np.ndarray, np.ndarray]] = []

    class Spy(BERT4RecAgent):
        def loss(self, batch):
            tokens, labels = batch["tokens"].numpy(), batch["labels"].numpy()
            seen.append(np.where(labels != -100, labels, tokens))  # the unmasked windows
            masks.append((tokens, labels))
            return super().loss(batch)

    epochs = 3
    agent = Spy(N, state_len=L, hidden=8, n_blocks=1, n_heads=2, sampling="per_user", batch_size=B, epochs=epochs)
    res = train_loop(agent, log, None, progress=False, log=lambda m: None)
    assert res.steps == round(epochs * -(-n_windows // B))
    windows = [w for s in seen for w in _rows_items(s)]
    for e in range(epochs):  # each epoch: every (user, position) in exactly one window
        assert Counter(i for w in windows[e * n_windows:(e + 1) * n_windows] for i in w) == Counter(range(N))
    for tokens, labels in masks:  # Cloze masks: ≥ 1 per row, only on items, [MASK] exactly there
        m = labels != -100
        assert m.any(1).all() and (tokens[m] == N + 1).all() and (tokens[~m] != N + 1).all()
        assert (labels[m] < N).all()


def _batches(seed: int, steps: int, **kw) -> list[np.ndarray]:
    out: list[np.ndarray] = []

    class Spy(BERT4RecAgent):
        def loss(self, batch):
            out.append(batch["tokens"].numpy().copy())
            return super().loss(batch)

    agent = Spy(N, state_len=L, hidden=8, n_blocks=1, n_heads=2, sampling="per_user", batch_size=4, seed=seed,
                steps=steps, eval_every=2)
    train_loop(agent, _unique_log(), None, progress=False, log=lambda m: None, **kw)
    return out


def test_bert4rec_per_user_batches_depend_on_seed_and_resume_draws_the_same(tmp_path):
    straight = _batches(0, 6)
    again = _batches(0, 6)
    assert all(np.array_equal(a, b) for a, b in zip(straight, again, strict=True))  # same seed, same batches
    other = _batches(1, 6)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(straight, other))
    ckpt = tmp_path / "b.pt"
    first = _batches(0, 2, checkpoint_path=ckpt)  # interrupted after step 2...
    rest = _batches(0, 6, checkpoint_path=ckpt, resume=True)  # ...and resumed to step 6
    assert all(np.array_equal(a, b) for a, b in zip(straight, first + rest, strict=True))  # windows and masks


def test_bert4rec_per_user_windows_come_from_the_epoch_sampler():
    """The window order is EpochSampler's: a batch depends on (seed, step) only."""
    log = _unique_log()
    tr = _bert().make_transitions(log)
    s = EpochSampler(tr, tr.chunk_rows(), 4, seed=5)
    assert np.array_equal(s.batch(3)["seq"], EpochSampler(tr, tr.chunk_rows(), 4, seed=5).batch(3)["seq"])


def test_bert4rec_sampling_is_checked_and_random_windows_stay_full():
    with pytest.raises(ValueError, match="sampling"):
        BERT4RecAgent(10, sampling="per_event")
    log = _unique_log()
    tr = BERT4RecAgent(N, state_len=L, hidden=8, n_blocks=1, n_heads=2).make_transitions(log)
    seq = tr.sample(64, np.random.default_rng(0))["seq"].numpy()
    lengths = np.asarray(LENGTHS)
    full = np.minimum(lengths, L)
    session = np.repeat(np.arange(len(LENGTHS)), LENGTHS)
    for w in _rows_items(seq):  # a random end, but a window as long as the user's history allows
        assert len(w) == full[session[w[0]]]


def test_cloze_mask_by_hand():
    """Draws below mask_prob mask a valid item; a row without any gets its newest item masked."""
    pad = 9
    seq = torch.tensor([[pad, 1, 2, 3], [4, 5, 6, 7]])

    class Fixed:
        def random(self, shape):
            return np.array([[0.0, 0.1, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9]])

    out = cloze_mask(seq, pad, 0.2, Fixed())
    assert out["tokens"].tolist() == [[pad, pad + 1, 2, 3], [4, 5, 6, pad + 1]]  # padding never masked
    assert out["labels"].tolist() == [[-100, 1, -100, -100], [-100, -100, -100, 7]]


# ---------------------------------------------------------------- μ̂ of the LPI family
def test_mu_hat_config_gets_all_positions_per_user_and_its_epochs():
    from recgym.agents.lpi import LPIAgent, _mu_config

    arch = dict(state_len=L, hidden=8, n_blocks=1, n_heads=1, epochs=3)
    plain = LPIAgent(N, **arch)
    mu = plain._mu.config
    assert (mu.all_positions, mu.sampling, mu.epochs) == (False, "per_event", 3)  # the session default
    agent = LPIAgent(N, mu_sampling="per_user", mu_epochs=7, **arch)
    mu = _mu_config(agent.config)
    assert (mu.all_positions, mu.sampling, mu.epochs, mu.tied_output) == (True, "per_user", 7, False)
    assert agent._mu.config == mu
    assert {k: getattr(mu, k) for k in arch if k != "epochs"} == {k: v for k, v in arch.items() if k != "epochs"}
    # LPI itself keeps one target per replay row
    assert (agent.config.all_positions, agent.config.sampling, agent.config.epochs) == (False, "per_event", 3)
    tr = agent.make_transitions(_unique_log())
    assert agent.epoch_rows(tr) is None and np.array_equal(agent._mu.epoch_rows(tr), tr.chunk_rows())


def test_lpi_loo_presets_train_mu_hat_as_the_sasrec_preset():
    from recgym.agents.registry import make_agent

    for name in ("lpi", "ips", "lmu"):
        agent = make_agent(name, N, dataset="ml-100k", protocol="loo")
        sas = make_agent("sasrec", N, dataset="ml-100k", protocol="loo").config
        mu = agent._mu.config
        assert (mu.all_positions, mu.sampling, mu.epochs) == (sas.all_positions, sas.sampling, sas.epochs) == (
            True, "per_user", sas.epochs)
        assert (agent.config.all_positions, agent.config.sampling) == (False, "per_event")
    session = make_agent("lpi", N, dataset="retailrocket", protocol="session")._mu.config
    assert (session.all_positions, session.sampling) == (False, "per_event")  # as the session sasrec


def test_lpi_still_refuses_all_positions_and_per_user_rows():
    from recgym.agents.lpi import LPIAgent

    with pytest.raises(ValueError, match="all_positions"):
        LPIAgent(N, all_positions=True, mu_sampling="per_user")
    with pytest.raises(ValueError, match="mu_sampling"):
        LPIAgent(N, sampling="per_user")
    with pytest.raises(ValueError, match="mu_sampling"):
        LPIAgent(N, mu_sampling="per_session")
    with pytest.raises(ValueError, match="mu_epochs"):
        LPIAgent(N, mu_epochs=0)


def test_lpi_fit_trains_mu_hat_on_all_positions_of_the_chunks():
    from recgym.agents.lpi import LPIAgent

    log = _unique_log()
    n_rows = len(log.transitions(L).chunk_rows())
    agent = LPIAgent(N, state_len=L, hidden=8, n_blocks=1, n_heads=1, batch_size=n_rows, steps=1, mu_sampling="per_user")
    seen: list[int] = []
    orig = torch.nn.functional.cross_entropy

    def spy(logits, targets, *a, **kw):
        seen.extend(targets.tolist())
        return orig(logits, targets, *a, **kw)

    torch.nn.functional.cross_entropy = spy
    try:
        agent.fit_logging_policy(log, None, progress=False, log=lambda m: None)
    finally:
        torch.nn.functional.cross_entropy = orig
    assert sorted(seen) == list(range(N))  # one step over all chunk rows: every event once as a target
    assert agent.logging_policy is not None
