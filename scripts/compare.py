#!/usr/bin/env python
"""Compare agents on one dataset: logged test metrics, simulated value and (Synthetic) true value.

    python scripts/compare.py --agents pop,mc,sasrec,sqn --seeds 0,1,2 --steps 2000 --workers 2
    python scripts/compare.py --agents sasrec,lpi --dataset ml-100k --data-dir ../shared/data
    python scripts/compare.py --agents pop,examples.my_agent:RecencyPopAgent --data-param n_sessions=500
    python scripts/compare.py --agents pop,sasrec --ray-address local        # a local Ray instance
    python scripts/compare.py --agents pop,sasrec --ray-address ray://head:10001

Every agent x seed is one job in ``<out>/jobs/<agent>/seed<N>`` (``scripts/offline_eval.py``'s
outputs plus the simulator results): a finished job is reused, an interrupted one resumes from its
checkpoint, so re-running the same command after a crash only does what is missing. Writes
``<out>/report.md``, ``report.json``, ``curves.png``, ``logged_vs_sim.png`` and ``divergence.png``.
Default simulator per dataset: synthetic -> recgym/MFUser-Synthetic-v0 (imputed iAR; the true
value comes from the World oracle), ml-100k -> recgym/MFUser-ML100K-v0, netflix ->
recgym/NetflixIAR-v0; ``--sim none`` turns simulation off.
Exit status (``recgym.errors``): 0 every job finished, 2 bad arguments, 5 some job failed or is
missing (the report lists it; re-run the same command to finish it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recgym.errors import EXIT_JOBS_FAILED, BadInputError, cli
from recgym.experiments import CompareConfig, compare
from recgym.experiments.cli import add_data_args, add_training_args, command_line, data_kwargs, split_list, training_kwargs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", required=True, help="comma-separated registered names or 'module:Class'")
    add_data_args(p)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--sim", action="append", default=None, metavar="ENV_ID",
                   help="simulator env id (repeatable or comma-separated; 'none' = no simulation; default per dataset)")
    p.add_argument("--out", default=None, help="output folder (default runs/compare/<dataset>)")
    p.add_argument("--workers", type=int, default=1, help="parallel jobs on this machine (process pool)")
    p.add_argument("--ray-address", default=None,
                   help="run the jobs on Ray: 'local' starts ray.init(num_cpus=max(2, workers)), else a cluster address")
    p.add_argument("--retries", type=int, default=0, help="re-run a job whose worker process died up to N times")
    p.add_argument("--baseline", default=None, help="agent of the paired tests (default sasrec if compared, else the first)")
    add_training_args(p, "config field for every agent that has it")
    p.add_argument("--sim-episodes", type=int, default=200, help="episodes in envs that are not MF user simulators")
    return p.parse_args(argv)


@cli("compare")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        seeds = [int(s) for s in split_list(args.seeds)]
    except ValueError:
        raise BadInputError(f"--seeds expects comma-separated integers, got {args.seeds!r}") from None
    sims = None
    if args.sim is not None:
        sims = [s for item in args.sim for s in split_list(item)]
        sims = [] if sims == ["none"] else sims
    if args.workers < 1 or args.retries < 0:
        raise BadInputError("--workers must be >= 1 and --retries >= 0")
    cfg = CompareConfig(agents=split_list(args.agents), seeds=seeds, sims=sims, out=args.out, workers=args.workers,
                        ray_address=args.ray_address, retries=args.retries, baseline=args.baseline,
                        sim_episodes=args.sim_episodes, command=command_line("python scripts/compare.py", argv),
                        **data_kwargs(args), **training_kwargs(args))
    rep = compare(cfg)
    failed = [j for j in rep["jobs"] if j["status"] in ("failed", "crashed")]
    for j in failed:
        print(f"compare: {j['agent']} seed {j['seed']} {j['status']}: {j['error']} (log: {j['dir']}/log.txt)",
              file=sys.stderr)
    print(Path(cfg.out, "report.md").read_text())
    return EXIT_JOBS_FAILED if failed or rep["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
