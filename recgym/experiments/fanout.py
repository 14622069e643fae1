"""Fan-out: run many jobs (or any picklable units of work) in this process, a process pool or Ray.

* ``workers <= 1``: in this process, one after the other;
* ``workers = N``: a pool of N spawned processes (``concurrent.futures``); a worker that dies
  (SIGKILL, out of memory) breaks the pool: its job and those killed with it are re-run up to
  ``retries`` times in a fresh pool, then reported as crashed (a later re-run finishes them);
* ``ray_address``: Ray tasks (``"local"`` starts ``ray.init(num_cpus=max(2, workers))``, else
  ``ray.init(address=...)``); Ray re-runs a task whose worker died up to ``retries`` times.

:func:`run_jobs` runs :class:`recgym.experiments.job.JobSpec` s (finished ones are reused); :func:`map_units`
runs ``fn(unit)`` for a study's own units of work (each unit one worker, results in unit order).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from recgym.errors import BadInputError
from recgym.experiments.job import JobSpec, finished_results, run_job_dict


def run_jobs(jobs: list[JobSpec], *, workers: int = 1, ray_address: str | None = None, retries: int = 0,
             mf_dir: str | Path | None = None, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the jobs that are not finished; returns one status dict per job (same order):
    ``{"agent", "seed", "dir", "status": "reused" | "done" | "failed" | "crashed", "error"}``."""
    mf = str(mf_dir) if mf_dir is not None else None
    statuses: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, j in enumerate(jobs):
        if finished_results(j) is None:
            todo.append(i)
        else:
            statuses[i] = {"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir()), "status": "reused", "error": None}
    log(f"{len(jobs)} jobs: {len(jobs) - len(todo)} finished before, {len(todo)} to run"
        + (f" on Ray ({ray_address})" if ray_address else f" with {max(1, workers)} worker(s)"))
    if todo:
        specs = {i: jobs[i].to_dict() for i in todo}
        if ray_address:
            statuses.update(_run_ray(specs, ray_address, workers, retries, mf, log))
        elif workers <= 1:
            for i, spec in specs.items():
                statuses[i] = run_job_dict(spec, mf)
                log(_status_line(statuses[i]))
        else:
            statuses.update(_run_pool(specs, workers, retries, mf, log))
    return [statuses[i] for i in range(len(jobs))]


def _status_line(st: dict[str, Any]) -> str:
    return f"  {st['agent']} seed {st['seed']}: {st['status']}" + (f" ({st['error']})" if st.get("error") else "")


def _crashed(spec: dict[str, Any], err: str) -> dict[str, Any]:
    j = JobSpec.from_dict(spec)
    return {"agent": j.agent, "seed": j.seed, "dir": str(j.job_dir()), "status": "crashed", "error": err}


def _run_pool(specs: dict[int, dict[str, Any]], workers: int, retries: int, mf: str | None,
              log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    out: dict[int, dict[str, Any]] = {}
    pending = dict(specs)
    ctx = mp.get_context("spawn")  # no fork of a process that holds torch / OpenMP threads
    for attempt in range(retries + 1):
        if attempt:
            log(f"retry {attempt}/{retries}: {len(pending)} job(s) whose worker died")
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
            futs = {pool.submit(run_job_dict, spec, mf, True, list(sys.path)): i for i, spec in pending.items()}
            for fut in as_completed(futs):
                i = futs[fut]
                try:
                    out[i] = fut.result()
                except BrokenProcessPool as e:
                    out[i] = _crashed(pending[i], f"worker process died ({e})")
                log(_status_line(out[i]))
        pending = {i: specs[i] for i in pending if out[i]["status"] == "crashed"}
        if not pending:
            break
    return out


def _run_ray(specs: dict[int, dict[str, Any]], address: str, workers: int, retries: int, mf: str | None,
             log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    try:
        import ray
    except ImportError as e:
        raise BadInputError("--ray-address needs Ray: pip install 'recgym[ray]' (or \"ray[default]\")") from e
    started = not ray.is_initialized()
    if started:
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        if address == "local":
            ray.init(num_cpus=max(2, workers), include_dashboard=False, log_to_driver=False, runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
    try:
        task = ray.remote(num_cpus=1, max_retries=retries)(run_job_dict)
        refs = {task.remote(spec, mf, True, list(sys.path)): i for i, spec in specs.items()}
        out: dict[int, dict[str, Any]] = {}
        remaining = list(refs)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            i = refs[ready[0]]
            try:
                out[i] = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died more often than retries allow
                out[i] = _crashed(specs[i], f"{type(e).__name__}: {str(e).splitlines()[0]}")
            log(_status_line(out[i]))
        return out
    finally:
        if started:
            ray.shutdown()


def map_units(fn: Callable[[Any], Any], units: Iterable[Any], workers: int = 1,
              log: Callable[[Any, Any], None] | None = None) -> list[Any]:
    """``[fn(u) for u in units]``, in ``workers`` spawned processes when ``workers > 1`` (``fn`` and the
    units must then be picklable: a module-level function, e.g. a ``functools.partial`` of one).
    ``log(unit, result)`` is called as each unit finishes."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    units = list(units)
    results: dict[int, Any] = {}
    if workers <= 1 or len(units) <= 1:
        for i, u in enumerate(units):
            results[i] = fn(u)
            if log is not None:
                log(u, results[i])
    else:
        with ProcessPoolExecutor(min(workers, len(units)), mp_context=mp.get_context("spawn")) as pool:
            futs = {pool.submit(fn, u): i for i, u in enumerate(units)}
            for f in as_completed(futs):
                results[futs[f]] = f.result()
                if log is not None:
                    log(units[futs[f]], results[futs[f]])
    return [results[i] for i in range(len(units))]


__all__ = ["map_units", "run_jobs"]
