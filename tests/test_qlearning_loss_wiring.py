"""Every Q-learning agent's total loss, rebuilt term by term from the paper.

For one fixed tiny batch, the reference below computes each term of CCQL Eq. 4 through the pure,
hand-tested functions of :mod:`recgym.agents.qlearning_losses`, from the *full* ``[B, n]`` heads
(not the agents' fused routes), with the papers' weights written out as literals; the agent's
``compute_loss`` must give the same value and the same gradients. Negatives and augmented views
are fixed by patching the sampler and the augmentation, dropout is off (eval mode).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recgym.agents import qlearning as QA
from recgym.agents import qlearning_losses as QL
from recgym.agents.qlearning import CCQLAgent, COAgent, SA2CAgent, SACAgent, SNQNAgent, SQNAgent
from recgym.data import split_by_session
from recgym.sim.world import make_synthetic_log

TINY = dict(hidden=8, batch_size=16, state_len=5, encoder="gru")
B = 16

# The papers' settings (SQN/SAC SIGIR'20, SNQN/SA2C WSDM'22, CCQL Eq. 2-4): γ, ω, K negatives,
# negative reward, α (CQL), τ (Eq. 2 has none), InfoNCE weight and temperature, actor after the switch.
PAPER = {
    "sqn": dict(discount=0.5, omega=1.0, K=0, r_neg=0.0, alpha=0.0, tau=1.0, w_co=0.0, t_co=0.07, actor="ce"),
    "sac": dict(discount=0.5, omega=1.0, K=0, r_neg=0.0, alpha=0.0, tau=1.0, w_co=0.0, t_co=0.07, actor="q"),
    "snqn": dict(discount=0.5, omega=1.0, K=10, r_neg=0.0, alpha=0.0, tau=1.0, w_co=0.0, t_co=0.07, actor="ce"),
    "sa2c": dict(discount=0.5, omega=1.0, K=10, r_neg=0.0, alpha=0.0, tau=1.0, w_co=0.0, t_co=0.07, actor="advantage",
                 adv_max=10.0),
    "co": dict(discount=0.5, omega=1.0, K=0, r_neg=0.0, alpha=0.0, tau=1.0, w_co=1.0, t_co=0.07, actor="ce"),
    "ccql": dict(discount=0.5, omega=1.0, K=10, r_neg=-1.0, alpha=0.01, tau=1.0, w_co=1.0, t_co=0.07, actor="ce"),
}
AGENTS = {c.name: c for c in (SQNAgent, SACAgent, SNQNAgent, SA2CAgent, COAgent, CCQLAgent)}


@pytest.fixture(scope="module")
def split():
    return split_by_session(make_synthetic_log(120, seed=0, n_items=40, n_users=40), seed=0)


@pytest.fixture(scope="module")
def batch(split):
    b = split.train.transitions(5).batch(np.arange(B))
    b["reward"] = torch.tensor([0.2, 1.0, 0.2, 0.2] * (B // 4))
    b["done"] = torch.tensor([0.0, 1.0] * (B // 2))  # half the rows end a session: bootstrap zeroed
    assert (b["state_len"] > 0).sum() >= 2  # the InfoNCE term needs two non-empty histories
    return b


def _views(s: torch.Tensor, sl: torch.Tensor, pad: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Two fixed 'augmented' views: the history itself and the history with its first item masked."""
    masked = s.clone()
    masked[:, 0] = torch.where(sl > 1, torch.full_like(sl, pad), s[:, 0])
    return [(s.clone(), sl.clone()), (masked, sl.clone())]


@pytest.fixture
def fixed_randomness(monkeypatch):
    """Patch the negative sampler (fixed negatives, calls recorded) and the augmentation."""
    calls: list[dict] = []
    n_aug = [0]

    def sampler(actions, n_items, n_neg, generator=None, history=None):
        calls.append({"history": history, "n_items": n_items})
        g = torch.Generator().manual_seed(123)
        return torch.randint(0, n_items, (actions.shape[0], n_neg), generator=g)

    def aug(states, lengths, pad_id, methods=None, ratios=None, generator=None):
        n_aug[0] += 1
        return _views(states, lengths, pad_id)[(n_aug[0] - 1) % 2]

    monkeypatch.setattr(QL, "sample_negatives", sampler)
    monkeypatch.setattr(QA, "augment", aug)
    return calls


def reference_loss(agent, batch, p: dict, phase2: bool) -> torch.Tensor:
    """Eq. 4 from the full heads of q1 (main) and q2 (target), term by term, weights from ``p``."""
    m, t = agent.q1, agent.q2
    s, sl, a, r, done = batch["state"], batch["state_len"], batch["action"], batch["reward"], batch["done"]
    s2, l2 = batch["next_state"], batch["next_len"]
    q_all = m.q_values(s, sl)  # [B, n]
    q_sa = q_all.gather(1, a[:, None]).squeeze(1)
    ce = QL.ce_per_sample(m.logits(s, sl), a)  # L_CE per row
    with torch.no_grad():
        y = QL.double_q_target(r, m.q_values(s2, l2), t.q_values(s2, l2), done, p["discount"])  # Eq. 1, double Q
    l_q = QL.td_loss(q_sa, y)
    q_neg = None
    if p["K"]:  # SNQN: negatives bootstrapped from the current state
        neg = torch.randint(0, agent.n_items, (B, p["K"]), generator=torch.Generator().manual_seed(123))
        q_neg = q_all.gather(1, neg)
        with torch.no_grad():
            y_neg = QL.negative_td_target(p["r_neg"], q_all, t.q_values(s, sl), p["discount"])
        l_q = l_q + QL.negative_td_loss(q_neg, y_neg)
    actor = p["actor"] if phase2 else "ce"
    if actor == "q":  # SAC
        l_actor = QL.q_weighted_ce(ce, q_sa)
    elif actor == "advantage":  # SA2C
        w = None
        if p.get("smooth", 0.0):
            pi_a = torch.softmax(m.logits(s, sl), dim=1).gather(1, a[:, None]).squeeze(1)
            w = QL.propensity_weight(pi_a, agent._behaviour[a], p["smooth"])
        l_actor = QL.advantage_weighted_ce(ce, QL.advantage(q_sa, q_neg, (0.0, p["adv_max"])), w)
    else:
        l_actor = ce.mean()
    loss = l_actor + p["omega"] * l_q
    if p["alpha"]:
        loss = loss + p["alpha"] * QL.cql_loss(q_sa, q_neg, p["tau"])  # Eq. 2's conservative term
    if p["w_co"]:
        keep = sl > 0
        (v1, w1), (v2, w2) = _views(s[keep], sl[keep], agent.pad_id)
        loss = loss + p["w_co"] * QL.info_nce(m(v1, w1), m(v2, w2), p["t_co"])  # Eq. 3
    return loss


