"""GRU encoder (GRU4Rec-style, as in the SQN/SAC release): the state is the GRU output at the
last valid position of the right-padded history."""

from __future__ import annotations

import torch
from torch import nn

from recgym.agents.nets.dropout import Dropout


def check_states(name: str, states: torch.Tensor, lengths: torch.Tensor, n_items: int) -> None:
    """Raise ``ValueError`` naming the argument when ``states``/``lengths`` are malformed."""
    if states.dim() != 2:
        raise ValueError(f"{name}.forward: states must be [B, L], got shape {tuple(states.shape)}")
    if lengths.shape != states.shape[:1]:
        raise ValueError(f"{name}.forward: lengths must be [B]={states.shape[0]}, got {tuple(lengths.shape)}")
    len_msg = f"{name}.forward: lengths must lie in [0, {states.shape[1]}]"
    id_msg = f"{name}.forward: ids must lie in [0, {n_items}] (pad id = n_items)"
    if states.device.type != "cpu":  # a device-side check: reading the values back would stall every forward
        torch._assert_async(((lengths >= 0) & (lengths <= states.shape[1])).all(), len_msg)
        torch._assert_async(((states >= 0) & (states <= n_items)).all(), id_msg)
        return
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > states.shape[1]):
        raise ValueError(len_msg)
    if states.numel() and (int(states.min()) < 0 or int(states.max()) > n_items):
        raise ValueError(id_msg)


def valid_mask(lengths: torch.Tensor, L: int) -> torch.Tensor:
    """bool ``[B, L]``: True at the positions ``< lengths`` (the real items)."""
    return torch.arange(L, device=lengths.device)[None, :] < lengths[:, None]


def last_valid(h: torch.Tensor, lengths: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """``h[b, lengths[b] - 1]`` for every row; rows with ``lengths == 0`` get ``empty``.

    h ``[B, L, d]``, lengths int64 ``[B]``, empty ``[d]`` (a learned "no history" state)."""
    idx = (lengths - 1).clamp(min=0)
    out = h[torch.arange(h.shape[0], device=h.device), idx]
    return torch.where((lengths > 0)[:, None], out, empty.to(out.dtype)[None, :])


class GRUEncoder(nn.Module):
    """Item embedding → one-layer GRU; the state is the output at position ``length - 1``.

    Causal by construction, so the content of padded positions (``>= length``) never reaches
    the state. An empty history (``length == 0``) maps to a learned vector.
    """

    def __init__(self, n_items: int, hidden: int = 64, state_len: int = 10, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_items, self.hidden, self.state_len = int(n_items), int(hidden), int(state_len)
        self.item_embeddings = nn.Embedding(n_items + 1, hidden, padding_idx=n_items)
        nn.init.normal_(self.item_embeddings.weight, std=0.01)
        with torch.no_grad():
            self.item_embeddings.weight[n_items].zero_()
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.empty = nn.Parameter(torch.zeros(hidden))
        self.dropout = Dropout(dropout)
        self.out_dim = hidden

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """states int64 ``[B, L]`` right-padded with ``n_items``, lengths int64 ``[B]`` → ``[B, hidden]``."""
        check_states("GRUEncoder", states, lengths, self.n_items)
        h, _ = self.gru(self.item_embeddings(states))  # [B, L, d]
        return self.dropout(last_valid(h, lengths, self.empty))
