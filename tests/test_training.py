"""The shared training loop: determinism, resume, NaN stop, weights-only checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from recgym.agents.sasrec import SASRecAgent
from recgym.agents.training import NonFiniteLossError, TorchAgent, load_checkpoint, train_loop
from recgym.data import SessionLog, split_by_session

N_ITEMS = 20
TINY = dict(hidden=16, batch_size=32, steps=40, eval_every=10, lr=0.01, dropout=0.1)


def _chain_log(n_sessions: int = 200, seed: int = 0) -> SessionLog:
    """Sessions that mostly step ``i -> i + 1 (mod n)``: learnable from the last item."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, n_sessions)
    starts = rng.integers(0, N_ITEMS, n_sessions)
    items = []
    for s, n in zip(starts, lengths):
        seq = (s + np.arange(n)) % N_ITEMS
        noise = rng.random(n) < 0.2
        seq[noise] = rng.integers(0, N_ITEMS, noise.sum())
        items.append(seq)
    items = np.concatenate(items)
    kinds = (rng.random(len(items)) < 0.3).astype(np.int8)
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items, rewards=np.where(kinds, 1.0, 0.2),
                      kinds=kinds, timestamps=np.zeros(len(items)), n_items=N_ITEMS, name="chain")


@pytest.fixture(autouse=True)
def one_thread():
    """Small models are fastest single-threaded (and the CI box is shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def split():
    return split_by_session(_chain_log(), seed=0)


def _fit(split, seed=0, **kw):
    agent = SASRecAgent(N_ITEMS, seed=seed, **{**TINY, **kw.pop("cfg", {})})
    agent.fit(split.train, split.valid, protocol="session", progress=False, log=lambda m: None, **kw)
    return agent


def _scores(agent):
    s = torch.tensor([[1, 2, 3, N_ITEMS], [5, N_ITEMS, N_ITEMS, N_ITEMS]])
    return agent.scores(s, torch.tensor([3, 1]))


def test_training_learns_and_records_curves(split):
    agent = _fit(split, cfg=dict(steps=60))
    assert [c["step"] for c in agent.curves] == [10, 20, 30, 40, 50, 60]
    assert agent.selection_metric == "ndcg@20"
    best = max(agent.curves, key=lambda c: c["ndcg@20"])
    assert agent.best_step == best["step"] and agent.best_metric == best["ndcg@20"]
    assert agent.curves[-1]["loss"] < agent.curves[0]["loss"]
    assert best["ndcg@20"] > 0.3  # chain data: far above the ~0.15 of a random ranking
    top3 = torch.topk(_scores(agent), 3, dim=1).indices.tolist()
    assert 4 in top3[0] and 6 in top3[1]  # learned i -> i + 1


def test_best_checkpoint_is_restored(split):
    agent = _fit(split)
    from recgym.evaluate import evaluate

    metric = evaluate(agent, split.valid, "session")["ndcg@20"]
    assert metric == pytest.approx(agent.best_metric, abs=1e-12)


def test_same_seed_same_run_different_seed_differs(split):
    a, b, c = _fit(split, seed=1), _fit(split, seed=1), _fit(split, seed=2)
    assert a.curves == b.curves
    torch.testing.assert_close(_scores(a), _scores(b), rtol=0, atol=0)
    assert a.curves != c.curves


def test_resume_after_interruption_is_exact(split, tmp_path, monkeypatch):
    ckpt = tmp_path / "ck.pt"
    full = _fit(split, seed=3, checkpoint_path=tmp_path / "full.pt")

    class Interrupt(Exception):
        pass

    original = SASRecAgent.update

    def crash_at_25(self, batch, step):
        if step == 25:
            raise Interrupt
        return original(self, batch, step)

    monkeypatch.setattr(SASRecAgent, "update", crash_at_25)
    with pytest.raises(Interrupt):
        _fit(split, seed=3, checkpoint_path=ckpt)
    monkeypatch.setattr(SASRecAgent, "update", original)
    assert load_checkpoint(ckpt, SASRecAgent(N_ITEMS, seed=3, **TINY)).step == 20
    resumed = _fit(split, seed=3, checkpoint_path=ckpt, resume=True)
    assert resumed.curves == full.curves
    torch.testing.assert_close(_scores(resumed), _scores(full), rtol=0, atol=0)


def test_checkpoints_load_weights_only(split, tmp_path):
    agent = _fit(split, checkpoint_path=tmp_path / "ck.pt")
    payload = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert payload["step"] == 40 and json.loads(payload["config_json"])["hidden"] == 16
    assert len(json.loads(payload["curves_json"])) == 4
    agent.save(tmp_path / "model.pt")
    torch.load(tmp_path / "model.pt", weights_only=True)
    back = SASRecAgent.load(tmp_path / "model.pt")
    torch.testing.assert_close(_scores(back), _scores(agent), rtol=0, atol=0)


class NaNAgent(SASRecAgent):
    """Its loss turns NaN at (0-based) step 15."""

    def update(self, batch, step):
        self._step = step
        return super().update(batch, step)

    def loss(self, batch):
        loss, info = super().loss(batch)
        return (loss * float("nan") if self._step >= 15 else loss), info


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(split, tmp_path):
    agent = NaNAgent(N_ITEMS, **TINY)
    ckpt = tmp_path / "ck.pt"
    with pytest.raises(NonFiniteLossError, match=r"stopped at step 16: non-finite loss.*\(step 10\) is kept"):
        train_loop(agent, split.train, split.valid, checkpoint_path=ckpt, progress=False, log=lambda m: None)
    assert load_checkpoint(ckpt, NaNAgent(N_ITEMS, **TINY)).step == 10
    assert all(torch.isfinite(p).all() for p in agent.encoder.parameters())  # never stepped on NaN
    assert agent.best_step == 10


def test_no_validation_trains_to_the_end(split):
    agent = SASRecAgent(N_ITEMS, **TINY)
    result = train_loop(agent, split.train, None, progress=False, log=lambda m: None)
    assert result.steps == 40 and result.best_value is None and agent.best_step == 40
    assert [c["step"] for c in agent.curves] == [10, 20, 30, 40] and "ndcg@20" not in agent.curves[0]


def test_custom_torch_agent_uses_the_loop(split):
    """The minimal TorchAgent: build / loss / scores, plus a diagnostics hook in the curves."""

    class Bigram(TorchAgent):
        name = "bigram"

        def build(self):
            self.table = torch.nn.Embedding(self.n_items + 1, self.n_items)
            self.opt = torch.optim.Adam(self.table.parameters(), lr=0.1)

        def _last(self, states, lengths):
            return states.gather(1, (lengths.clamp(min=1) - 1)[:, None])[:, 0].where(lengths > 0, self.n_items)

        def loss(self, batch):
            logits = self.table(self._last(batch["state"], batch["state_len"]))
            return torch.nn.functional.cross_entropy(logits, batch["action"]), {"extra": 1.0}

        def scores(self, states, lengths):
            return self.table(self._last(states, lengths))

        def diagnostics(self, valid):
            return {"mean_weight": float(self.table.weight.mean())}

    agent = Bigram(N_ITEMS, steps=30, eval_every=15, batch_size=64, state_len=3)
    agent.fit(split.train, split.valid, progress=False, log=lambda m: None)
    assert [c["step"] for c in agent.curves] == [15, 30] and "mean_weight" in agent.curves[0]
    assert agent.curves[-1]["ndcg@20"] > 0.3


def test_resume_refuses_other_hyper_parameters(split, tmp_path):
    ckpt = tmp_path / "ck.pt"
    _fit(split, checkpoint_path=ckpt)
    with pytest.raises(ValueError, match=r"other hyper-parameters: lr=0.01 \(now 0.5\)"):
        _fit(split, checkpoint_path=ckpt, resume=True, cfg=dict(lr=0.5))
    longer = _fit(split, checkpoint_path=ckpt, resume=True, cfg=dict(steps=50))  # extending is fine
    assert [c["step"] for c in longer.curves] == [10, 20, 30, 40, 50]


def test_the_loop_scores_validation_by_the_protocol_its_split_recorded():
    from recgym.agents.registry import make_agent
    from recgym.data import split_by_session, split_leave_one_out
    from recgym.sim import World

    w = World(seed=0, n_users=60, n_items=30, n_genres=4)
    loo = split_leave_one_out(w.rating_log(ratings_per_user=8, seed=0))
    sess = split_by_session(w.generate(120, seed=0))
    assert (loo.valid.meta["protocol"], sess.valid.meta["protocol"]) == ("loo", "session")
    a = make_agent("sasrec", loo.n_items, hidden=8, steps=4, eval_every=2).fit(loo.train, loo.valid, progress=False,
                                                                                log=lambda m: None)
    assert a.selection_metric == "ndcg@10"  # leave-one-out, without being told
    b = make_agent("sasrec", sess.n_items, hidden=8, steps=4, eval_every=2).fit(sess.train, sess.valid, progress=False,
                                                                                 log=lambda m: None)
    assert b.selection_metric == "ndcg@20"
    with pytest.raises(ValueError, match="comes from a 'loo' split"):
        make_agent("sasrec", loo.n_items, hidden=8, steps=4).fit(loo.train, loo.valid, protocol="session",
                                                                  progress=False, log=lambda m: None)