def _check(agent, batch, p, phase2):
    ref = reference_loss(agent, batch, p, phase2)
    got, _ = agent.compute_loss(batch, agent.q1, agent.q2, phase2)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # the target network gets no gradient (its values are constants of the TD targets)
    assert all(g is None for g in torch.autograd.grad(got, list(agent.q2.parameters()), allow_unused=True,
                                                      retain_graph=True))
    params = list(agent.q1.parameters())
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    g_got = torch.autograd.grad(got, params, allow_unused=True)
    for gr, gg in zip(g_ref, g_got):
        if gr is None or gg is None:
            assert (gr is None or not gr.any()) and (gg is None or not gg.any())
        else:
            torch.testing.assert_close(gg, gr, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("phase2", [False, True], ids=["before-switch", "after-switch"])
@pytest.mark.parametrize("name", list(PAPER))
def test_default_loss_is_eq4_with_the_papers_weights(name, phase2, split, batch, fixed_randomness):
    agent = AGENTS[name](split.n_items, seed=0, **TINY)
    agent.set_training(False)
    _check(agent, batch, PAPER[name], phase2)
    if PAPER[name]["K"]:  # negatives come from outside the history (CCQL §3.3)
        assert torch.equal(fixed_randomness[-1]["history"], batch["state"])


# Non-default weights, so that a dropped ω (1 in every paper) or a dropped weight shows.
OVERRIDES = {
    "sqn": dict(td_weight=0.3, discount=0.9),
    "sac": dict(td_weight=0.3, discount=0.9),
    "snqn": dict(td_weight=0.3, neg_reward=-0.5, n_negatives=3),
    "sa2c": dict(td_weight=0.3, n_negatives=3, adv_max=0.05, smooth=1.0),
    "co": dict(td_weight=0.3, co_weight=0.4, co_temperature=0.5, actor="q"),
    "ccql": dict(td_weight=0.3, cql_alpha=0.7, cql_temperature=0.5, co_weight=0.4, neg_reward=-2.0, actor="q"),
}
KEYS = {"td_weight": "omega", "neg_reward": "r_neg", "n_negatives": "K", "cql_alpha": "alpha", "cql_temperature": "tau",
        "co_weight": "w_co", "co_temperature": "t_co", "discount": "discount", "actor": "actor", "smooth": "smooth",
        "adv_max": "adv_max"}


@pytest.mark.parametrize("name", list(OVERRIDES))
def test_loss_with_non_default_weights_is_eq4(name, split, batch, fixed_randomness):
    p = {**PAPER[name], **{KEYS[k]: v for k, v in OVERRIDES[name].items()}}
    agent = AGENTS[name](split.n_items, seed=1, **TINY, **OVERRIDES[name])
    agent.make_transitions(split.train)  # SA2C's behaviour policy β for the propensity weight
    agent.set_training(False)
    _check(agent, batch, p, phase2=True)
    _check(agent, batch, p, phase2=False)


def test_sampler_gets_no_history_with_the_snqn_release_option(split, batch, fixed_randomness):
    agent = SNQNAgent(split.n_items, seed=0, neg_exclude_history=False, **TINY)
    agent.loss(batch)
    assert fixed_randomness[-1]["history"] is None


def test_the_agents_negatives_avoid_history_and_action(split, batch):
    agent = CCQLAgent(split.n_items, seed=0, **TINY)
    seen = []
    real = QL.sample_negatives

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    QL.sample_negatives = spy
    try:
        for _ in range(5):
            agent.loss(batch)
    finally:
        QL.sample_negatives = real
    excl = torch.cat([batch["action"][:, None], batch["state"]], dim=1)
    for neg in seen:
        assert not (neg[:, :, None] == excl[:, None, :]).any()


def test_co_ccql_q_weighted_actor_never_ascends_on_negative_q(split, batch, fixed_randomness):
    """With the release's Q-weighting on and Q(s, a) < 0 everywhere, the actor's weights clamp to 0:
    no gradient step *raises* the logged items' cross-entropy."""
    agent = CCQLAgent(split.n_items, seed=0, actor="q", **TINY)
    agent.set_training(False)
    with torch.no_grad():
        agent.q1.q_head.bias.fill_(-5.0)
    _, info = agent.compute_loss(batch, agent.q1, agent.q2, phase2=True)
    assert info["q_sa"] < 0 and info["actor"] == 0.0
