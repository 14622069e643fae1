"""Compare agents: agent x seed jobs fanned out (local processes or Ray), then one report.

    from recgym.experiments import CompareConfig, compare
    report = compare(CompareConfig(agents=["pop", "sasrec", "sqn"], seeds=[0, 1, 2], steps=2000, workers=2))

Each job is :func:`recgym.experiments.job.run_job` in ``<out>/jobs/<agent>/seed<N>``: finished jobs are
reused, interrupted ones resume from their checkpoint, results are written atomically, so a crashed
worker or a re-run never loses or duplicates a result (the report reads exactly one
``results.json`` per agent x seed). Execution: :mod:`recgym.experiments.fanout`; the report
(``report.json``, ``report.md``, figures): :mod:`recgym.experiments.report`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recgym.errors import BadInputError
from recgym.experiments.fanout import run_jobs
from recgym.experiments.job import (DEFAULT_SIMS, JobSpec, identity_diff, make_output_dir, make_sim_env,
                                    missing_evaluations, read_results, resumable_change, safe_name, stored_identity,
                                    validate_job)
from recgym.experiments.report import aggregate, write_report

FILE_SIM = "recgym/MFUser-v0"
"""The simulator of a ``data_file`` comparison: the generic MF user env on the file."""


@dataclass
class CompareConfig:
    """One comparison: every agent x seed on one dataset, evaluated logged and in simulation."""

    agents: list[str]
    dataset: str = "synthetic"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sims: list[str] | None = None
    """Simulator env ids; ``None`` = ``DEFAULT_SIMS[dataset]`` (none for datasets without one)."""
    out: str | None = None
    """Output folder (default ``runs/compare/<dataset>``)."""
    workers: int = 1
    ray_address: str | None = None
    retries: int = 0
    baseline: str | None = None
    """Agent the paired tests compare against (default ``sasrec`` when compared, else the first)."""
    data_dir: str | None = None
    reward_scheme: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    """``--set`` values, applied to every agent whose config has the field."""
    steps: int | None = None
    epochs: float | None = None
    patience: int | None = None
    """Early stopping of the iterative agents (``epochs`` / ``steps`` are then the cap)."""
    download: bool = False
    protocol: str | None = None
    """``"session"`` or ``"loo"``; ``None`` = the dataset's own (a data file: ``"session"`` with a session column)."""
    data_file: str | None = None
    """Your own event file instead of a registered source (``dataset`` names it); simulator by
    default: the generic MF user env fitted on the training part of the job's split
    (``recgym/MFUser-v0`` with ``data=`` and the job's protocol)."""
    columns: dict[str, str] = field(default_factory=dict)
    sep: str | None = None
    sim_episodes: int = 200
    tensorboard: str | None = None
    """Folder of TensorBoard event files (``<dir>/<dataset>/<agent>/seed<N>``)."""
    command: str | None = None
    """The command line, recorded in the report."""

    def __post_init__(self) -> None:
        if not self.agents:
            raise BadInputError("--agents: give at least one agent")
        for name, values in (("--agents", self.agents), ("--seeds", self.seeds)):
            dup = sorted({str(v) for v in values if list(values).count(v) > 1})
            if dup:
                raise BadInputError(f"{name}: listed more than once: {', '.join(dup)}")
        if self.baseline is not None and self.baseline not in self.agents:
            raise BadInputError(f"--baseline {self.baseline!r} is not among --agents {self.agents}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise BadInputError(f"--workers must be a positive integer, got {self.workers!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise BadInputError(f"--retries must be a non-negative integer, got {self.retries!r}")
        if self.sims is None:
            self.sims = [FILE_SIM] if self.data_file is not None else list(DEFAULT_SIMS.get(self.dataset, []))
        if self.out is None:
            self.out = str(Path("runs") / "compare" / self.dataset)
        if self.baseline is None:
            self.baseline = "sasrec" if "sasrec" in self.agents else self.agents[0]


# ---------------------------------------------------------------------------- jobs
def make_jobs(cfg: CompareConfig) -> list[JobSpec]:
    """One :class:`JobSpec` per agent x seed (agents outer, seeds inner). Checks every agent name
    and that each ``--set`` key belongs to at least one agent's config."""
    import dataclasses

    from recgym.agents.registry import get_agent_class

    fields_of: dict[str, set[str]] = {}
    for a in cfg.agents:
        try:
            fields_of[a] = {f.name for f in dataclasses.fields(get_agent_class(a).Config)}
        except ValueError as e:
            raise BadInputError(f"--agents: {e}") from e
    unused = sorted(k for k in cfg.overrides if not any(k in f for f in fields_of.values()))
    if unused:
        raise BadInputError(f"--set: no compared agent has hyper-parameter(s) {unused}")
    root = Path(cfg.out) / "jobs"
    return [JobSpec(agent=a, dataset=cfg.dataset, seed=int(s), out=str(root / safe_name(a) / f"seed{s}"),
                    protocol=cfg.protocol, data_dir=cfg.data_dir, reward_scheme=cfg.reward_scheme,
                    data_params=dict(cfg.data_params), data_file=cfg.data_file, columns=dict(cfg.columns), sep=cfg.sep,
                    overrides=dict(cfg.overrides), epochs=cfg.epochs, steps=cfg.steps, patience=cfg.patience,
                    download=cfg.download,
                    sims=list(cfg.sims or []), sim_episodes=cfg.sim_episodes,
                    true_value=cfg.dataset == "synthetic" and cfg.data_file is None, tensorboard=cfg.tensorboard,
                    ignore_overrides=True)
            for a in cfg.agents for s in cfg.seeds]


def check_jobs(cfg: CompareConfig, jobs: list[JobSpec]) -> None:
    """Validate every job (:func:`recgym.experiments.job.validate_job`) and refuse an ``out`` whose
    jobs were run with other settings (``--steps``, ``--set``, ``--data-param``, ...): their results
    would be reused under the new command. A higher cap or another patience is fine where the jobs
    can continue from their checkpoints (:func:`recgym.experiments.job.resumable_change`). Raises
    :class:`BadInputError` before anything is written."""
    for j in jobs:
        validate_job(j)
    clashes: dict[str, list[str]] = {}
    for j in jobs:
        before = stored_identity(j.job_dir())
        if before is not None:
            now = json.loads(json.dumps(j.identity()))
            diff = identity_diff(before, now)
            if diff and not resumable_change(before, now, read_results(j.job_dir())):
                clashes.setdefault("; ".join(diff), []).append(str(j.job_dir()))
    if clashes:
        what = " | ".join(f"{d} (in {len(dirs)} job(s), e.g. {dirs[0]})" for d, dirs in clashes.items())
        raise BadInputError(f"{cfg.out}: holds jobs run with other settings: {what}; re-run with the settings "
                            "they were run with, or use another --out (or delete the folder)")


def prepare_sims(cfg: CompareConfig, jobs: list[JobSpec], log: Callable[[str], None]) -> Path:
    """Fit each simulator's MF imputer once, here, into ``<out>/sim`` (the jobs load it)."""
    mf_dir = Path(cfg.out) / "sim"
    need: set[str] = set()
    for j in jobs:
        todo = missing_evaluations(read_results(j.job_dir()), j)
        need |= set(cfg.sims or []) if "train" in todo else {s for s in todo if s in (cfg.sims or [])}
    for env_id in sorted(need):
        t0 = time.perf_counter()
        make_sim_env(jobs[0], env_id, mf_dir).close()
        log(f"simulator {env_id} ready ({time.perf_counter() - t0:.1f}s)")
    return mf_dir


def simulator_reports(cfg: CompareConfig, jobs: list[JobSpec], mf_dir: Path | None,
                      log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """``env.report()`` of each simulator that has one (the MF user envs: held-out RMSE, observed vs
    unobserved imputed means, popularity lean), built as the jobs build it (the fitted imputer is reused)."""
    from recgym.experiments.job import clean_metrics

    out: dict[str, dict[str, float]] = {}
    for env_id in cfg.sims or []:
        env = make_sim_env(jobs[0], env_id, mf_dir)
        try:
            if hasattr(env.unwrapped, "report"):
                out[env_id] = clean_metrics(env.unwrapped.report())
        except Exception as e:  # noqa: BLE001 - a diagnostic must not cost the comparison
            log(f"note: {env_id}.report() failed ({type(e).__name__}: {e})")
        finally:
            env.close()
    return out


def compare(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every job of ``cfg``, then aggregate and write the report. Returns the report."""
    jobs = make_jobs(cfg)
    check_jobs(cfg, jobs)  # before anything is written
    make_output_dir(cfg.out)
    mf_dir = prepare_sims(cfg, jobs, log) if cfg.sims else None
    statuses = run_jobs(jobs, workers=cfg.workers, ray_address=cfg.ray_address, retries=cfg.retries,
                        mf_dir=mf_dir, log=log)
    rep = aggregate(cfg, jobs, statuses, simulators=simulator_reports(cfg, jobs, mf_dir, log) if cfg.sims else None)
    files = write_report(rep, cfg.out)
    log(f"wrote {', '.join(str(f) for f in files)}")
    return rep


__all__ = ["FILE_SIM", "CompareConfig", "check_jobs", "compare", "make_jobs", "prepare_sims", "simulator_reports"]
