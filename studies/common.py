"""What the paper studies (``studies.lpi``, ``studies.prl``) share on top of the harness: agents built
from their papers' defaults, the fan-out of a study's jobs, and reading the trained models back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from recgym.experiments import JobSpec, run_jobs
from recgym.experiments.job import load_trained_agent


def paper_defaults(agent: str, dataset: str, protocol: str | None) -> dict[str, Any]:
    """The Config defaults of every field the agent's presets for ``(dataset, protocol)`` would set.

    A paper study sets its agents itself (the papers' defaults plus the study's settings), so its
    jobs pin what a preset would change back to the default."""
    from recgym.agents.registry import get_agent_class, preset_layers
    from recgym.experiments.job import preset_dataset

    cls = get_agent_class(agent)
    spec = JobSpec(agent=agent, dataset=dataset, protocol=protocol)
    keys = {k for _, layer in preset_layers(cls, preset_dataset(spec), protocol) for k in layer}
    return {f.name: f.default for f in dataclasses.fields(cls.Config) if f.name in keys}


def run_study_jobs(jobs: list[JobSpec], workers: int, t0: float, mf_dir: Path | None = None) -> dict[str, str]:
    """Run ``jobs`` (finished ones are reused; ``mf_dir`` caches the fitted imputers of the MF user
    envs); returns ``{job dir: error}`` of those that failed."""
    statuses = run_jobs(jobs, workers=workers, mf_dir=mf_dir,
                        log=lambda m: print(f"[{time.perf_counter() - t0:7.1f}s] {m}", flush=True))
    return {st["dir"]: st["error"] for st in statuses if st["status"] in ("failed", "crashed")}


def trained(spec: JobSpec) -> Any:
    """The trained agent of a finished job (its best weights, ``model.pt``)."""
    return load_trained_agent(spec.job_dir(), spec.agent)
