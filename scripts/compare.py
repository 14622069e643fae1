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
Exit status: 0 every job finished, 1 some job failed or is missing (the report lists it), 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(_ROOT))


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", required=True, help="comma-separated registered names or 'module:Class'")
    p.add_argument("--dataset", default="synthetic", help="source name (default: synthetic, needs no download)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--sim", action="append", default=None, metavar="ENV_ID",
                   help="simulator env id (repeatable or comma-separated; 'none' = no simulation; default per dataset)")
    p.add_argument("--out", default=None, help="output folder (default runs/compare/<dataset>)")
    p.add_argument("--workers", type=int, default=1, help="parallel jobs on this machine (process pool)")
    p.add_argument("--ray-address", default=None,
                   help="run the jobs on Ray: 'local' starts ray.init(num_cpus=max(2, workers)), else a cluster address")
    p.add_argument("--retries", type=int, default=0, help="re-run a job whose worker process died up to N times")
    p.add_argument("--baseline", default=None, help="agent of the paired tests (default sasrec if compared, else the first)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="training steps of iterative agents")
    length.add_argument("--epochs", type=float, default=None, help="training epochs of iterative agents")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config field for every agent that has it (JSON value, else string); repeatable")
    p.add_argument("--data-param", dest="data_params", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the source loader, e.g. n_sessions=500 for synthetic; repeatable")
    p.add_argument("--data-dir", default=None, help="data directory (default: $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--reward-scheme", default=None, help="reward scheme of rating sources ('rating', 'click-purchase')")
    p.add_argument("--download", action="store_true", help="download the raw files when missing")
    p.add_argument("--sim-episodes", type=int, default=200, help="episodes in envs that are not MF user simulators")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from recgym.agents.compare import CompareConfig, compare
    from recgym.agents.experiment import ExperimentError, parse_overrides

    def fail(msg: str) -> int:
        print(f"compare: error: {msg}", file=sys.stderr)
        return 2

    try:
        seeds = [int(s) for s in _list(args.seeds)]
    except ValueError:
        return fail(f"--seeds expects comma-separated integers, got {args.seeds!r}")
    sims = None
    if args.sim is not None:
        sims = [s for item in args.sim for s in _list(item)]
        sims = [] if sims == ["none"] else sims
    if args.workers < 1 or args.retries < 0:
        return fail("--workers must be >= 1 and --retries >= 0")
    command = "python scripts/compare.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        cfg = CompareConfig(agents=_list(args.agents), dataset=args.dataset, seeds=seeds, sims=sims, out=args.out,
                            workers=args.workers, ray_address=args.ray_address, retries=args.retries,
                            baseline=args.baseline, data_dir=args.data_dir, reward_scheme=args.reward_scheme,
                            data_params=parse_overrides(args.data_params), overrides=parse_overrides(args.overrides),
                            steps=args.steps, epochs=args.epochs, download=args.download,
                            sim_episodes=args.sim_episodes, command=command)
        rep = compare(cfg)
    except (ValueError, ExperimentError) as e:
        return fail(str(e))
    failed = [j for j in rep["jobs"] if j["status"] in ("failed", "crashed")]
    for j in failed:
        print(f"compare: {j['agent']} seed {j['seed']} {j['status']}: {j['error']} (log: {j['dir']}/log.txt)",
              file=sys.stderr)
    print(Path(cfg.out, "report.md").read_text())
    return 1 if failed or rep["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
