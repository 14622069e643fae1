"""Scaled dot-product attention whose training-time dropout uses the cheap mask of
:mod:`recgym.agents.nets.dropout`.

``softmax(q kᵀ / √d_head + mask) v`` (Vaswani et al., 2017, Eq. 1) with dropout on the attention
weights while training. Without dropout (evaluation, ``p = 0``) this is
``F.scaled_dot_product_attention``; with dropout it is the explicit computation (on the CPU,
``torch``'s own path with dropout is this same math, with a ``bernoulli_`` mask), on every device,
so a run's random stream does not depend on where its tensors live.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from recgym.agents.nets.dropout import dropout


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout_p: float = 0.0,
              training: bool = False) -> torch.Tensor:
    """``q [B, h, T, d]``, ``k``/``v [B, h, S, d]``, ``allowed`` bool broadcastable to ``[B, h, T, S]``
    (True = the query may attend to the key) → ``[B, h, T, d]``."""
    if not training or dropout_p == 0.0:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p if training else 0.0)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return dropout(weights, dropout_p) @ v


__all__ = ["attention"]
