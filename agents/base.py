"""The one agent API of recgym (stable-baselines3 / d3rlpy style).

Every agent:

* is built as ``AgentClass(n_items, config=None, seed=0, **overrides)`` where ``config`` is the
  agent's dataclass config (``AgentClass.Config``) whose defaults are the papers' values;
* trains with ``fit(train, valid=None, **fit_kwargs)`` on ``SessionLog`` parts (torch agents go
  through the shared loop in :mod:`recgym.agents.training`);
* scores with ``scores(states, lengths) -> [B, n_items]`` on right-padded id tensors
  (pad id = ``n_items``), higher = better;
* recommends with ``recommend(histories, k)`` and acts in any env loop that takes an SB3 model
  through ``predict(obs, deterministic=True) -> (action, None)``;
* saves weights only (``save(path)`` / ``load(path)``; ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from recgym.data import SessionLog
from recgym.data.windows import last_items_of_lists, last_items_of_rows
from recgym.errors import BadInputError


@dataclass
class AgentConfig:
    """Hyper-parameters shared by all agents; subclasses add their own fields."""

    state_len: int = 10
    """History window the agent reads (items before the prediction point)."""


class Agent:
    """Base class. Subclasses set ``name``, ``Config`` and implement ``fit`` and ``scores``."""

    name: ClassVar[str] = "agent"
    Config: ClassVar[type[AgentConfig]] = AgentConfig

    def __init__(self, n_items: int, config: AgentConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        if config is None:
            config = self.Config()
        unknown = set(overrides) - {f.name for f in dataclasses.fields(config)}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyper-parameter(s) {sorted(unknown)}")
        self.config = check_config(dataclasses.replace(config, **overrides), type(self).__name__)
        self.n_items = int(n_items)
        self.seed = int(seed)

    # ----------------------------------------------------------------- API
    @property
    def state_len(self) -> int:
        return self.config.state_len

    @property
    def pad_id(self) -> int:
        return self.n_items

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **kwargs: Any) -> "Agent":
        raise NotImplementedError

    def scores(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores of every item. ``states`` int64 ``[B, L]`` right-padded with ``n_items``,
        ``lengths`` int64 ``[B]`` (may be 0). Returns float ``[B, n_items]``."""
        raise NotImplementedError

    def probs(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The agent's policy ``π(a|s)`` as ``[B, n_items]`` (softmax of the scores by default)."""
        return torch.softmax(self.scores(states, lengths).float(), dim=-1)

    @torch.no_grad()
    def recommend(self, histories: list[np.ndarray] | np.ndarray, k: int = 10, exclude_seen: bool = False) -> np.ndarray:
        """Top-``k`` items for each history (lists of item ids, or a right-padded id matrix).

        The agent reads the last ``state_len`` items; ``exclude_seen`` removes every item of the
        whole given history (also those older than the window). Scores stay on the agent's device;
        only the ``[B, k]`` ids come back to the host. Returns int64 ``[B, k]``."""
        states, lengths = self._as_states(histories)
        dev = self.score_device
        s = self.scores(states.to(dev), lengths.to(dev)).float()
        if exclude_seen:
            rows, cols = history_items(histories, self.n_items)
            s = s.clone()  # never write into a tensor the agent may keep
            s[torch.from_numpy(rows).to(s.device), torch.from_numpy(cols).to(s.device)] = -torch.inf
        return torch.topk(s, k, dim=1).indices.cpu().numpy()

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True,
                action_masks: np.ndarray | None = None):
        """SB3-style action for an env observation: a dict with ``"history"`` ids (right-padded)
        and optionally ``"length"``, or a bare id matrix. Returns ``(actions, None)``.

        In the Next-K slate env (an observation with ``"slate"`` and ``"position"``) the items already
        placed in the slate are never chosen again, so the greedy slate is the agent's Top-K list.
        ``action_masks`` (bool ``[n_items]`` or ``[B, n_items]``, True = allowed, as sb3-contrib's
        ``MaskablePPO.predict`` takes it, e.g. ``env.action_masks()``) restricts the choice further."""
        if isinstance(observation, dict):
            hist = np.asarray(observation["history"])
            length = observation.get("length")
        else:
            hist, length = np.asarray(observation), None
        single = hist.ndim == 1
        hist = np.atleast_2d(hist).astype(np.int64)
        if length is None:
            length = (hist != self.pad_id).sum(axis=1)
        length = np.asarray(length, dtype=np.int64).reshape(-1)
        allowed = self._allowed_actions(observation, len(hist), action_masks)
        states, lengths = last_items_of_rows(hist, length, self.state_len, self.pad_id)
        dev = self.score_device
        with torch.no_grad():
            s = self.scores(torch.from_numpy(states).to(dev), torch.from_numpy(lengths).to(dev))
            if allowed is not None:
                s = s.float().masked_fill(~torch.from_numpy(allowed).to(s.device), -torch.inf)
            a = s.argmax(dim=1) if deterministic else torch.distributions.Categorical(logits=s.float()).sample()
        a = a.cpu().numpy()
        return (a[0] if single else a), None

    def _allowed_actions(self, observation: Any, rows: int, action_masks: np.ndarray | None) -> np.ndarray | None:
        """bool ``[rows, n_items]`` of the actions :meth:`predict` may take (``None``: all of them):
        not in the slate built so far, and allowed by ``action_masks``. A row with nothing allowed
        keeps every action (the env then decides what an invalid action earns)."""
        allowed = None
        if action_masks is not None:
            m = np.asarray(action_masks, dtype=bool)
            if m.shape[-1:] != (self.n_items,) or m.ndim > 2:
                raise ValueError(f"{self.name}: action_masks has shape {m.shape}, expected [n_items={self.n_items}] "
                                 f"or [batch, n_items]")
            allowed = np.array(np.broadcast_to(m, (rows, self.n_items)))
        if isinstance(observation, dict) and "slate" in observation and "position" in observation:
            slate = np.atleast_2d(np.asarray(observation["slate"], dtype=np.int64))
            pos = np.asarray(observation["position"], dtype=np.int64).reshape(-1)
            r, j = np.nonzero(np.arange(slate.shape[1])[None, :] < pos[:, None])
            placed = slate[r, j]
            real = placed < self.n_items  # a padded slot is no item
            allowed = np.ones((rows, self.n_items), dtype=bool) if allowed is None else allowed
            allowed[r[real], placed[real]] = False
        if allowed is not None:
            allowed[~allowed.any(axis=1)] = True
        return allowed

    @property
    def score_device(self) -> torch.device:
        """Device of the id tensors given to ``scores`` by ``recommend`` / ``predict`` (the
        agent's ``device`` when it has one, else the CPU)."""
        return torch.device(getattr(self, "device", "cpu"))

    # ----------------------------------------------------------------- io
    def state_dict(self) -> dict[str, Any]:
        """Tensors to save (weights only). Torch agents return their modules' state."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | Path) -> Path:
        """Save config (JSON) + weights (``torch.save`` of tensors only) atomically."""
        from recgym.data.io import atomic_path

        path = Path(path)
        payload = {"weights": self.state_dict(), "config_json": json.dumps(self.config_dict()),
                   "n_items": self.n_items, "agent": self.name}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device | None = None, **overrides: Any) -> "Agent":
        """Load an agent written by :meth:`save` (``torch.load(weights_only=True)``).

        Tensors are read to the host and copied into an agent built on ``map_location`` (agents
        with a ``device`` config field; others score on the device of their inputs). By default
        the saved device is kept, unless it is a CUDA device and none is available: then the
        agent loads on the CPU (with a warning). A file of another agent, a corrupt file or
        weights that do not fit raise :class:`BadInputError` naming the file."""
        try:
            payload = torch.load(path, weights_only=True, map_location="cpu")
            saved = json.loads(payload["config_json"])
        except Exception as e:  # corrupt / foreign file: say which, in one line
            raise BadInputError(f"{path}: not a readable recgym model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        if payload.get("agent") != cls.name and not _same_model_family(payload.get("agent"), cls):
            raise BadInputError(f"{path}: the file holds a {payload.get('agent')!r} model, not {cls.name!r}")
        unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(cls.Config)})
        if unknown:
            raise BadInputError(f"{path}: config field(s) {unknown} unknown to {cls.__name__}")
        if "device" in {f.name for f in dataclasses.fields(cls.Config)} and "device" not in overrides:
            if map_location is not None:
                overrides["device"] = str(torch.device(map_location))
            elif torch.device(saved.get("device", "cpu")).type == "cuda" and not torch.cuda.is_available():
                warnings.warn(f"{path}: saved on {saved['device']!r}, no CUDA device here: loading on the CPU", stacklevel=2)
                overrides["device"] = "cpu"
        cfg = cls.Config(**{**saved, **overrides})
        agent = cls(payload["n_items"], config=cfg)
        try:
            agent.load_state_dict(payload["weights"])
        except (KeyError, RuntimeError) as e:  # shapes / modules that do not fit
            raise BadInputError(f"{path}: its weights do not fit {cls.__name__} ({str(e).splitlines()[0]})") from None
        return agent

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    # ----------------------------------------------------------------- helpers
    def _as_states(self, histories: list[np.ndarray] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(histories, np.ndarray) and histories.ndim == 2:
            lengths = (histories != self.pad_id).sum(axis=1)
            ids, lengths = last_items_of_rows(histories, lengths, self.state_len, self.pad_id)
        else:
            ids, lengths = last_items_of_lists(histories, self.state_len, self.pad_id)
        return torch.from_numpy(ids), torch.from_numpy(lengths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_items={self.n_items}, config={self.config})"


def history_items(histories: list[np.ndarray] | np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, items)`` int64 of every item id in ``[0, n_items)`` of each history (lists of ids,
    or an id matrix padded with ``n_items``): the whole history, not a window."""
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
        h = histories.astype(np.int64, copy=False)
        rows, j = np.nonzero((h >= 0) & (h < n_items))
        return rows.astype(np.int64), h[rows, j]
    seqs = [np.asarray(x, dtype=np.int64).reshape(-1) for x in histories]
    rows = np.repeat(np.arange(len(seqs), dtype=np.int64), [len(x) for x in seqs])
    items = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    keep = (items >= 0) & (items < n_items)
    return rows[keep], items[keep]



