"""recgym.evaluate on a tiny hand-computed log with a fake agent whose scores we control."""

import math

import numpy as np
import pytest
import torch

from recgym.data import KIND_CLICK, KIND_PURCHASE, SessionLog
from recgym.evaluate import evaluate, evaluate_loo, evaluate_sessions, loo_ranks, session_ranks

N_ITEMS = 5
# scores given the last item of the state (row N_ITEMS = empty history)
TABLE = torch.tensor(
    [
        [2.0, 1.0, 1.0, 0.0, 0.0],  # after 0
        [5.0, 0.0, 0.2, 0.9, 0.1],  # after 1
        [0.0, 3.0, 1.0, 2.0, 0.0],  # after 2
        [0.0, 0.0, 0.5, 9.0, 0.1],  # after 3
        [0.0, 0.0, 0.0, 0.0, 0.0],  # after 4 (unused)
        [0.5, 0.1, 0.1, 0.3, 0.0],  # empty history
    ]
)


class TableAgent:
    """Scores = TABLE[last item of the state]; records what it was called with."""

    n_items = N_ITEMS

    def __init__(self, state_len: int = 2, view: bool = False):
        self.state_len = state_len
        self.view = view
        self.calls: list[tuple[torch.Tensor, torch.Tensor, bool]] = []

    def scores(self, states, lengths):
        self.calls.append((states.clone(), lengths.clone(), torch.is_grad_enabled()))
        last = torch.where(lengths > 0, states.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0], N_ITEMS)
        if self.view:  # a view into the agent's own buffer: the evaluator must not write into it
            return TABLE[N_ITEMS].expand(len(states), N_ITEMS)
        return TABLE[last]


def tiny_log() -> SessionLog:
    # sessions: [0, 1, 2] (click, click, purchase); [3, 1] (click, purchase); [2, 2] (clicks)
    items = [0, 1, 2, 3, 1, 2, 2]
    C, P = KIND_CLICK, KIND_PURCHASE
    kinds = [C, C, P, C, P, C, C]
    return SessionLog(
        offsets=[0, 3, 5, 7],
        items=items,
        rewards=[1.0 if k == KIND_PURCHASE else 0.2 for k in kinds],
        kinds=kinds,
        timestamps=np.arange(7.0),
        n_items=N_ITEMS,
    )


# hand-computed (pessimistic ties): see TABLE
RANKS = [0, 2, 2, 1, 4, 3, 2]
RANKS_EXCL = [0, 1, 1, 1, 3, 3, 2]  # the last event's target 2 is in its history: never excluded


def test_session_ranks_by_hand_and_states():
    agent = TableAgent()
    np.testing.assert_array_equal(session_ranks(agent, tiny_log(), batch_size=3), RANKS)
    states = torch.cat([c[0] for c in agent.calls])
    lengths = torch.cat([c[1] for c in agent.calls])
    assert not any(c[2] for c in agent.calls), "scores must run under no_grad"
    # first events have an empty, fully padded history
    np.testing.assert_array_equal(lengths.numpy(), [0, 1, 2, 0, 1, 0, 1])
    np.testing.assert_array_equal(states[0].numpy(), [N_ITEMS, N_ITEMS])
    np.testing.assert_array_equal(states[2].numpy(), [0, 1])  # right-padded window, oldest first
    np.testing.assert_array_equal(session_ranks(agent, tiny_log(), exclude_history=True), RANKS_EXCL)


def test_evaluate_sessions_metrics_by_hand():
    out = evaluate_sessions(TableAgent(), tiny_log(), ks=(1, 3, 5), batch_size=2)
    assert out["n_events"] == 7 and out["n_click"] == 5 and out["n_purchase"] == 2
    assert out["hr@1"] == pytest.approx(1 / 7)
    assert out["hr@1_click"] == pytest.approx(1 / 5)
    assert out["hr@1_purchase"] == 0.0
    assert out["hr@3"] == pytest.approx(5 / 7)
    assert out["hr@3_click"] == pytest.approx(4 / 5)  # click ranks 0, 2, 1, 3, 2
    assert out["hr@3_purchase"] == pytest.approx(1 / 2)  # purchase ranks 2, 4
    assert out["ndcg@3_click"] == pytest.approx((1 + 0.5 + 1 / math.log2(3) + 0.5) / 5)
    assert out["ndcg@3_purchase"] == pytest.approx(0.5 / 2)
    assert out["ndcg@3"] == pytest.approx((1 + 0.5 + 0.5 + 1 / math.log2(3) + 0.5) / 7)
    assert out["reward@1"] == pytest.approx(0.2)
    assert out["reward@3"] == pytest.approx(4 * 0.2 + 1.0)
    assert out["reward@5"] == pytest.approx(5 * 0.2 + 2 * 1.0)
    assert out["hr@5"] == 1.0
    assert set(out) == {f"{m}@{k}{s}" for m in ("hr", "ndcg") for k in (1, 3, 5) for s in ("", "_click", "_purchase")} | {
        f"reward@{k}" for k in (1, 3, 5)
    } | {"n_events", "n_click", "n_purchase"}
    # batching does not change anything
    assert evaluate_sessions(TableAgent(), tiny_log(), ks=(1, 3, 5), batch_size=1000) == out


