"""The shared training loop of every torch agent (CleanRL-style: one readable loop).

A torch agent subclasses :class:`TorchAgent` and writes three things:

* ``build()``: create its ``nn.Module`` attributes and ``torch.optim`` optimizer attributes
  (all of them, including ones used only later in training: resume restores them by name);
* ``loss(batch) -> (loss, info)``: the scalar loss on a mini-batch (a dict of tensors from
  :meth:`recgym.data.Transitions.batch`: ``state [B, L]``, ``state_len [B]``, ``action [B]``,
  ``reward [B]``, ``kind``, ``next_state``, ``next_len``, ``done`` (float), ``session``, ``t``,
  ``rtg``) and a dict of floats to log;
* ``scores(states, lengths) -> [B, n_items]``.

Agents whose step is not "one loss, every optimizer" (two networks with a coin flip, a phase
switch to a new optimizer...) override ``update(batch, step)`` and call ``self.optimize(loss,
optimizers)``. Randomness must come from ``self.rng`` (numpy) and the global torch generator:
both are seeded by the loop and saved in checkpoints, which makes a resumed run bit-identical.

:func:`train_loop` samples mini-batches uniformly with replacement (as the SQN/SAC code: an
epoch = ``ceil(N / batch_size)`` steps), or, for an agent whose :meth:`TorchAgent.epoch_rows`
names rows, visits those rows once per epoch in a random order (:class:`EpochSampler`);
validates every ``eval_every`` steps with :func:`recgym.evaluate.evaluate`, keeps the best weights
by ``selection_metric``, records curves (and the time spent in training steps at each point),
writes an atomic resumable checkpoint after every validation, stops on a non-finite loss, and
restores the best weights at the end.

Early stopping (``patience = p``): the run stops after ``p`` consecutive validations without a
*strict* improvement of ``selection_metric`` over the best so far (a tie does not count); ``epochs``
/ ``steps`` are then the cap. The count is the number of validations recorded after the best one,
read from the curves, so a resumed run stops at the same step as an uninterrupted one, and a run
stopped by patience can be continued with a larger ``patience`` or cap (both may change on resume).
Validations at or before step ``patience_after`` do not count toward the patience (they still
compete for the best checkpoint): an agent whose loss changes at a step (an actor switch) is not
stopped before its second phase has been validated.
:attr:`TrainResult.stop_reason` (also ``agent.stop_reason``) says why the run ended:
``"patience"``, ``"cap"`` (the full length was trained: with patience, the run may not have
converged) or ``"no_validation"``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from recgym.agents.base import Agent, AgentConfig
from recgym.data import SessionLog, Transitions
from recgym.errors import BadInputError, DivergedError

CHECKPOINT_FORMAT = 2
_RESUMABLE_CHANGES = ("epochs", "steps", "eval_every", "device", "patience", "patience_after")
"""Config fields that may change between a run and its resumption (a longer run, another early
stopping); :func:`train_loop` refuses a continuation a fresh run with the new values would not pass through."""


@dataclass
class TorchAgentConfig(AgentConfig):
    """Optimisation and validation settings shared by torch agents (SQN/SAC paper values)."""

    hidden: int = 64
    """Embedding / state width."""
    dropout: float = 0.1
    lr: float = 0.01
    """Adam learning rate."""
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: float = 30
    """Training length in epochs of ``ceil(n_transitions / batch_size)`` sampled steps."""
    steps: int | None = None
    """Training length in steps; overrides ``epochs`` when set."""
    eval_every: int | None = None
    """Steps between validations (and checkpoints); ``None`` = once per epoch."""
    patience: int | None = None
    """Early stopping: stop after this many consecutive validations without a strict improvement
    of ``selection_metric`` (``epochs`` / ``steps`` are then the cap); ``None`` = train the full length."""
    patience_after: int = 0
    """Validations at steps ``<= patience_after`` do not count toward ``patience`` (e.g. the
    ``switch_step`` of a two-phase agent); they still compete for the best checkpoint."""
    selection_metric: str = "auto"
    """Validation metric that picks the best checkpoint (higher is better); ``"auto"`` =
    ``ndcg@20`` on the session protocol, ``ndcg@10`` on leave-one-out."""
    max_grad_norm: float | None = None
    """Clip the global gradient norm (``None`` = no clipping, as the papers)."""
    device: str = "cpu"
    autocast_dtype: str | None = None
    """``"bfloat16"``: compute the training loss under ``torch.autocast`` (matmuls in bfloat16: AMX
    on recent Xeons, tensor cores on GPUs; softmax, cross-entropy and reductions stay float32, as
    do the weights, gradients and optimizer state). ``None``: float32 throughout. Evaluation is
    float32 either way."""


AUTOCAST_DTYPES = (None, "bfloat16")


class NonFiniteLossError(DivergedError):
    """Raised when a training loss is NaN or infinite (exit status 3)."""


def resolve_selection_metric(metric: str, protocol: str) -> str:
    if metric != "auto":
        return metric.lower()
    return "ndcg@10" if protocol == "loo" else "ndcg@20"


class TorchAgent(Agent):
    """Base class of agents trained by :func:`train_loop` (see the module docstring)."""

    Config = TorchAgentConfig
    PRESETS: dict[str, dict[str, Any]] = {}
    """Per-dataset (or per-protocol: ``"loo"``, ``"session"``) config overrides."""

    def __init__(self, n_items: int, config: TorchAgentConfig | None = None, seed: int = 0, **overrides: Any) -> None:
        super().__init__(n_items, config, seed, **overrides)
        self.device = torch.device(self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BadInputError(f"{self.name}: device={self.config.device!r} but torch sees no CUDA device "
                                "(torch.cuda.is_available() is False)")
        if self.config.autocast_dtype not in AUTOCAST_DTYPES:
            raise BadInputError(f"{self.name}: autocast_dtype must be one of {AUTOCAST_DTYPES}, "
                                f"got {self.config.autocast_dtype!r}")
        torch.manual_seed(self.seed)  # identical initial weights for a given seed
        self.rng = np.random.default_rng(self.seed)
        self.build()
        for m in self.modules().values():
            m.to(self.device)
        self.set_training(False)
        self.curves: list[dict[str, float]] = []
        self.curve_seconds: list[float] = []
        self.best_step: int | None = None
        self.best_metric: float | None = None
        self.selection_metric: str | None = None
        self.stop_reason: str | None = None
        """Why the last :func:`train_loop` ended: ``"patience"``, ``"cap"`` or ``"no_validation"``."""
        self.cap_steps: int | None = None
        """The last :func:`train_loop`'s training length in steps (the cap under ``patience``)."""

    # ------------------------------------------------------------ to write
    def build(self) -> None:
        """Create the modules and optimizers (as attributes)."""
        raise NotImplementedError

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss of a mini-batch and extra floats to log."""
        raise NotImplementedError

    def diagnostics(self, valid: SessionLog) -> dict[str, float]:
        """Optional floats recorded in the curves at every validation (e.g. mean Q of logged vs
        random actions). Called in eval mode under ``torch.no_grad()``."""
        return {}

    def make_transitions(self, train: SessionLog) -> Transitions:
        """The replay rows the loop samples from (override to filter / re-discount)."""
        return train.transitions(self.state_len, discount=getattr(self.config, "discount", 1.0))

    def epoch_rows(self, transitions: Transitions) -> np.ndarray | None:
        """Rows to visit once per epoch, in a fresh random order each epoch, or ``None`` (the
        default) for uniform sampling with replacement over all rows. Agents that read several
        targets from one row (all-positions training) return the rows that cover each target once
        (:meth:`recgym.data.Transitions.chunk_rows`)."""
        return None

    # ------------------------------------------------------------ the step
    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the training loss is computed in: ``torch.autocast`` with
        ``config.autocast_dtype``, or nothing (``None``). The backward runs outside it."""
        if self.config.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.config.autocast_dtype))

    def update(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        """One optimisation step; returns floats to log (``"loss"`` at least)."""
        with self.autocast():
            loss, info = self.loss(batch)
        return {"loss": self.optimize(loss), **info}

    def optimize(self, loss: torch.Tensor, optimizers: list[torch.optim.Optimizer] | None = None) -> float:
        """zero_grad, finite check, backward, optional clipping, step (all optimizers by default).
        Returns the loss as a float (the one read of a device value the step needs)."""
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"loss is {value}")
        opts = list(self.optimizers().values()) if optimizers is None else optimizers
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            params = [p for opt in opts for g in opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        for opt in opts:
            opt.step()
        return value

    # ------------------------------------------------------------ plumbing
    def modules(self) -> dict[str, nn.Module]:
        """The agent's ``nn.Module`` attributes, by attribute name."""
        return {k: v for k, v in vars(self).items() if isinstance(v, nn.Module)}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The agent's optimizer attributes, by attribute name."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def set_training(self, mode: bool) -> None:
        for m in self.modules().values():
            m.train(mode)

    def state_dict(self) -> dict[str, Any]:
        return {k: m.state_dict() for k, m in self.modules().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        modules = self.modules()
        missing = sorted(set(modules) - set(state))
        if missing:
            raise KeyError(f"{type(self).__name__}: weights for module(s) {missing} missing (have {sorted(state)})")
        for k, m in modules.items():
            m.load_state_dict(state[k])

    def fit(self, train: SessionLog, valid: SessionLog | None = None, **loop_kwargs: Any) -> "TorchAgent":
        """Train with :func:`train_loop` (``protocol``, ``checkpoint_path``, ``resume``, ...)."""
        train_loop(self, train, valid, **loop_kwargs)
        return self


# ---------------------------------------------------------------------- checkpoints
def _clone_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: {n: t.detach().clone() if torch.is_tensor(t) else copy.deepcopy(t) for n, t in sd.items()}
            for k, sd in state.items()}


@dataclass
class _LoopState:
    step: int = 0
    curves: list[dict[str, float]] = field(default_factory=list)
    best_value: float = -math.inf
    best_step: int = 0
    best_weights: dict[str, Any] | None = None
    train_seconds: float = 0.0
    """Seconds spent in sampling and update steps (validation and checkpoints excluded)."""
    curve_seconds: list[float] = field(default_factory=list)
    """``train_seconds`` at each curve point (kept apart from the curves, which are deterministic)."""


def data_checksum(log: SessionLog) -> str:
    """A cheap fingerprint of a training log: sha256 of its offsets and items (16 hex digits).
    Two logs with the same sessions of the same items in the same order share it."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(log.offsets, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(log.items, dtype=np.int32).tobytes())
    return h.hexdigest()[:16]


def agent_class_name(agent: Agent | type[Agent]) -> str:
    cls = agent if isinstance(agent, type) else type(agent)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_checkpoint(path: str | Path, agent: TorchAgent, st: _LoopState, total_steps: int,
                    data: str | None = None) -> Path:
    """Atomically write everything needed to resume (loads with ``weights_only=True``).

    ``data`` is the :func:`data_checksum` of the training log; with the seed and the agent class
    it lets :func:`load_checkpoint` refuse to continue a run on other data or another seed."""
    from recgym.data.io import atomic_path

    payload = {
        "format": CHECKPOINT_FORMAT,
        "agent": agent.name,
        "agent_class": agent_class_name(agent),
        "seed": agent.seed,
        "data_checksum": data or "",
        "n_items": agent.n_items,
        "config_json": json.dumps(agent.config_dict()),
        "step": st.step,
        "total_steps": total_steps,
        "weights": agent.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in agent.optimizers().items()},
        "best_weights": st.best_weights if st.best_weights is not None else {},
        "best_json": json.dumps({"value": st.best_value if math.isfinite(st.best_value) else None, "step": st.best_step,
                                 "train_seconds": st.train_seconds, "curve_seconds": st.curve_seconds}),
        "curves_json": json.dumps(st.curves),
        "numpy_rng_json": json.dumps(agent.rng.bit_generator.state),  # 128-bit ints: JSON keeps them exact
        "torch_rng": torch.get_rng_state(),
        # dropout and sampling on a GPU draw from its own generator
        "cuda_rng": [torch.cuda.get_rng_state(agent.device)] if agent.device.type == "cuda" and torch.cuda.is_available() else [],
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, agent: TorchAgent, data: str | None = None) -> _LoopState:
    """Restore weights, optimizers, RNG states and loop state from :func:`save_checkpoint`.

    Refuses (:class:`BadInputError` naming both values) a checkpoint of another agent class,
    catalogue size, seed, training data (when ``data``, the :func:`data_checksum` of the log
    about to be trained on, is given) or hyper-parameters."""
    try:
        # read to the host: the RNG states must be CPU tensors, and load_state_dict copies the
        # weights onto the agent's device (so a checkpoint resumes on another device)
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # corrupt / foreign file: say which
        raise BadInputError(f"{path}: not a readable recgym checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else None
        raise BadInputError(f"{path}: not a recgym training checkpoint of format {CHECKPOINT_FORMAT} (found format {fmt!r}); "
                            f"remove it to train from scratch")
    cannot = f"{path}: cannot resume,"
    if payload.get("agent_class") != agent_class_name(agent):
        raise BadInputError(f"{cannot} the checkpoint is of agent {payload.get('agent')!r} ({payload.get('agent_class')}), "
                            f"not {agent.name!r} ({agent_class_name(agent)})")
    if payload.get("n_items") != agent.n_items:
        raise BadInputError(f"{cannot} the checkpoint has n_items={payload.get('n_items')}, the data has {agent.n_items}")
    if payload.get("seed") != agent.seed:
        raise BadInputError(f"{cannot} the checkpoint was trained with seed {payload.get('seed')}, this run has seed {agent.seed}")
    if data is not None and payload.get("data_checksum") != data:
        raise BadInputError(f"{cannot} the checkpoint was trained on other data (training-log checksum "
                            f"{payload.get('data_checksum')}, this run's is {data})")
    saved = json.loads(payload["config_json"])
    differ = sorted(k for k, v in agent.config_dict().items() if k not in _RESUMABLE_CHANGES and saved.get(k, v) != v)
    if differ:
        raise BadInputError(f"{cannot} the checkpoint was trained with other hyper-parameters: "
                            + ", ".join(f"{k}={saved[k]!r} (now {agent.config_dict()[k]!r})" for k in differ))
    try:
        agent.load_state_dict(payload["weights"])
    except (KeyError, RuntimeError) as e:  # shapes / modules that do not fit
        raise BadInputError(f"{cannot} its weights do not fit {type(agent).__name__} ({str(e).splitlines()[0]})") from None
    opts = agent.optimizers()
    for k, sd in payload["optimizers"].items():
        if k not in opts:
            raise BadInputError(f"{path}: optimizer {k!r} in checkpoint but not built by {type(agent).__name__}.build()")
        opts[k].load_state_dict(sd)
    rng_state = json.loads(payload["numpy_rng_json"])
    agent.rng = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
    agent.rng.bit_generator.state = rng_state
    torch.set_rng_state(payload["torch_rng"])
    if payload.get("cuda_rng") and agent.device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.set_rng_state(payload["cuda_rng"][0], agent.device)
    best = json.loads(payload["best_json"])
    return _LoopState(
        step=int(payload["step"]),
        curves=json.loads(payload["curves_json"]),
        best_value=-math.inf if best["value"] is None else float(best["value"]),
        best_step=int(best["step"]),
        train_seconds=float(best.get("train_seconds", 0.0)),
        curve_seconds=[float(x) for x in best.get("curve_seconds", [])],
        best_weights=payload["best_weights"] or None,
    )


# ---------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train_loop` did."""

    steps: int
    best_step: int
    best_value: float | None
    selection_metric: str | None
    curves: list[dict[str, float]]
    seconds: float
    resumed_from: int | None = None
    curve_seconds: list[float] = field(default_factory=list)
    """Seconds of training steps (validation excluded) up to each curve point."""
    stop_reason: str = "cap"
    """``"patience"`` (``patience`` validations without improvement), ``"cap"`` (the full length
    ``epochs`` / ``steps`` was trained) or ``"no_validation"`` (no ``valid`` log: nothing to stop on)."""
    cap_steps: int = 0
    """The training length in steps (the cap when ``patience`` is set)."""


def patience_stop(curves: list[dict[str, Any]], metric: str, patience: int | None, after: int = 0) -> int | None:
    """The step at which early stopping with ``patience`` (and ``patience_after = after``) stops a
    run with these validation ``curves`` (the rule of :func:`train_loop`, replayed: strict improvement
    over the best so far; a NaN / missing value never improves), or ``None`` when it would not stop
    within them."""
    if patience is None:
        return None
    best, best_step = -math.inf, None
    for c in curves:
        v = c.get(metric)
        if v is not None and v > best:
            best, best_step = v, c["step"]
        if validations_since_best([x for x in curves if x["step"] <= c["step"]], best_step, after) >= patience:
            return int(c["step"])
    return None


def validations_since_best(curves: list[dict[str, float]], best_step: int | None, after: int = 0) -> int:
    """Validations recorded after the best one and after step ``after`` (all those after ``after``
    when none was best, e.g. a NaN metric): the early-stopping count of :func:`train_loop`."""
    start = after if best_step is None else max(best_step, after)
    return sum(1 for c in curves if c["step"] > start)


class EpochSampler:
    """Mini-batches that visit ``rows`` once per epoch, each epoch in its own random order.

    Step ``s`` takes positions ``s·B .. s·B + B - 1`` of the concatenated epoch permutations (a
    batch may straddle two epochs, so every batch has ``B`` rows). Epoch ``e``'s order comes from
    ``default_rng([seed, e])``, so a batch depends on ``(seed, step)`` only and a resumed run draws
    the same batches.
    """

    def __init__(self, transitions: Transitions, rows: np.ndarray, batch_size: int, seed: int) -> None:
        if len(rows) == 0:
            raise ValueError("EpochSampler: no rows to sample")
        self.tr, self.rows, self.batch_size, self.seed = transitions, np.asarray(rows, dtype=np.int64), batch_size, seed
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.rows)
        return self._orders[epoch]

    def indices(self, step: int) -> np.ndarray:
        pos = step * self.batch_size + np.arange(self.batch_size)
        epoch, offset = np.divmod(pos, len(self.rows))
        return np.concatenate([self._order(int(e))[offset[epoch == e]] for e in np.unique(epoch)])

    def batch(self, step: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        return self.tr.batch(self.indices(step), device)


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_MMAP_MAX: 65536}