def _check_value(value: Any, hint: Any) -> tuple[bool, Any]:
    """``(ok, value)`` for one config field: ``float`` fields take finite reals, ``int`` fields
    integers (an integral float such as ``1e4`` is converted), ``bool`` and ``str`` their own type;
    ``X | None`` also takes ``None``. Other annotations (tuples, literals...) are not checked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return True, value
        checked = [a for a in args if a in (bool, int, float, str)]
        if len(checked) != len([a for a in args if a is not type(None)]):
            return True, value  # a union with an unchecked member: accept
        for a in checked:
            ok, v = _check_value(value, a)
            if ok:
                return True, v
        return False, value
    if hint is bool:
        return isinstance(value, (bool, np.bool_)), value
    if isinstance(value, (bool, np.bool_)) and hint in (int, float):
        return False, value
    if hint is float:
        return isinstance(value, numbers.Real) and math.isfinite(value), value
    if hint is int:
        if isinstance(value, numbers.Integral):
            return True, int(value)
        if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
            return True, int(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    return True, value


_BOUNDS: dict[str, tuple[str, Any]] = {
    **{name: ("a positive integer", lambda v: v >= 1)
       for name in ("state_len", "hidden", "n_blocks", "n_heads", "batch_size", "steps", "eval_every", "patience")},
    **{name: ("positive", lambda v: v > 0) for name in ("lr", "epochs", "max_grad_norm")},
    **{name: ("non-negative", lambda v: v >= 0) for name in ("weight_decay", "patience_after")},
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
}
"""Ranges of the hyper-parameters every agent names alike (one name per concept): a value outside
them would fail deep inside torch (a negative tensor size) or train nothing (lr 0), so it is refused
up front. ``None``, where the annotation allows it, is not bounded."""


def check_config(config: AgentConfig, owner: str) -> AgentConfig:
    """Check every field of a dataclass config against its annotation (see :func:`_check_value`)
    and the shared fields against :data:`_BOUNDS`; raises :class:`BadInputError` naming the first
    bad field, its value and what it must be."""
    hints = typing.get_type_hints(type(config))
    fixed = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        ok, v = _check_value(value, hints.get(f.name, Any))
        if not ok:
            want = getattr(hints[f.name], "__name__", None) or str(hints[f.name]).replace("typing.", "")
            want = ("a finite " if "float" in want else "an " if want[0] in "aeiou" else "a ") + want
            raise BadInputError(f"{owner}: hyper-parameter {f.name} must be {want}, got {value!r}")
        if f.name in _BOUNDS and v is not None and not _BOUNDS[f.name][1](v):
            optional = type(None) in typing.get_args(hints.get(f.name))
            raise BadInputError(f"{owner}: hyper-parameter {f.name} must be {_BOUNDS[f.name][0]}"
                                f"{' or None' if optional else ''}, got {value!r}")
        if v is not value:
            fixed[f.name] = v
    return dataclasses.replace(config, **fixed) if fixed else config


def _same_model_family(saved_name: Any, cls: type) -> bool:
    """A variant declared by config fields (``lmu`` vs ``lpi``) loads into any class of its family:
    same network code (one common base below :class:`Agent`) and the same config fields, so the saved
    config describes the model completely."""
    from recgym.agents.registry import get_agent_class

    try:
        saved_cls = get_agent_class(str(saved_name))
    except ValueError:
        return False
    same_fields = {f.name for f in dataclasses.fields(saved_cls.Config)} == {f.name for f in dataclasses.fields(cls.Config)}
    shared = [b for b in saved_cls.__mro__ if b in cls.__mro__ and b.__module__ == cls.__module__]
    return same_fields and bool(shared)
