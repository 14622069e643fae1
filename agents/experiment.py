"""One experiment = one agent x one seed on one dataset: train (or reuse), evaluate, write results.

This is the single implementation behind ``scripts/offline_eval.py`` (one job from the command
line) and ``scripts/compare.py`` (many jobs, see :mod:`recgym.agents.compare`)::

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

Simulated evaluation (:func:`evaluate_in_env`): in an MF user env (``recgym/MFUser-*``,
``recgym/NetflixIAR-v0``) every held-out context is scored in one batched pass: the agent's greedy
item gets the imputed reward (``iar@1``), the observed reward when it is the logged item
(``ar@1``, ``hit@1``) and, on Synthetic, the World's true expected reward (``true@1``). This equals
the mean return of the ``horizon=1`` env over all its contexts, without sampling noise. Any other
env id is run episode by episode (``sim_episodes``) with the agent's greedy, mask-respecting action.
On Synthetic, :func:`true_value_on_log` gives the oracle value of the greedy policy on the logged
test contexts (``recgym.sim.World.true_value``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

RESULTS = "results.json"
JOB_SPEC = "job.json"

DEFAULT_SIMS: dict[str, list[str]] = {
    "synthetic": ["recgym/MFUser-Synthetic-v0"],
    "ml-100k": ["recgym/MFUser-ML100K-v0"],
    "netflix": ["recgym/NetflixIAR-v0"],
}
"""Simulator env ids evaluated by default per dataset (the MF user simulator of that data)."""

_DATA_ONLY_PARAMS = ("n_sessions", "world_seed")
"""Synthetic loader parameters that are not ``World`` config fields."""


class ExperimentError(Exception):
    """A job cannot run. ``code``: 2 bad arguments (agent / dataset / parameter), 3 training diverged."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- the spec
@dataclass
class JobSpec:
    """Everything that defines one job (and, with ``out``, where it lives)."""

    agent: str
    """Registered name or ``"module:Class"``."""
    dataset: str = "synthetic"
    seed: int = 0
    """Seeds the split, numpy and torch."""
    out: str | None = None
    """Job directory (default ``runs/<dataset>/<agent>/seed<N>``)."""
    data_dir: str | None = None
    reward_scheme: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    """Extra loader arguments, e.g. ``{"n_sessions": 500}`` for synthetic."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config fields of the agent (``--set``)."""
    epochs: float | None = None
    steps: int | None = None
    logging_policy: str | None = None
    """LPI family: a saved ``sasrec`` ``model.pt`` reused as μ̂."""
    download: bool = False
    sims: list[str] = field(default_factory=list)
    """Simulator env ids to evaluate the trained agent in."""
    sim_episodes: int = 200
    """Episodes for envs that are not MF user envs."""
    true_value: bool = False
    """Synthetic only: the World oracle's value of the greedy policy on the logged test contexts."""
    threads: int = 1
    progress: bool = False
    ignore_overrides: bool = False
    """Drop ``overrides`` keys the agent's config does not have (compare: one ``--set`` for all agents)."""

    # fields that do not change what a finished job computed
    _VOLATILE = ("out", "sims", "sim_episodes", "true_value", "threads", "progress", "download", "data_dir")

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
            raise ValueError(f"--set/--data-param expects KEY=VALUE, got {pair!r}")
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
    return {str(k).lower(): (None if isinstance(v, float) and not math.isfinite(v) else float(v)) for k, v in metrics.items()}


def format_table(valid: dict[str, Any], test: dict[str, Any]) -> str:
    """The valid / test metric table printed by ``offline_eval``."""
    keys = [k for k in test if not k.startswith("n_")] + [k for k in test if k.startswith("n_")]
    width = max(len(k) for k in keys) if keys else 6

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.0f}" if float(v).is_integer() and abs(v) >= 1 else f"{v:.4f}"

    lines = [f"{'metric':<{width}}  {'valid':>10}  {'test':>10}", "-" * (width + 24)]
    lines += [f"{k:<{width}}  {fmt(valid.get(k)):>10}  {fmt(test.get(k)):>10}" for k in keys]
    return "\n".join(lines)


