"""The Q-learning family: ``sqn``, ``sac``, ``snqn``, ``sa2c``, ``co`` and ``ccql``.

One readable agent with switches, on the shared loop of :mod:`recgym.agents.training`; the losses are
in :mod:`recgym.agents.qlearning_losses` (equation numbers of the CCQL paper there). Every agent:

* owns two identical networks ``q1``/``q2`` (any :mod:`recgym.agents.nets` encoder → a cross-entropy
  head and a Q head on the same state, SQN's design); every step a fair coin picks the *main*
  one (trained) and the *target* one (frozen for this step) — SQN's random switch, no Polyak;
* minimises ``L = L_actor + ω · L_TD (+ α · L_CQL) (+ L_CO)`` (CCQL Eq. 4), where L_TD is the
  double-Q TD error on the next state (Eq. 1) plus, with negatives, SNQN's negative-action TD;
* scores items with ``q1``'s cross-entropy head, as every release evaluates.

Negatives are uniform over the items the user has not interacted with in the state's history
nor the logged action (CCQL §3.3; ``neg_exclude_history=False`` is the SNQN release: only the
logged action). CO/CCQL's actor is Eq. 4's plain CE; their release's Q-weighted CE after
``switch_step`` is ``actor="q"`` (weights clamped at 0, see
:func:`recgym.agents.qlearning_losses.q_weighted_ce`).

=======  ==============================================================================
agent    what it adds
=======  ==============================================================================
sqn      CE + TD                                     (Xin et al., SIGIR 2020)
sac      SQN, then CE weighted per sample by stop-grad max(Q(s, a), 0) after ``switch_step``
snqn     SQN + 10 negatives with their TD             (Xin et al., WSDM 2022)
sa2c     SNQN, then CE weighted by the clipped advantage (× optional propensity correction)
         with a new Adam (lr 0.001) after ``switch_step``
co       SQN + InfoNCE between two augmented views (Eq. 3)   (CCQL paper, "SASRec-CO")
ccql     SQN + negatives + CQL term (Eq. 2) + InfoNCE (Eq. 3), total Eq. 4   ("SASRec-CCQL")
=======  ==============================================================================

Diagnostics (CCQL paper §4.3: "monitor training progress"): every validation records the mean
Q(s, a) of the logged actions and of uniformly random actions on validation transitions, so an
over-estimating (diverging) critic is visible in the curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents import qlearning_losses as QL
from recgym.agents.augment import AUGMENTATIONS, augment
from recgym.agents.nets import build_encoder
from recgym.agents.nets.linear_ce import CPU_CHUNK, linear_cross_entropy
from recgym.agents.training import TorchAgent, TorchAgentConfig
from recgym.data import SessionLog, Transitions


@dataclass
class QLearningConfig(TorchAgentConfig):
    """Defaults = SQN (SIGIR'20 release): hidden 64, batch 256, Adam lr 0.01, γ 0.5, dropout
    0.1, 30 epochs, SASRec encoder with 1 block and 1 head."""

    encoder: str = "sasrec"
    n_blocks: int = 1
    n_heads: int = 1
    discount: float = 0.5
    """γ of the TD target."""
    td_weight: float = 1.0
    """ω of Eq. 4 (1 in SQN/SNQN/SA2C)."""
    actor: str = "ce"
    """Actor loss from ``switch_step`` on: ``"ce"`` (plain CE, Eq. 4), ``"q"`` (CE weighted per
    sample by stop-grad max(Q(s, a), 0): SAC) or ``"advantage"`` (SA2C); plain CE before it."""
    switch_step: int | None = None
    """Step from which ``actor`` applies (and ``lr2``); ``None`` = never."""
    lr2: float | None = None
    """From ``switch_step`` on, train with a fresh Adam of this lr (SA2C: 0.001); ``None`` = keep."""
    n_negatives: int = 0
    """Negative actions per transition (SNQN: 10)."""
    neg_exclude_history: bool = True
    """Draw negatives among items outside the state's history (CCQL §3.3: items "the user has
    never interacted with"); ``False`` = exclude only the logged action (SNQN release)."""
    neg_reward: float = 0.0
    """Reward of a negative action (SNQN: 0; CCQL: −1 on RC15, −3 on RetailRocket)."""
    adv_min: float = 0.0
    adv_max: float = 10.0
    """SA2C clips the advantage to [adv_min, adv_max]."""
    smooth: float = 0.0
    """SA2C propensity correction exponent; 0 (the release's default) = off."""
    cql_alpha: float = 0.0
    """α of Eq. 4 (CCQL: 0.01); needs ``n_negatives > 0``."""
    cql_temperature: float = 1.0
    """τ of the CQL log-sum-exp; Eq. 2 has none (1); the CCQL release uses 0.5."""
    co_weight: float = 0.0
    """Weight of the InfoNCE term (Eq. 4 uses 1 for CO/CCQL)."""
    co_temperature: float = 0.07
    augmentations: str = "crop,mask,reorder"
    crop_ratio: float = 0.6
    mask_ratio: float = 0.3
    reorder_ratio: float = 0.3
    diag_rows: int = 4096
    """Validation transitions used by the Q diagnostics."""


class QNetwork(nn.Module):
    """Encoder → two linear heads on the same state: CE logits and Q values, ``[B, n]`` each.

    Q values with a gradient are only ever needed at a few actions per row (the logged one and
    the negatives), so :meth:`q_at` computes them as row-wise dot products: mathematically the
    same gradient as gathering from the full ``[B, n]`` matrix, without its two dense backward
    GEMMs (the dominant cost at 70k items)."""

    def __init__(self, encoder: nn.Module, n_items: int) -> None:
        super().__init__()
        self.encoder, self.n_items = encoder, n_items
        self.ce_head = nn.Linear(encoder.out_dim, n_items)
        self.q_head = nn.Linear(encoder.out_dim, n_items)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """State vector ``[B, out_dim]``."""
        return self.encoder(states, lengths)

    def q_at(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``Q(s_b, items[b, k])`` for states ``h [B, d]`` and items ``[B, K]`` → ``[B, K]``."""
        return torch.einsum("bd,bkd->bk", h, self.q_head.weight[items]) + self.q_head.bias[items]

    @staticmethod
    def head(layer: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """``layer(h)``, ``[B, n]`` (``addmm``: the bias costs no extra pass over the output)."""
        return F.linear(h, layer.weight, layer.bias)

    def greedy(self, h: torch.Tensor, chunk: int = CPU_CHUNK) -> torch.Tensor:
        """``argmax_a Q(s_b, a)`` (the first maximum) at states ``h [B, d]`` → int64 ``[B]``: the same
        items as :func:`recgym.agents.qlearning_losses.greedy_actions` of the ``[B, n]`` Q matrix
        (and its ``FloatingPointError`` on NaN). On a CPU the catalogue is scored ``chunk`` columns
        at a time and each chunk's maxima are taken while it is still in cache, so the Q matrix
        never travels to memory and back (at 70,852 items, batch 256: below the bare GEMM that writes its output to memory)."""
        w, b = self.q_head.weight, self.q_head.bias
        if h.device.type != "cpu" or self.n_items <= chunk:
            return QL.greedy_actions(F.linear(h, w, b))
        best_q = torch.full((len(h),), -torch.inf, dtype=h.dtype)
        best = torch.zeros(len(h), dtype=torch.long)
        nan = torch.zeros(len(h), dtype=torch.bool)
        for start in range(0, self.n_items, chunk):
            q = torch.addmm(b[start:start + chunk], h, w[start:start + chunk].t())
            top = q.amax(dim=1)  # ~10x cheaper than max-with-index: the index only where a row improves
            nan |= top.isnan()
            rows = (top > best_q).nonzero().squeeze(1)  # strictly: an earlier chunk keeps a tie (first maximum)
            if len(rows) == len(h):
                best, best_q = q.argmax(dim=1) + start, top
            elif len(rows):
                best[rows], best_q[rows] = q[rows].argmax(dim=1) + start, top[rows]
        if bool(nan.any()):
            raise FloatingPointError("greedy_actions: Q values contain NaN (the critic diverged)")
        return best

    def cross_entropy(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Per-row cross-entropy of ``items [B]`` under the CE head's softmax at states ``h [B, d]``
        → ``[B]`` (:func:`recgym.agents.nets.linear_ce.linear_cross_entropy`: the catalogue in
        cache-sized chunks instead of ~9 passes over the ``[B, n]`` logits)."""
        return linear_cross_entropy(h, self.ce_head.weight, self.ce_head.bias, items)

    def q_values(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Q head at every item, ``[B, n]``."""
        return self.head(self.q_head, self.encoder(states, lengths))

    def logits(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """CE head at every item, ``[B, n]``."""
        return self.head(self.ce_head, self.encoder(states, lengths))


def encode_groups(net: QNetwork, groups: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """State vectors of several ``(states [B_i, L], lengths [B_i])`` groups in one encoder pass →
    ``[B_i, d]`` each. The encoders treat rows independently (dropout masks are drawn per entry
    either way), so this equals one pass per group; groups of different widths run separately."""
    if len(groups) == 1 or len({g[0].shape[1] for g in groups}) > 1:
        return [net(*g) for g in groups]
    h = net(torch.cat([g[0] for g in groups]), torch.cat([g[1] for g in groups]))
    return list(h.split([g[0].shape[0] for g in groups]))


@torch.no_grad()
def double_q(main: QNetwork, target: QNetwork, h_main: torch.Tensor, h_target: torch.Tensor) -> torch.Tensor:
    """``Q_target(s, argmax_a Q_main(s, a))`` → ``[B]`` from the two networks' state vectors of the
    same states ``s`` (``[B, d]`` each): the main network's full-catalogue Q picks the action, the
    target network is evaluated at that one action only — the same number as gathering from its
    ``[B, n]`` Q matrix (:func:`recgym.agents.qlearning_losses.double_q_target`) without that GEMM."""
    a_star = main.greedy(h_main)
    return target.q_at(h_target, a_star[:, None]).squeeze(1)


def _loo_like_sasrec(dataset: str = "loo") -> dict[str, Any]:
    """The ``sasrec`` baseline's leave-one-out encoder settings (of ``dataset``), so comparisons share them."""
    try:
        from recgym.agents.sasrec import PRESETS as SASREC_PRESETS

        base = dict(SASREC_PRESETS.get(dataset, {}))
    except ImportError:  # pragma: no cover - sasrec agent is part of the foundation
        base = {}
    # the Q-learning agents train one target per replay row (no all_positions) with separate heads:
    # 3 epochs (~2,300 steps of 128 on ML-100k) instead of SASRec's single all-positions epoch
    base.pop("tied_output", None)
    base.pop("all_positions", None)
    base.pop("sampling", None)
    base["epochs"] = 3
    base["eval_every"] = 250
    return base


# Per-dataset presets. RC15 / RetailRocket: the authors' released values. synthetic and
# ml-100k are recgym's own small datasets: the switch steps of the papers (15k–50k) would fall
# after the end of training, so they are scaled to about the middle of the run (our choice).
_SMALL = {"synthetic": {"epochs": 10, "switch_step": 600}, "ml-100k": {**_loo_like_sasrec(), "switch_step": 1100},
          "loo": {**_loo_like_sasrec(), "switch_step": 1100}}


class QLearningAgent(TorchAgent):
    """SQN and the base of the family (see the module docstring)."""

    name: ClassVar[str] = "sqn"
    Config = QLearningConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "loo": _loo_like_sasrec(),
        "session": {},  # the defaults are the session papers' (SQN release) values
        "synthetic": {"epochs": 10},
        "ml-100k": _loo_like_sasrec(),
        **{ds: _loo_like_sasrec(ds) for ds in ("ml-1m", "netflix", "steam")},
    }
    config: QLearningConfig

    # ------------------------------------------------------------ build
    def build(self) -> None:
        cfg, n = self.config, self.n_items
        if cfg.cql_alpha > 0 and cfg.n_negatives < 1:
            raise ValueError(f"{self.name}: cql_alpha > 0 needs n_negatives >= 1 (Eq. 2 runs over negatives)")
        if cfg.actor not in ("ce", "q", "advantage"):
            raise ValueError(f"{self.name}: actor={cfg.actor!r}; choose from 'ce', 'q', 'advantage'")
        if cfg.actor == "advantage" and cfg.n_negatives < 1:
            raise ValueError(f"{self.name}: the advantage baseline needs n_negatives >= 1")
        methods = tuple(m.strip() for m in cfg.augmentations.split(",") if m.strip())
        if cfg.co_weight > 0 and (not methods or set(methods) - set(AUGMENTATIONS)):
            raise ValueError(f"{self.name}: augmentations={cfg.augmentations!r}; choose from {sorted(AUGMENTATIONS)}")
        self._aug_methods = methods
        self.q1 = QNetwork(build_encoder(cfg, n), n)
        self.q2 = QNetwork(build_encoder(cfg, n), n)
        self.opt_q1, self.opt_q2 = self._adam(self.q1, cfg.lr), self._adam(self.q2, cfg.lr)
        if cfg.lr2 is not None and cfg.switch_step is not None:
            self.opt2_q1, self.opt2_q2 = self._adam(self.q1, cfg.lr2), self._adam(self.q2, cfg.lr2)
        self._behaviour: torch.Tensor | None = None
        self._diag_cache: tuple[int, dict[str, torch.Tensor]] | None = None

    def _adam(self, net: nn.Module, lr: float) -> torch.optim.Adam:
        # fused Adam: one pass over the 2·n·(d+1) head weights instead of ~10 (7x faster on CPU
        # at 70k items); same update rule as the default implementation
        try:
            return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=self.config.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # a device/dtype without a fused kernel
            return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=self.config.weight_decay)

    def make_transitions(self, train: SessionLog) -> Transitions:
        # behaviour policy β(a) for SA2C's propensity correction = training popularity
        self._behaviour = torch.as_tensor(train.popularity(), dtype=torch.float32, device=self.device)
        return super().make_transitions(train)

    # ------------------------------------------------------------ the step
    def update(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        first = QL.switch_networks(float(self.rng.random()))
        main, target = (self.q1, self.q2) if first else (self.q2, self.q1)
        phase2 = self.config.switch_step is not None and step >= self.config.switch_step
        if phase2 and hasattr(self, "opt2_q1"):
            opt = self.opt2_q1 if first else self.opt2_q2
        else:
            opt = self.opt_q1 if first else self.opt_q2
        with self.autocast():
            loss, info = self.compute_loss(batch, main, target, phase2)
        self.optimize(loss, [opt])
        return {"loss": float(loss.detach()), **info}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss with ``q1`` as main network, before the phase switch."""
        return self.compute_loss(batch, self.q1, self.q2, phase2=False)

    def compute_loss(
        self, batch: dict[str, torch.Tensor], main: QNetwork, target: QNetwork, phase2: bool
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Eq. 4 for this agent's switches. Returns ``(scalar loss, floats to log)``."""
        cfg = self.config
        s, sl, a = batch["state"], batch["state_len"], batch["action"]
        s2, l2 = batch["next_state"], batch["next_len"]
        views = self._co_views(s, sl) if cfg.co_weight > 0 else []
        # one encoder pass per network and grad mode over all its groups of rows (rows are
        # independent; at these sizes a pass costs mostly per-op overhead, so batching is ~free)
        h, *z = encode_groups(main, [(s, sl), *views])
        with torch.no_grad():
            h_next = main(s2, l2)
            h_target = encode_groups(target, [(s2, l2)] + ([(s, sl)] if cfg.n_negatives > 0 else []))
        ce = main.cross_entropy(h, a)  # [B], fused over the catalogue
        q_sa = main.q_at(h, a[:, None]).squeeze(1)

        # critic: double-Q TD on the next state (Eq. 1)
        with torch.no_grad():
            y = QL.td_target(batch["reward"], double_q(main, target, h_next, h_target[0]), batch["done"], cfg.discount)
        l_td = QL.td_loss(q_sa, y)
        info = {"td": float(l_td.detach()), "q_sa": float(q_sa.detach().mean())}
        q_neg = None
        if cfg.n_negatives > 0:  # SNQN negatives, bootstrapped from the current state
            neg = QL.sample_negatives(a, self.n_items, cfg.n_negatives, history=s if cfg.neg_exclude_history else None)
            q_neg = main.q_at(h, neg)
            with torch.no_grad():  # argmax by the main network at s, value by the target
                y_neg = cfg.neg_reward + cfg.discount * double_q(main, target, h.detach(), h_target[1])
            l_neg = QL.negative_td_loss(q_neg, y_neg)
            l_td = l_td + l_neg
            info.update(td_neg=float(l_neg.detach()), q_neg=float(q_neg.detach().mean()))

        # actor: the CE head (Eq. 4's L_CE), weighted after the phase switch for SAC / SA2C
        if phase2 and cfg.actor == "q":
            l_actor = QL.q_weighted_ce(ce, q_sa)
        elif phase2 and cfg.actor == "advantage":
            adv = QL.advantage(q_sa, q_neg, (cfg.adv_min, cfg.adv_max))
            w = None
            if cfg.smooth != 0 and self._behaviour is not None:
                pi_a = torch.exp(-ce.detach())  # π(a|s) = softmax(logits)[a]
                w = QL.propensity_weight(pi_a, self._behaviour[a], cfg.smooth)
            l_actor = QL.advantage_weighted_ce(ce, adv, w)
            info["advantage"] = float(adv.mean())
        else:
            l_actor = ce.mean()
        info["actor"] = float(l_actor.detach())
        loss = l_actor + cfg.td_weight * l_td

        if cfg.cql_alpha > 0:  # Eq. 2's conservative term over logged + negative actions
            l_cql = QL.cql_loss(q_sa, q_neg, cfg.cql_temperature)
            loss = loss + cfg.cql_alpha * l_cql
            info["cql"] = float(l_cql.detach())
        if z:  # Eq. 3: InfoNCE between two augmented views of each non-empty history
            l_co = QL.info_nce(z[0], z[1], cfg.co_temperature)
            loss = loss + cfg.co_weight * l_co
            info["co"] = float(l_co.detach())
        return loss, info

    def _co_views(self, s: torch.Tensor, sl: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Two augmented views (crop / mask / reorder) of each non-empty history; none if < 2 rows."""
        cfg, keep = self.config, sl > 0
        if int(keep.sum()) < 2:
            return []
        s_k, l_k = s[keep], sl[keep]
        ratios = {"crop": cfg.crop_ratio, "mask": cfg.mask_ratio, "reorder": cfg.reorder_ratio}
        return [augment(s_k, l_k, self.pad_id, self._aug_methods, ratios) for _ in range(2)]

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """CE-head logits of ``q1``, ``[B, n_items]`` (what the releases rank by)."""
        return self.q1.logits(states.to(self.device), lengths.to(self.device))

    @torch.no_grad()
    def q_values(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Q head of ``q1``, ``[B, n_items]``."""
        return self.q1.q_values(states.to(self.device), lengths.to(self.device))

    @torch.no_grad()
    def diagnostics(self, valid: SessionLog) -> dict[str, float]:
        """Mean Q(s, a) of logged actions (``q_logged``) and of uniform random actions
        (``q_random``) on up to ``diag_rows`` validation transitions (a fixed sample, drawn with
        its own generator so that validation never perturbs training's random stream)."""
        if self._diag_cache is None or self._diag_cache[0] != id(valid):
            tr = valid.transitions(self.state_len, discount=self.config.discount)
            if len(tr) == 0:
                return {}
            g = np.random.default_rng(0)
            rows = g.choice(len(tr), size=min(len(tr), self.config.diag_rows), replace=False)
            b = tr.batch(np.sort(rows), self.device)
            b["random"] = torch.as_tensor(g.integers(0, self.n_items, len(rows)), device=self.device)
            self._diag_cache = (id(valid), b)
        b = self._diag_cache[1]
        q = self.q1.q_values(b["state"], b["state_len"])
        return {
            "q_logged": float(q.gather(1, b["action"][:, None]).mean()),
            "q_random": float(q.gather(1, b["random"][:, None]).mean()),
        }


class SQNAgent(QLearningAgent):
    """SQN: CE + double-Q TD on two randomly switched networks."""

    name = "sqn"


@dataclass
class SACConfig(QLearningConfig):
    """SAC: Q-weighted CE from step 30,000 (SASRec encoder; the release uses 15,000 and lr 0.005
    for GRU on RetailRocket — set them with overrides)."""

    actor: str = "q"
    switch_step: int | None = 30_000


class SACAgent(QLearningAgent):
    """SAC (self-supervised actor-critic): SQN, then CE weighted per sample by stop-grad Q(s, a)."""

    name = "sac"
    Config = SACConfig
    PRESETS = {**QLearningAgent.PRESETS, **_SMALL}


@dataclass
class SNQNConfig(QLearningConfig):
    """SNQN: 10 negatives per transition, negative reward 0."""

    n_negatives: int = 10


class SNQNAgent(QLearningAgent):
    """SNQN: SQN + TD on sampled negative actions (bootstrapped from the current state)."""

    name = "snqn"
    Config = SNQNConfig


@dataclass
class SA2CConfig(SNQNConfig):
    """SA2C: SNQN for 15,000 steps, then a new Adam (lr 0.001) on the advantage-weighted CE
    (advantage clipped to [0, 10]; propensity correction off, smooth = 0)."""

    actor: str = "advantage"
    switch_step: int | None = 15_000
    lr2: float | None = 0.001


class SA2CAgent(QLearningAgent):
    """SA2C: SNQN, then CE weighted by the clipped advantage (× optional propensity weight)."""

    name = "sa2c"
    Config = SA2CConfig
    PRESETS = {**QLearningAgent.PRESETS, **_SMALL}


@dataclass
class COConfig(QLearningConfig):
    """SASRec-CO: Eq. 4 without negatives and CQL — plain CE + TD + InfoNCE (cosine, temperature
    0.07) — with the CCQL release's RC15 schedule: lr 0.005, a new Adam at 0.001 from step
    15,000, 60 epochs. The release also weights the CE by Q from that step (``actor="q"``)."""

    epochs: float = 60
    lr: float = 0.005
    lr2: float | None = 0.001
    switch_step: int | None = 15_000
    co_weight: float = 1.0


class COAgent(QLearningAgent):
    """SASRec-CO: CE + TD + the contrastive objective (Eq. 4 without negatives and CQL)."""

    name = "co"
    Config = COConfig
    PRESETS = {
        **QLearningAgent.PRESETS,
        **_SMALL,
        "rc15": {},
        "retailrocket": {"lr": 0.01, "batch_size": 512, "switch_step": 50_000},
    }


@dataclass
class CCQLConfig(COConfig):
    """SASRec-CCQL (RC15 values): CO + 10 negatives with reward −1 in the TD loss and the CQL
    term with α = 0.01 (Eq. 4 with ω = 1; τ = 1 as Eq. 2, the release's 0.5 is an option)."""

    n_negatives: int = 10
    neg_reward: float = -1.0
    cql_alpha: float = 0.01


class CCQLAgent(QLearningAgent):
    """SASRec-CCQL: CE + ω TD (with negatives) + InfoNCE + α CQL (Eq. 4)."""

    name = "ccql"
    Config = CCQLConfig
    PRESETS = {
        **QLearningAgent.PRESETS,
        **_SMALL,
        "rc15": {},
        "retailrocket": {"lr": 0.01, "batch_size": 512, "switch_step": 50_000, "neg_reward": -3.0},
    }


__all__ = ["CCQLAgent", "COAgent", "double_q", "encode_groups", "QLearningAgent", "QLearningConfig", "QNetwork", "SA2CAgent", "SACAgent",
           "SNQNAgent", "SQNAgent"]
