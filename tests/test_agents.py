"""Agent registry, baselines (hand-computed scores) and the SASRec encoder contract."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pytest
import torch

from recgym.agents.base import Agent
from recgym.agents.baselines import BPRAgent, MarkovChainAgent, PopularityAgent
from recgym.agents.registry import AGENTS, get_agent_class, make_agent
from recgym.data import SessionLog


def _log(sessions: list[list[int]], n_items: int) -> SessionLog:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sessions])])
    items = np.concatenate([np.asarray(s) for s in sessions]) if sessions else np.zeros(0)
    n = len(items)
    return SessionLog(offsets=offsets, items=items, rewards=np.ones(n), kinds=np.zeros(n), timestamps=np.zeros(n),
                      n_items=n_items)


def _states(histories: list[list[int]], L: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.full((len(histories), L), pad, dtype=torch.long)
    for i, h in enumerate(histories):
        h = h[-L:]
        s[i, : len(h)] = torch.tensor(h, dtype=torch.long)
    return s, torch.tensor([min(len(h), L) for h in histories])


# ----------------------------------------------------------------------------- registry
def test_registry_lists_and_resolves_builtin_agents():
    assert {"pop", "mc", "bpr", "sasrec"} <= set(AGENTS)
    assert get_agent_class("pop") is PopularityAgent
    agent = make_agent("sasrec", 7, seed=3, hidden=8)
    assert agent.n_items == 7 and agent.config.hidden == 8 and agent.seed == 3


def test_registry_unknown_name_lists_available():
    with pytest.raises(ValueError, match="Available agents: .*pop.*sasrec"):
        get_agent_class("no-such-agent")


def test_every_agent_of_the_zoo_is_registered():
    zoo = {"pop", "mc", "bpr", "sasrec", "bert4rec", "sqn", "sac", "snqn", "sa2c", "co", "ccql",
           "lmu", "pg", "ips", "ips-pg", "lpi-cb", "lpi", "prl", "prl-mean", "prl-mlp", "prl-wo",
           "prl-cumu", "gptrec", "gptrec-ppo", "mmr", "pop-rerank"}
    assert zoo <= set(AGENTS), sorted(zoo - set(AGENTS))


def test_every_preset_of_every_agent_builds():
    # a preset naming a field its agent lacks would only fail on that dataset, at run time
    for name in AGENTS:
        cls = get_agent_class(name)
        for key in getattr(cls, "PRESETS", {}) or {}:
            agent = make_agent(name, 20, dataset=key)
            assert agent.n_items == 20, (name, key)


def test_registered_names_resolve_and_build():
    for name in AGENTS:
        cls = get_agent_class(name)
        assert cls.name == name, f"{name!r} resolves to {cls.__name__} whose name is {cls.name!r}"
    from recgym.agents.nets import ENCODERS, make_encoder

    for enc in ENCODERS:
        e = make_encoder(enc, 12, hidden=16, state_len=6, dropout=0.0).eval()
        assert e(torch.full((2, 6), 12), torch.tensor([0, 0])).shape == (2, e.out_dim)


def test_registry_loads_custom_module_class(tmp_path, monkeypatch):
    (tmp_path / "my_agents_mod.py").write_text(textwrap.dedent("""
        import torch
        from recgym.agents.base import Agent

        class MyAgent(Agent):
            name = "mine"
            def fit(self, train, valid=None, **kw):
                return self
            def scores(self, states, lengths):
                return torch.arange(self.n_items, dtype=torch.float32).repeat(len(states), 1)

        class NotAnAgent:
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = get_agent_class("my_agents_mod:MyAgent")
    assert issubclass(cls, Agent) and cls.name == "mine"
    agent = make_agent("my_agents_mod:MyAgent", 5)
    assert agent.recommend([[1, 2]], k=2).tolist() == [[4, 3]]
    with pytest.raises(ValueError, match="not a subclass"):
        get_agent_class("my_agents_mod:NotAnAgent")
    with pytest.raises(ValueError, match="no attribute 'Missing'"):
        get_agent_class("my_agents_mod:Missing")
    with pytest.raises(ValueError, match="cannot import module"):
        get_agent_class("no_such_module_xyz:Agent")
    sys.modules.pop("my_agents_mod", None)