def _mallopt(settings: dict[int, int]) -> bool:
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(k, v) == 1 for k, v in settings.items())
    except (OSError, AttributeError):
        return False


def keep_freed_memory(on: bool = True) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (``on``), or restore its defaults and give
    the kept memory back to the OS (``on=False``). Process-wide; returns ``False`` off glibc.

    Full-catalogue steps allocate several ``[batch, n_items]`` tensors (72 MB each at 70,852 items,
    batch 256). glibc serves such blocks with ``mmap`` and unmaps them on free, so every step pays
    the page faults of touching fresh memory again: about a quarter of a Q-learning step on the
    CPU (``python -m benchmarks train``). ``mallopt(M_MMAP_MAX=0)`` plus a high trim threshold keeps
    them in the heap; the price is a higher peak RSS while it is on. :func:`train_loop` turns it on
    only when asked (``keep_freed_memory=True``) and off again when it returns.
    """
    if on:
        return _mallopt({_M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: 2**31 - 1})
    ok = _mallopt(_GLIBC_DEFAULTS)
    if ok:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return ok


_keep_freed_memory = keep_freed_memory  # train_loop's argument of the same name shadows it


def recorded_protocol(valid: SessionLog | None, default: str) -> str:
    """The protocol ``valid``'s split recorded (``valid.meta["protocol"]``), else ``default`` (the
    protocol an agent's paper evaluates on, for a validation log built by hand)."""
    return (valid.meta.get("protocol") if valid is not None else None) or default


