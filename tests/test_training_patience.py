"""Early stopping in the shared loop, against the rule: with ``patience = p`` the run stops after
``p`` consecutive validations without a strict improvement of the selection metric (a tie is not
one), ``steps`` is the cap, and a resumed run stops where an uninterrupted one does."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import recgym.evaluate
from recgym.agents.training import TorchAgent, load_checkpoint, patience_stop, train_loop, validations_since_best
from recgym.data import SessionLog
from recgym.errors import BadInputError

N_ITEMS = 6
QUIET = dict(progress=False, log=lambda m: None)


class Scripted(TorchAgent):
    """A bigram model whose validation score at step ``k`` is ``SCRIPT[k - 1]`` (validation every step)."""

    name = "scripted"
    SCRIPT: list[float] = []

    def build(self):
        self.table = torch.nn.Embedding(self.n_items + 1, self.n_items)
        self.opt = torch.optim.Adam(self.table.parameters(), lr=0.1)
        self.last_step = -1

    def _last(self, states, lengths):
        return states.gather(1, (lengths.clamp(min=1) - 1)[:, None])[:, 0].where(lengths > 0, self.n_items)

    def update(self, batch, step):
        self.last_step = step
        return super().update(batch, step)

    def loss(self, batch):
        return torch.nn.functional.cross_entropy(self.table(self._last(batch["state"], batch["state_len"])),
                                                 batch["action"]), {}

    def scores(self, states, lengths):
        return self.table(self._last(states, lengths))

    def diagnostics(self, valid):
        return {"score": self.SCRIPT[self.last_step]}


@pytest.fixture(autouse=True)
def no_ranking(monkeypatch):
    """Validation = the scripted score only (the ranking metrics are not what is tested here)."""
    monkeypatch.setattr(recgym.evaluate, "evaluate", lambda *a, **k: {})


@pytest.fixture(scope="module")
def log():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 6, 40)
    items = rng.integers(0, N_ITEMS, lengths.sum())
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items, rewards=np.ones(len(items)),
                      kinds=np.zeros(len(items), dtype=np.int8), timestamps=np.zeros(len(items)), n_items=N_ITEMS,
                      name="tiny")


def _agent(script, patience, steps=20, **cfg):
    agent = Scripted(N_ITEMS, seed=0, steps=steps, eval_every=1, batch_size=16, state_len=3,
                     selection_metric="score", patience=patience, **cfg)
    agent.SCRIPT = list(script)
    return agent


def _run(agent, log, **kw):
    return train_loop(agent, log, log, **QUIET, **kw)


def test_stops_after_exactly_p_validations_without_strict_improvement(log):
    # best 0.3 at step 3; steps 4 (a tie), 5, 6 (a tie) do not improve it
    script = [0.1, 0.2, 0.3, 0.3, 0.25, 0.3, 0.1, 0.9, 0.9, 0.9]
    r = _run(_agent(script, patience=3), log)
    assert (r.steps, r.best_step, r.best_value, r.stop_reason) == (6, 3, 0.3, "patience")
    assert [c["step"] for c in r.curves] == [1, 2, 3, 4, 5, 6]
    r4 = _run(_agent(script, patience=4), log)  # not earlier: one more validation of patience, one more step
    assert (r4.steps, r4.best_step, r4.stop_reason) == (7, 3, "patience")
    r5 = _run(_agent(script, patience=5, steps=10), log)  # 0.9 at step 8 is a strict improvement: the count restarts
    assert (r5.steps, r5.best_step, r5.best_value) == (10, 8, 0.9) and r5.stop_reason == "cap"


def test_an_improvement_resets_the_count(log):
    r = _run(_agent([0.1, 0.0, 0.2, 0.1, 0.3, 0.2, 0.2, 0.5], patience=2), log)
    assert (r.steps, r.best_step, r.stop_reason) == (7, 5, "patience")


def test_reaching_the_cap_is_reported_as_cap(log):
    agent = _agent([0.1 * k for k in range(1, 11)], patience=3, steps=10)
    r = _run(agent, log)
    assert (r.steps, r.best_step, r.stop_reason, r.cap_steps) == (10, 10, "cap", 10)
    assert (agent.stop_reason, agent.cap_steps, agent.best_step) == ("cap", 10, 10)


def test_without_patience_the_full_length_is_trained(log):
    r = _run(_agent([0.5] + [0.1] * 9, patience=None, steps=10), log)
    assert (r.steps, r.best_step, r.stop_reason) == (10, 1, "cap")


def test_best_at_first_validation_is_visible(log):
    agent = _agent([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], patience=2)
    r = _run(agent, log)
    assert (r.steps, r.best_step, r.stop_reason) == (3, 1, "patience")
    assert agent.best_step == agent.curves[0]["step"]


def test_a_nan_metric_never_improves(log):
    r = _run(_agent([math.nan] * 5, patience=2), log)
    assert (r.steps, r.best_value, r.stop_reason) == (2, None, "patience")


def test_no_validation_log_means_no_early_stop(log):
    agent = _agent([0.1] * 10, patience=1, steps=5)
    r = train_loop(agent, log, None, **QUIET)
    assert (r.steps, r.stop_reason, agent.stop_reason) == (5, "no_validation", "no_validation")


def test_patience_must_be_positive(log):
    with pytest.raises(BadInputError, match="patience must be a positive integer"):
        _run(_agent([0.1] * 5, patience=0), log)


def test_resume_mid_patience_stops_at_the_same_step(log, tmp_path, monkeypatch):
    script = [0.1, 0.2, 0.3, 0.3, 0.25, 0.3, 0.1, 0.9, 0.9]
    full_agent = _agent(script, patience=4)
    full = _run(full_agent, log, checkpoint_path=tmp_path / "full.pt")

    class Interrupt(Exception):
        pass

    original = Scripted.update

    def crash_at_5(self, batch, step):  # after the checkpoint of step 5: 2 validations into the patience
        if step == 5:
            raise Interrupt
        return original(self, batch, step)

    monkeypatch.setattr(Scripted, "update", crash_at_5)
    with pytest.raises(Interrupt):
        _run(_agent(script, patience=4), log, checkpoint_path=tmp_path / "ck.pt")
    monkeypatch.setattr(Scripted, "update", original)
    assert load_checkpoint(tmp_path / "ck.pt", _agent(script, patience=4)).step == 5
    agent = _agent(script, patience=4)
    resumed = _run(agent, log, checkpoint_path=tmp_path / "ck.pt", resume=True)
    assert (resumed.steps, resumed.best_step, resumed.stop_reason, resumed.resumed_from) == (7, 3, "patience", 5)
    assert resumed.curves == full.curves
    torch.testing.assert_close(agent.table.weight, full_agent.table.weight, rtol=0, atol=0)


def test_a_stopped_run_resumes_as_stopped_and_continues_with_more_patience(log, tmp_path):
    script = [0.1, 0.3, 0.2, 0.2, 0.4, 0.1, 0.1, 0.1, 0.1, 0.1]
    ck = tmp_path / "ck.pt"
    first = _run(_agent(script, patience=2), log, checkpoint_path=ck)
    assert (first.steps, first.stop_reason) == (4, "patience")
    again = _run(_agent(script, patience=2), log, checkpoint_path=ck, resume=True)  # the same command: no step
    assert (again.steps, again.stop_reason, again.curves) == (4, "patience", first.curves)
    more = _run(_agent(script, patience=3), log, checkpoint_path=ck, resume=True)  # patience is resumable
    fresh = _run(_agent(script, patience=3), log)
    assert (more.steps, more.best_step, more.stop_reason) == (fresh.steps, fresh.best_step, "patience") == (8, 5, "patience")
    assert more.curves == fresh.curves


def test_validations_since_best():
    curves = [{"step": float(s)} for s in (10, 20, 30, 40)]
    assert [validations_since_best(curves, b) for b in (10, 20, 40, None)] == [3, 2, 0, 4]


def test_a_continuation_must_be_what_a_fresh_run_would_do(log, tmp_path):
    script = [0.1, 0.3, 0.2, 0.2, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8]
    ck = tmp_path / "ck.pt"
    _run(_agent(script, patience=None, steps=8), log, checkpoint_path=ck)  # a fixed-length run: 8 steps
    with pytest.raises(BadInputError, match=r"ck\.pt: cannot resume, the checkpoint is at step 8, past this run's cap of 6"):
        _run(_agent(script, patience=None, steps=6), log, checkpoint_path=ck, resume=True)
    with pytest.raises(BadInputError, match=r"cannot resume with patience=2: that run would have stopped at step 4, "
                                            r"the checkpoint is at step 8"):
        _run(_agent(script, patience=2, steps=10), log, checkpoint_path=ck, resume=True)
    more = _run(_agent(script, patience=4, steps=10), log, checkpoint_path=ck, resume=True)  # 4 would not have stopped
    fresh = _run(_agent(script, patience=4, steps=10), log)
    assert (more.steps, more.stop_reason, more.curves) == (fresh.steps, fresh.stop_reason, fresh.curves)


def test_patience_stop_replays_the_rule():
    curves = [{"step": float(s), "m": v} for s, v in zip(range(1, 8), [0.1, 0.3, 0.3, None, 0.2, 0.5, 0.4])]
    assert [patience_stop(curves, "m", p) for p in (None, 1, 2, 3, 4)] == [None, 3, 4, 5, None]


def test_validations_up_to_patience_after_do_not_count(log):
    script = [0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]
    r = _run(_agent(script, patience=2, patience_after=4), log)  # steps 5 and 6 are the first that count
    assert (r.steps, r.best_step, r.stop_reason) == (6, 1, "patience")
    curves = [{"step": float(s), "m": v} for s, v in enumerate(script, 1)]
    assert patience_stop(curves, "m", 2, after=4) == 6 and patience_stop(curves, "m", 2) == 3
    assert validations_since_best(curves, 1, after=4) == 4