def test_make_agent_presets_then_overrides():
    a = make_agent("sasrec", 10, dataset="ml-100k")  # the loo protocol's preset, then ml-100k's on top
    assert (a.config.state_len, a.config.n_blocks, a.config.lr, a.config.batch_size) == (50, 2, 2e-3, 32)
    b = make_agent("sasrec", 10, protocol="loo", state_len=20)  # protocol preset, override wins
    assert (b.config.state_len, b.config.n_blocks, b.config.lr, b.config.batch_size) == (20, 2, 1e-3, 128)
    c = make_agent("sasrec", 10)
    assert (c.config.state_len, c.config.hidden, c.config.lr, c.config.batch_size) == (10, 64, 0.01, 256)
    with pytest.raises(TypeError, match="unknown hyper-parameter.*'hiden'"):
        make_agent("sasrec", 10, hiden=3)


# ----------------------------------------------------------------------------- pop
def test_pop_scores_are_train_counts():
    log = _log([[0, 1, 1], [1, 3]], n_items=4)
    agent = PopularityAgent(4).fit(log)
    s, n = _states([[2], []], 1, 4)
    out = agent.scores(s, n)
    assert out.tolist() == [[1, 3, 0, 1], [1, 3, 0, 1]]
    out[0, 0] = 99  # a fresh tensor: the evaluator may write into it
    assert agent.scores(s, n)[0, 0] == 1


# ----------------------------------------------------------------------------- mc
def test_mc_scores_hand_computed():
    # gap 1 pairs: 0->1, 1->2, 0->2; gap 2 pairs: 0->2
    log = _log([[0, 1, 2], [0, 2]], n_items=3)
    agent = MarkovChainAgent(3, max_gap=2, decay=0.5, smoothing=0.1, pop_tiebreak=0.0, state_len=5).fit(log)
    s, n = _states([[0, 1], [0], [], [2, 0, 1]], 5, 3)
    out = agent.scores(s, n).numpy()
    l01, l11 = math.log(0.1), math.log(1.1)
    # [0, 1]: gap 1 from item 1 (C=[0,0,1], N=1), gap 2 from item 0 (C=[0,0,1], N=1)
    np.testing.assert_allclose(out[0], [0.5 * l01 + 0.25 * l01, 0.5 * l01 + 0.25 * l01, 0.5 * l11 + 0.25 * l11], rtol=1e-5)
    # [0]: gap 1 from item 0 (C=[0,1,1], N=2)
    np.testing.assert_allclose(out[1], 0.5 * np.log(np.array([0.1, 1.1, 1.1]) / 2), rtol=1e-5)
    np.testing.assert_allclose(out[2], 0.0)  # empty history
    # [2, 0, 1]: item 2 sits at gap 3 > max_gap and does not count
    np.testing.assert_allclose(out[3], out[0], rtol=1e-6)


