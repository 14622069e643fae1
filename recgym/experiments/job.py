"""One job = one agent x one seed on one dataset: train (or reuse), evaluate, write ``results.json``.

The single implementation behind ``scripts/offline_eval.py`` (one job), ``scripts/compare.py`` and
the studies (many jobs, fanned out by :mod:`recgym.experiments.fanout`)::

    spec = JobSpec(agent="sasrec", dataset="synthetic", seed=0, out="runs/x", steps=200,
                   data_params={"n_sessions": 500}, sims=["recgym/MFUser-Synthetic-v0"], true_value=True)
    results = run_job(spec)          # trains, or resumes from checkpoint.pt, or reuses results.json

A job directory holds ``job.json`` (the spec, written at the first start), ``checkpoint.pt``
(torch agents, after every validation), ``model.pt`` (best weights), ``curves.png`` and, written
atomically and *last*, ``results.json``. A directory with a complete ``results.json`` is a finished
job: :func:`run_job` returns it without training again (and only adds simulator evaluations that
were not asked for before, from ``model.pt``). A directory without one resumes from its checkpoint.
An exclusive ``flock`` on ``<job>/.lock`` keeps two processes from running the same job at once;
the kernel releases it when its holder dies, even by SIGKILL.

Simulated evaluation is :func:`recgym.evaluate.evaluate_in_env`; how an env is built on the job's
data is the env's own business: a class that defines ``job_kwargs(dataset=, seed=, data_params=,
data_dir=, download=, cache_dir=, data_file=)`` (e.g. :class:`recgym.envs.mf_user.MFUserEnv`) says so itself,
any other env gets the job's data arguments and split seed (:func:`recgym.envs.common.job_split_kwargs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import math
import numbers
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from recgym.errors import BadInputError, BusyError, DivergedError, RecgymError

RESULTS = "results.json"
JOB_SPEC = "job.json"

DEFAULT_SIMS: dict[str, list[str]] = {
    "synthetic": ["recgym/MFUser-Synthetic-v0"],
    "ml-100k": ["recgym/MFUser-ML100K-v0"],
    "netflix": ["recgym/NetflixIAR-v0"],
}
"""Simulator env ids evaluated by default per dataset (the MF user simulator of that data)."""


# ---------------------------------------------------------------------------- the spec
@dataclass
class JobSpec:
    """Everything that defines one job (and, with ``out``, where it lives)."""

    agent: str
    """Registered name or ``"module:Class"``."""
    dataset: str = "synthetic"
    seed: int = 0
    """Seeds the split, numpy and torch."""
    protocol: str | None = None
    """``"session"`` or ``"loo"``; ``None`` = the dataset's default (``recgym.data.load_split``). Another
    protocol than the default drops the dataset's agent presets (they belong to the default one)."""
    out: str | None = None
    """Job directory (default ``runs/<dataset>/<agent>/seed<N>``)."""
    data_dir: str | None = None
    reward_scheme: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    """Extra loader arguments, e.g. ``{"n_sessions": 500}`` for synthetic."""
    last_n_events: int | None = None
    """Every session keeps only its last N events before the split (``load_split(..., last_n_events=N)``)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields of the agent (``--set``)."""
    epochs: float | None = None
    steps: int | None = None
    patience: int | None = None
    """Early stopping of iterative agents (their config's ``patience``): stop after this many
    validations without a strict improvement; ``epochs`` / ``steps`` are then the cap."""
    logging_policy: str | None = None
    """LPI family: a saved ``sasrec`` ``model.pt`` reused as μ̂."""
    download: bool = False
    data_file: str | None = None
    """Your own event file (CSV / TSV / Parquet) instead of a registered source; ``dataset`` then only
    names it. Read with :func:`recgym.data.read_table` and split by ``protocol`` (default:
    ``"session"`` with a ``session`` column, else ``"loo"``)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Role -> column of ``data_file`` (``{"user": "userId", "item": "movieId", ...}``)."""
    sep: str | None = None
    """Delimiter of ``data_file`` (default: guessed)."""
    sims: list[str] = field(default_factory=list)
    """Simulator env ids to evaluate the trained agent in."""
    sim_episodes: int = 200
    """Episodes for envs that are not MF user envs."""
    true_value: bool = False
    """Synthetic only: the World oracle's value of the greedy policy on the logged test contexts."""
    test_extras: list[str] = field(default_factory=list)
    """``"module:function"`` names of ``f(agent, split) -> dict`` whose entries join the test metrics
    (a study's own diagnostics, e.g. ``studies.qlearning:neg_q_fraction``)."""
    keep_diverged: bool = False
    """On a non-finite loss keep the best weights so far and record ``"diverged"`` (a study), instead
    of failing the job (:class:`recgym.errors.DivergedError`)."""
    tensorboard: str | None = None
    """Folder of TensorBoard event files: the job's curves go to ``<tensorboard>/<dataset>/<agent>/seed<N>``."""
    threads: int = 1
    progress: bool = False
    ignore_overrides: bool = False
    """Drop ``overrides`` keys the agent's config does not have (compare: one ``--set`` for all agents)."""

    # fields that do not change what a finished job computed
    _VOLATILE = ("out", "sims", "sim_episodes", "true_value", "threads", "progress", "download", "data_dir",
                 "tensorboard")

    def __post_init__(self) -> None:
        # the numbers are checked here, so a worker that re-reads a spec checks them too; names,
        # data parameters and hyper-parameters need imports: validate_job
        def integer(v: Any) -> bool:
            return isinstance(v, numbers.Integral) and not isinstance(v, bool)

        if self.steps is not None and not (integer(self.steps) and self.steps >= 1):
            raise BadInputError(f"--steps must be a positive integer, got {self.steps!r}")
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, numbers.Real)
                                        or not math.isfinite(self.epochs) or self.epochs <= 0):
            raise BadInputError(f"--epochs must be a positive number, got {self.epochs!r}")
        if self.patience is not None and not (integer(self.patience) and self.patience >= 1):
            raise BadInputError(f"--patience must be a positive integer, got {self.patience!r}")
        if not (integer(self.seed) and self.seed >= 0):
            raise BadInputError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not (integer(self.sim_episodes) and self.sim_episodes >= 1):
            raise BadInputError(f"--sim-episodes must be a positive integer, got {self.sim_episodes!r}")

    def job_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.dataset / safe_name(self.agent) / f"seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """The fields that define the trained model (a finished job is reused only when they match)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in self._VOLATILE}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def safe_name(agent: str) -> str:
    """A directory name for an agent name (``module:Class`` -> ``module_Class``)."""
    return agent.replace(":", "_").replace("/", "_")


