"""Argument groups every command shares (one definition, so a new data option reaches them all).

    p = argparse.ArgumentParser(...)
    add_data_args(p)                       # --dataset --data-dir --reward-scheme --data-param --download
    add_training_args(p)                   # --epochs | --steps, --set KEY=VALUE
    args = p.parse_args(argv)
    spec = JobSpec(agent=..., **data_kwargs(args), **training_kwargs(args))
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from recgym.experiments.job import parse_overrides


def add_data_args(p: argparse.ArgumentParser, dataset: str | None = "synthetic") -> None:
    """``--dataset`` (default ``dataset``; ``None``: not added), ``--data-dir``, ``--reward-scheme``,
    ``--data-param KEY=VALUE`` (repeatable), ``--download``."""
    if dataset is not None:
        p.add_argument("--dataset", default=dataset, help=f"source name (default: {dataset})")
    p.add_argument("--data-dir", default=None, help="data directory (default: $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--reward-scheme", default=None, help="reward scheme of rating sources ('rating', 'click-purchase')")
    p.add_argument("--data-param", dest="data_params", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the source loader, e.g. n_sessions=500 for synthetic; repeatable")
    p.add_argument("--download", action="store_true", help="download the raw files when missing")


def add_training_args(p: argparse.ArgumentParser, set_help: str = "override a config field") -> None:
    """``--epochs`` | ``--steps`` and ``--set KEY=VALUE`` (repeatable)."""
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="training epochs of iterative agents")
    length.add_argument("--steps", type=int, default=None, help="training steps of iterative agents (overrides --epochs)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"{set_help} (JSON value, else string); repeatable")


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~recgym.experiments.job.JobSpec` data fields of parsed :func:`add_data_args` arguments."""
    out = {"data_dir": args.data_dir, "reward_scheme": args.reward_scheme,
           "data_params": parse_overrides(args.data_params), "download": args.download}
    if hasattr(args, "dataset"):
        out["dataset"] = args.dataset
    return out


def training_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``epochs`` / ``steps`` / ``overrides`` of parsed :func:`add_training_args` arguments."""
    return {"epochs": args.epochs, "steps": args.steps, "overrides": parse_overrides(args.overrides)}


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def command_line(prog: str, argv: list[str] | None) -> str:
    """The command as a user would type it (recorded in reports)."""
    return f"{prog} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


__all__ = ["add_data_args", "add_training_args", "command_line", "data_kwargs", "split_list", "training_kwargs"]
