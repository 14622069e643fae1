"""Fault cases of configs, checkpoints and training: each bad input is refused in one line that
names the culprit, and nothing is written or overwritten."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from recgym.agents.baselines import BPRAgent
from recgym.agents.qlearning import SQNAgent
from recgym.agents.registry import make_agent
from recgym.agents.sasrec import SASRecAgent
from recgym.agents.training import NonFiniteLossError, train_loop
from recgym.data import SessionLog, split_by_session
from recgym.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, BadInputError, DivergedError

N_ITEMS = 20
TINY = dict(hidden=16, batch_size=32, steps=20, eval_every=10)
QUIET = dict(progress=False, log=lambda m: None)


def _log(seed: int = 0, n_sessions: int = 120) -> SessionLog:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 8, n_sessions)
    items = rng.integers(0, N_ITEMS, lengths.sum())
    kinds = (rng.random(len(items)) < 0.3).astype(np.int8)
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items, rewards=np.where(kinds, 1.0, 0.2),
                      kinds=kinds, timestamps=np.zeros(len(items)), n_items=N_ITEMS, name="tiny")


@pytest.fixture(scope="module")
def split():
    return split_by_session(_log(), seed=0)


@pytest.fixture(scope="module")
def checkpoint(split, tmp_path_factory):
    """A finished seed-0 SASRec run's checkpoint (20 steps) and its bytes."""
    path = tmp_path_factory.mktemp("ck") / "ck.pt"
    SASRecAgent(N_ITEMS, seed=0, **TINY).fit(split.train, split.valid, checkpoint_path=path, **QUIET)
    return path, path.read_bytes()


def _resume(agent, split, path, train=None):
    return train_loop(agent, train if train is not None else split.train, split.valid, checkpoint_path=path,
                      resume=True, steps=30, **QUIET)


# ------------------------------------------------------------------ resume (Bad #2)
def test_resume_refuses_a_checkpoint_of_another_seed(split, checkpoint):
    path, before = checkpoint
    with pytest.raises(BadInputError, match=r"ck\.pt: cannot resume, the checkpoint was trained with seed 0, this run has seed 1"):
        _resume(SASRecAgent(N_ITEMS, seed=1, **TINY), split, path)
    assert path.read_bytes() == before


def test_resume_refuses_a_checkpoint_trained_on_other_data(split, checkpoint):
    path, before = checkpoint
    other = split_by_session(_log(seed=5), seed=0).train  # same catalogue, same config, other sessions
    with pytest.raises(BadInputError, match=r"ck\.pt: cannot resume, the checkpoint was trained on other data "
                                            r"\(training-log checksum [0-9a-f]{16}, this run's is [0-9a-f]{16}\)"):
        _resume(SASRecAgent(N_ITEMS, seed=0, **TINY), split, path, train=other)
    assert path.read_bytes() == before


def test_resume_with_another_agents_checkpoint_is_one_clear_line(split, checkpoint):
    path, before = checkpoint
    agent = SQNAgent(N_ITEMS, seed=0, **TINY)
    with pytest.raises(BadInputError) as e:
        _resume(agent, split, path)
    msg = str(e.value)
    assert "\n" not in msg and e.value.code == EXIT_BAD_INPUT
    assert "ck.pt" in msg and "'sasrec'" in msg and "'sqn'" in msg
    assert path.read_bytes() == before