def plot_curves(path: Path, curves: list[dict[str, float]], metric: str | None, title: str) -> None:
    """Validation ``metric`` (and the train loss) vs training step, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recgym.data.io import atomic_path

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [c for c in curves if metric and c.get(metric) is not None and math.isfinite(c[metric])]
    if pts:
        ax.plot([c["step"] for c in pts], [c[metric] for c in pts], "o-", label=f"valid {metric}")
        ax.set_xlabel("training step")
        ax.set_ylabel(metric)
        if any("loss" in c for c in curves):
            ax2 = ax.twinx()
            ax2.plot([c["step"] for c in curves], [c["loss"] for c in curves], "--", color="grey", label="train loss")
            ax2.set_ylabel("train loss")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "no training curve\n(non-iterative agent: fitted in one pass)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def read_results(job_dir: str | Path) -> dict[str, Any] | None:
    """The job's ``results.json``, or ``None`` when absent or unreadable (a torn file cannot
    exist: it is written atomically, but a hand-edited one may)."""
    p = Path(job_dir) / RESULTS
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def missing_evaluations(results: dict[str, Any] | None, spec: JobSpec) -> list[str]:
    """What ``spec`` asks for that ``results`` lacks: ``["train"]`` (no results at all), or the sim
    env ids / ``"true_value"`` not evaluated yet."""
    if results is None or "test" not in results or "valid" not in results:
        return ["train"]
    todo = [s for s in spec.sims if s not in results.get("sim", {})]
    if spec.true_value and "true_value" not in results:
        todo.append("true_value")
    return todo


@contextlib.contextmanager
def job_lock(job_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking lock of a job directory (released by the kernel if we die)."""
    import fcntl

    job_dir.mkdir(parents=True, exist_ok=True)
    fh = open(job_dir / ".lock", "w")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExperimentError(f"{job_dir}: another process is running this job (locked {job_dir / '.lock'})") from None
        # only the lock holder writes here, so a temporary file of an atomic write is a leftover of a
        # process killed mid-write (e.g. the job beside a crashed worker): remove it
        for stale in job_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        yield
    finally:
        fh.close()


# ---------------------------------------------------------------------------- build
def load_job_split(spec: JobSpec) -> Any:
    """``recgym.data.load_split`` for the spec (errors become :class:`ExperimentError`)."""
    from recgym.data import load_split

    try:
        return load_split(spec.dataset, spec.data_dir, reward_scheme=spec.reward_scheme, seed=spec.seed,
                          download=spec.download, **spec.data_params)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise ExperimentError(f"dataset {spec.dataset!r}: {e}") from e


def agent_overrides(spec: JobSpec, warn: Callable[[str], None] = print) -> dict[str, Any]:
    """Config overrides of the agent: ``--set`` values, ``--epochs/--steps`` (iterative agents
    only), ``--logging-policy`` (LPI family only)."""
    from recgym.agents.registry import get_agent_class

    try:
        cls = get_agent_class(spec.agent)
    except ValueError as e:
        raise ExperimentError(str(e)) from e
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    overrides = dict(spec.overrides)
    if spec.ignore_overrides:
        overrides = {k: v for k, v in overrides.items() if k in fields}
    for key, value in (("epochs", spec.epochs), ("steps", spec.steps)):
        if value is not None:
            if key in fields:
                overrides[key] = value
            else:
                warn(f"note: --{key} ignored, agent {spec.agent!r} is not trained iteratively")
    if spec.logging_policy is not None:
        if "logging_policy" not in fields:
            raise ExperimentError(f"--logging-policy: agent {spec.agent!r} does not use a logging policy")
        overrides["logging_policy"] = spec.logging_policy
    if spec.steps is not None and "epochs" in fields:
        overrides.pop("epochs", None)
    return overrides


def build_agent(spec: JobSpec, n_items: int, protocol: str, warn: Callable[[str], None] = print) -> Any:
    """The untrained agent of ``spec`` (config defaults < dataset preset < overrides)."""
    from recgym.agents.registry import make_agent

    overrides = agent_overrides(spec, warn)
    try:
        return make_agent(spec.agent, n_items, seed=spec.seed, dataset=spec.dataset, protocol=protocol, **overrides)
    except (TypeError, ValueError) as e:
        raise ExperimentError(str(e)) from e


