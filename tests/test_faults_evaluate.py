"""Fault cases of evaluation: an agent whose scores are NaN is refused, never scored as zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.errors import EXIT_BAD_INPUT, BadInputError
from recgym.evaluate import evaluate
from recgym.data import SessionLog

N_ITEMS = 10


class NaNAfterItem3:
    """A custom agent (not an Agent subclass) whose scores are NaN for histories ending in item 3."""

    n_items, state_len = N_ITEMS, 4

    def scores(self, states, lengths):
        s = torch.randn(len(states), N_ITEMS, generator=torch.Generator().manual_seed(0))
        last = states[torch.arange(len(states)), (lengths - 1).clamp(min=0)]
        s[(lengths > 0) & (last == 3)] = float("nan")
        return s


def _log() -> SessionLog:
    # session 0: 1 2 5; session 1: 4 3 7 (event 5 follows item 3; its LOO input ends in 3); session 2: 3 8
    items = np.array([1, 2, 5, 4, 3, 7, 3, 8])
    return SessionLog(offsets=np.array([0, 3, 6, 8]), items=items, rewards=np.ones(8), kinds=np.zeros(8),
                      timestamps=np.zeros(8), n_items=N_ITEMS, name="nan-log")


def test_nan_scores_raise_naming_the_agent_and_the_first_bad_row():
    with pytest.raises(BadInputError, match=r"evaluate: NaNAfterItem3\.scores returned NaN, first for event 5 of log "
                                            r"'nan-log' \(history length 2\)") as e:
        evaluate(NaNAfterItem3(), _log(), "session", batch_size=4)
    assert e.value.code == EXIT_BAD_INPUT and "\n" not in str(e.value)


def test_nan_scores_raise_under_leave_one_out_naming_the_session():
    with pytest.raises(BadInputError, match=r"NaNAfterItem3\.scores returned NaN, first for session 1 of log 'nan-log'"):
        evaluate(NaNAfterItem3(), _log(), "loo")


def test_minus_inf_scores_are_not_mistaken_for_nan():
    class MaskedAgent(NaNAfterItem3):
        def scores(self, states, lengths):
            s = torch.zeros(len(states), N_ITEMS)
            s[:, 0] = -torch.inf
            s[:, 1] = torch.inf
            return s

    out = evaluate(MaskedAgent(), _log(), "session")  # no error
    assert out["hr@10"] == 1.0
