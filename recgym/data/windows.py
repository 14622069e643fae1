"""The last ``L`` items of many sequences at once, padded: the history window every agent, env and
evaluator reads.

One gather over flat arrays, no Python loop over rows. Works on numpy arrays and, unchanged, on
torch tensors (then on the tensors' device), so the same code cuts windows for training data on the
CPU and for scoring on the GPU.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)

SIDES = ("right", "left")


def last_items(
    items: Array, starts, ends, max_len: int, pad_id: int, side: str = "right", trim: bool = False
) -> tuple[Array, Array]:
    """The last ``max_len`` items of each flat range ``items[starts[b]:ends[b]]``, padded with ``pad_id``.

    Args:
        items: item ids ``[n]`` (numpy, or a torch tensor: then the result is a tensor on its device).
        starts, ends: int ``[B]``, ``starts[b] <= ends[b] <= n`` (e.g. a session's first event and
            the event a decision is made before; ``SessionLog.offsets[:-1], offsets[1:]`` for whole sessions).
        max_len: window length ``L``.
        pad_id: padding id (``n_items`` in recgym).
        side: ``"right"`` (items first, padding after: the layout of ``Agent.scores`` inputs) or
            ``"left"`` (padding first, the newest item in the last column: GPTRec / BERT4Rec inputs).
        trim: drop the padding columns every row shares, so the width is
            ``W = max(1, longest kept window) <= L`` instead of ``W = L``.

    Returns:
        ``(ids int64 [B, W], lengths int64 [B])`` with ``lengths = min(ends - starts, L)`` (0 for an
        empty range: a row of padding).
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    if isinstance(items, torch.Tensor):
        starts = torch.as_tensor(starts, dtype=torch.int64, device=items.device)
        ends = torch.as_tensor(ends, dtype=torch.int64, device=items.device)
        lengths = (ends - starts).clamp(0, max_len)
        where, cols = torch.where, torch.arange(max_len, device=items.device)
    else:
        items = np.asarray(items)
        starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        lengths = np.clip(ends - starts, 0, max_len)
        where, cols = np.where, np.arange(max_len)
    if trim:
        cols = cols[: max(1, int(lengths.max()) if len(lengths) else 1)]
    width = len(cols)
    j = cols[None, :] - (width - lengths)[:, None] if side == "left" else cols[None, :]  # position in the window
    valid = (j >= 0) & (j < lengths[:, None])
    src = ((ends - lengths)[:, None] + j).clip(0, max(len(items) - 1, 0))
    out = where(valid, items[src], pad_id) if len(items) else where(valid, src, pad_id)  # no items: all padding
    if isinstance(out, torch.Tensor):
        return out.to(torch.int64), lengths
    return out.astype(np.int64), lengths


def last_items_of_rows(
    rows: Array, lengths, max_len: int, pad_id: int, side: str = "right", trim: bool = False
) -> tuple[Array, Array]:
    """:func:`last_items` of right-padded rows: the last ``max_len`` of the first ``lengths[b]``
    entries of ``rows[b]``.

    Args:
        rows: item ids ``[B, L0]``, right-padded (numpy or torch).
        lengths: int ``[B]``, clipped to ``[0, L0]``.
        max_len, pad_id, side, trim: as for :func:`last_items`.

    Returns:
        ``(ids int64 [B, W], lengths int64 [B])``, ``W = max_len`` (or less with ``trim``).
    """
    B, width = rows.shape
    if isinstance(rows, torch.Tensor):
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=rows.device).clamp(0, width)
        starts = torch.arange(B, device=rows.device) * width
    else:
        rows = np.asarray(rows)
        lengths = np.clip(np.asarray(lengths, dtype=np.int64), 0, width)
        starts = np.arange(B, dtype=np.int64) * width
    return last_items(rows.reshape(-1), starts, starts + lengths, max_len, pad_id, side, trim)


def last_items_of_lists(histories, max_len: int, pad_id: int, side: str = "right", trim: bool = False):
    """:func:`last_items` of a list of item-id sequences (numpy in, numpy out)."""
    seqs = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    sizes = np.array([len(h) for h in seqs], dtype=np.int64)
    ends = np.cumsum(sizes)
    flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    return last_items(flat, ends - sizes, ends, max_len, pad_id, side, trim)


__all__ = ["last_items", "last_items_of_lists", "last_items_of_rows"]