def test_evaluate_sessions_no_purchases_gives_nan_and_state_len_window():
    log = tiny_log()
    clicks = SessionLog(offsets=log.offsets, items=log.items, rewards=np.full(7, 0.2), kinds=np.zeros(7), timestamps=log.timestamps, n_items=N_ITEMS)
    out = evaluate_sessions(TableAgent(state_len=1), clicks, ks=(3,))
    assert math.isnan(out["hr@3_purchase"]) and out["n_purchase"] == 0
    assert out["hr@3"] == out["hr@3_click"] == pytest.approx(5 / 7)  # same "last item" scores with L=1


def test_loo_only_last_event_and_history_exclusion():
    log = tiny_log()
    agent = TableAgent()
    ranks, lists, sess = loo_ranks(agent, log, exclude_history=False, slate_size=2)
    np.testing.assert_array_equal(sess, [0, 1, 2])
    np.testing.assert_array_equal(ranks, [2, 4, 2])  # targets 2, 1, 2 (last events only)
    lengths = torch.cat([c[1] for c in agent.calls])
    np.testing.assert_array_equal(lengths.numpy(), [2, 1, 1])
    ranks, lists, _ = loo_ranks(agent, log, exclude_history=True, slate_size=2, batch_size=2)
    np.testing.assert_array_equal(ranks, [1, 3, 2])
    np.testing.assert_array_equal(lists, [[3, 2], [2, 4], [1, 3]])  # history items never listed


def test_evaluate_loo_metrics_by_hand():
    genres = np.array([[1, 0], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=np.float32)
    pop = np.array([0.4, 0.3, 0.2, 0.1, 0.0])
    out = evaluate_loo(TableAgent(), tiny_log(), ks=(1, 3), genres=genres, popularity=pop, slate_size=2)
    assert out["recall@1"] == 0.0 and out["hr@1"] == 0.0
    assert out["recall@3"] == pytest.approx(2 / 3)
    assert out["ndcg@3"] == pytest.approx((1 / math.log2(3) + 0.5) / 3)
    c = 1 / math.sqrt(2)
    # lists [3,2], [2,4], [1,3]: distances 1-c, 0, 1-c
    assert out["ild@2"] == pytest.approx(2 * (1 - c) / 3)
    assert out["pcount@2"] == pytest.approx((0.15 + 0.1 + 0.2) / 3)
    # pop's own lists (history excluded): [2, 3], [0, 1], [0, 1] -> PCOUNT (0.15 + 0.35 + 0.35) / 3
    assert out["npcount@2"] == pytest.approx(0.45 / 0.85)
    assert out["coverage@2"] == pytest.approx(4 / 5)
    assert out["n_users"] == 3
    no_ex = evaluate(TableAgent(), tiny_log(), "loo", ks=(3,), exclude_history=False)
    assert no_ex["recall@3"] == pytest.approx(2 / 3) and no_ex["ndcg@3"] == pytest.approx((0.5 + 0.5) / 3)
    assert "ild@10" not in no_ex and "pcount@10" not in no_ex and "coverage@10" in no_ex


def test_loo_does_not_write_into_agent_buffers():
    before = TABLE.clone()
    ranks, _, _ = loo_ranks(TableAgent(view=True), tiny_log(), exclude_history=True)
    assert torch.equal(TABLE, before)
    # constant empty-history scores [0.5, .1, .1, .3, 0]: targets 2, 1, 2
    # s0 excl {0,1}: 3 higher -> 1; s1 excl {3}: 0 higher, 2 ties -> 2; s2 excl {2} (target kept): 0, 3 higher, 1 ties -> 3
    np.testing.assert_array_equal(ranks, [1, 2, 3])


def test_errors():
    with pytest.raises(ValueError, match="protocol"):
        evaluate(TableAgent(), tiny_log(), "bogus")
    bad = TableAgent()
    bad.n_items = 7
    with pytest.raises(ValueError, match="n_items"):
        evaluate_sessions(bad, tiny_log())


class RandomTieAgent:
    """Small-integer scores (many ties) that depend on the history, as float32."""

    n_items = 7
    state_len = 3

    def scores(self, states, lengths):
        g = torch.Generator().manual_seed(int(states.sum()) + int(lengths.sum()))
        return torch.randint(0, 3, (len(states), self.n_items), generator=g).float()


@pytest.mark.parametrize("exclude", [False, True])
def test_evaluator_ranks_equal_target_ranks(exclude):
    """The fast counting path (numpy chunks, -inf scatter) equals metrics.target_ranks."""
    from recgym import metrics
    from recgym.data import Transitions

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 6, size=40)
    n = int(lengths.sum())
    log = SessionLog(offsets=np.concatenate([[0], np.cumsum(lengths)]), items=rng.integers(0, 7, n),
                     rewards=np.ones(n), kinds=np.zeros(n), timestamps=np.zeros(n), n_items=7)
    agent = RandomTieAgent()
    got = session_ranks(agent, log, batch_size=n, exclude_history=exclude)
    tr = Transitions.from_log(log, state_len=3)
    s = agent.scores(torch.from_numpy(tr.state.astype(np.int64)), torch.from_numpy(tr.state_len))
    ex = None
    if exclude:
        ex = np.zeros((n, 8), dtype=bool)
        ex[np.arange(n)[:, None], tr.state] = True
        ex = ex[:, :7]
    np.testing.assert_array_equal(got, metrics.target_ranks(s.numpy(), tr.action, ex))