def test_resume_refuses_a_file_that_is_not_a_checkpoint(split, tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(BadInputError, match=r"ck\.pt: not a readable recgym checkpoint") as e:
        _resume(SASRecAgent(N_ITEMS, **TINY), split, path)
    assert "\n" not in str(e.value)
    assert path.read_bytes() == b"not a checkpoint"


def test_load_refuses_another_agents_model(split, tmp_path):
    SASRecAgent(N_ITEMS, **TINY).save(tmp_path / "model.pt")
    with pytest.raises(BadInputError, match=r"model\.pt: the file holds a 'sasrec' model, not 'sqn'"):
        SQNAgent.load(tmp_path / "model.pt")


def test_load_refuses_a_file_that_is_not_a_model(tmp_path):
    junk = tmp_path / "model.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(BadInputError, match=r"model\.pt: not a readable recgym model") as e:
        SASRecAgent.load(junk)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ config validation (Weak)
@pytest.mark.parametrize("value", ["abc", math.nan, math.inf, True])
def test_make_agent_refuses_a_bad_learning_rate_naming_the_field(value):
    with pytest.raises(BadInputError, match=r"SASRecAgent: hyper-parameter lr must be a finite float, got "):
        make_agent("sasrec", N_ITEMS, lr=value)


def test_config_checks_int_fields_and_optional_fields():
    with pytest.raises(BadInputError, match=r"hyper-parameter hidden must be an int, got 2\.5"):
        SASRecAgent(N_ITEMS, hidden=2.5)
    with pytest.raises(BadInputError, match=r"hyper-parameter max_grad_norm must be a finite float \| None, got nan"):
        SASRecAgent(N_ITEMS, max_grad_norm=float("nan"))
    agent = SASRecAgent(N_ITEMS, steps=1e3, max_grad_norm=None)  # an integral float is an int
    assert agent.config.steps == 1000 and isinstance(agent.config.steps, int)


@pytest.mark.parametrize("agent, field, value, want", [
    ("sasrec", "hidden", -4, "a positive integer"),
    ("sasrec", "hidden", 0, "a positive integer"),
    ("sqn", "batch_size", 0, "a positive integer"),
    ("bert4rec", "n_heads", 0, "a positive integer"),
    ("sasrec", "state_len", 0, "a positive integer"),
    ("sasrec", "steps", 0, "a positive integer or None"),
    ("sasrec", "eval_every", -1, "a positive integer or None"),
    ("sasrec", "lr", 0.0, "positive"),
    ("sasrec", "lr", -1e-3, "positive"),
    ("sasrec", "epochs", 0, "positive"),
    ("sasrec", "max_grad_norm", 0.0, "positive or None"),
    ("sasrec", "weight_decay", -0.1, "non-negative"),
    ("sasrec", "dropout", 1.0, "in [0, 1)"),
    ("sasrec", "dropout", -0.1, "in [0, 1)"),
])
def test_config_refuses_values_outside_their_range(agent, field, value, want):
    # a negative width used to surface as torch's "negative dimension" RuntimeError (exit 1)
    with pytest.raises(BadInputError, match=rf"hyper-parameter {field} must be {re.escape(want)}, got {re.escape(repr(value))}$"):
        make_agent(agent, N_ITEMS, **{field: value})


def test_config_range_edges_are_accepted():
    agent = make_agent("sasrec", N_ITEMS, hidden=1, dropout=0.0, weight_decay=0.0, steps=1, eval_every=1,
                       patience=1, patience_after=0, max_grad_norm=None)
    assert (agent.config.hidden, agent.config.dropout, agent.config.steps) == (1, 0.0, 1)


def test_gptrec_config_refuses_a_string_lambda_ild():
    with pytest.raises(BadInputError, match=r"GPTRecPPOAgent: hyper-parameter lambda_ild must be a finite float, got '0.1'"):
        make_agent("gptrec-ppo", N_ITEMS, lambda_ild="0.1")


def test_bpr_refuses_a_nan_learning_rate():
    with pytest.raises(BadInputError, match=r"BPRAgent: hyper-parameter lr must be a finite float, got nan"):
        make_agent("bpr", N_ITEMS, lr=float("nan"))


def test_bpr_divergence_is_a_diverged_error(split):
    agent = BPRAgent(N_ITEMS, lr=1e30, iterations=3)
    with pytest.raises(DivergedError, match=r"bpr: training diverged: non-finite item factors") as e:
        agent.fit(split.train)
    assert e.value.code == EXIT_DIVERGED and "\n" not in str(e.value)


def test_qlearning_divergence_is_a_diverged_error(split, tmp_path):
    """A learning rate that blows the Q-values up stops at the first non-finite loss: one line,
    exit status 3, the agent keeps finite weights and the last good checkpoint is kept."""
    agent = SQNAgent(N_ITEMS, hidden=16, batch_size=32, steps=200, eval_every=5, lr=1e12)
    with pytest.raises(DivergedError) as e:
        agent.fit(split.train, split.valid, checkpoint_path=tmp_path / "ck.pt", **QUIET)
    assert isinstance(e.value, NonFiniteLossError) and e.value.code == EXIT_DIVERGED
    assert "\n" not in str(e.value) and str(e.value).startswith("sqn: training stopped at step ")
