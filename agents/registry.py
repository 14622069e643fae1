"""CLI names -> agent classes (imported lazily, so ``import agents`` stays cheap).

``get_agent_class`` also accepts ``"my_pkg.my_module:MyAgent"`` so users plug in their own
subclass of :class:`recgym.agents.base.Agent` without touching this file.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
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


def _import_user_module(module_name: str) -> Any:
    """``importlib.import_module``, also searching the current folder as ``python -m`` does: a
    command run as ``python scripts/x.py`` has the script's folder on ``sys.path``, not the folder
    the user runs it from, where their ``my_pkg.my_agent`` lives."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        if e.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            sys.path.remove(cwd)
            raise e from None


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
        module = _import_user_module(module_name)
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


def preset_layers(cls: type[Agent], dataset: str | None = None, protocol: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The presets of ``cls`` that apply, in the order they are layered over the config defaults:
    ``("protocol:<p>", PRESETS[p])`` then ``("dataset:<d>", PRESETS[d])``.

    ``protocol`` (``"loo"`` or ``"session"``) defaults to the dataset's own (a built-in source, or
    one registered with :func:`recgym.data.register_source` and a protocol); a family without a
    ``PRESETS[protocol]`` gets its defaults for that layer. On an unknown dataset only the protocol
    layer applies.
    """
    from recgym.data.registry import source_protocol
    from recgym.data.splits import PROTOCOLS
    from recgym.errors import BadInputError

    presets: dict[str, dict[str, Any]] = getattr(cls, "PRESETS", {}) or {}
    if protocol is None:
        protocol = source_protocol(dataset)
    layers: list[tuple[str, dict[str, Any]]] = []
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise BadInputError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        layers.append((f"protocol:{protocol}", dict(presets.get(protocol, {}))))
    if dataset is not None and dataset != protocol and dataset in presets:
        layers.append((f"dataset:{dataset}", dict(presets[dataset])))
    return layers


def agent_preset(cls: type[Agent], dataset: str | None = None, protocol: str | None = None) -> dict[str, Any]:
    """The merged presets of ``cls``: ``PRESETS[protocol]`` then ``PRESETS[dataset]`` on top
    (see :func:`preset_layers`)."""
    out: dict[str, Any] = {}
    for _, layer in preset_layers(cls, dataset, protocol):
        out.update(layer)
    return out


def _params(name: str, cls: type[Agent], dataset: str | None, protocol: str | None,
            overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    params: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    for layer_name, layer in [*preset_layers(cls, dataset, protocol), ("override", dict(overrides))]:
        params.update(layer)
        set_by.update(dict.fromkeys(layer, layer_name))
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise TypeError(f"agent {name!r}: unknown hyper-parameter(s) {unknown}; valid: {sorted(fields)}")
    return params, set_by


def make_agent(
    name: str, n_items: int, seed: int = 0, *, dataset: str | None = None, protocol: str | None = None, **overrides: Any
) -> Agent:
    """Build agent ``name`` for ``n_items`` items. The config is layered: the Config defaults, then
    ``PRESETS[protocol]`` (``"loo"`` / ``"session"``; default: the dataset's protocol), then
    ``PRESETS[dataset]``, then ``overrides`` (unknown keys raise ``TypeError`` listing the valid
    ones). :func:`resolved_config` shows the result without building the agent."""
    cls = get_agent_class(name)
    params, _ = _params(name, cls, dataset, protocol, overrides)
    return cls(n_items, seed=seed, **params)


def resolved_config(
    name: str, n_items: int, dataset: str | None = None, protocol: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What :func:`make_agent` would build, as a JSON-able dict to print and store.

    Returns ``{"agent", "class", "n_items", "dataset", "protocol", "layers", "config", "set_by"}``:
    ``layers`` the preset layers applied in order (``"protocol:loo"``, ``"dataset:ml-100k"``,
    ``"override"``), ``config`` every field of the agent's Config, ``set_by`` which layer set each
    field that is not a default.
    """
    from recgym.data.registry import source_protocol

    cls = get_agent_class(name)
    overrides = dict(overrides or {})
    params, set_by = _params(name, cls, dataset, protocol, overrides)
    # a small instance gives the config exactly as the class resolves it (some set a variant's
    # field in __init__); no field depends on the catalogue size
    config = cls(max(2, min(int(n_items), 64)), seed=0, **params).config
    layers = [n for n, _ in preset_layers(cls, dataset, protocol)] + (["override"] if overrides else [])
    return {
        "agent": name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "n_items": int(n_items),
        "dataset": dataset,
        "protocol": protocol if protocol is not None else source_protocol(dataset),
        "layers": layers,
        "config": dataclasses.asdict(config),
        "set_by": set_by,
    }



def device_override(name: str, device: str) -> dict[str, Any]:
    """``{"device": device}`` when agent ``name``'s config has a ``device`` field, else ``{}`` (for
    agents that build other agents: a teacher, a re-ranked base)."""
    fields = {f.name for f in dataclasses.fields(get_agent_class(name).Config)}
    return {"device": device} if "device" in fields else {}



__all__ = ["AGENTS", "agent_preset", "available_agents", "device_override", "get_agent_class", "make_agent", "preset_layers",
           "register_agent", "resolved_config"]
