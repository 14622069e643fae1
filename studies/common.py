"""What the paper studies (``studies.lpi``, ``studies.prl``) share on top of the harness: agents built
from their papers' defaults, the fan-out of a study's jobs, and reading the trained models back."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from recgym.errors import EXIT_JOBS_FAILED, BadInputError
from recgym.experiments import JobSpec, run_jobs
from recgym.experiments.cli import split_list
from recgym.experiments.job import load_trained_agent
from recgym.experiments.report import atomic_write, write_json


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


def study_parser(doc: str, name: str, datasets: tuple[str, ...], unit: str) -> argparse.ArgumentParser:
    """The arguments every paper study takes (``unit``: what one job is, for ``--jobs``' help)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny synthetic data, one seed (a smoke run, < 90 s)")
    p.add_argument("--datasets", default="synthetic", help=f"comma-separated from {', '.join(datasets)}")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 (quick) or 0 1 2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=f"runs/{name}_study", help="report folder (tables.md, results.json, figures)")
    p.add_argument("--runs", default=None, help=f"job folders (default runs/{name}; <out>/runs with --quick)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    p.add_argument("--jobs", type=int, default=1, help=f"parallel worker processes, one job ({unit}) each")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="train to convergence: every iterative agent stops after N validations without a strict "
                        "improvement, under the study's cap and validation cadence (its CONVERGE); job folders "
                        f"default to runs/{name}_converged")
    p.add_argument("--paper", action="store_true",
                   help="the papers' own settings: every agent at its defaults and the dataset's presets (the "
                        "papers' epochs, learning rates, batch sizes, switch steps), validated once per epoch, the "
                        "best epoch kept; no CPU step budget (docs/paper-settings.md)")
    return p


def converge_agent(agent_kw: dict[str, Any], patience: int | None, settings: dict[str, int],
                   cap: int | None = None) -> dict[str, Any]:
    """The agent overrides of a study in convergence mode: ``agent_kw`` with the study's validation
    cadence, its cap (or ``cap``) as ``steps`` and ``patience``; ``agent_kw`` itself without ``patience``."""
    if patience is None:
        return dict(agent_kw)
    out = {k: v for k, v in agent_kw.items() if k not in ("epochs", "steps", "eval_every")}
    return {**out, "steps": cap or settings["cap"], "eval_every": settings["eval_every"], "patience": patience}


def convergence_section(cells: dict[str, list[JobSpec]], metric: str = "the selection metric") -> list[str]:
    """Markdown lines: per cell (``{label: [job of each seed]}``) the best and stop step of its
    finished jobs, mean ± sample std over seeds, and the runs flagged as not converged
    (:func:`recgym.experiments.report.convergence_markdown`); empty when no job has a curve."""
    from recgym.experiments import finished_results
    from recgym.experiments.report import convergence_markdown, run_convergence

    conv = {}
    for label, specs in cells.items():
        runs = {str(s.seed): r for s in specs if (r := finished_results(s)) is not None}
        if runs:
            conv[label] = {seed: run_convergence(r, r.get("selection_metric")) for seed, r in runs.items()}
    return convergence_markdown(conv, metric, label="cell")


def code_versions_md(specs: list[JobSpec]) -> str:
    """:func:`recgym.experiments.report.code_versions_markdown` over the finished jobs of ``specs``
    (each ``results.json``'s ``code_version``)."""
    from recgym.experiments import finished_results
    from recgym.experiments.report import code_versions_markdown

    versions: dict[str, list[str]] = {}
    for s in specs:
        if (r := finished_results(s)) is not None:
            versions.setdefault(r.get("code_version", "unrecorded"), []).append(f"{s.agent}/{s.seed}")
    return code_versions_markdown(versions)


def study_setup(args: argparse.Namespace, name: str, known: tuple[str, ...]) -> tuple[list[str], list[int], Path]:
    """``--datasets``, ``--seeds`` and ``--runs`` resolved (``--quick``: synthetic, seed 0, ``<out>/runs``)."""
    datasets = ["synthetic"] if args.quick else split_list(args.datasets)
    if unknown := sorted(set(datasets) - set(known)):
        raise BadInputError(f"--datasets: unknown dataset(s) {unknown}; choose from {', '.join(known)}")
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    if getattr(args, "patience", None) is not None and args.patience < 1:
        raise BadInputError(f"--patience must be a positive integer, got {args.patience}")
    if getattr(args, "paper", False) and (args.quick or getattr(args, "patience", None) is not None
                                          or getattr(args, "steps", None) is not None or getattr(args, "epochs", None) is not None):
        raise BadInputError("--paper runs the papers' own lengths: it takes no --quick, --patience, --steps or --epochs")
    if getattr(args, "paper", False):
        name = f"{name}_paper"
    if getattr(args, "patience", None) is not None:
        name = f"{name}_converged"  # fixed-length runs validate on another cadence: not continued into these
    runs = Path(args.runs) if args.runs else (Path(args.out) / "runs" if args.quick else Path("runs") / name)
    return datasets, seeds, runs


def write_study(out: Path, md: list[str], res: dict[str, Any], failed: dict[str, str]) -> int:
    """``tables.md`` (``md`` and the failures of ``res["errors"]``) and ``results.json``, atomically;
    the exit status (:data:`recgym.errors.EXIT_JOBS_FAILED` when a job failed)."""
    md = md + [f"\n**{k}: job(s) failed or not run:** {v}" for k, v in res["errors"].items()]
    atomic_write(out / "tables.md", "\n".join(md) + "\n")
    write_json(out / "results.json", res, indent=1)
    print("\n".join(md))
    print(f"wrote {out / 'results.json'}, {out / 'tables.md'} in {res['seconds']:.1f}s")
    return EXIT_JOBS_FAILED if failed else 0
