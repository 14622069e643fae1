"""``prl``: Prompt-based Reinforcement Learning (Xin et al., SIGIR'22, §3, Algorithms 1–2).

PRL turns offline RL into supervised learning on prompts: *which item should be recommended
given the history and the return we want?* Read top to bottom:

1. prompt generation (Algorithm 1, :mod:`recgym.prompts`): every logged event gives
   ``{R_t, x_{1:t}, t} -> x_{t+1}``; ``R_t`` is the return-to-go (Eq. 7, discount 1 by default);
2. prompt encoding (Eq. 9–10): ``P_t = [R_t·e_r, s_t, h_t] ∈ R^{3×d}`` with ``s_t`` from any
   :mod:`recgym.agents.nets` encoder (Eq. 8 is the GRU case) and ``h_t`` a step embedding;
3. supervised attentive learning (Eq. 11–13): one non-causal self-attention block over the three
   tokens with residual, dropout and layer norm; logits from the state token (Eq. 14);
4. loss (Eq. 15): cross-entropy weighted by the immediate reward ``r_t``;
5. inference (Eq. 16): prompt ``R̃_t = N(μ, ε²)·R̄_t`` with ``R̄_t`` the mean training return at
   step ``t`` (kept with the weights); online, session-wise (:func:`session_rollout`): prompt
   once at the first step, then subtract each observed reward.

Defaults follow the paper. ``R_t`` enters Eq. 9 as it is (the authors' code divides it by ``R̄_t``
first: ``normalize_return=True``, off by default; the inference input is then ``N(μ, ε²)``). The
step table ``H_T`` has a row for every step up to ``max_step = 50`` (the paper keeps sessions of at
most 50 events; later steps share the last row), not clipped at the ``state_len`` window. The shared
evaluators give a scorer only the window and its length ``min(t, state_len)``, so ``scores`` uses
that length as the step unless ``steps=`` gives the true one (``session_rollout`` does): for events
past the window the evaluated step is then ``state_len``, not ``t``; ``max_step=None`` (= the window)
trains with that same clipped step. The encoder keeps the shared ``dropout`` (0.1, as its
CE/SQN/SAC baselines); the prompt block uses ``prompt_dropout`` (0.3).

Ablations (Tables 4–5) are config fields; the registered names set their defaults: ``prl-mean``
(``block="mean"``: mean-pool the three tokens instead of attention), ``prl-mlp`` (``block="mlp"``: an
MLP over the concatenated tokens), ``prl-wo`` (``weighting="none"``: no loss weighting), ``prl-cumu``
(``weighting="return"``: loss weighted by the return-to-go ``R_t``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets import build_encoder
from recgym.agents.nets.dropout import Dropout
from recgym.agents.training import TorchAgent, TorchAgentConfig
from recgym.agents.sasrec import PRESETS as SASREC_PRESETS
from recgym.data import SessionLog, Transitions
from recgym.prompts import ReturnStats, generate_prompts, prompt_steps

BLOCKS = ("attention", "mean", "mlp")
WEIGHTINGS = ("reward", "none", "return")


@dataclass
class PRLConfig(TorchAgentConfig):
    """Defaults: the PRL paper on RC15 (hidden 64, Adam lr 0.01, batch 256, 30 epochs, state_len 10,
    discount 1, μ = 2, ε = 0, raw ``R_t`` in Eq. 9, step table up to 50; SASRec encoder with 1 block
    and 1 head)."""

    encoder: str = "sasrec"
    n_blocks: int = 1
    n_heads: int = 1
    prompt_dropout: float = 0.3
    """Dropout of the prompt block (Eq. 12–13); the encoder uses ``dropout``."""
    discount: float = 1.0
    """λ of the return-to-go (Eq. 7); the authors use 1."""
    max_step: int | None = 50
    """Largest step index with its own embedding ``h_t`` (later steps share it); 50 = the paper's
    longest session; ``None`` = ``state_len`` (the step the window-only evaluators can supply)."""
    normalize_return: bool = False
    """Feed ``R_t / R̄_t`` into Eq. 9 (the authors' code) instead of the raw ``R_t`` (the paper)."""
    mu: float = 2.0
    """Inference prompt mean (Eq. 16)."""
    eps: float = 0.0
    """Inference prompt standard deviation (Eq. 16), an exploration factor."""
    block: str = "attention"
    """``"attention"`` (PRL), ``"mean"`` (PRL-mean) or ``"mlp"`` (PRL-MLP)."""
    weighting: str = "reward"
    """Loss weight: ``"reward"`` r_t (Eq. 15), ``"none"`` (PRL-w/o), ``"return"`` R_t (PRL-cumu)."""


PRESETS: dict[str, dict[str, Any]] = {
    # leave-one-out: the sasrec baseline's encoder settings, one target per replay row (as the
    # Q-learning agents' loo preset), so comparisons on a loo dataset share them
    **{ds: {**{k: v for k, v in SASREC_PRESETS[ds].items() if k not in ("tied_output", "all_positions", "sampling")},
            "epochs": 3, "eval_every": 250}
       for ds in ("loo", "ml-1m", "netflix", "steam")},
    "session": {},  # the defaults are the PRL paper's session (RC15) values
    "retailrocket": {"lr": 0.005},  # PRL paper §4.1.4
    "synthetic": {"epochs": 10},  # small embedded data: as the Q-learning agents' preset
}


class PromptNet(nn.Module):
    """Eq. 8–14: ``(states [B, L], lengths [B], returns [B], steps [B]) -> logits [B, n_items]``."""

    def __init__(self, encoder: nn.Module, n_items: int, max_step: int, block: str, dropout: float) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"PRL: block must be one of {BLOCKS}, got {block!r}")
        d = encoder.out_dim
        self.encoder, self.block, self.d = encoder, block, d
        self.e_r = nn.Parameter(torch.randn(d) * 0.1)  # Eq. 9 reward embedding e_r
        self.steps = nn.Embedding(max_step + 1, d)  # H_T, the step embeddings h_t
        nn.init.normal_(self.steps.weight, std=0.1)
        self.dropout = Dropout(dropout)
        if block == "attention":  # Eq. 12 projections
            self.w_q = nn.Linear(d, d, bias=False)
            self.w_k = nn.Linear(d, d, bias=False)
            self.w_v = nn.Linear(d, d, bias=False)
        elif block == "mlp":
            self.mlp = nn.Sequential(nn.Linear(3 * d, d), nn.ReLU(), Dropout(dropout), nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_items)  # Eq. 14: W_i, b

    def prompt(self, states: torch.Tensor, lengths: torch.Tensor, returns: torch.Tensor,
               steps: torch.Tensor) -> torch.Tensor:
        """Eq. 9–10: ``P_t = [R_t·e_r, s_t, h_t]``, ``[B, 3, d]``."""
        e_R = returns[:, None].to(self.e_r.dtype) * self.e_r[None, :]  # Eq. 9
        s = self.encoder(states, lengths)  # Eq. 8: s_t = G(x_{1:t})
        h = self.steps(steps)
        return torch.stack([e_R, s, h], dim=1)  # Eq. 10

    def state_token(self, P: torch.Tensor) -> torch.Tensor:
        """Eq. 11–13 (or an ablation's replacement): the attentive state ``s̃_t``, ``[B, d]``."""
        P = self.dropout(P)
        if self.block == "mean":  # PRL-mean
            return self.norm(P.mean(dim=1))
        if self.block == "mlp":  # PRL-MLP
            return self.norm(self.mlp(P.flatten(1)))
        Q, K, V = self.w_q(P), self.w_k(P), self.w_v(P)
        att = torch.softmax(Q @ K.transpose(1, 2) / math.sqrt(self.d), dim=-1) @ V  # Eq. 11, non-causal
        P_tilde = self.norm(P + self.dropout(att))  # Eq. 12 with dropout and layer norm
        return P_tilde[:, 1]  # Eq. 13: unstack, keep s̃_t

    def forward(self, states: torch.Tensor, lengths: torch.Tensor, returns: torch.Tensor,
                steps: torch.Tensor) -> torch.Tensor:
        return self.head(self.state_token(self.prompt(states, lengths, returns, steps)))  # Eq. 14 (δ = identity)


