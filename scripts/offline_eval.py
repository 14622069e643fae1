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
validation). Exit status: 0 success, 2 bad arguments (unknown agent / dataset / parameter),
3 training diverged (non-finite loss).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(_ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", required=True, help="registered name (pop, mc, bpr, sasrec, ...) or 'module:Class'")
    p.add_argument("--dataset", default="synthetic", help="source name (default: synthetic, needs no download)")
    p.add_argument("--data-dir", default=None, help="data directory (default: $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--seed", type=int, default=0, help="seeds the split, numpy and torch")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="training epochs (overrides the config)")
    length.add_argument("--steps", type=int, default=None, help="training steps (overrides --epochs and the config)")
    p.add_argument("--out", default=None, help="output directory (default runs/<dataset>/<agent>/seed<N>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt when it exists")
    p.add_argument("--reward-scheme", default=None, help="reward scheme of rating sources ('rating', 'click-purchase')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (JSON value, else string); repeatable")
    p.add_argument("--data-param", dest="data_params", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the source loader, e.g. n_sessions=500 for synthetic; repeatable")
    p.add_argument("--download", action="store_true", help="download the raw files when missing")
    p.add_argument("--logging-policy", default=None, metavar="PATH",
                   help="LPI family: a saved `sasrec` model (model.pt) to reuse as μ̂ instead of training one")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these small models are fastest and reproducible single-threaded)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


# the one implementation lives in recgym.agents.experiment (scripts/compare.py runs the same jobs)
from recgym.agents.experiment import (  # noqa: E402,F401  (re-exported: older imports of these names keep working)
    ExperimentError,
    JobSpec,
    clean_metrics as _clean,
    data_checksum,
    format_table,
    parse_overrides,
    plot_curves,
    run_job,
    versions,
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    n_threads = torch.get_num_threads()
    try:
        spec = JobSpec(
            agent=args.agent, dataset=args.dataset, seed=args.seed, out=args.out, data_dir=args.data_dir,
            reward_scheme=args.reward_scheme, data_params=parse_overrides(args.data_params),
            overrides=parse_overrides(args.overrides), epochs=args.epochs, steps=args.steps,
            logging_policy=args.logging_policy, download=args.download, threads=args.threads,
            progress=not args.no_progress,
        )
        run_job(spec, resume=args.resume, reuse=False,
                warn=lambda msg: print(f"offline_eval: {msg}", file=sys.stderr, flush=True))
    except ValueError as e:  # --set / --data-param syntax
        print(f"offline_eval: error: {e}", file=sys.stderr)
        return 2
    except ExperimentError as e:
        print(f"offline_eval: error: {e}", file=sys.stderr)
        return e.code
    finally:
        torch.set_num_threads(n_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
