"""Local Policy Improvement (Liang & Vlassis) and its weighted cross-entropy baselines.

Every agent here is one policy network (an :mod:`recgym.agents.nets` encoder → a softmax head over the
catalogue) trained by a *weighted* cross-entropy (losses in :mod:`recgym.agents.lpi_losses`):

=========  ===========================================================================
agent      weight of ``log π(a_i | x_i)``
=========  ===========================================================================
lmu        ``r_i`` — the reward-weighted CE L̂_μ(π) of Eq. 6
pg         reward-to-go ``G_i`` (the paper's "PG", treated as a weighted CE, §4.2)
ips        ``min(π/μ̂, 30) · r_i`` (Eq. 9, weight clipping at 30)
ips-pg     ``min(π/μ̂, 30) · G_i`` (one-step off-policy correction of Chen et al.)
lpi-cb     ``exp(Â/β)``, ``Â = r_i − E_{a∼μ̂}[r̂(x_i, a)]`` (Eq. 8, direct method: r̂ is an
           auxiliary reward head regressed on the logged rewards, i.e. Eq. 11 with γ = 0)
lpi        LPI^RL: ``exp(A/β)``, ``A = Q̂(x, a) − E_{a'∼μ̂}[Q̂(x, a')]`` with Q̂ an auxiliary head
           trained by double Q-learning (Eq. 11); loss ``−(L̂_LPI − λ L̂_TD)`` (Eq. 10)
=========  ===========================================================================

Every agent is the same class; the registered names differ only in their config defaults
(``weighting`` and, for ``lpi-cb``, ``discount = 0``), so ``--set weighting=...`` turns one into
another and the saved config describes the model completely. The weights are constants (no
gradient through them); the LPI weights are shifted and normalised over the batch
(:func:`recgym.agents.lpi_losses.lpi_weights` gives the argument that this is Eq. 8).

The estimated logging policy μ̂ is the ``sasrec`` agent (plain CE, same architecture; trained one
target per row, or, with ``mu_sampling="per_user"`` as in the leave-one-out presets, on all
positions of per-user chunks like the ``sasrec`` preset); agents that need it (ips, ips-pg, lpi-cb,
lpi) train it first unless ``logging_policy`` names a saved ``sasrec`` model, and keep it (frozen,
in eval mode) as ``agent.logging_policy`` — saved with the agent's weights — so that the JS/KL
diagnostics of :mod:`recgym.divergence` can be reported for them. ``lmu`` and ``pg`` also carry μ̂ by
default (``with_logging_policy=True``) only for those diagnostics.

Double Q-learning (§4.2, van Hasselt et al.): the online Q head picks ``argmax_a Q(s', a)``, a
Polyak-averaged target copy of encoder + Q head values it. Training rows can be limited to the
last ``last_m`` events of each session (§3.3: the loss over the most recent m events).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from recgym.agents import lpi_losses as LL
from recgym.agents import qlearning_losses as QL
from recgym.agents.nets import build_encoder
from recgym.agents.sasrec import PRESETS as SASREC_PRESETS
from recgym.agents.sasrec import SASRecAgent, SASRecConfig
from recgym.agents.training import TorchAgent
from recgym.data import SessionLog, Transitions


WEIGHTINGS = ("reward", "rtg", "ips", "ips-rtg", "lpi-cb", "lpi")
NEEDS_MU = ("ips", "ips-rtg", "lpi-cb", "lpi")
AUX_HEAD = ("lpi-cb", "lpi")


@dataclass
class LPIConfig(SASRecConfig):
    """Defaults: LPI^RL in the paper's MDP setting (SASRec 1 block, 1 head, 64 dims, batch 256;
    Adam lr 0.01 as SQN) with β = 1, λ = 1, γ = 0.5 (SQN's discount), IPS clipping at 30."""

    weighting: str = "lpi"
    """Weight of the cross-entropy (module table): ``"reward"`` (lmu), ``"rtg"`` (pg), ``"ips"``,
    ``"ips-rtg"`` (ips-pg), ``"lpi-cb"`` or ``"lpi"``."""
    beta: float = 1.0
    """β of Eq. 8: the KL multiplier; small β moves far from μ̂, β → ∞ gives μ̂ back."""
    lam: float = 1.0
    """λ of Eq. 10: weight of the TD loss of Eq. 11 (the mean squared TD error, no ½)."""
    discount: float = 0.5
    """γ of the TD target (Eq. 11) and of the reward-to-go of pg / ips-pg; 0 for lpi-cb."""
    ips_clip: float | None = 30.0
    """Importance-weight clipping threshold of ips / ips-pg (``None`` = no clipping)."""
    target_tau: float = 0.01
    """Polyak rate of the target Q network of double Q-learning."""
    last_m: int | None = None
    """Train only on the last m events of each session (§3.3); ``None`` = all events."""
    logging_policy: str | None = None
    """Path of a saved ``sasrec`` model to use as μ̂; ``None`` = train μ̂ first in ``fit``."""
    with_logging_policy: bool = True
    """lmu / pg: also train μ̂ (not used by their loss) so JS/KL to μ̂ can be reported."""
    mu_sampling: str = "per_event"
    """How μ̂ is trained (plain CE, the ``sasrec`` loss): ``"per_event"``, one target per replay row
    as this agent's own loss; ``"per_user"``, the SASRec paper's all-positions training over
    disjoint chunks of each sequence (``all_positions=True, sampling="per_user"`` of
    :class:`recgym.agents.sasrec.SASRecConfig`), each target once per epoch. The default and the
    presets follow the ``sasrec`` agent of the same preset, so μ̂ is that baseline (with a linear
    head). This agent's own rows stay one per event either way: its weights are per (state, action)."""
    mu_epochs: float | None = None
    """μ̂'s training length in epochs (``None`` = ``epochs``); a ``"per_user"`` epoch is about
    ``state_len`` times fewer steps than a per-event one. ``steps``, when set, applies to μ̂ too."""


@dataclass
class LMuConfig(LPIConfig):
    """lmu: the reward-weighted CE of Eq. 6."""

    weighting: str = "reward"


@dataclass
class PGConfig(LPIConfig):
    """pg: CE weighted by the reward-to-go."""

    weighting: str = "rtg"


@dataclass
class IPSConfig(LPIConfig):
    """ips: Eq. 9, π/μ̂ clipped at ``ips_clip``, times the reward."""

    weighting: str = "ips"


@dataclass
class IPSPGConfig(LPIConfig):
    """ips-pg: the clipped π/μ̂ times the reward-to-go."""

    weighting: str = "ips-rtg"


@dataclass
class LPICBConfig(LPIConfig):
    """LPI^CB: the bandit setting, γ = 0; the auxiliary head is the reward model r̂."""

    weighting: str = "lpi-cb"
    discount: float = 0.0


# SASRec's leave-one-out encoder, but: a plain linear head (the Q head needs it), and one target per
# replay row, since the weights of Eq. 6-9 are per (state, action): no all-positions training, so
# 3 epochs (as the Q-learning agents' LOO preset). μ̂ is plain CE and trains as the sasrec preset
# does: all positions, per-user chunks, its epochs (ML-100K, seed 0: test NDCG@10 0.0956 after 1,080
# steps vs 0.0877 after the 2,301 of 3 per-event epochs; `python -m benchmarks.ttq --agents sasrec
# --datasets ml-100k --seeds 0 --set tied_output=false --eval-every 100`).
_LOO = {**SASREC_PRESETS["loo"], "tied_output": False, "all_positions": False, "sampling": "per_event", "epochs": 3,
        "eval_every": 250, "mu_sampling": "per_user", "mu_epochs": SASREC_PRESETS["loo"]["epochs"]}
PRESETS: dict[str, dict[str, Any]] = {
    "loo": _LOO,
    "session": {},  # the defaults are the LPI paper's session (MDP) setting
    "ml-100k": _LOO,
    "ml-1m": {**_LOO, "state_len": 200},
    # §4.1 (Netflix): last 200 ratings, loss on the last m = 50; 2 layers, 8 heads, 200 dims;
    # batch 128, 30 epochs
    "netflix": {**_LOO, "state_len": 200, "hidden": 200, "n_blocks": 2, "n_heads": 8, "last_m": 50,
                "batch_size": 128, "epochs": 30, "mu_epochs": 30},
    "retailrocket": {"lr": 0.005},
    "synthetic": {"epochs": 5},
}


def _mu_config(cfg: LPIConfig) -> SASRecConfig:
    """μ̂ = the same architecture and optimisation, trained by plain CE (LPI paper: "the same
    architecture trained by cross-entropy"), on all positions when ``mu_sampling="per_user"``."""
    names = {f.name for f in dataclasses.fields(SASRecConfig)}
    kw = {k: getattr(cfg, k) for k in names}
    if cfg.mu_sampling == "per_user":
        kw.update(all_positions=True, sampling="per_user")
    if cfg.mu_epochs is not None:
        kw["epochs"] = cfg.mu_epochs
    return SASRecConfig(**kw)


class PolicyImprovementAgent(TorchAgent):
    """Weighted-CE policy with an optional auxiliary value head and a frozen μ̂ (module docstring)."""

    name: ClassVar[str] = "lpi"
    Config = LPIConfig
    PRESETS = PRESETS
    config: LPIConfig

    @property
    def needs_mu(self) -> bool:
        return self.config.weighting in NEEDS_MU

    @property
    def aux_head(self) -> bool:
        return self.config.weighting in AUX_HEAD

    # ------------------------------------------------------------ build
    def build(self) -> None:
        cfg, n = self.config, self.n_items
        if cfg.tied_output:
            raise ValueError(f"{self.name}: tied_output=True is not supported (the Q head needs the linear head layout)")
        if cfg.all_positions:
            raise ValueError(f"{self.name}: all_positions=True is not supported (the weights are per state and action: "
                             "one target per replay row)")
        if cfg.sampling != "per_event":
            raise ValueError(f"{self.name}: sampling={cfg.sampling!r} is not supported (one target per replay row; "
                             "mu_sampling='per_user' trains μ̂ on all positions)")
        if cfg.mu_sampling not in ("per_event", "per_user"):
            raise ValueError(f"{self.name}: mu_sampling must be 'per_event' or 'per_user', got {cfg.mu_sampling!r}")
        if cfg.mu_epochs is not None and not cfg.mu_epochs > 0:
            raise ValueError(f"{self.name}: mu_epochs must be > 0 or None, got {cfg.mu_epochs!r}")
        if cfg.weighting not in WEIGHTINGS:
            raise ValueError(f"{self.name}: weighting must be one of {WEIGHTINGS}, got {cfg.weighting!r}")
        if cfg.weighting == "lpi-cb" and cfg.discount != 0:
            raise ValueError(f"{self.name}: weighting='lpi-cb' is the bandit setting (γ = 0): set discount=0, "
                             f"got {cfg.discount!r}")
        if not cfg.beta > 0:
            raise ValueError(f"{self.name}: beta must be > 0, got {cfg.beta!r}")
        if not 0 <= cfg.discount <= 1:
            raise ValueError(f"{self.name}: discount must lie in [0, 1], got {cfg.discount!r}")
        if cfg.last_m is not None and cfg.last_m < 1:
            raise ValueError(f"{self.name}: last_m must be >= 1 or None, got {cfg.last_m!r}")
        self.encoder = build_encoder(cfg, n)
        self.head = nn.Linear(self.encoder.out_dim, n)
        params = list(self.encoder.parameters()) + list(self.head.parameters())
        if self.aux_head:
            self.q_head = nn.Linear(self.encoder.out_dim, n)
            params += list(self.q_head.parameters())
            if cfg.discount > 0:  # double Q-learning: a slowly moving copy values the next state
                self.target = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "q_head": copy.deepcopy(self.q_head)})
                self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._mu: SASRecAgent | None = None
        self._mu_ready = False
        if self.needs_mu or cfg.with_logging_policy:
            self._mu = SASRecAgent(n, config=_mu_config(cfg), seed=self.seed)
            # registered so μ̂ is saved with the agent; it is not in this agent's optimizer and is
            # only run under no_grad here (its own fit trains it)
            self.mu_net = nn.ModuleDict({"encoder": self._mu.encoder, "head": self._mu.head})

    @property
    def logging_policy(self) -> SASRecAgent | None:
        """The estimated logging policy μ̂ once trained or loaded (else ``None``)."""
        return self._mu if self._mu_ready else None

    def set_training(self, mode: bool) -> None:
        super().set_training(mode)
        for frozen in ("mu_net", "target"):  # never dropout in μ̂ or in TD targets
            if hasattr(self, frozen):
                getattr(self, frozen).eval()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._mu_ready = hasattr(self, "mu_net")

    def make_transitions(self, train: SessionLog) -> Transitions:
        tr = train.transitions(self.state_len, discount=self.config.discount)
        m = self.config.last_m
        if m is None:
            return tr
        keep = tr.t >= train.lengths[tr.session] - m
        fields = ("state", "state_len", "action", "reward", "kind", "next_state", "next_len", "done", "session", "t", "rtg")
        return dataclasses.replace(tr, **{f: getattr(tr, f)[keep] for f in fields})

    # ------------------------------------------------------------ μ̂
    def load_logging_policy(self, path: str | Path) -> None:
        """Use the saved ``sasrec`` model at ``path`` as μ̂ (same architecture required)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{self.name}: logging_policy {str(path)!r} does not exist")
        payload = torch.load(path, weights_only=True, map_location="cpu")
        if payload.get("n_items") != self.n_items:
            raise ValueError(f"{self.name}: logging_policy {str(path)!r} has n_items={payload.get('n_items')}, "
                             f"the agent {self.n_items}")
        try:
            self._mu.load_state_dict(payload["weights"])
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{self.name}: logging_policy {str(path)!r} does not match the agent's μ̂ architecture "
                             f"(train μ̂ with the same encoder/hidden/state_len settings): {e}") from e
        self._mu_ready = True

    def fit_logging_policy(self, train: SessionLog, valid: SessionLog | None = None, **loop_kwargs: Any) -> None:
        """Train μ̂ (plain CE) with the shared loop; its checkpoint goes next to the agent's."""
        ckpt = loop_kwargs.pop("checkpoint_path", None)
        if ckpt is not None:
            ckpt = Path(ckpt)
            loop_kwargs["checkpoint_path"] = ckpt.with_name(ckpt.stem + "_mu" + ckpt.suffix)
        self._mu.fit(train, valid, **loop_kwargs)
        self._mu_ready = True

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **loop_kwargs: Any) -> "PolicyImprovementAgent":
        if self._mu is not None and not self._mu_ready:
            if self.config.logging_policy:
                self.load_logging_policy(self.config.logging_policy)
            else:
                self.fit_logging_policy(train, valid, **dict(loop_kwargs))
        self.set_training(False)
        return super().fit(train, valid, **loop_kwargs)

    @torch.no_grad()
    def mu_probs(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """μ̂(·|s) as ``[B, n_items]`` (eval mode, no gradient)."""
        if self._mu is None or not self._mu_ready:
            raise RuntimeError(f"{self.name}: μ̂ is not available (train it with fit() or set logging_policy)")
        return torch.softmax(self._mu.logits(states, lengths), dim=1)

    # ------------------------------------------------------------ the loss
    def weights(self, batch: dict[str, torch.Tensor], logits: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
        """Per-row constant weight of the CE (see the module table). ``[B]``."""
        cfg, a = self.config, batch["action"]
        if cfg.weighting == "reward":
            return batch["reward"]
        if cfg.weighting == "rtg":
            return batch["rtg"]
        if cfg.weighting in ("ips", "ips-rtg"):
            pi_a = torch.softmax(logits.detach(), dim=1).gather(1, a[:, None]).squeeze(1)
            mu_a = self.mu_probs(batch["state"], batch["state_len"]).gather(1, a[:, None]).squeeze(1)
            ret = batch["reward"] if cfg.weighting == "ips" else batch["rtg"]
            return LL.ips_weights(pi_a, mu_a, ret, cfg.ips_clip)  # Eq. 9: π/μ̂
        mu = self.mu_probs(batch["state"], batch["state_len"])
        qd = q.detach()
        # LPI^CB: Â = r − E_μ̂[r̂] (direct method); LPI^RL: A = Q̂(s,a) − E_μ̂[Q̂(s,·)] (§4.2)
        at_a = batch["reward"] if cfg.weighting == "lpi-cb" else qd.gather(1, a[:, None]).squeeze(1)
        return LL.lpi_weights(LL.analytic_advantage(at_a, qd, mu), cfg.beta)

    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``y`` of Eq. 11: ``r + γ Q_target(s', argmax_a Q(s', a))`` (double Q-learning, zeroed at
        ``done``), or ``r`` when γ = 0 (the reward model of lpi-cb). ``[B]``, no gradient."""
        if self.config.discount == 0:
            return batch["reward"]
        with torch.no_grad():
            s2, l2 = batch["next_state"], batch["next_len"]
            q_next = self.q_head(self.encoder(s2, l2))
            q_next_t = self.target["q_head"](self.target["encoder"](s2, l2))
            return QL.double_q_target(batch["reward"], q_next, q_next_t, batch["done"], self.config.discount)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        s, sl, a = batch["state"], batch["state_len"], batch["action"]
        h = self.encoder(s, sl)
        logits = self.head(h)
        q = self.q_head(h) if self.aux_head else None
        w = self.weights(batch, logits, q)
        loss = LL.weighted_ce(logits, a, w)  # −L̂ of Eq. 6 / 8 / 9
        info = {"weight": float(w.mean()), "weight_max": float(w.max())}
        if q is not None:
            td = LL.td_loss(q.gather(1, a[:, None]).squeeze(1), self.td_target(batch))  # Eq. 11
            loss = loss + cfg.lam * td  # Eq. 10: maximise L̂_LPI − λ L̂_TD
            info["td"] = float(td.detach())
        return loss, info

    def update(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        out = super().update(batch, step)
        if hasattr(self, "target"):
            with torch.no_grad():
                tau = self.config.target_tau
                for tgt, src in ((self.target["encoder"], self.encoder), (self.target["q_head"], self.q_head)):
                    for pt, ps in zip(tgt.parameters(), src.parameters()):
                        pt.lerp_(ps, tau)
        return out

    # ------------------------------------------------------------ inference
    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Policy logits ``[B, n_items]`` (π = their softmax)."""
        return self.head(self.encoder(states.to(self.device), lengths.to(self.device)))

    @torch.no_grad()
    def q_values(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Auxiliary head (Q̂ or r̂), ``[B, n_items]``."""
        if not self.aux_head:
            raise AttributeError(f"{self.name} has no auxiliary value head")
        return self.q_head(self.encoder(states.to(self.device), lengths.to(self.device)))


class LMuAgent(PolicyImprovementAgent):
    """L̂_μ(π): reward-weighted cross-entropy (Eq. 6)."""

    name = "lmu"
    Config = LMuConfig


class PGAgent(PolicyImprovementAgent):
    """PG baseline: CE weighted by the reward-to-go (γ = ``discount``)."""

    name = "pg"
    Config = PGConfig


class IPSAgent(PolicyImprovementAgent):
    """IPS: Eq. 9 with the ratio π/μ̂ clipped at ``ips_clip`` (30)."""

    name = "ips"
    Config = IPSConfig


class IPSPGAgent(PolicyImprovementAgent):
    """IPS-PG: reward-to-go × clipped one-step ratio π/μ̂."""

    name = "ips-pg"
    Config = IPSPGConfig


class LPICBAgent(PolicyImprovementAgent):
    """LPI^CB (Eq. 8): weights exp((r − E_μ̂[r̂]) / β), r̂ regressed on the logged rewards."""

    name = "lpi-cb"
    Config = LPICBConfig


class LPIAgent(PolicyImprovementAgent):
    """LPI^RL (Eqs. 8, 10, 11): weights exp((Q̂ − E_μ̂[Q̂]) / β), Q̂ by double Q-learning."""

    name = "lpi"
    Config = LPIConfig


__all__ = ["AUX_HEAD", "IPSAgent", "IPSConfig", "IPSPGAgent", "IPSPGConfig", "LMuAgent", "LMuConfig", "LPIAgent",
           "LPICBAgent", "LPICBConfig", "LPIConfig", "NEEDS_MU", "PGAgent", "PGConfig", "PolicyImprovementAgent",
           "WEIGHTINGS"]