def train_loop(
    agent: TorchAgent,
    train: SessionLog,
    valid: SessionLog | None = None,
    *,
    protocol: str | None = None,
    epochs: float | None = None,
    steps: int | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    eval_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    keep_freed_memory: bool = False,
) -> TrainResult:
    """Train ``agent`` on ``train`` (see the module docstring).

    :param protocol: evaluation protocol of ``valid`` (``"session"`` or ``"loo"``); by default the
        one its split recorded (``valid.meta["protocol"]``, set by the splitters), else ``"session"``;
        one that contradicts the recorded protocol is refused.
    :param epochs, steps: override the config's training length (``steps`` wins); with the config's
        ``patience`` set, the cap: training stops earlier after ``patience`` consecutive validations
        without a strict improvement of ``selection_metric`` (see the module docstring).
    :param checkpoint_path: resumable checkpoint written after every validation.
    :param resume: continue from ``checkpoint_path`` if it exists (else start fresh).
    :param eval_kwargs: extra arguments of :func:`recgym.evaluate.evaluate`.
    :param keep_freed_memory: keep freed memory in glibc's heap while training (see
        :func:`keep_freed_memory`): faster full-catalogue steps for a higher peak RSS; restored on return.
    :raises NonFiniteLossError: on a NaN/inf loss, naming the step; the agent then holds the best
        weights so far and ``checkpoint_path`` keeps the last good checkpoint.
    """
    recorded = valid.meta.get("protocol") if valid is not None else None
    if protocol is not None and recorded is not None and protocol != recorded:
        raise ValueError(f"{type(agent).__name__}.fit: protocol={protocol!r}, but the validation log "
                         f"{valid.name!r} comes from a {recorded!r} split")
    protocol = protocol or recorded or "session"
    log = log or (lambda msg: print(msg, flush=True))
    tuned = _keep_freed_memory(True) if keep_freed_memory else False
    try:
        return _train(agent, train, valid, protocol, epochs, steps, checkpoint_path, resume, progress, eval_kwargs, log)
    finally:
        if tuned:
            _keep_freed_memory(False)



