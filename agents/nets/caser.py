"""Caser encoder (as in the SQN/SAC release): horizontal convolutions of heights 2, 3, 4
(16 filters each) max-pooled over time, plus one vertical filter over the whole window;
``out_dim = 3·16 + hidden = 112`` for hidden 64."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets.dropout import Dropout
from recgym.agents.nets.gru import check_states, valid_mask


class CaserEncoder(nn.Module):
    """Embedding matrix ``[L, d]`` of the (zero-padded) history read as an image.

    Horizontal filters ``[h, d]`` catch union-level patterns of ``h`` consecutive items; the
    vertical filter ``[L, 1]`` is a learned weighted sum over positions. Padded positions are
    zeroed before the convolutions, so their content never matters. Histories shorter than a
    filter height are zero-extended; an empty history gives the all-zero image (a constant
    state). Inputs wider than ``state_len`` are an error; narrower ones are right-padded."""

    def __init__(
        self,
        n_items: int,
        hidden: int = 64,
        state_len: int = 10,
        dropout: float = 0.1,
        n_horizontal: int = 16,
        heights: tuple[int, ...] = (2, 3, 4),
        n_vertical: int = 1,
    ) -> None:
        super().__init__()
        self.n_items, self.hidden, self.state_len = int(n_items), int(hidden), int(state_len)
        self.heights = tuple(heights)
        self.item_embeddings = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        nn.init.normal_(self.item_embeddings.weight, std=0.01)
        with torch.no_grad():
            self.item_embeddings.weight[n_items].zero_()
        self.width = max(state_len, max(self.heights))  # time axis seen by the convolutions
        self.horizontal = nn.ModuleList(nn.Conv2d(1, n_horizontal, (h, hidden)) for h in self.heights)
        self.vertical = nn.Conv2d(1, n_vertical, (self.width, 1))
        self.dropout = Dropout(dropout)
        self.out_dim = n_horizontal * len(self.heights) + n_vertical * hidden

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """states int64 ``[B, L]`` (``L <= state_len``) right-padded with ``n_items``,
        lengths int64 ``[B]`` → ``[B, out_dim]``."""
        check_states("CaserEncoder", states, lengths, self.n_items)
        B, L = states.shape
        if L > self.state_len:
            raise ValueError(f"CaserEncoder.forward: states has {L} columns, state_len is {self.state_len}")
        x = self.item_embeddings(states) * valid_mask(lengths, L)[..., None]  # [B, L, d]
        x = F.pad(x, (0, 0, 0, self.width - L)).unsqueeze(1)  # [B, 1, W, d]
        pooled = [F.relu(conv(x)).squeeze(3).amax(dim=2) for conv in self.horizontal]  # each [B, n_h]
        v = self.vertical(x).flatten(1)  # [B, n_v * d]
        return self.dropout(torch.cat(pooled + [v], dim=1))
