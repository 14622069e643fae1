"""Dropout with a cheap mask: 16 random bits per element, four elements per 64-bit draw.

``torch``'s CPU dropout draws one Bernoulli variate per element (``bernoulli_``); on the small
tensors of these encoders that draw is most of the cost, 10–15% of a whole training step
(``python -m benchmarks train``). Here an element is kept when its 16 random bits, read as an
integer ``u`` in ``[0, 65536)``, satisfy ``u ≥ round(p · 65536)``, so the drop probability is
``p`` rounded to a multiple of ``2^-16`` (off by < 8e-6), and kept elements are scaled by the
inverse of the realised keep probability: ``E[mask] = 1`` exactly. The bits come from
``torch.randint`` on the tensor's device generator, so a seeded run (and a resumed one) draws the
same masks; the same code runs on every device (a GPU's Bernoulli draw is cheap, but one mask rule
everywhere keeps a run's random stream independent of where its tensors live).
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


def _random_int16(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uniform random ``int16`` of ``shape`` from ``numel / 4`` 64-bit draws."""
    n = shape.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape)


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of ``x`` with drop probability ``p`` (see the module docstring)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return x
    dropped = round(p * _LEVELS)
    if dropped == _LEVELS:
        return x * 0.0
    keep = _random_int16(x.shape, x.device) >= dropped - _LEVELS // 2
    return x * (keep.to(x.dtype) * (_LEVELS / (_LEVELS - dropped)))


class Dropout(nn.Module):
    """``nn.Dropout`` with the cheap mask of :func:`dropout` (same interface, no in-place mode)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must lie in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


__all__ = ["Dropout", "dropout"]
