"""Sequence encoders shared by all agents (one interface, see docs/architecture.md "Agents").

Every encoder is built as ``Encoder(n_items, hidden, state_len, dropout, **extra)`` and maps
``forward(states int64 [B, L] right-padded with n_items, lengths int64 [B]) -> [B, out_dim]``.
Encoders that own item embeddings expose them as ``item_embeddings`` (``nn.Embedding(n_items + 1, H)``)
so that heads can tie their output layer to them.

Add an encoder by writing ``agents/nets/<name>.py`` and one line in :data:`ENCODERS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

ENCODERS: dict[str, str] = {
    "sasrec": "recgym.agents.nets.sasrec:SASRecEncoder",
    "gru": "recgym.agents.nets.gru:GRUEncoder",
    "caser": "recgym.agents.nets.caser:CaserEncoder",
    "nextitnet": "recgym.agents.nets.nextitnet:NextItNetEncoder",
}
"""Encoder names (``--encoder``) -> ``"module:Class"`` (imported on first use)."""


def register_encoder(name: str, target: str) -> None:
    """Register ``name`` -> ``"module:Class"``."""
    if ":" not in target:
        raise ValueError(f"encoder target must look like 'module:Class', got {target!r}")
    ENCODERS[name] = target


def get_encoder_class(name: str) -> type[nn.Module]:
    """The encoder class for a registered name or a ``"module:Class"`` string."""
    target = ENCODERS.get(name, name if ":" in name else None)
    if target is None:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(sorted(ENCODERS))}")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load encoder {name!r} from {target!r}: {e}") from e


def make_encoder(name: str, n_items: int, hidden: int = 64, state_len: int = 10, dropout: float = 0.1, **extra: Any) -> nn.Module:
    """Build encoder ``name`` (e.g. ``"sasrec"``); ``extra`` goes to its constructor (``n_blocks`` ...)."""
    return get_encoder_class(name)(n_items, hidden=hidden, state_len=state_len, dropout=dropout, **extra)


def build_encoder(config: Any, n_items: int, name: str | None = None) -> nn.Module:
    """Build the encoder named by ``config.encoder`` (or ``name``) from an agent config.

    ``hidden``, ``state_len`` and ``dropout`` always come from the config; any other constructor
    argument of the encoder (``n_blocks``, ``n_heads``, ``kernel_size`` ...) is taken from the
    config field of the same name when the config has one, so one agent config drives any encoder.
    """
    import dataclasses
    import inspect

    name = name or getattr(config, "encoder", "sasrec")
    cls = get_encoder_class(name)
    fields = {f.name for f in dataclasses.fields(config)}
    params = list(inspect.signature(cls.__init__).parameters)[2:]  # skip self, n_items
    kw = {p: getattr(config, p) for p in params if p in fields}
    return cls(n_items, **kw)


__all__ = ["ENCODERS", "build_encoder", "get_encoder_class", "make_encoder", "register_encoder"]