class PRLAgent(TorchAgent):
    """PRL over any :mod:`recgym.agents.nets` encoder (see the module docstring)."""

    name: ClassVar[str] = "prl"
    Config = PRLConfig
    PRESETS = PRESETS
    config: PRLConfig

    @property
    def max_step(self) -> int:
        return self.config.state_len if self.config.max_step is None else int(self.config.max_step)

    def build(self) -> None:
        cfg = self.config
        if cfg.weighting not in WEIGHTINGS:
            raise ValueError(f"{self.name}: weighting must be one of {WEIGHTINGS}, got {cfg.weighting!r}")
        if cfg.eps < 0:
            raise ValueError(f"{self.name}: eps (Eq. 16 standard deviation) must be >= 0, got {cfg.eps}")
        if self.max_step < 0:
            raise ValueError(f"{self.name}: max_step must be >= 0, got {cfg.max_step}")
        self.net = PromptNet(build_encoder(cfg, self.n_items), self.n_items, self.max_step, cfg.block, cfg.prompt_dropout)
        self.stats = ReturnStats(self.max_step)  # R̄_t, saved with the weights
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._noise = torch.Generator().manual_seed(self.seed)  # Eq. 16 noise, reproducible per seed

    # ------------------------------------------------------------ Algorithm 1
    def make_transitions(self, train: SessionLog) -> Transitions:
        tr = train.transitions(self.state_len, discount=self.config.discount)
        self.stats.fit(generate_prompts(tr, self.max_step))  # R̄_t from the training data
        return tr

    def _net_returns(self, returns: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """The value that enters Eq. 9: ``R`` (the paper) or ``R / R̄_t`` (``normalize_return``)."""
        return returns / self.stats.denominator(steps) if self.config.normalize_return else returns

    # ------------------------------------------------------------ Algorithm 2
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        steps = prompt_steps(batch["t"], self.max_step)
        logits = self.net(batch["state"], batch["state_len"], self._net_returns(batch["rtg"], steps), steps)
        ce = F.cross_entropy(logits, batch["action"], reduction="none")  # -Σ_i Y_i log p_i
        w = self.loss_weights(batch)
        return (w * ce).mean(), {"ce": float(ce.detach().mean())}  # Eq. 15

    def loss_weights(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-row weight of Eq. 15: ``r_t`` (PRL), 1 (PRL-w/o) or ``R_t`` (PRL-cumu), ``[B]``."""
        if self.config.weighting == "reward":
            return batch["reward"].float()
        if self.config.weighting == "return":
            return batch["rtg"].float()
        return torch.ones_like(batch["reward"], dtype=torch.float32)

    # ------------------------------------------------------------ inference
    def inference_returns(self, steps: torch.Tensor) -> torch.Tensor:
        """Eq. 16 prompt ``R̃_t = N(μ, ε²)·R̄_t`` for steps ``[B]`` (raw return scale)."""
        return self.stats.inference_prompt(steps, self.config.mu, self.config.eps, self._noise)

    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor, steps: torch.Tensor | None = None,
               returns: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[B, n_items]``.

        :param steps: step index ``t`` ``[B]`` (default: ``lengths``, i.e. ``min(t, state_len)``, all
            the window-only evaluators can supply).
        :param returns: the prompted return ``[B]`` on the raw return scale (default: Eq. 16).
        """
        states, lengths = states.to(self.device), lengths.to(self.device)
        steps = prompt_steps((lengths if steps is None else steps.to(self.device)).long(), self.max_step)
        returns = self.inference_returns(steps) if returns is None else returns.to(self.device).float()
        return self.net(states, lengths, self._net_returns(returns, steps), steps)


@dataclass
class PRLMeanConfig(PRLConfig):
    block: str = "mean"


@dataclass
class PRLMLPConfig(PRLConfig):
    block: str = "mlp"


@dataclass
class PRLWoConfig(PRLConfig):
    weighting: str = "none"


@dataclass
class PRLCumuConfig(PRLConfig):
    weighting: str = "return"


class PRLMeanAgent(PRLAgent):
    """PRL-mean (Table 4): mean pooling of the three prompt tokens replaces the attention block."""

    name = "prl-mean"
    Config = PRLMeanConfig


class PRLMLPAgent(PRLAgent):
    """PRL-MLP (Table 4): an MLP over the concatenated prompt tokens replaces the attention block."""

    name = "prl-mlp"
    Config = PRLMLPConfig


class PRLWoAgent(PRLAgent):
    """PRL-w/o (Table 5): plain (unweighted) cross-entropy on the prompts."""

    name = "prl-wo"
    Config = PRLWoConfig


class PRLCumuAgent(PRLAgent):
    """PRL-cumu (Table 5): cross-entropy weighted by the return-to-go ``R_t``."""

    name = "prl-cumu"
    Config = PRLCumuConfig


# ---------------------------------------------------------------------- online, session-wise
@torch.no_grad()
def session_rollout(agent: PRLAgent, env: Any, n_episodes: int, seed: int = 0) -> dict[str, float]:
    """Session-wise online inference (§3.2) in a Gymnasium env with ``{"history", "length"}``
    observations: prompt ``R̃_0 = N(μ, ε²)·R̄_0`` at the first step, then ``R ← R − r`` after each
    observed reward; the step index counts the env steps. Greedy top-1 actions.

    :return: ``{"return": mean episode return, "length": mean episode length, "final_prompt": mean
        prompt left at the end}``.
    """
    was_training = agent.net.training
    agent.set_training(False)
    returns, lengths, left = [], [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed if ep == 0 else None)  # seed once (Gymnasium convention)
        t = 0
        R = agent.inference_returns(torch.zeros(1, dtype=torch.long, device=agent.device))  # Eq. 16 at t = 0
        total, done = 0.0, False
        while not done:
            hist = np.asarray(obs["history"], dtype=np.int64)[None, :]
            length = np.asarray(obs["length"], dtype=np.int64).reshape(1)
            s = agent.scores(torch.from_numpy(hist), torch.from_numpy(length),
                             steps=torch.tensor([t]), returns=R)
            obs, r, terminated, truncated, _ = env.step(int(s.argmax(1)[0]))
            R = R - float(r)  # decrease the prompt by the observed reward
            total += float(r)
            t += 1
            done = terminated or truncated
        returns.append(total)
        lengths.append(t)
        left.append(float(R[0]))
    agent.set_training(was_training)
    return {"return": float(np.mean(returns)), "length": float(np.mean(lengths)), "final_prompt": float(np.mean(left))}


__all__ = ["PRLAgent", "PRLConfig", "PRLCumuAgent", "PRLCumuConfig", "PRLMLPAgent", "PRLMLPConfig", "PRLMeanAgent",
           "PRLMeanConfig", "PRLWoAgent", "PRLWoConfig", "PromptNet", "session_rollout"]
