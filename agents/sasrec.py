"""``sasrec``: next-item prediction by plain cross-entropy over the full catalogue.

This is the supervised baseline of SQN/SAC/SA2C/PRL/CCQL and the logging-policy estimate
``μ̂`` of LPI ("the same architecture trained by plain cross-entropy, no reward"). The encoder
is any of ``recgym.agents.nets`` (``encoder="sasrec"`` by default, ``--set encoder=gru`` ...).

Loss (SQN paper Eq. 2, the supervised head): ``L = -log softmax(W s_t + b)[a_t]`` with
``s_t = Encoder(x_{t-L:t})``; with ``tied_output=True`` (SASRec paper) ``W`` is the item
embedding table and there is no bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets import build_encoder
from recgym.agents.training import TorchAgent, TorchAgentConfig
from recgym.data import Transitions


@dataclass
class SASRecConfig(TorchAgentConfig):
    """Defaults: the SQN/SAC session setting (hidden 64, 1 block, 1 head, dropout 0.1, Adam lr
    0.01, batch 256, state_len 10, 30 epochs)."""

    encoder: str = "sasrec"
    n_blocks: int = 1
    n_heads: int = 1
    tied_output: bool = False
    """Score with the item embeddings (SASRec paper) instead of a separate linear head (SQN code)."""
    all_positions: bool = False
    """SASRec-paper training: every position of the window predicts its next item (the last one
    predicts the logged action), so one row gives up to ``state_len`` targets instead of one.
    Needs an encoder with ``sequence(states, lengths) -> [B, L, H]``."""
    sampling: str = "per_event"
    """``"per_event"``: mini-batches of replay rows drawn uniformly with replacement, one row per
    logged event; with ``all_positions`` a target then recurs in up to ``state_len`` rows of an
    epoch (at a shifted position). ``"per_user"`` (needs ``all_positions``): each epoch visits, in
    random order, the rows that cut every sequence into disjoint chunks of ``state_len`` targets
    (:meth:`recgym.data.Transitions.chunk_rows`), so each target is computed once per epoch, as
    the SASRec paper's training sequences; an epoch is then ~``state_len`` times shorter."""


# Leave-one-out setting of the SASRec paper (ML-1M: 200 items, 2 blocks, dropout 0.2, lr 1e-3,
# batch 128, shared item embeddings); ML-100k users are shorter, 50 items cover most of them.
# Trained on all positions (as SASRec), one row per chunk of state_len targets (sampling="per_user"):
# an epoch computes each target once, ~27 steps on ML-100k; 40 epochs (~1,080 steps), since
# validation NDCG@10 still rises after 30 (benchmarks/ttq.py).
_LOO = dict(state_len=50, n_blocks=2, n_heads=1, dropout=0.2, lr=1e-3, batch_size=128, tied_output=True,
            all_positions=True, sampling="per_user", epochs=40, eval_every=50)
# ML-100K: batch 32 and lr 2e-3, chosen by the time to validation NDCG@10 0.115 (seed 0; grid: batch
# 32 / 64 / 128 at lr 1e-3, batch 32 / 128 at 2e-3): a step of 32 rows costs 0.29x one of 128
# (24.8 vs 85.6 ms) and it reached that score in 950 steps (README, "Performance"). Its 40 epochs
# are ~4,200 steps; seeds 0-2 were best on validation at steps 1,000 / 3,200 / 3,950.
_ML100K = dict(_LOO, batch_size=32, lr=2e-3)

PRESETS: dict[str, dict[str, Any]] = {
    "loo": _LOO,
    "session": {},  # the defaults are the session papers' (SQN release) values
    "ml-100k": _ML100K,
    "ml-1m": {**_LOO, "state_len": 200},
    # LPI paper, Netflix: 2 layers, 8 heads, 200 dims, batch 128, 30 epochs, last 200 ratings
    "netflix": {**_LOO, "state_len": 200, "hidden": 200, "n_heads": 8, "epochs": 30},
    "steam": {**_LOO, "state_len": 50},
    # PRL paper: lr 0.005 on RetailRocket (0.01 on RC15, the default)
    "retailrocket": {"lr": 0.005},
    # the embedded default data: small, so a few epochs show learning in well under a minute
    "synthetic": {"epochs": 5},
}


class SASRecAgent(TorchAgent):
    """Cross-entropy next-item model over an :mod:`recgym.agents.nets` encoder."""

    name = "sasrec"
    Config = SASRecConfig
    PRESETS = PRESETS
    config: SASRecConfig

    def build(self) -> None:
        cfg = self.config
        self.encoder = build_encoder(cfg, self.n_items)
        if cfg.all_positions and not hasattr(self.encoder, "sequence"):
            raise ValueError(f"all_positions=True needs an encoder with sequence(); {cfg.encoder!r} has none")
        if cfg.sampling not in ("per_event", "per_user"):
            raise ValueError(f"{self.name}: sampling must be 'per_event' or 'per_user', got {cfg.sampling!r}")
        if cfg.sampling == "per_user" and not cfg.all_positions:
            raise ValueError(f"{self.name}: sampling='per_user' needs all_positions=True (one target per row "
                             "would drop the targets inside each chunk)")
        if cfg.tied_output and not hasattr(self.encoder, "item_embeddings"):
            raise ValueError(f"tied_output=True needs an encoder with item_embeddings; {cfg.encoder!r} has none")
        self.head = nn.Identity() if cfg.tied_output else nn.Linear(self.encoder.out_dim, self.n_items)
        params = list(self.encoder.parameters()) + list(self.head.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def epoch_rows(self, transitions: Transitions) -> np.ndarray | None:
        return transitions.chunk_rows() if self.config.sampling == "per_user" else None

    def logits(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]`` unnormalised log-probabilities (differentiable)."""
        return self._output(self.encoder(states, lengths))

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.tied_output:
            return h @ self.encoder.item_embeddings.weight[: self.n_items].T
        return self.head(h)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        states, lengths, action = batch["state"], batch["state_len"], batch["action"]
        if not self.config.all_positions:
            return F.cross_entropy(self.logits(states, lengths), action), {}
        # position p predicts the item at p + 1; the last valid position (0 for an empty
        # history) predicts the logged action
        B, L = states.shape
        last = (lengths.clamp(min=1) - 1)[:, None]
        targets = torch.cat([states[:, 1:], states.new_full((B, 1), self.n_items)], dim=1)
        targets = targets.scatter(1, last, action[:, None])
        used = torch.arange(L, device=states.device)[None, :] <= last
        h = self.encoder.sequence(states, lengths)
        if self.config.autocast_dtype is None:
            return F.cross_entropy(self._output(h[used]), targets[used]), {}
        # the same mean over the used positions, on a shape fixed by the batch: oneDNN keeps a
        # bf16 kernel (and its buffers) per GEMM shape, and [used] changes the shape every step
        return F.cross_entropy(self._output(h).flatten(0, 1), targets.masked_fill(~used, -100).flatten()), {}

    @torch.no_grad()
    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.logits(states.to(self.device), lengths.to(self.device))