# ---------------------------------------------------------------------------- small helpers
def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` (JSON values, else strings)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInputError(f"--set/--data-param expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def data_checksum(split: Any) -> str:
    """sha256 over the arrays that define the split (ids, rewards, kinds, boundaries) of each part."""
    h = hashlib.sha256()
    h.update(f"{split.protocol}:{split.n_items}".encode())
    for part in split:
        for a in (part.offsets, part.items, part.rewards, part.kinds):
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    import torch

    import recgym

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "recgym": getattr(recgym, "__version__", "unknown")}


def clean_metrics(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Flat, lowercase, JSON-safe (NaN -> null) metrics."""
    return {str(k).lower(): (None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v))
            for k, v in metrics.items()}


def read_results(job_dir: str | Path) -> dict[str, Any] | None:
    """The job's ``results.json``, or ``None`` when absent or unreadable (a torn file cannot
    exist: it is written atomically, but a hand-edited one may)."""
    p = Path(job_dir) / RESULTS
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def missing_evaluations(results: dict[str, Any] | None, spec: JobSpec) -> list[str]:
    """What ``spec`` asks for that ``results`` lacks: ``["train"]`` (no results at all, or results of
    a torn one), or the sim env ids / ``"true_value"`` not evaluated yet."""
    if results is None or "test" not in results or "valid" not in results:
        return ["train"]
    if spec.data_file is not None and (results.get("data_file") or {}).get("sha256") != file_sha256(spec.data_file):
        return ["train"]  # the file changed since: its results are stale
    todo = [s for s in spec.sims if s not in results.get("sim", {})]
    if spec.true_value and "true_value" not in results:
        todo.append("true_value")
    return todo


def stored_identity(job_dir: str | Path) -> dict[str, Any] | None:
    """The identity of the job ``job_dir`` holds (its ``job.json``; fields added to :class:`JobSpec`
    since it was written count at their defaults), or ``None`` when there is none."""
    try:
        before = json.loads((Path(job_dir) / JOB_SPEC).read_text()).get("identity")
    except (OSError, json.JSONDecodeError):  # absent, or a path through a file
        return None
    if before is None:
        return None
    try:
        return json.loads(json.dumps(JobSpec.from_dict(before).identity()))
    except BadInputError:  # a spec older checks would refuse (e.g. steps=0): compare it as it is
        return json.loads(json.dumps(before))


def identity_diff(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The settings two identities differ in, as ``"steps: 150 -> 100"`` (nested dicts by dotted key,
    e.g. ``"data_params.n_sessions: 300 -> 3000"``; a missing key reads ``unset``)."""
    out: list[str] = []
    for k in sorted(set(before) | set(now)):
        a, b = before.get(k, dataclasses.MISSING), now.get(k, dataclasses.MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            show = [("unset" if v is dataclasses.MISSING else json.dumps(v)) for v in (a, b)]
            out.append(f"{prefix}{k}: {show[0]} -> {show[1]}")
    return out


def resumable_change(before: dict[str, Any], now: dict[str, Any], results: dict[str, Any] | None = None) -> bool:
    """Whether the job of identity ``before`` may continue from its checkpoint as the job ``now``:
    they differ only in a higher cap (``steps`` / ``epochs``, top level or ``overrides``) and/or the
    patience, in a way a fresh run under ``now`` would pass through the same steps: more patience,
    none, or (from none / less) a patience under which the finished run's curves (``results``, when
    given) would not have stopped it before it ended. The training loop checks the checkpoint again."""
    diff = identity_diff(before, now)
    if not diff:
        return False
    for line in diff:
        key = line.split(":")[0]
        name = key.removeprefix("overrides.")
        if name not in ("steps", "epochs", "patience") or key.count(".") > 1:
            return False
        old, new = _dotted(before, key), _dotted(now, key)
        if name in ("steps", "epochs"):
            if not (isinstance(old, (int, float)) and isinstance(new, (int, float)) and new >= old):
                return False
        elif new is not None and (old is None or new < old):
            from recgym.agents.training import patience_stop

            if results is not None:
                after = (results.get("config") or {}).get("patience_after") or 0
                stop = patience_stop(results.get("curves", []), results.get("selection_metric") or "", new, after)
                if stop is not None and results.get("stopped_at") is not None and stop < results["stopped_at"]:
                    return False
    return True


def _dotted(d: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def finished_results(spec: JobSpec) -> dict[str, Any] | None:
    """The results of ``spec``'s job when it is finished with everything ``spec`` asks for and was
    trained with the same spec; else ``None`` (a folder holding another spec's job does not count)."""
    res = read_results(spec.job_dir())
    before = stored_identity(spec.job_dir())
    if missing_evaluations(res, spec) or (before is not None and before != json.loads(json.dumps(spec.identity()))):
        return None
    return res


def make_output_dir(path: str | Path) -> Path:
    """Create the output folder ``path`` (and its parents); :class:`BusyError` (exit 4) naming it when
    it cannot be written: a file of that name, a read-only filesystem, no permission."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise BusyError(f"{path}: cannot write the output there ({e.strerror or e})") from None
    return path


@contextlib.contextmanager
def job_lock(job_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock of a job directory (released by the kernel if we die). When the
    body fails and the folders this call created hold nothing but the lock, they are removed again:
    a refused or failed job leaves no empty folder behind."""
    import fcntl

    created = [p for p in (job_dir, *job_dir.parents) if not p.exists()]
    make_output_dir(job_dir)
    try:
        fh = open(job_dir / ".lock", "w")
    except OSError as e:
        raise BusyError(f"{job_dir}: cannot write the output there ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError(f"{job_dir}: another process is running this job (locked {job_dir / '.lock'})") from None
        # only the lock holder writes here, so a temporary file of an atomic write is a leftover of a
        # process killed mid-write (e.g. the job beside a crashed worker): remove it
        for stale in job_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield
        except BaseException:
            if created and {p.name for p in job_dir.iterdir()} <= {".lock"}:
                # unlinked while still held: a process that opened it meanwhile finds it busy
                (job_dir / ".lock").unlink(missing_ok=True)
                for d in created:  # innermost first; a folder someone else filled stays
                    with contextlib.suppress(OSError):
                        d.rmdir()
            raise
    finally:
        fh.close()


KEEP_FREED_MEMORY_MIN_ITEMS = 10_000
"""Catalogues from this size train with ``keep_freed_memory`` (full-catalogue buffers stay in the
heap): measured 16% faster sqn steps at 70,852 items for +5% peak RSS, no gain on ML-100K."""


# ---------------------------------------------------------------------------- build
def file_protocol(spec: JobSpec) -> str:
    """The protocol of a ``data_file`` job: ``spec.protocol``, else ``"session"`` when a session
    column is mapped, else ``"loo"``."""
    return spec.protocol or ("session" if "session" in spec.columns else "loo")


def read_job_file(spec: JobSpec) -> Any:
    """The ``SessionLog`` of ``spec.data_file`` (``read_table`` with its columns, ``sep`` and
    ``reward_scheme``; ``data_params`` are further ``read_table`` options, e.g. ``min_user``)."""
    from recgym.data import read_table

    opts = dict(spec.data_params)
    if spec.reward_scheme is not None:
        opts["reward_scheme"] = spec.reward_scheme
    return read_table(spec.data_file, columns=dict(spec.columns), sep=spec.sep, **opts)


def load_job_split(spec: JobSpec) -> Any:
    """``recgym.data.load_split`` for the spec, or the split of its ``data_file`` (errors become
    :class:`BadInputError`)."""
    from recgym.data import load_split, split_by_session, split_leave_one_out

    if spec.data_file is not None:
        log = read_job_file(spec)
        return split_leave_one_out(log) if file_protocol(spec) == "loo" else split_by_session(log, seed=spec.seed)
    try:
        return load_split(spec.dataset, spec.data_dir, reward_scheme=spec.reward_scheme, seed=spec.seed,
                          protocol=spec.protocol, last_n_events=spec.last_n_events, download=spec.download,
                          **spec.data_params)
    except RecgymError:
        raise
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise BadInputError(f"dataset {spec.dataset!r}: {e}") from e


def preset_dataset(spec: JobSpec) -> str | None:
    """The dataset whose agent presets apply: ``spec.dataset``, unless the job overrides its protocol."""
    from recgym.data.registry import get_source

    if spec.data_file is not None:
        return None  # a file has no presets of its own: the protocol's apply
    if spec.protocol is None:
        return spec.dataset
    try:
        return spec.dataset if get_source(spec.dataset).protocol == spec.protocol else None
    except ValueError as e:
        raise BadInputError(str(e)) from e


def agent_overrides(spec: JobSpec, warn: Callable[[str], None] = print) -> dict[str, Any]:
    """Config overrides of the agent: ``--set`` values, ``--epochs/--steps`` (iterative agents
    only), ``--logging-policy`` (LPI family only)."""
    from recgym.agents.registry import get_agent_class

    try:
        cls = get_agent_class(spec.agent)
    except ValueError as e:
        raise BadInputError(str(e)) from e
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = dict(spec.overrides)
    if spec.ignore_overrides:
        overrides = {k: v for k, v in overrides.items() if k in fields}
    for key, value in (("epochs", spec.epochs), ("steps", spec.steps), ("patience", spec.patience)):
        if value is not None:
            if key in fields:
                overrides[key] = value
            else:
                warn(f"note: --{key} ignored, agent {spec.agent!r} is not trained iteratively")
    if spec.logging_policy is not None:
        if "logging_policy" not in fields:
            raise BadInputError(f"--logging-policy: agent {spec.agent!r} does not use a logging policy")
        overrides["logging_policy"] = spec.logging_policy
    if spec.steps is not None and "epochs" in fields:
        overrides.pop("epochs", None)
    return overrides


def job_resolved_config(spec: JobSpec, n_items: int, protocol: str) -> dict[str, Any]:
    """:func:`recgym.agents.registry.resolved_config` of the job's agent: the preset layers that
    apply (``protocol:<p>``, ``dataset:<d>``, ``override``), which layer set each field, the config."""
    from recgym.agents.registry import get_agent_class, preset_layers, resolved_config

    overrides = agent_overrides(spec, lambda m: None)
    try:
        return resolved_config(spec.agent, n_items, preset_dataset(spec), protocol, overrides)
    except Exception:  # noqa: BLE001 - a custom agent that cannot be built small: the layers without the check
        cls = get_agent_class(spec.agent)
        layers = preset_layers(cls, preset_dataset(spec), protocol) + ([("override", overrides)] if overrides else [])
        return {"agent": spec.agent, "class": f"{cls.__module__}:{cls.__qualname__}", "n_items": int(n_items),
                "dataset": preset_dataset(spec), "protocol": protocol, "layers": [n for n, _ in layers], "config": {},
                "set_by": {k: n for n, layer in layers for k in layer}}


_SHA256: dict[tuple[str, str], str] = {}


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file (``None`` when it is gone), hashed once per process while its
    :func:`recgym.data.cache.file_stamp` (size, times, edges) is unchanged."""
    from recgym.data.cache import file_stamp
    from recgym.data.io import file_digest

    p = Path(path)
    try:
        key = (str(p.resolve()), file_stamp(p))
    except OSError:
        return None
    if key not in _SHA256:
        _SHA256[key] = file_digest(p, "sha256")
    return _SHA256[key]


def data_file_record(spec: JobSpec) -> dict[str, Any] | None:
    """What identifies a ``data_file`` job's data in its results: the path, its sha256, the column
    mapping and the delimiter (``None`` for a registered source)."""
    if spec.data_file is None:
        return None
    return {"path": spec.data_file, "sha256": file_sha256(spec.data_file), "columns": dict(spec.columns),
            "sep": spec.sep}


def format_resolved_config(rc: dict[str, Any]) -> str:
    """The printed form: the layers, then every field a layer set, with its value and layer."""
    set_by = rc.get("set_by", {})
    fields = ", ".join(f"{k}={rc['config'].get(k)!r} ({set_by[k]})" for k in sorted(set_by)) or "all defaults"
    return (f"resolved config of {rc['agent']} ({rc['class']}): layers "
            f"{' < '.join(['defaults', *rc.get('layers', [])])}; {fields}")


def _param_defaults(dataset: str) -> dict[str, Any]:
    """Default values of a source's loader parameters (synthetic: also the World's fields)."""
    from recgym.data.registry import get_source

    src = get_source(dataset)
    out = dict(src.params)
    if src.name == "synthetic":
        from recgym.sim.world import WorldConfig

        out.update({f.name: f.default for f in dataclasses.fields(WorldConfig)
                    if f.default is not dataclasses.MISSING})
    return out


def _type_error(value: Any, default: Any) -> str | None:
    """What is wrong with ``value`` for a parameter whose default is ``default`` (``None``: fine)."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, numbers.Integral):
        ok = (isinstance(value, numbers.Integral) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer())  # 1e4
        return None if ok else "an integer"
    if isinstance(default, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    return None


def validate_job(spec: JobSpec) -> None:
    """Check every name and value of ``spec`` that can be checked without loading data: the dataset
    (a registered source name, never a path), its reward scheme and ``--data-param`` names and
    types, the agent, its ``--set`` hyper-parameters (names and types), the simulator ids.
    :func:`run_job` and :func:`recgym.experiments.compare` call it before creating any folder.
    A ``data_file`` job's loader options are checked when the file is read."""
    if not isinstance(spec.dataset, str) or spec.dataset in ("", ".", "..") or any(c in spec.dataset for c in "/\\"):
        raise BadInputError(f"--dataset must be a registered source name (or, with --data-file, a plain name), got {spec.dataset!r}")
    if spec.data_file is None:
        _validate_source_params(spec)
    _validate_agent_and_sims(spec)


def _validate_source_params(spec: JobSpec) -> None:
    from recgym.data.registry import get_source

    src = get_source(spec.dataset)
    if spec.reward_scheme is not None and spec.reward_scheme not in src.schemes:
        raise BadInputError(f"--reward-scheme {spec.reward_scheme!r}: dataset {spec.dataset!r} accepts {list(src.schemes)}")
    defaults = _param_defaults(spec.dataset)
    unknown = sorted(k for k in spec.data_params if k not in defaults and k != "seed")
    if unknown and (not src.open_params or src.name == "synthetic"):  # a registered loader's are its own
        raise BadInputError(f"--data-param: dataset {spec.dataset!r} has no parameter(s) {unknown}; "
                            f"it accepts {sorted(defaults)}")
    for k, v in spec.data_params.items():
        want = _type_error(v, defaults.get(k))
        if want is not None:
            raise BadInputError(f"--data-param {k}: expected {want}, got {v!r}")


def _validate_agent_and_sims(spec: JobSpec) -> None:
    import gymnasium as gym

    from recgym.agents.base import check_config
    from recgym.agents.registry import get_agent_class

    overrides = agent_overrides(spec, warn=lambda m: None)
    cls = get_agent_class(spec.agent)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise BadInputError(f"--set: unknown hyper-parameter(s) {unknown} of agent {spec.agent!r}; "
                            f"it has {sorted(fields)}")
    try:
        config = dataclasses.replace(cls.Config(), **overrides)
    except TypeError:  # a custom Config without defaults: the agent checks its values when built
        config = None
    if config is not None:
        try:
            check_config(config, cls.__name__)
        except BadInputError as e:
            raise BadInputError(f"--set: {e}") from None
    import recgym  # noqa: F401  (registers the env ids)

    for env_id in spec.sims:
        if env_id not in gym.registry:
            raise BadInputError(f"--sim: unknown env id {env_id!r}; recgym ids: "
                                + ", ".join(sorted(k for k in gym.registry if k.startswith("recgym/"))))


def build_agent(spec: JobSpec, n_items: int, protocol: str, warn: Callable[[str], None] = print) -> Any:
    """The untrained agent of ``spec`` (config defaults < dataset preset < overrides)."""
    from recgym.agents.registry import make_agent

    overrides = agent_overrides(spec, warn)
    try:
        return make_agent(spec.agent, n_items, seed=spec.seed, dataset=preset_dataset(spec), protocol=protocol,
                          **overrides)
    except (TypeError, ValueError) as e:
        raise BadInputError(str(e)) from e


def load_trained_agent(job_dir: str | Path, agent: str) -> Any:
    """The best weights of a finished job (``model.pt``) as an agent of class ``agent``."""
    from recgym.agents.registry import get_agent_class

    return get_agent_class(agent).load(Path(job_dir) / "model.pt")


def _resolve(name: str) -> Any:
    """The object named ``"module:attr"``."""
    mod, sep, attr = name.partition(":")
    if not sep:
        raise BadInputError(f"expected 'module:name', got {name!r}")
    try:
        return getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise BadInputError(f"cannot import {name!r}: {e}") from e


# ---------------------------------------------------------------------------- simulation
def sim_env_kwargs(spec: JobSpec, env_id: str, mf_dir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments that build ``env_id`` on the same data as the job, on its held-out
    (``split="test"``) contexts: the env class's ``job_kwargs`` when it has one, else
    :func:`recgym.envs.common.job_split_kwargs`. ``mf_dir`` is a cache folder the env may use (fitted imputers)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    import recgym  # noqa: F401  (registers the ids)

    if env_id not in gym.registry:
        raise BadInputError(f"--sim: unknown env id {env_id!r}; recgym ids: "
                            + ", ".join(sorted(k for k in gym.registry if k.startswith("recgym/"))))
    entry = gym.registry[env_id].entry_point
    env_cls = load_env_creator(entry) if isinstance(entry, str) else entry
    from recgym.envs.common import job_split_kwargs

    make_kwargs = getattr(env_cls, "job_kwargs", None) or job_split_kwargs
    data_file = None
    if spec.data_file is not None:
        data_file = {"data": spec.data_file, "columns": dict(spec.columns), "sep": spec.sep,
                     "protocol": file_protocol(spec)}
        if spec.reward_scheme is not None:
            data_file["reward_scheme"] = spec.reward_scheme
    data_params = dict(spec.data_params)
    if spec.last_n_events is not None:  # the env's data is the job's windowed data too
        data_params["last_n_events"] = spec.last_n_events
    kw = make_kwargs(dataset=spec.dataset, seed=spec.seed, data_params=data_params, data_dir=spec.data_dir,
                     download=spec.download, cache_dir=None if mf_dir is None else Path(mf_dir), data_file=data_file)
    kw.setdefault("split", "test")  # held-out contexts, never the ones the agent trained on (or the env's own)
    return kw


def make_sim_env(spec: JobSpec, env_id: str, mf_dir: Path | None = None) -> Any:
    import gymnasium as gym

    kw = sim_env_kwargs(spec, env_id, mf_dir)
    try:
        return gym.make(env_id, **kw)
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise BadInputError(f"--sim {env_id}: cannot build the env for dataset {spec.dataset!r} ({e})") from e


def _sim_results(spec: JobSpec, agent: Any, todo: list[str], mf_dir: Path | None, log: Callable[[str], None]) -> dict:
    from recgym.evaluate import evaluate_in_env

    out: dict[str, dict[str, float]] = {}
    for env_id in [s for s in spec.sims if s in todo]:
        t0 = time.perf_counter()
        env = make_sim_env(spec, env_id, mf_dir)
        try:
            out[env_id] = clean_metrics(evaluate_in_env(agent, env, spec.sim_episodes, spec.seed))
        finally:
            env.close()
        log(f"sim {env_id}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[env_id].items() if v is not None)
            + f" ({time.perf_counter() - t0:.1f}s)")
    return out


def off_policy_estimates(agent: Any, log: Any, warn: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """IPS and SNIPS of the agent's softmax policy on a log with propensities
    (:func:`recgym.ope.evaluate_agent`): ``{"ips": {"estimate", "se", "ess"}, "snips": {...}}``;
    ``{}`` (with a warning) when the agent has no policy over the logged items."""
    from recgym.ope import evaluate_agent

    try:
        est = evaluate_agent(agent, log)
    except (ValueError, NotImplementedError) as e:
        warn(f"note: no off-policy estimate ({e})")
        return {}
    return {name: clean_metrics({k: d[k] for k in ("estimate", "se", "ess") if k in d}) for name, d in est.items()}


# ---------------------------------------------------------------------------- the job
def run_job(
    spec: JobSpec,
    *,
    resume: bool = True,
    reuse: bool = True,
    mf_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run one job and return its results (also in ``<job>/results.json``).

    :param resume: continue a torch agent from ``<job>/checkpoint.pt`` when it exists.
    :param reuse: return a finished job's ``results.json`` (evaluating only what it lacks) instead
        of training again. ``offline_eval`` passes ``reuse=False`` (it always trains).
    :param mf_dir: folder caching fitted MF imputers of the sim envs.
    :raises BadInputError: bad arguments, or a finished job trained with another spec.
    :raises DivergedError: a non-finite loss (unless ``spec.keep_diverged``).
    :raises BusyError: another process holds the job.
    """
    import torch

    from recgym.experiments.report import write_json

    log = log or (lambda msg: print(msg, flush=True))
    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = spec.job_dir()
    mf_dir = Path(mf_dir) if mf_dir is not None else None
    torch.set_num_threads(max(1, spec.threads))
    validate_job(spec)  # before touching the disk: a bad call creates no folder
    if spec.tensorboard is not None:  # a missing package fails here, not after training
        from recgym.experiments.report import summary_writer_class

        summary_writer_class()
    with job_lock(out):
        saved = out / JOB_SPEC
        before = stored_identity(out)
        now = json.loads(json.dumps(spec.identity()))
        extend = reuse and before is not None and resumable_change(before, now, read_results(out))
        if reuse and before is not None and before != now and not extend:
            raise BadInputError(f"{out}: holds a job with another spec ({'; '.join(identity_diff(before, now))}); "
                                "use another --out or delete the folder")
        if extend and spec.logging_policy is not None and \
                (read_results(out) or {}).get("logging_policy_sha256") != file_sha256(spec.logging_policy):
            # its checkpoint was trained against another μ̂: continuing would mix two logging policies
            raise BadInputError(f"{out}: cannot continue under new settings, its logging policy "
                                f"{spec.logging_policy} changed since it trained; delete the folder to train it again")
        if extend:  # a longer cap / more patience: continue from the checkpoint, the old results are stale
            log(f"{out}: continues under new settings ({'; '.join(identity_diff(before, now))})")
        results = read_results(out) if reuse and not extend else None
        todo = missing_evaluations(results, spec)
        if not todo:
            log(f"{out}: finished, reused")
            return results
        if results is not None and "train" not in todo:
            # trained before, asked for more evaluations now: reuse model.pt
            agent = load_trained_agent(out, spec.agent)
            extra_sims = _sim_results(spec, agent, todo, mf_dir, log)
            results = dict(results)
            results["sim"] = {**results.get("sim", {}), **extra_sims}
            if "true_value" in todo:
                from recgym.evaluate import true_value_on_log

                results["true_value"] = true_value_on_log(agent, load_job_split(spec).test)
            write_json(out / RESULTS, results)
            log(f"{out}: reused the trained model, added {', '.join(todo)}")
            return results
        if reuse:
            write_json(saved, {"identity": spec.identity(), "spec": spec.to_dict()})
        return _train_and_evaluate(spec, out, resume, mf_dir, log, warn)


def _train_and_evaluate(spec: JobSpec, out: Path, resume: bool, mf_dir: Path | None,
                        log: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, Any]:
    from recgym.agents.training import NonFiniteLossError, TorchAgent, resolve_selection_metric
    from recgym.divergence import divergence_to_logging_policy
    from recgym.evaluate import evaluate, true_value_on_log
    from recgym.experiments.report import code_version, format_table, plot_curves, write_json, write_tensorboard

    t0 = time.perf_counter()
    split = load_job_split(spec)
    load_s = time.perf_counter() - t0
    agent = build_agent(spec, split.n_items, split.protocol, warn=warn)
    resolved = job_resolved_config(spec, split.n_items, split.protocol)
    resolved["config"] = agent.config_dict()  # the built agent's own, field for field
    data_file = data_file_record(spec)
    log(f"{spec.dataset}: {split.train.n_sessions} train / {split.valid.n_sessions} valid / "
        f"{split.test.n_sessions} test sessions, {split.n_items} items, protocol {split.protocol} "
        f"(loaded in {load_s:.1f}s)" + (f" from {spec.data_file} (sha256 {data_file['sha256'][:12]}, columns "
                                        f"{data_file['columns']})" if data_file else ""))
    log(format_resolved_config(resolved))
    log(f"agent {agent!r}")

    ckpt = out / "checkpoint.pt"
    if resume and isinstance(agent, TorchAgent) and ckpt.exists():
        from recgym.agents.training import data_checksum as train_checksum, load_checkpoint

        load_checkpoint(ckpt, agent, train_checksum(split.train))  # refuses another run's checkpoint
    with contextlib.suppress(FileNotFoundError):
        (out / RESULTS).unlink()  # training starts: a stale result must not outlive a failed re-run

    eval_kwargs: dict[str, Any] = {}
    if split.protocol == "loo":
        eval_kwargs["popularity"] = split.train.popularity()
    diverged = None
    t0 = time.perf_counter()
    if isinstance(agent, TorchAgent):
        try:
            agent.fit(split.train, split.valid, protocol=split.protocol, checkpoint_path=ckpt,
                      resume=resume, progress=spec.progress, eval_kwargs=eval_kwargs, log=log,
                      keep_freed_memory=split.n_items >= KEEP_FREED_MEMORY_MIN_ITEMS)
        except NonFiniteLossError as e:
            if not spec.keep_diverged:
                raise DivergedError(str(e)) from e
            diverged = str(e)  # the best weights so far stay loaded
        curves, best_step, metric = agent.curves, agent.best_step, agent.selection_metric
        stop_reason = "diverged" if diverged else agent.stop_reason
        stopped_at = int(curves[-1]["step"]) if curves else None
        cap_steps = agent.cap_steps
    else:
        agent.fit(split.train, split.valid)
        curves, best_step, stop_reason, stopped_at, cap_steps = [], 0, None, None, None
        metric = resolve_selection_metric(getattr(agent.config, "selection_metric", "auto"), split.protocol)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    valid = evaluate(agent, split.valid, split.protocol, **eval_kwargs)
    test = evaluate(agent, split.test, split.protocol, **eval_kwargs)
    # JS / KL to the estimated logging policy μ̂, for every agent that carries one (LPI family)
    valid.update(divergence_to_logging_policy(agent, split.valid, split.protocol))
    test.update(divergence_to_logging_policy(agent, split.test, split.protocol))
    for name in spec.test_extras:
        test.update(_resolve(name)(agent, split))
    valid, test = clean_metrics(valid), clean_metrics(test)
    eval_s = time.perf_counter() - t0
    if not curves:  # non-iterative agents: one point, the fitted model
        curves = [{"step": 0.0, **{k: v for k, v in valid.items() if v is not None}}]

    agent.save(out / "model.pt")
    results: dict[str, Any] = {
        "agent": spec.agent,
        "agent_class": f"{type(agent).__module__}:{type(agent).__qualname__}",
        "dataset": spec.dataset,
        "seed": spec.seed,
        "protocol": split.protocol,
        "valid": valid,
        "test": test,
        "selection_metric": metric,
        "best_step": int(best_step) if best_step is not None else None,
        # iterative agents: the last trained step, why training ended ("patience", "cap", "diverged",
        # "no_validation") and the cap; None for agents fitted in one pass
        "stopped_at": stopped_at,
        "stop_reason": stop_reason,
        "cap_steps": cap_steps,
        "patience": getattr(agent.config, "patience", None),
        "diverged": diverged,
        "config": agent.config_dict(),
        "resolved_config": resolved,
        "versions": versions(),
        "data_checksum": data_checksum(split),
        "data_file": data_file,
        "logging_policy_sha256": file_sha256(spec.logging_policy) if spec.logging_policy else None,
        "timing_s": {"load": round(load_s, 3), "train": round(train_s, 3), "evaluate": round(eval_s, 3)},
        "curves": [clean_metrics(c) for c in curves],
    }
    if spec.sims:
        t0 = time.perf_counter()
        results["sim"] = _sim_results(spec, agent, list(spec.sims), mf_dir, log)
        results["timing_s"]["simulate"] = round(time.perf_counter() - t0, 3)
    if spec.true_value:
        results["true_value"] = true_value_on_log(agent, split.test)
    if split.test.propensities is not None:
        results["ope"] = off_policy_estimates(agent, split.test, warn)
    plot_curves(out / "curves.png", curves, metric, f"{spec.agent} on {spec.dataset} (seed {spec.seed})")
    if spec.tensorboard is not None:
        tb_dir = Path(spec.tensorboard) / spec.dataset / safe_name(spec.agent) / f"seed{spec.seed}"
        write_tensorboard(tb_dir, results["curves"], resolved)
        log(f"tensorboard: {tb_dir}")
    results["code_version"] = code_version()
    write_json(out / RESULTS, results)  # last: its presence marks the job finished

    log(format_table(valid, test))
    log(f"selection metric {metric}, best step {best_step}"
        + (f", stopped at {stopped_at}/{cap_steps} ({stop_reason})" if stop_reason else "")
        + f"; train {train_s:.1f}s, evaluate {eval_s:.1f}s")
    log(f"wrote {out / 'results.json'}, {out / 'curves.png'}, {out / 'model.pt'}")
    return results


def run_job_dict(spec: dict[str, Any], mf_dir: str | None = None, log_file: bool = True,
                 sys_path: list[str] | None = None) -> dict[str, Any]:
    """Picklable entry point for worker processes and Ray tasks: run :func:`run_job` with its
    output appended to ``<job>/log.txt``. Returns ``{"agent", "seed", "dir", "status", "error"}``
    (``status``: ``"done"`` or ``"failed"``; the results themselves stay on disk)."""
    for p in reversed(sys_path or []):  # custom agents importable as on the driver
        if p not in sys.path:
            sys.path.insert(0, p)
    s = JobSpec.from_dict(spec)
    out = s.job_dir()
    out.mkdir(parents=True, exist_ok=True)
    status = {"agent": s.agent, "seed": s.seed, "dir": str(out), "status": "done", "error": None}
    fh = open(out / "log.txt", "a") if log_file else None

    def write(msg: str) -> None:
        if fh is not None:
            fh.write(msg + "\n")
            fh.flush()
        else:
            print(msg, flush=True)

    try:
        write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}")
        run_job(s, mf_dir=mf_dir, log=write, warn=write)
    except RecgymError as e:
        status.update(status="failed", error=str(e))
        write(f"error: {e}")
    except Exception as e:  # a bug in one agent must not take the whole comparison down
        import traceback

        status.update(status="failed", error=f"{type(e).__name__}: {e}")
        write(traceback.format_exc())
    finally:
        if fh is not None:
            fh.close()
    return status


__all__ = ["DEFAULT_SIMS", "JobSpec", "agent_overrides", "build_agent", "clean_metrics", "data_checksum",
           "data_file_record", "file_protocol", "file_sha256", "off_policy_estimates", "format_resolved_config",
           "job_resolved_config", "read_job_file", "finished_results", "identity_diff", "load_job_split", "load_trained_agent",
           "make_output_dir", "make_sim_env", "missing_evaluations", "parse_overrides", "read_results", "resumable_change",
           "run_job", "run_job_dict",
           "safe_name", "sim_env_kwargs", "stored_identity", "validate_job", "versions"]
