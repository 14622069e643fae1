#!/usr/bin/env python
"""Train one agent on a logged dataset and evaluate it on the validation and test parts.

    python scripts/offline_eval.py --agent sasrec                     # embedded synthetic data
    python scripts/offline_eval.py --agent sasrec --dataset ml-100k --data-dir ../shared/data
    python scripts/offline_eval.py --agent my_pkg.my_module:MyAgent --set lr=0.001 --steps 2000
    python scripts/offline_eval.py --agent sasrec --resume            # continue an interrupted run

Writes into ``--out`` (default ``runs/<dataset>/<agent>/seed<N>``): ``results.json`` (valid and
test metrics, config, versions, data checksum, selection metric, best step, curves),
``curves.png`` (validation metric vs training step), ``model.pt`` (best weights,
``Agent.load``) and, for torch agents, ``checkpoint.pt`` (resumable, written after every
validation). One job of the harness (``recgym.experiments.run_job``). Exit status
(``recgym.errors``): 0 success, 2 bad arguments (unknown agent / dataset / parameter), 3 training
diverged (non-finite loss), 4 another process holds ``--out``.
"""

from __future__ import annotations

import argparse
import sys

from recgym.errors import cli
from recgym.experiments import JobSpec, run_job
from recgym.experiments.cli import add_data_args, add_training_args, data_kwargs, training_kwargs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True, help="registered name (pop, mc, bpr, sasrec, ...) or 'module:Class'")
    add_data_args(p)
    p.add_argument("--protocol", choices=("session", "loo"), default=None,
                   help="evaluation protocol (default: the dataset's own; see recgym.data.load_split)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, numpy and torch")
    add_training_args(p)
    p.add_argument("--out", default=None, help="output directory (default runs/<dataset>/<agent>/seed<N>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt when it exists")
    p.add_argument("--logging-policy", default=None, metavar="PATH",
                   help="LPI family: a saved `sasrec` model (model.pt) to reuse as μ̂ instead of training one")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small models are fastest and reproducible single-threaded)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


@cli("offline_eval")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    n_threads = torch.get_num_threads()
    try:
        spec = JobSpec(agent=args.agent, seed=args.seed, protocol=args.protocol, out=args.out,
                       logging_policy=args.logging_policy, threads=args.threads, progress=not args.no_progress,
                       **data_kwargs(args), **training_kwargs(args))
        run_job(spec, resume=args.resume, reuse=False,
                warn=lambda msg: print(f"offline_eval: {msg}", file=sys.stderr, flush=True))
    finally:
        torch.set_num_threads(n_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
