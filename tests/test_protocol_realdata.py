"""The popularity baseline's published protocol numbers, through recgym.evaluate.

The raw files are read here with pandas, independently of recgym's loaders, so this checks
the evaluator (ranking, ties, history exclusion, first-event handling) on real data:

* ml-100k leave-one-out (u.data sorted by (timestamp, file order) per user; last item = test;
  pop = item counts of every user's sequence but its last two; input items excluded):
  Recall@10 = 0.0838, NDCG@10 = 0.0432;
* yoochoose-100k session protocol (pop = item counts of ``*_train_tr.txt``; every event of
  ``*_test.txt`` is a target, the first of a session too; catalogue = items of any file):
  HR@20 = 0.0809, NDCG@20 = 0.0280.

Skipped unless ``RECGYM_DATA_DIR`` points at the raw data.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.data import SessionLog
from recgym.evaluate import evaluate_loo, evaluate_sessions

pd = pytest.importorskip("pandas")
DATA = os.environ.get("RECGYM_DATA_DIR")
pytestmark = pytest.mark.skipif(not DATA, reason="RECGYM_DATA_DIR not set")


class PopScorer:
    """Scores = training counts for every history (a broadcast view: the evaluator must copy it)."""

    def __init__(self, counts: np.ndarray, state_len: int = 50):
        self.c = torch.as_tensor(counts, dtype=torch.float32)
        self.n_items, self.state_len = len(counts), state_len

    def scores(self, states, lengths):
        return self.c.expand(len(states), -1)


def _log(items: np.ndarray, lengths: np.ndarray, n_items: int) -> SessionLog:
    n = len(items)
    return SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=items, rewards=np.ones(n),
                      kinds=np.zeros(n), timestamps=np.zeros(n), n_items=n_items)


def test_pop_ml100k_leave_one_out():
    path = Path(DATA) / "ml-100k" / "u.data"
    if not path.exists():
        pytest.skip(f"{path} missing")
    df = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "ts"])
    df["order"] = np.arange(len(df))
    df = df.sort_values(["user", "ts", "order"])
    items = df["item"].to_numpy() - 1  # raw ids 1..1682
    log = _log(items, df.groupby("user", sort=True).size().to_numpy(), 1682)
    pos, length = log.position_of_event, log.lengths[log.session_of_event]
    counts = np.bincount(items[pos < length - 2], minlength=1682)
    out = evaluate_loo(PopScorer(counts), log, ks=(1, 10), exclude_history=True, popularity=counts / counts.sum())
    assert out["n_users"] == 943
    assert round(out["recall@10"], 4) == 0.0838
    assert round(out["ndcg@10"], 4) == 0.0432
    assert out["npcount@10"] == 1.0  # the reference is pop's own history-excluded lists


def test_pop_yoochoose100k_sessions():
    root = Path(DATA) / "yoochoose-100k"
    files = {p.name.split("_", 1)[1][:-4]: p for p in root.glob("yoochoose-clicks-100k_*.txt")}
    if not {"train_tr", "test"} <= set(files):
        pytest.skip(f"{root} incomplete")
    frames = {k: pd.read_csv(p, sep="\t") for k, p in files.items()}
    catalogue = np.unique(np.concatenate([f["ItemId"].to_numpy() for f in frames.values()]))
    test = frames["test"].assign(order=np.arange(len(frames["test"]))).sort_values(["SessionId", "Time", "order"])
    items = np.searchsorted(catalogue, test["ItemId"].to_numpy())
    log = _log(items, test.groupby("SessionId", sort=True).size().to_numpy(), len(catalogue))
    counts = np.bincount(np.searchsorted(catalogue, frames["train_tr"]["ItemId"].to_numpy()), minlength=len(catalogue))
    out = evaluate_sessions(PopScorer(counts, state_len=10), log, ks=(20,))
    assert len(catalogue) == 2933 and out["n_events"] == 13568
    assert round(out["hr@20"], 4) == 0.0809
    assert round(out["ndcg@20"], 4) == 0.0280
