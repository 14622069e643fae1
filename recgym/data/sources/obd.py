"""Open Bandit Dataset (ZOZO, Saito et al. 2021): logged bandit feedback with propensities.

Raw layout (as released, small sample and full data alike)::

    obd/{random,bts}/{all,men,women}/{all,men,women}.csv
    obd/{random,bts}/{all,men,women}/item_context.csv

Each csv row is one impression: an unnamed index column, ``timestamp`` (ISO 8601 with UTC
offset), ``item_id`` (the action, dense 0..n-1), ``position`` (1..3), ``click`` (the reward),
``propensity_score`` (the logging policy's probability of the action), ``user_feature_0..3``
(hashed categories) and ``user-item_affinity_*``. ``item_context.csv`` has ``item_id`` and
``item_feature_0`` (numeric) ``..3`` (hashed categories).

Representation chosen: OBD has no user ids, so a row cannot be joined to a user's history; each
row is therefore a **single-event session** (a contextual-bandit round) in time order. ``users``
holds a dense id of the row's hashed user-feature combination (the context; 0..n_contexts-1,
in order of first appearance), ``propensities`` the logging propensity, ``rewards`` the click
(0/1). ``kinds`` is ``KIND_PURCHASE`` for a clicked impression and ``KIND_CLICK`` (a "view")
otherwise, so the purchase metrics of the session protocol score clicked rows. Item "genres"
are the one-hot categorical item features (``item_feature_1..3``). The slot ``position`` and the
affinities are not in a `SessionLog`: :func:`load_obd_frame` returns the full raw frame for
off-policy estimators that need them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.sources._common import RawFileError, build_log, multi_hot, read_table, require_file
from recgym.data.session_log import KIND_CLICK, KIND_PURCHASE, SessionLog

HOW = (
    "The Open Bandit Dataset (CC BY 4.0) is at https://research.zozo.com/data_release/open_bandit_dataset.zip "
    "(full, about 11 GB) and its 10,000-row sample in the obp repository "
    "(https://github.com/st-tech/zr-obp, folder obd/); keep the layout obd/<behavior_policy>/<campaign>/<campaign>.csv."
)
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
USER_FEATURES = tuple(f"user_feature_{j}" for j in range(4))
REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score", *USER_FEATURES)


def _check(behavior_policy: str, campaign: str) -> None:
    if behavior_policy not in POLICIES:
        raise ValueError(f"obd: behavior_policy must be one of {POLICIES}, got {behavior_policy!r}")
    if campaign not in CAMPAIGNS:
        raise ValueError(f"obd: campaign must be one of {CAMPAIGNS}, got {campaign!r}")


def raw_files(root: Path, behavior_policy: str = "random", campaign: str = "all", **_) -> list[Path]:
    _check(behavior_policy, campaign)
    d = root / behavior_policy / campaign
    return [require_file(d / f"{campaign}.csv", "obd", HOW), require_file(d / "item_context.csv", "obd", HOW)]


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    if not first:
        raise RawFileError(f"{path}: file is empty")
    names = first.split(",")
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise RawFileError(f"{path}, line 1: header lacks column(s) {missing} (wrong delimiter? expected ',')")
    names[0] = names[0] or "index"
    return names


def load_obd_frame(root: str | Path, behavior_policy: str = "random", campaign: str = "all") -> pd.DataFrame:
    """The validated raw rows of one OBD file as a DataFrame (all columns, ``timestamp`` as UTC seconds)."""
    path = raw_files(Path(root), behavior_policy, campaign)[0]
    names = _header(path)
    kinds = {"timestamp": "str", "item_id": "int", "position": "int", "click": "int", "propensity_score": "float"}
    kinds |= dict.fromkeys(USER_FEATURES, "str")
    df = read_table(path, names=names, kinds=kinds, skip_header=True)
    if len(df) == 0:
        raise RawFileError(f"{path}: file has no rows")
    ts = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True, errors="coerce")
    checks = [
        ("timestamp", ts.isna().to_numpy(), "an ISO 8601 timestamp"),
        ("click", ~df["click"].isin((0, 1)).to_numpy(), "0 or 1"),
        ("propensity_score", ~((df["propensity_score"] > 0) & (df["propensity_score"] <= 1)).to_numpy(), "in (0, 1]"),
        ("item_id", (df["item_id"] < 0).to_numpy(), ">= 0"),
    ]
    for col, bad, what in checks:
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise RawFileError(f"{path}, line {r + 2}: column {col!r} must be {what}, got {df[col].iloc[r]!r}")
    df["timestamp"] = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df


def load_obd(root: str | Path, behavior_policy: str = "random", campaign: str = "all") -> SessionLog:
    """One single-event session per logged impression (10,000 on the sample files)."""
    root = Path(root)
    _, cpath = raw_files(root, behavior_policy, campaign)
    df = load_obd_frame(root, behavior_policy, campaign)
    ctx = read_table(cpath, names=_header_ctx(cpath), kinds={"item_id": "int"}, skip_header=True)
    n_items = len(ctx)
    if not np.array_equal(np.sort(ctx["item_id"].to_numpy()), np.arange(n_items)):
        raise RawFileError(f"{cpath}: item_id must be 0..{n_items - 1}, each once")
    too_big = df["item_id"].to_numpy() >= n_items
    if too_big.any():
        r = int(np.flatnonzero(too_big)[0])
        raise RawFileError(f"{root / behavior_policy / campaign / (campaign + '.csv')}, line {r + 2}: item_id {df['item_id'].iloc[r]} not in {cpath.name} ({n_items} items)")
    ctx = ctx.sort_values("item_id")
    cat_cols = [c for c in ctx.columns if c.startswith("item_feature_") and c != "item_feature_0"]
    lists = [[f"{c}={v}" for c, v in zip(cat_cols, row)] for row in ctx[cat_cols].astype(str).to_numpy()]
    genres, names = multi_hot(lists)
    # context id = the hashed user-feature combination, numbered in order of first appearance
    users = df.groupby(list(USER_FEATURES), sort=False).ngroup().to_numpy(np.int64)
    n_contexts = int(users.max()) + 1
    click = df["click"].to_numpy(np.int64)
    n = len(df)
    return build_log(
        np.arange(n), df["item_id"].to_numpy(np.int64), df["timestamp"].to_numpy(np.float64),
        np.where(click == 1, KIND_PURCHASE, KIND_CLICK).astype(np.int8), click.astype(np.float32), n_items,
        users=users, propensities=df["propensity_score"].to_numpy(np.float32), genres=genres, genre_names=names,
        item_ids=np.arange(n_items).astype(str), name=f"obd-{behavior_policy}-{campaign}",
        meta={"source": "obd", "behavior_policy": behavior_policy, "campaign": campaign, "reward_scheme": "click",
              "n_contexts": n_contexts},
    )  # fmt: skip


def _header_ctx(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        names = fh.readline().rstrip("\r\n").split(",")
    if "item_id" not in names:
        raise RawFileError(f"{path}, line 1: header lacks column 'item_id' (wrong delimiter? expected ',')")
    names[0] = names[0] or "index"
    return names
