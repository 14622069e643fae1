"""Argument groups every command shares (one definition, so a new data option reaches them all).

    p = argparse.ArgumentParser(...)
    add_data_args(p)                       # --dataset --data-dir --reward-scheme --data-param --download
                                           # --data-file --columns --sep --protocol
    add_training_args(p)                   # --epochs | --steps, --patience, --set KEY=VALUE
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
        p.add_argument("--dataset", default=None, help=f"source name (default: {dataset}); with --data-file: its name "
                       "(default: the file's stem)")
        p.set_defaults(default_dataset=dataset)
    p.add_argument("--data-dir", default=None, help="data directory (default: $RECGYM_DATA_DIR or ~/.cache/recgym)")
    p.add_argument("--reward-scheme", default=None, help="reward scheme of rating sources ('rating', 'click-purchase')")
    p.add_argument("--data-param", dest="data_params", action="append", default=[], metavar="KEY=VALUE",
                   help="extra argument of the source loader, e.g. n_sessions=500 for synthetic; repeatable")
    p.add_argument("--download", action="store_true", help="download the raw files when missing")
    own = p.add_argument_group("your own data (instead of --dataset)")
    own.add_argument("--data-file", default=None, metavar="PATH",
                     help="an event file: CSV / TSV / any delimiter, or Parquet (recgym.data.read_table)")
    own.add_argument("--columns", default=None, metavar="ROLE=COL,...",
                     help="with --data-file: user=COL,item=COL[,time=COL][,rating=COL][,reward=COL][,kind=COL][,session=COL]")
    own.add_argument("--sep", default=None, help="with --data-file: the delimiter (default: guessed from the first line)")
    p.add_argument("--protocol", choices=("session", "loo"), default=None,
                   help="evaluation protocol (default: the dataset's own; a --data-file: 'session' when it has "
                        "a session column, else 'loo')")


def add_training_args(p: argparse.ArgumentParser, set_help: str = "override a config field",
                      tensorboard: bool = True) -> None:
    """``--epochs`` | ``--steps``, ``--patience N``, ``--set KEY=VALUE`` (repeatable) and ``--tensorboard DIR``."""
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="training epochs of iterative agents")
    length.add_argument("--steps", type=int, default=None, help="training steps of iterative agents (overrides --epochs)")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="early stopping of iterative agents: stop after N validations without a strict improvement "
                        "of the selection metric; --epochs / --steps are then the cap (default: train the full length)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"{set_help} (JSON value, else string); repeatable")
    if tensorboard:
        p.add_argument("--tensorboard", default=None, metavar="DIR",
                       help="write the training curves as TensorBoard events into DIR/<dataset>/<agent>/seed<N> "
                            "(needs the 'tensorboard' extra)")


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~recgym.experiments.job.JobSpec` data fields of parsed :func:`add_data_args` arguments
    (with ``--data-file``: ``dataset`` is the file's stem, the columns parsed and checked here)."""
    out = {"data_dir": args.data_dir, "reward_scheme": args.reward_scheme,
           "data_params": parse_overrides(args.data_params), "download": args.download, "protocol": args.protocol}
    if hasattr(args, "dataset"):
        out["dataset"] = args.dataset or args.default_dataset
    out.update(data_file_kwargs(args))
    return out


def data_file_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``data_file`` / ``columns`` / ``sep`` (and ``dataset`` = the file's stem) of ``--data-file``; ``{}`` without it."""
    from pathlib import Path

    from recgym.data import parse_columns
    from recgym.errors import BadInputError

    if args.data_file is None:
        if args.columns is not None or args.sep is not None:
            raise BadInputError("--columns / --sep go with --data-file")
        return {}
    if args.columns is None:
        raise BadInputError("--data-file needs --columns user=COL,item=COL[,time=COL][,rating=COL][,session=COL]")
    path = Path(args.data_file)
    if not path.is_file():
        raise BadInputError(f"--data-file {path}: no such file")
    columns = parse_columns(args.columns)
    missing = [r for r in ("user", "item") if r not in columns]
    if missing:
        raise BadInputError(f"--columns must name the {' and '.join(missing)} column(s), got {args.columns!r}")
    out = {"data_file": str(path.resolve()), "columns": columns, "sep": args.sep}
    if hasattr(args, "dataset"):
        from recgym.data.registry import REGISTRY

        if args.dataset in REGISTRY:
            raise BadInputError(f"--dataset {args.dataset!r} is a known source; with --data-file it only names the "
                                "data: choose another name or leave it out")
        out["dataset"] = args.dataset or path.stem
    return out


def training_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``epochs`` / ``steps`` / ``patience`` / ``overrides`` (/ ``tensorboard``) of parsed
    :func:`add_training_args` arguments."""
    out = {"epochs": args.epochs, "steps": args.steps, "patience": args.patience, "overrides": parse_overrides(args.overrides)}
    if getattr(args, "tensorboard", None) is not None:
        out["tensorboard"] = args.tensorboard
    return out


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def command_line(prog: str, argv: list[str] | None) -> str:
    """The command as a user would type it (recorded in reports)."""
    return f"{prog} " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


__all__ = ["add_data_args", "add_training_args", "command_line", "data_file_kwargs", "data_kwargs", "split_list", "training_kwargs"]
