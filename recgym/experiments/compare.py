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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from recgym.errors import BadInputError
from recgym.experiments.fanout import run_jobs
from recgym.experiments.job import DEFAULT_SIMS, JobSpec, make_sim_env, missing_evaluations, read_results, safe_name
from recgym.experiments.report import aggregate, write_report


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
    download: bool = False
    sim_episodes: int = 200
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
        if self.sims is None:
            self.sims = list(DEFAULT_SIMS.get(self.dataset, []))
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
                    data_dir=cfg.data_dir, reward_scheme=cfg.reward_scheme, data_params=dict(cfg.data_params),
                    overrides=dict(cfg.overrides), epochs=cfg.epochs, steps=cfg.steps, download=cfg.download,
                    sims=list(cfg.sims or []), sim_episodes=cfg.sim_episodes, true_value=cfg.dataset == "synthetic",
                    ignore_overrides=True)
            for a in cfg.agents for s in cfg.seeds]


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


def compare(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or reuse) every job of ``cfg``, then aggregate and write the report. Returns the report."""
    jobs = make_jobs(cfg)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    mf_dir = prepare_sims(cfg, jobs, log) if cfg.sims else None
    statuses = run_jobs(jobs, workers=cfg.workers, ray_address=cfg.ray_address, retries=cfg.retries,
                        mf_dir=mf_dir, log=log)
    rep = aggregate(cfg, jobs, statuses)
    files = write_report(rep, cfg.out)
    log(f"wrote {', '.join(str(f) for f in files)}")
    return rep


__all__ = ["CompareConfig", "compare", "make_jobs", "prepare_sims"]