def test_mc_matches_naive_loop_on_random_log():
    rng = np.random.default_rng(0)
    sessions = [list(rng.integers(0, 6, size=rng.integers(1, 8))) for _ in range(30)]
    log = _log(sessions, 6)
    agent = MarkovChainAgent(6, max_gap=3, decay=0.6, smoothing=0.1, pop_tiebreak=0.0, state_len=4).fit(log)
    C = np.zeros((4, 6, 6))
    for s in sessions:
        for i in range(len(s)):
            for d in range(1, 4):
                if i + d < len(s):
                    C[d, s[i], s[i + d]] += 1
    hists = [list(rng.integers(0, 6, size=k)) for k in range(0, 6)]
    want = np.zeros((len(hists), 6))
    for b, h in enumerate(hists):
        h = h[-4:]
        for d in range(1, min(len(h), 3) + 1):
            src = h[-d]
            want[b] += 0.6**d * np.log((C[d, src] + 0.1) / max(C[d, src].sum(), 1))
    got = agent.scores(*_states(hists, 4, 6)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_mc_tiebreak_ranks_popular_first_and_roundtrips(tmp_path):
    log = _log([[0, 1, 1], [1, 2, 1]], n_items=4)
    agent = MarkovChainAgent(4).fit(log)
    s, n = _states([[], [0]], 50, 4)
    assert agent.recommend(np.asarray(s), k=1)[0, 0] == 1  # empty history: most popular
    agent.save(tmp_path / "mc.pt")
    back = MarkovChainAgent.load(tmp_path / "mc.pt")
    torch.testing.assert_close(back.scores(s, n), agent.scores(s, n))


# ----------------------------------------------------------------------------- bpr
def test_bpr_smoke_deterministic_and_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    # two item communities: sessions stay inside {0..4} or {5..9}
    sessions = [list(rng.integers(0, 5, 6)) if i % 2 else list(rng.integers(5, 10, 6)) for i in range(200)]
    log = _log(sessions, 10)
    a = BPRAgent(10, factors=8, iterations=100, lr=0.05, seed=0).fit(log)
    b = BPRAgent(10, factors=8, iterations=100, lr=0.05, seed=0).fit(log)
    torch.testing.assert_close(a.item_factors, b.item_factors, rtol=0, atol=0)
    s, n = _states([[0, 1, 2], [6, 7], []], 50, 10)
    out = a.scores(s, n)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert set(a.recommend(np.asarray(s[:1]), k=3)[0]) <= set(range(5))  # same community
    assert set(a.recommend(np.asarray(s[1:2]), k=3)[0]) <= set(range(5, 10))
    a.save(tmp_path / "bpr.pt")
    torch.testing.assert_close(BPRAgent.load(tmp_path / "bpr.pt").scores(s, n), out)


# ----------------------------------------------------------------------------- SASRec encoder
def _encoder(**kw):
    from recgym.agents.nets import make_encoder

    torch.manual_seed(0)
    return make_encoder("sasrec", 20, hidden=16, state_len=8, dropout=0.0, **kw).eval()


def test_sasrec_encoder_shapes_and_tied_embeddings():
    enc = _encoder(n_blocks=2, n_heads=2)
    s, n = _states([[1, 2, 3], [], [4] * 8], 8, 20)
    out = enc(s, n)
    assert out.shape == (3, 16) == (3, enc.out_dim) and torch.isfinite(out).all()
    assert enc.item_embeddings.weight.shape == (21, 16)
    assert enc.sequence(s, n).shape == (3, 8, 16)
    with pytest.raises(ValueError, match="exceeds state_len=8"):
        enc(torch.zeros(1, 9, dtype=torch.long), torch.tensor([9]))


def test_sasrec_encoder_is_causal():
    enc = _encoder(n_blocks=2)
    s, n = _states([[1, 2, 3, 4, 5, 6]], 8, 20)
    base = enc.sequence(s, n)
    s2 = s.clone()
    s2[0, 4:6] = torch.tensor([11, 12])  # change items after position 3
    out = enc.sequence(s2, n)
    torch.testing.assert_close(out[0, :4], base[0, :4])
    assert not torch.allclose(out[0, 4:6], base[0, 4:6])


def test_sasrec_encoder_ignores_padding_and_empty_is_consistent():
    enc = _encoder(n_blocks=2, n_heads=2)
    s, n = _states([[1, 2, 3], [], [7]], 8, 20)
    base = enc(s, n)
    junk = s.clone()
    junk[0, 3:] = 5  # garbage beyond the length
    junk[1, :] = torch.arange(8)
    torch.testing.assert_close(enc(junk, n), base)
    torch.testing.assert_close(enc(s[:, :4], n), base)  # narrower window, same history
    torch.testing.assert_close(base[1], enc(*_states([[]], 2, 20))[0])  # every empty history alike
    assert not torch.allclose(base[0], base[2])


# ----------------------------------------------------------------------------- sequence baselines: total loss by hand
def _ce(logits: torch.Tensor, target: int) -> float:
    """−log softmax(logits)[target] over the catalogue, written out."""
    return float(torch.logsumexp(logits.double(), 0) - logits.double()[target])


@pytest.mark.parametrize("all_positions", [False, True])
def test_sasrec_loss_is_catalogue_cross_entropy_by_hand(all_positions):
    """SQN paper Eq. 2 (one target per row) / SASRec training (every position predicts the next
    item, the last valid one the logged action; an empty history predicts it from position 0)."""
    from recgym.agents.sasrec import SASRecAgent

    n, L = 9, 4
    torch.manual_seed(0)
    agent = SASRecAgent(n, state_len=L, hidden=8, n_blocks=1, n_heads=1, dropout=0.0, tied_output=all_positions,
                        all_positions=all_positions)
    states = torch.tensor([[1, 2, 3, n], [4, n, n, n], [n, n, n, n], [5, 6, 7, 8]])
    lengths = torch.tensor([3, 1, 0, 4])
    action = torch.tensor([6, 0, 2, 1])
    loss, _ = agent.loss({"state": states, "state_len": lengths, "action": action})
    with torch.no_grad():
        if not all_positions:
            logits = agent.logits(states, lengths)
            terms = [_ce(logits[b], int(action[b])) for b in range(4)]
        else:
            h = agent.encoder.sequence(states, lengths)
            terms = []
            for b in range(4):
                m = max(int(lengths[b]), 1)
                for p in range(m):
                    target = int(states[b, p + 1]) if p < int(lengths[b]) - 1 else int(action[b])
                    terms.append(_ce(agent._output(h[b, p]), target))
            assert len(terms) == 3 + 1 + 1 + 4
    assert float(loss.detach()) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_bert4rec_loss_is_masked_item_cross_entropy_by_hand():
    """Cloze loss (BERT4Rec paper): the mean over masked positions of −log softmax(E h_p)[x_p];
    cloze_mask masks items with [MASK] and labels exactly those positions."""
    from recgym.agents.bert4rec import BERT4RecAgent, cloze_mask

    n = 12
    torch.manual_seed(0)
    agent = BERT4RecAgent(n, state_len=6, hidden=8, n_blocks=1, n_heads=2, dropout=0.0, mask_prob=0.4)
    log = _log([[0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 0, 1, 2]], n)
    rng = np.random.default_rng(3)
    batch = cloze_mask(agent.make_transitions(log).sample(5, rng)["seq"], n, 0.4, rng)
    tokens, labels = batch["tokens"], batch["labels"]
    masked = labels != -100
    assert masked.any(1).all() and (tokens[masked] == n + 1).all() and (tokens[~masked] != n + 1).all()
    loss, _ = agent.loss(batch)
    with torch.no_grad():
        logits = agent.net(tokens)
        terms = [_ce(logits[b, p], int(labels[b, p])) for b, p in zip(*np.nonzero(masked.numpy()))]
    assert float(loss.detach()) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_custom_agent_module_is_found_in_the_current_folder(tmp_path, monkeypatch):
    # `python scripts/compare.py --agents my_mod:MyAgent` run from the folder holding my_mod.py:
    # the script's folder is on sys.path, the user's is not
    from recgym.agents.registry import get_agent_class

    (tmp_path / "recgym_test_cwd_agent.py").write_text(
        "from recgym.agents.baselines import PopularityAgent\n\nclass Mine(PopularityAgent):\n    name = 'mine'\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    assert get_agent_class("recgym_test_cwd_agent:Mine").name == "mine"
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_here'"):
        get_agent_class("no_such_module_here:X")
