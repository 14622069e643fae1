"""CLI names -> agent classes (imported lazily, so ``import agents`` stays cheap).

``get_agent_class`` also accepts ``"my_pkg.my_module:MyAgent"`` so users plug in their own
subclass of :class:`recgym.agents.base.Agent` without touching this file.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from recgym.agents.base import Agent

AGENTS: dict[str, str] = {
    "pop": "recgym.agents.baselines:PopularityAgent",
    "mc": "recgym.agents.baselines:MarkovChainAgent",
    "bpr": "recgym.agents.baselines:BPRAgent",
    "sasrec": "recgym.agents.sasrec:SASRecAgent",
    # Q-learning family (agents/qlearning.py)
    "sqn": "recgym.agents.qlearning:SQNAgent",
    "sac": "recgym.agents.qlearning:SACAgent",
    "snqn": "recgym.agents.qlearning:SNQNAgent",
    "sa2c": "recgym.agents.qlearning:SA2CAgent",
    "co": "recgym.agents.qlearning:COAgent",
    "ccql": "recgym.agents.qlearning:CCQLAgent",
    # policy improvement against the logging policy (agents/lpi.py)
    "lmu": "recgym.agents.lpi:LMuAgent",
    "pg": "recgym.agents.lpi:PGAgent",
    "ips": "recgym.agents.lpi:IPSAgent",
    "ips-pg": "recgym.agents.lpi:IPSPGAgent",
    "lpi-cb": "recgym.agents.lpi:LPICBAgent",
    "lpi": "recgym.agents.lpi:LPIAgent",
    # prompt-based RL and its ablations (agents/prl.py)
    "prl": "recgym.agents.prl:PRLAgent",
    "prl-mean": "recgym.agents.prl:PRLMeanAgent",
    "prl-mlp": "recgym.agents.prl:PRLMLPAgent",
    "prl-wo": "recgym.agents.prl:PRLWoAgent",
    "prl-cumu": "recgym.agents.prl:PRLCumuAgent",
    # Next-K generation and beyond-accuracy baselines (agents/gptrec.py, bert4rec.py, rerank.py)
    "bert4rec": "recgym.agents.bert4rec:BERT4RecAgent",
    "gptrec": "recgym.agents.gptrec:GPTRecAgent",
    "gptrec-ppo": "recgym.agents.gptrec:GPTRecPPOAgent",
    "mmr": "recgym.agents.rerank:MMRAgent",
    "pop-rerank": "recgym.agents.rerank:PopRerankAgent",
    "nextk-decode": "recgym.agents.rerank:NextKDecoder",
}
"""Implemented agents: CLI name -> ``"module:Class"``."""

def register_agent(name: str, target: str | type[Agent]) -> None:
    """Register ``name`` -> ``"module:Class"`` (or a class object)."""
    if isinstance(target, str) and ":" not in target:
        raise ValueError(f"agent target must look like 'module:Class', got {target!r}")
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    AGENTS[name] = target


def available_agents() -> list[str]:
    """Names that resolve today (sorted)."""
    return sorted(AGENTS)


def _unknown_message(name: str) -> str:
    msg = f"unknown agent {name!r}. Available agents: {', '.join(available_agents())}"
    return msg + ". A custom agent can be given as 'my_module:MyAgent'."


def get_agent_class(name: str) -> type[Agent]:
    """Resolve a registered name or ``"module:Class"`` to an :class:`Agent` subclass.

    Raises ``ValueError`` listing the available agents when the name is unknown, and naming the
    module / attribute when a ``module:Class`` target cannot be imported.
    """
    target = AGENTS.get(name)
    if target is None:
        if ":" not in name:
            raise ValueError(_unknown_message(name))
        target = name
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"agent {name!r}: cannot import module {module_name!r} ({e})") from e
    cls: Any = module
    try:
        for part in attr.split("."):
            cls = getattr(cls, part)
    except AttributeError as e:
        raise ValueError(f"agent {name!r}: module {module_name!r} has no attribute {attr!r}") from e
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ValueError(f"agent {name!r}: {target!r} is not a subclass of recgym.agents.base.Agent")
    return cls


def agent_preset(cls: type[Agent], dataset: str | None = None, protocol: str | None = None) -> dict[str, Any]:
    """Hyper-parameter preset of ``cls`` for a dataset (its ``PRESETS[dataset]``), else for the
    protocol (``PRESETS[protocol]``, e.g. ``"loo"``), else ``{}``."""
    presets: dict[str, dict[str, Any]] = getattr(cls, "PRESETS", {}) or {}
    for key in (dataset, protocol):
        if key is not None and key in presets:
            return dict(presets[key])
    return {}


def make_agent(
    name: str, n_items: int, seed: int = 0, *, dataset: str | None = None, protocol: str | None = None, **overrides: Any
) -> Agent:
    """Build agent ``name`` for ``n_items`` items: config defaults, then the dataset/protocol
    preset, then ``overrides`` (unknown keys raise ``TypeError`` listing the valid ones)."""
    cls = get_agent_class(name)
    params = {**agent_preset(cls, dataset, protocol), **overrides}
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TypeError(f"agent {name!r}: unknown hyper-parameter(s) {unknown}; valid: {sorted(fields)}")
    return cls(n_items, seed=seed, **params)


def device_override(name: str, device: str) -> dict[str, Any]:
    """``{"device": device}`` when agent ``name``'s config has a ``device`` field, else ``{}`` (for
    agents that build other agents: a teacher, a re-ranked base)."""
    fields = {f.name for f in dataclasses.fields(get_agent_class(name).Config)}
    return {"device": device} if "device" in fields else {}


__all__ = ["AGENTS", "agent_preset", "device_override", "available_agents", "get_agent_class", "make_agent", "register_agent"]