def _train(agent: TorchAgent, train: SessionLog, valid: SessionLog | None, protocol: str, epochs: float | None,
           steps: int | None, checkpoint_path: str | Path | None, resume: bool, progress: bool,
           eval_kwargs: dict[str, Any] | None, log: Callable[[str], None]) -> TrainResult:
    cfg = agent.config
    t0 = time.perf_counter()
    tr = agent.make_transitions(train)
    if len(tr) == 0:
        raise ValueError(f"train_loop: the training log {train.name!r} has no events")
    rows = agent.epoch_rows(tr)
    sampler = EpochSampler(tr, rows, cfg.batch_size, agent.seed) if rows is not None else None
    steps_per_epoch = math.ceil((len(tr) if sampler is None else len(sampler)) / cfg.batch_size)
    steps = steps if steps is not None else cfg.steps
    epochs = epochs if epochs is not None else cfg.epochs
    total = int(steps) if steps is not None else max(1, round(float(epochs) * steps_per_epoch))
    eval_every = int(cfg.eval_every or steps_per_epoch)
    metric = resolve_selection_metric(cfg.selection_metric, protocol) if valid is not None else None
    patience = cfg.patience if valid is not None else None
    if patience is not None and patience < 1:
        raise BadInputError(f"{agent.name}: hyper-parameter patience must be a positive integer or None, got {patience!r}")

    st = _LoopState()
    resumed_from = None
    checksum = data_checksum(train) if checkpoint_path is not None else None
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        st = load_checkpoint(checkpoint_path, agent, checksum)
        resumed_from = st.step
        # a continuation under another cap / patience must be what a fresh run with them would do
        if st.step > total:
            raise BadInputError(f"{checkpoint_path}: cannot resume, the checkpoint is at step {st.step}, past this "
                                f"run's cap of {total} steps")
        stop = patience_stop(st.curves, metric, patience, cfg.patience_after) if metric is not None else None
        if stop is not None and stop < st.step:
            raise BadInputError(f"{checkpoint_path}: cannot resume with patience={patience}: that run would have "
                                f"stopped at step {stop}, the checkpoint is at step {st.step} (train from scratch)")
        log(f"resumed from {checkpoint_path} at step {st.step}/{total}")
    else:
        # fresh start: the run depends on the seed only, not on what ran before fit()
        torch.manual_seed(agent.seed)
        agent.rng = np.random.default_rng(agent.seed)

    def validate() -> dict[str, float]:
        from recgym.evaluate import evaluate

        agent.set_training(False)
        with torch.no_grad():
            out = {k: float(v) for k, v in evaluate(agent, valid, protocol, **(eval_kwargs or {})).items()}
            out.update({k: float(v) for k, v in agent.diagnostics(valid).items()})
        agent.set_training(True)
        if metric not in out:
            raise KeyError(f"selection_metric {metric!r} is not among the validation metrics {sorted(out)}")
        return out

    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=st.step, disable=not progress, desc=agent.name, leave=False)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = None

    def out_of_patience() -> bool:
        return patience is not None and validations_since_best(
            st.curves, st.best_step if st.best_weights is not None else None, cfg.patience_after) >= patience

    agent.set_training(True)
    loss_sum, loss_n = 0.0, 0
    try:
        while st.step < total and not out_of_patience():
            tic = time.perf_counter()
            if sampler is None:
                batch = tr.sample(cfg.batch_size, agent.rng, agent.device)
            else:
                batch = sampler.batch(st.step, agent.device)
            try:
                info = agent.update(batch, st.step)
            except FloatingPointError as e:  # a non-finite loss, or a loss that refused NaN inputs
                raise NonFiniteLossError(_nan_message(agent, st, e, checkpoint_path)) from None
            if not math.isfinite(info.get("loss", 0.0)):
                raise NonFiniteLossError(_nan_message(agent, st, f"loss is {info['loss']}", checkpoint_path))
            st.step += 1
            st.train_seconds += time.perf_counter() - tic
            loss_sum += info.get("loss", 0.0)
            loss_n += 1
            if bar is not None:
                bar.update(1)
                if st.step % 50 == 0:
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}")
            if st.step % eval_every == 0 or st.step == total:
                point: dict[str, float] = {"step": float(st.step), "epoch": st.step / steps_per_epoch,
                                           "loss": loss_sum / loss_n}
                loss_sum, loss_n = 0.0, 0
                if valid is not None:
                    point.update(validate())
                    if point[metric] > st.best_value:
                        st.best_value, st.best_step = point[metric], st.step
                        st.best_weights = _clone_state(agent.state_dict())
                    log(f"step {st.step}/{total}  loss {point['loss']:.4f}  {metric} {point[metric]:.4f}"
                        f"  (best {st.best_value:.4f} @ {st.best_step})")
                st.curves.append(point)
                st.curve_seconds.append(st.train_seconds)
                if checkpoint_path is not None:
                    save_checkpoint(checkpoint_path, agent, st, total, checksum)
    except NonFiniteLossError:
        _finish(agent, st, metric)
        raise
    finally:
        if bar is not None:
            bar.close()
    stop_reason = "no_validation" if valid is None else "patience" if out_of_patience() else "cap"
    if stop_reason == "patience":
        log(f"early stop at step {st.step}: {patience} validation(s) without improving {metric} "
            f"(best {st.best_value:.4f} @ {st.best_step})")
    _finish(agent, st, metric)
    agent.stop_reason, agent.cap_steps = stop_reason, total
    return TrainResult(st.step, agent.best_step, agent.best_metric, metric, st.curves,
                       time.perf_counter() - t0, resumed_from, st.curve_seconds, stop_reason, total)


