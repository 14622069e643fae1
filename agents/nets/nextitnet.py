"""NextItNet encoder (as in the SQN/SAC release): stacked dilated causal 1-D convolutions in
residual blocks with layer norm; the state is read at the last valid position."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets.dropout import Dropout
from recgym.agents.nets.gru import check_states, last_valid, valid_mask


class ResidualBlock(nn.Module):
    """conv(dilation d) → LN → ReLU → conv(dilation 2d) → LN → ReLU, plus the input.

    Each convolution is causal: the sequence is left-padded by ``(k - 1)·dilation`` so that
    position ``t`` only sees positions ``<= t``."""

    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.conv1 = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.ln1 = nn.LayerNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, dilation=2 * dilation)
        self.ln2 = nn.LayerNorm(channels)

    def _causal(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        # x [B, L, C] -> [B, L, C]
        pad = (conv.kernel_size[0] - 1) * conv.dilation[0]
        return conv(F.pad(x.transpose(1, 2), (pad, 0))).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.ln1(self._causal(self.conv1, x)))
        h = F.relu(self.ln2(self._causal(self.conv2, h)))
        return x + h


class NextItNetEncoder(nn.Module):
    """Item embedding → residual blocks with dilations ``(1, 2, 1, 2, 1, 2)``, kernel 3.

    Causal, so padded positions never reach the state at ``length - 1``; an empty history maps
    to a learned vector. ``out_dim = hidden``."""

    def __init__(
        self,
        n_items: int,
        hidden: int = 64,
        state_len: int = 10,
        dropout: float = 0.1,
        dilations: tuple[int, ...] = (1, 2, 1, 2, 1, 2),
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.n_items, self.hidden, self.state_len = int(n_items), int(hidden), int(state_len)
        self.item_embeddings = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        nn.init.normal_(self.item_embeddings.weight, std=0.01)
        with torch.no_grad():
            self.item_embeddings.weight[n_items].zero_()
        self.blocks = nn.Sequential(*[ResidualBlock(hidden, kernel, d) for d in dilations])
        self.empty = nn.Parameter(torch.zeros(hidden))
        self.dropout = Dropout(dropout)
        self.out_dim = hidden

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """states int64 ``[B, L]`` right-padded with ``n_items``, lengths int64 ``[B]`` → ``[B, hidden]``."""
        check_states("NextItNetEncoder", states, lengths, self.n_items)
        x = self.item_embeddings(states) * valid_mask(lengths, states.shape[1])[..., None]
        return self.dropout(last_valid(self.blocks(x), lengths, self.empty))
