"""Sequence augmentations for the contrastive objective of SASRec-CO / CCQL (§3.4, Eq. 3).

All work on right-padded batches ``states int64 [B, L]`` (pad id ``pad``), ``lengths [B]`` and
never move padding: the items stay in ``[0, length)`` and positions ``>= length`` stay ``pad``
(the CCQL release's permutation also shuffles the padding: a bug, not copied). Vectorised;
randomness comes from ``generator`` (default: torch's global generator).
"""

from __future__ import annotations

import torch


def _uniform(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def crop(states: torch.Tensor, lengths: torch.Tensor, pad: int, ratio: float = 0.6,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep a random contiguous window of ``max(1, floor(ratio · length))`` items, moved to the
    front. Empty histories stay empty. Returns ``(states, lengths)``."""
    B, L = states.shape
    new_len = torch.where(lengths > 0, (lengths.float() * ratio).floor().long().clamp(min=1), lengths)
    start = (_uniform((B,), generator, states.device) * (lengths - new_len + 1).float()).long()
    cols = torch.arange(L, device=states.device)[None, :]
    src = (start[:, None] + cols).clamp(max=L - 1)
    out = torch.where(cols < new_len[:, None], states.gather(1, src), torch.full_like(states, pad))
    return out, new_len


def mask(states: torch.Tensor, lengths: torch.Tensor, pad: int, ratio: float = 0.3,
         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each real item with the mask token with probability ``ratio``. The mask token is
    the pad id (the encoders have no extra token); lengths are unchanged, so a masked item is an
    "unknown item" inside the history, not a shorter history."""
    B, L = states.shape
    valid = torch.arange(L, device=states.device)[None, :] < lengths[:, None]
    hit = valid & (_uniform((B, L), generator, states.device) < ratio)
    return torch.where(hit, torch.full_like(states, pad), states), lengths.clone()


def reorder(states: torch.Tensor, lengths: torch.Tensor, pad: int, ratio: float = 0.3,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle a random contiguous segment of ``max(1, floor(ratio · length))`` real items."""
    B, L = states.shape
    seg = torch.where(lengths > 0, (lengths.float() * ratio).floor().long().clamp(min=1), lengths)
    start = (_uniform((B,), generator, states.device) * (lengths - seg + 1).float()).long()
    cols = torch.arange(L, device=states.device)[None, :].expand(B, L)
    inside = (cols >= start[:, None]) & (cols < (start + seg)[:, None])
    # sort key: outside positions keep their index; inside ones get random keys in
    # [start, start + seg - 1), so they permute among themselves and nothing else moves
    noise = start[:, None].float() + _uniform((B, L), generator, states.device) * (seg[:, None] - 1).clamp(min=0).float()
    key = torch.where(inside, noise, cols.float())
    order = key.argsort(dim=1, stable=True)
    return states.gather(1, order), lengths.clone()


AUGMENTATIONS = {"crop": crop, "mask": mask, "reorder": reorder}


def augment(states: torch.Tensor, lengths: torch.Tensor, pad: int,
            methods: tuple[str, ...] = ("crop", "mask", "reorder"),
            ratios: dict[str, float] | None = None,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmentation per row, picked uniformly from ``methods`` (CL4SRec style).
    Returns new ``(states, lengths)``; the inputs are not modified."""
    unknown = set(methods) - set(AUGMENTATIONS)
    if unknown or not methods:
        raise ValueError(f"augment: methods must be a non-empty subset of {sorted(AUGMENTATIONS)}, got {methods}")
    ratios = ratios or {}
    pick = torch.randint(0, len(methods), (states.shape[0],), generator=generator, device=states.device)
    out_s, out_l = states.clone(), lengths.clone()
    for i, m in enumerate(methods):
        kw = {"ratio": ratios[m]} if m in ratios else {}
        s, l = AUGMENTATIONS[m](states, lengths, pad, generator=generator, **kw)
        rows = pick == i
        out_s[rows], out_l[rows] = s[rows], l[rows]
    return out_s, out_l
