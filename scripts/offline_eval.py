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
import dataclasses
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

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


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
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


def _clean(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Flat, lowercase, JSON-safe (NaN -> null) metrics."""
    return {str(k).lower(): (None if isinstance(v, float) and not math.isfinite(v) else float(v)) for k, v in metrics.items()}


def format_table(valid: dict[str, Any], test: dict[str, Any]) -> str:
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from agents.registry import get_agent_class, make_agent
    from agents.training import NonFiniteLossError, TorchAgent, resolve_selection_metric
    from recgym.data.io import atomic_path
    from recgym.evaluate import evaluate
    from recgym.divergence import divergence_to_logging_policy

    def fail(msg: str, code: int = 2) -> int:
        print(f"offline_eval: error: {msg}", file=sys.stderr)
        return code

    torch.set_num_threads(max(1, args.threads))
    try:
        cls = get_agent_class(args.agent)
        overrides = parse_overrides(args.overrides)
        data_params = parse_overrides(args.data_params)
    except ValueError as e:
        return fail(str(e))
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    for key, value in (("epochs", args.epochs), ("steps", args.steps)):
        if value is not None:
            if key in fields:
                overrides[key] = value
            else:
                print(f"offline_eval: note: --{key} ignored, agent {args.agent!r} is not trained iteratively", file=sys.stderr)
    if args.logging_policy is not None:
        if "logging_policy" not in fields:
            return fail(f"--logging-policy: agent {args.agent!r} does not use a logging policy")
        overrides["logging_policy"] = args.logging_policy
    if args.steps is not None and "epochs" in fields:
        overrides.pop("epochs", None)

    try:
        from recgym.data import load_split
    except ImportError:  # older layout: the registry module only
        from recgym.data.registry import load_split
    t0 = time.perf_counter()
    try:
        split = load_split(args.dataset, args.data_dir, reward_scheme=args.reward_scheme, seed=args.seed,
                           download=args.download, **data_params)
    except (ValueError, TypeError, FileNotFoundError) as e:
        return fail(f"dataset {args.dataset!r}: {e}")
    load_s = time.perf_counter() - t0
    try:
        agent = make_agent(args.agent, split.n_items, seed=args.seed, dataset=args.dataset, protocol=split.protocol,
                           **overrides)
    except (TypeError, ValueError) as e:
        return fail(str(e))

    safe_name = args.agent.replace(":", "_").replace("/", "_")
    out = Path(args.out) if args.out else Path("runs") / args.dataset / safe_name / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.dataset}: {split.train.n_sessions} train / {split.valid.n_sessions} valid / "
          f"{split.test.n_sessions} test sessions, {split.n_items} items, protocol {split.protocol} "
          f"(loaded in {load_s:.1f}s); agent {agent!r}", flush=True)

    eval_kwargs: dict[str, Any] = {}
    if split.protocol == "loo":
        eval_kwargs["popularity"] = split.train.popularity()
    t0 = time.perf_counter()
    if isinstance(agent, TorchAgent):
        try:
            agent.fit(split.train, split.valid, protocol=split.protocol, checkpoint_path=out / "checkpoint.pt",
                      resume=args.resume, progress=not args.no_progress, eval_kwargs=eval_kwargs)
        except NonFiniteLossError as e:
            return fail(str(e), code=3)
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
    valid, test = _clean(valid), _clean(test)
    eval_s = time.perf_counter() - t0
    if not curves:  # non-iterative agents: one point, the fitted model
        curves = [{"step": 0.0, **{k: v for k, v in valid.items() if v is not None}}]

    agent.save(out / "model.pt")
    results = {
        "agent": args.agent,
        "agent_class": f"{type(agent).__module__}:{type(agent).__qualname__}",
        "dataset": args.dataset,
        "seed": args.seed,
        "protocol": split.protocol,
        "valid": valid,
        "test": test,
        "selection_metric": metric,
        "best_step": int(best_step) if best_step is not None else None,
        "config": agent.config_dict(),
        "versions": versions(),
        "data_checksum": data_checksum(split),
        "timing_s": {"load": round(load_s, 3), "train": round(train_s, 3), "evaluate": round(eval_s, 3)},
        "curves": [_clean(c) for c in curves],
    }
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    plot_curves(out / "curves.png", curves, metric, f"{args.agent} on {args.dataset} (seed {args.seed})")

    print(format_table(valid, test))
    print(f"selection metric {metric}, best step {best_step}; train {train_s:.1f}s, evaluate {eval_s:.1f}s")
    print(f"wrote {out / 'results.json'}, {out / 'curves.png'}, {out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
