"""SASRec encoder (Kang & McAuley, 2018) as used by SQN/SAC/PRL/CCQL/LPI.

Learned absolute positions counted from the first item of the (right-padded) window, ``n_blocks``
pre-LN transformer blocks with causal self-attention, a final layer norm, and the state read at
the last valid position (``lengths - 1``).

Padding: inputs are right padded with ``n_items``. Because the window is right padded and the
attention is causal, a valid position only ever attends to valid positions, so the output for a
history never depends on the padding (its length or content). An empty history (``length 0``)
reads position 0, which holds the (learned) padding embedding plus position 0: a learned
"no history yet" state, the same for every empty history.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.nets.attention import attention
from recgym.agents.nets.dropout import Dropout


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with a key padding mask (:func:`recgym.agents.nets.attention.attention`)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` [B, L, H]; ``allowed`` bool [B, 1, L, L] (True = query may attend to key)."""
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, allowed, self.dropout, self.training)
        return self.out(y.transpose(1, 2).reshape(B, L, H))

    def forward_one(self, x: torch.Tensor, x_query: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """The output at one query position per row: ``x`` [B, L, H] (keys and values),
        ``x_query`` [B, H], ``allowed`` bool [B, 1, 1, L] → [B, H]."""
        B, L, H = x.shape
        w, b = self.qkv.weight, self.qkv.bias  # rows [0, H) project queries, [H, 3H) keys and values
        q = F.linear(x_query, w[:H], b[:H]).view(B, self.n_heads, 1, H // self.n_heads)
        k, v = F.linear(x, w[H:], b[H:]).view(B, L, 2, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, allowed, self.dropout, self.training)
        return self.out(y.reshape(B, H))


class SASRecBlock(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))`` (point-wise FFN, ReLU)."""

    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, n_heads, dropout)
        self.ln2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, hidden))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.ffn(self.ln2(x)))

    def forward_one(self, x: torch.Tensor, read: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """The block's output at position ``read[b]`` of each row only, ``[B, H]``: the same
        numbers as ``forward(x, allowed)[arange(B), read]`` (the keys and values still cover
        every position), without the queries, FFN and norms at the other positions."""
        rows = torch.arange(len(read), device=x.device)
        normed = self.ln1(x)
        x_read = x[rows, read] + self.drop(self.attn.forward_one(normed, normed[rows, read], allowed[rows, 0, read][:, None, None]))
        return x_read + self.drop(self.ffn(self.ln2(x_read)))


class SASRecEncoder(nn.Module):
    """Self-attentive sequence encoder.

    :param n_items: catalogue size; the padding id is ``n_items``.
    :param hidden: embedding / state width ``H`` (= ``out_dim``).
    :param state_len: maximum window ``L`` (number of learned positions).
    :param dropout: dropout on embeddings, attention weights, FFN and residual branches.
    :param n_blocks: number of transformer blocks (SQN/SAC: 1).
    :param n_heads: attention heads (SQN/SAC: 1).

    ``forward(states int64 [B, L'], lengths int64 [B]) -> [B, H]`` for any ``L' <= state_len``.
    ``item_embeddings`` (``nn.Embedding(n_items + 1, H)``, last row = padding) can serve as a
    tied output layer: ``state @ item_embeddings.weight[:n_items].T``.
    """

    def __init__(
        self, n_items: int, hidden: int = 64, state_len: int = 10, dropout: float = 0.1, n_blocks: int = 1, n_heads: int = 1
    ) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.state_len = int(state_len)
        self.out_dim = int(hidden)
        self.item_embeddings = nn.Embedding(n_items + 1, hidden)
        self.position_embeddings = nn.Embedding(state_len, hidden)
        nn.init.normal_(self.item_embeddings.weight, std=0.01)  # SQN code: N(0, 0.01) item embeddings
        nn.init.normal_(self.position_embeddings.weight, std=0.01)
        self.emb_dropout = Dropout(dropout)
        self.blocks = nn.ModuleList(SASRecBlock(hidden, n_heads, dropout) for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(hidden)

    def sequence(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden state at every position, ``[B, L, H]`` (positions >= length are padding)."""
        x, allowed = self._embed(states, lengths)
        for block in self.blocks:
            x = block(x, allowed)
        return self.final_norm(x)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """State vector ``[B, H]`` read at position ``max(lengths - 1, 0)``: ``sequence(...)`` at that
        position, computed without the last block's queries, FFN and norms at the other positions."""
        x, allowed = self._embed(states, lengths)
        for block in self.blocks[:-1]:
            x = block(x, allowed)
        read = (lengths.clamp(min=1) - 1).to(torch.long)
        if not len(self.blocks):
            return self.final_norm(x[torch.arange(len(read), device=x.device), read])
        return self.final_norm(self.blocks[-1].forward_one(x, read, allowed))

    def _embed(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input of the first block ``[B, L, H]`` and the attention mask ``[B, 1, L, L]``."""
        B, L = states.shape
        if L > self.state_len:
            raise ValueError(f"SASRecEncoder: window of {L} items exceeds state_len={self.state_len}")
        pos = torch.arange(L, device=states.device)
        valid = pos[None, :] < lengths[:, None]  # [B, L]
        states = torch.where(valid, states, self.n_items)  # whatever sits beyond the length reads as padding
        x = self.item_embeddings(states) * math.sqrt(self.out_dim) + self.position_embeddings(pos)[None]
        x = self.emb_dropout(x)
        causal = torch.ones(L, L, dtype=torch.bool, device=states.device).tril()
        # causal AND key is valid; the diagonal stays allowed so an all-padding row has a key
        allowed = (causal[None] & valid[:, None, :]) | torch.eye(L, dtype=torch.bool, device=states.device)[None]
        return x, allowed[:, None]  # [B, 1, L, L] broadcast over heads