def load_trained_agent(job_dir: str | Path, agent: str) -> Any:
    """The best weights of a finished job (``model.pt``) as an agent of class ``agent``."""
    from recgym.agents.registry import get_agent_class

    return get_agent_class(agent).load(Path(job_dir) / "model.pt")


# ---------------------------------------------------------------------------- simulation
def sim_env_kwargs(spec: JobSpec, env_id: str, mf_dir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments that build ``env_id`` on the same data as the job.

    MF user env on Synthetic: the World of the logged data (``world_seed`` -> env ``seed``,
    ``World`` config fields passed through, ``n_sessions`` dropped). Other envs: ``data_dir`` /
    ``download`` / every loader parameter. ``mf_dir`` caches the fitted MF imputer (``mf_path``)
    so every job reuses one fit."""
    import gymnasium as gym

    import recgym  # noqa: F401  (registers the ids)

    if env_id not in gym.registry:
        raise ExperimentError(f"--sim: unknown env id {env_id!r}; recgym ids: "
                              + ", ".join(sorted(k for k in gym.registry if k.startswith("recgym/"))))
    entry = str(gym.registry[env_id].entry_point)
    kw: dict[str, Any] = {}
    if spec.dataset == "synthetic" and "mf_user" in entry:  # the MF env builds the World itself
        kw["seed"] = int(spec.data_params.get("world_seed", 0))
        kw.update({k: v for k, v in spec.data_params.items() if k not in _DATA_ONLY_PARAMS})
    else:
        kw.update(spec.data_params)
        if spec.data_dir is not None:
            kw["data_dir"] = spec.data_dir
        kw["download"] = spec.download
        # replay / slate envs: the job's split seed, so the env's test part is the job's test part;
        # MF envs: one fixed imputer (seed 0), the same yardstick for every agent and seed
        kw["seed"] = 0 if "mf_user" in entry else spec.seed
    kw["split"] = "test"  # held-out contexts, never the ones the agent trained on
    if "mf_user" in entry:
        if mf_dir is not None:
            tag = hashlib.sha1(json.dumps([env_id, kw], sort_keys=True, default=str).encode()).hexdigest()[:12]
            kw["mf_path"] = str(Path(mf_dir) / f"{env_id.replace('/', '_')}-{tag}.npz")
    return kw


def make_sim_env(spec: JobSpec, env_id: str, mf_dir: Path | None = None) -> Any:
    import gymnasium as gym

    kw = sim_env_kwargs(spec, env_id, mf_dir)
    try:
        return gym.make(env_id, **kw)
    except (TypeError, ValueError, FileNotFoundError) as e:
        raise ExperimentError(f"--sim {env_id}: cannot build the env for dataset {spec.dataset!r} ({e})") from e


def _greedy(agent: Any, hist: np.ndarray, hlen: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The agent's top-1 item for right-padded histories ``[B, L]`` with lengths ``[B]`` -> int64 ``[B]``."""
    import torch

    from recgym.data.windows import last_items_of_rows

    states, lengths = last_items_of_rows(hist, hlen, int(agent.state_len), int(agent.n_items))
    out = np.empty(len(hist), dtype=np.int64)
    with torch.no_grad():
        for lo in range(0, len(hist), batch_size):
            s = agent.scores(torch.from_numpy(states[lo : lo + batch_size]), torch.from_numpy(lengths[lo : lo + batch_size]))
            out[lo : lo + batch_size] = torch.as_tensor(s).float().argmax(dim=1).cpu().numpy()
    return out


def evaluate_in_env(agent: Any, env: Any, episodes: int = 200, seed: int = 0) -> dict[str, float]:
    """Simulated value of ``agent``'s greedy policy in ``env`` (see the module docstring).

    MF user envs: ``{"iar@1", "ar@1", "hit@1", "n_contexts"}`` (+ ``"true@1"`` on Synthetic), over
    every held-out context. Other envs: ``{"mean_return", "episodes"}`` + the mean of the numeric
    ``"...@..."`` entries of each episode's final ``info``."""
    u = env.unwrapped
    if getattr(u, "n_items", agent.n_items) != agent.n_items:
        raise ExperimentError(f"env {env.spec.id if env.spec else u!r} has n_items={u.n_items}, the agent {agent.n_items}")
    if hasattr(u, "imputed_reward") and hasattr(u, "targets"):
        hlen = np.asarray(u.hlen, dtype=np.int64).reshape(-1)
        items = _greedy(agent, np.asarray(u.hist), hlen)
        users = np.asarray(u.users, dtype=np.int64)
        hit = items == np.asarray(u.targets)
        out = {"iar@1": float(np.mean(u.imputed_reward(users, items))),
               "ar@1": float(np.mean(np.where(hit, u.target_rewards, 0.0))),
               "hit@1": float(np.mean(hit)), "n_contexts": float(len(items))}
        if getattr(u, "world", None) is not None:
            out["true@1"] = float(np.mean(u.world.expected_reward(users, np.asarray(u.hist), hlen, items[:, None])))
        return out
    # generic env loop: greedy action, invalid items masked when the env says which
    import torch

    from recgym.data.windows import last_items_of_rows

    masks_fn = getattr(u, "action_masks", None)
    returns, finals = [], {}
    obs, _ = env.reset(seed=seed)
    for _ in range(int(episodes)):
        done, ret, info = False, 0.0, {}
        while not done:
            hist = np.asarray(obs["history"])[None]
            n = np.asarray(obs.get("length", [(hist != agent.n_items).sum()])).reshape(1)
            st, ln = last_items_of_rows(hist, n, int(agent.state_len), int(agent.n_items))
            with torch.no_grad():
                s = torch.as_tensor(agent.scores(torch.from_numpy(st), torch.from_numpy(ln))).float().numpy()[0]
            if masks_fn is not None:
                s = np.where(masks_fn(), s, -np.inf)
            obs, r, term, trunc, info = env.step(int(np.argmax(s)))
            ret += float(r)
            done = term or trunc
        for k, v in info.items():
            if "@" in k and np.isscalar(v):
                finals.setdefault(k, []).append(float(v))
        returns.append(ret)
        obs, _ = env.reset()
    return {"mean_return": float(np.mean(returns)), "episodes": float(episodes),
            **{k: float(np.mean(v)) for k, v in finals.items()}}


def true_value_on_log(agent: Any, log: Any) -> float | None:
    """Synthetic only: mean true expected reward of the agent's greedy item over every event
    context of ``log`` (``World.true_value``); ``None`` when the log carries no World."""
    from recgym.sim.world import World

    if "world" not in (getattr(log, "meta", None) or {}):
        return None
    world = World.from_log(log)
    users, hist, lengths = world.contexts(log)
    return float(world.true_value(agent, users, hist, lengths, k=1))


# ---------------------------------------------------------------------------- the job
def _sim_results(spec: JobSpec, agent: Any, todo: list[str], mf_dir: Path | None, log: Callable[[str], None]) -> dict:
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
    :raises ExperimentError: bad arguments (``code=2``), diverged training (``code=3``), a job that
        another process holds, or a finished job trained with another spec.
    """
    import torch

    log = log or (lambda msg: print(msg, flush=True))
    warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = spec.job_dir()
    mf_dir = Path(mf_dir) if mf_dir is not None else None
    torch.set_num_threads(max(1, spec.threads))
    # validate the agent and its overrides before touching the disk
    agent_overrides(spec, warn=lambda m: None)
    with job_lock(out):
        saved = out / JOB_SPEC
        if reuse and saved.exists():
            before = json.loads(saved.read_text()).get("identity")
            if before is not None and before != json.loads(json.dumps(spec.identity())):
                raise ExperimentError(f"{out}: holds a job with another spec ({before}); now {spec.identity()}. "
                                      "Use another --out or delete the folder.")
        results = read_results(out) if reuse else None
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
                split = load_job_split(spec)
                results["true_value"] = true_value_on_log(agent, split.test)
            _write_json(out / RESULTS, results)
            log(f"{out}: reused the trained model, added {', '.join(todo)}")
            return results
        with contextlib.suppress(FileNotFoundError):
            (out / RESULTS).unlink()  # reuse=False: a stale result must not outlive a failed re-run
        if reuse:
            _write_json(saved, {"identity": spec.identity(), "spec": spec.to_dict()})
        return _train_and_evaluate(spec, out, resume, mf_dir, log, warn)


def _write_json(path: Path, obj: Any) -> None:
    from recgym.data.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def _train_and_evaluate(spec: JobSpec, out: Path, resume: bool, mf_dir: Path | None,
                        log: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, Any]:
    from recgym.agents.training import NonFiniteLossError, TorchAgent, resolve_selection_metric
    from recgym.divergence import divergence_to_logging_policy
    from recgym.evaluate import evaluate

    t0 = time.perf_counter()
    split = load_job_split(spec)
    load_s = time.perf_counter() - t0
    agent = build_agent(spec, split.n_items, split.protocol, warn=warn)
    log(f"{spec.dataset}: {split.train.n_sessions} train / {split.valid.n_sessions} valid / "
        f"{split.test.n_sessions} test sessions, {split.n_items} items, protocol {split.protocol} "
        f"(loaded in {load_s:.1f}s); agent {agent!r}")

    eval_kwargs: dict[str, Any] = {}
    if split.protocol == "loo":
        eval_kwargs["popularity"] = split.train.popularity()
    t0 = time.perf_counter()
    if isinstance(agent, TorchAgent):
        try:
            agent.fit(split.train, split.valid, protocol=split.protocol, checkpoint_path=out / "checkpoint.pt",
                      resume=resume, progress=spec.progress, eval_kwargs=eval_kwargs, log=log)
        except NonFiniteLossError as e:
            raise ExperimentError(str(e), code=3) from e
        curves, best_step, metric = agent.curves, agent.best_step, agent.selection_metric
    else:
        agent.fit(split.train, split.valid)
        curves, best_step = [], 0
        metric = resolve_selection_metric(getattr(agent.config, "selection_metric", "auto"), split.protocol)
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    valid = evaluate(agent, split.valid, split.protocol, **eval_kwargs)
    test = evaluate(agent, split.test, split.protocol, **eval_kwargs)
    # JS / KL to the estimated logging policy μ̂, for every agent that carries one (LPI family)
    valid.update(divergence_to_logging_policy(agent, split.valid, split.protocol))
    test.update(divergence_to_logging_policy(agent, split.test, split.protocol))
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
        "config": agent.config_dict(),
        "versions": versions(),
        "data_checksum": data_checksum(split),
        "timing_s": {"load": round(load_s, 3), "train": round(train_s, 3), "evaluate": round(eval_s, 3)},
        "curves": [clean_metrics(c) for c in curves],
    }
    if spec.sims:
        t0 = time.perf_counter()
        results["sim"] = _sim_results(spec, agent, list(spec.sims), mf_dir, log)
        results["timing_s"]["simulate"] = round(time.perf_counter() - t0, 3)
    if spec.true_value:
        results["true_value"] = true_value_on_log(agent, split.test)
    plot_curves(out / "curves.png", curves, metric, f"{spec.agent} on {spec.dataset} (seed {spec.seed})")
    _write_json(out / RESULTS, results)  # last: its presence marks the job finished

    log(format_table(valid, test))
    log(f"selection metric {metric}, best step {best_step}; train {train_s:.1f}s, evaluate {eval_s:.1f}s")
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
    except ExperimentError as e:
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


__all__ = ["DEFAULT_SIMS", "ExperimentError", "JobSpec", "agent_overrides", "build_agent", "clean_metrics",
           "data_checksum", "evaluate_in_env", "format_table", "load_job_split", "load_trained_agent",
           "make_sim_env", "missing_evaluations", "parse_overrides", "plot_curves", "read_results", "run_job",
           "run_job_dict", "safe_name", "sim_env_kwargs", "true_value_on_log", "versions"]