def _finish(agent: TorchAgent, st: _LoopState, metric: str | None) -> None:
    """Restore the best weights (if any validation ran) and publish the loop's record."""
    if st.best_weights is not None:
        agent.load_state_dict(st.best_weights)
    agent.set_training(False)
    agent.curves = st.curves
    agent.curve_seconds = st.curve_seconds
    agent.selection_metric = metric
    agent.best_step = st.best_step if st.best_weights is not None else st.step
    agent.best_metric = st.best_value if math.isfinite(st.best_value) else None


def _nan_message(agent: TorchAgent, st: _LoopState, err: Any, path: str | Path | None) -> str:
    step = st.step + 1  # 1-based index of the step that failed
    where = (f"the last good checkpoint {path} (step {st.curves[-1]['step']:.0f}) is kept"
             if path is not None and st.curves else "no checkpoint had been written yet")
    best = f"; the agent holds the best weights (step {st.best_step})" if st.best_weights is not None else ""
    return f"{agent.name}: training stopped at step {step}: non-finite loss ({err}); {where}{best}"


__all__ = ["EpochSampler", "NonFiniteLossError", "TorchAgent", "TorchAgentConfig", "TrainResult", "data_checksum",
           "keep_freed_memory", "load_checkpoint", "patience_stop", "resolve_selection_metric", "save_checkpoint",
           "train_loop", "validations_since_best"]
