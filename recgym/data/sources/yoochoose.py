"""YooChoose / RecSys Challenge 2015: ``rc15`` (the SQN sample) and ``yoochoose`` (all sessions).

Raw (no header): ``yoochoose-clicks.dat`` = ``SessionId,Timestamp,ItemId,Category`` and
``yoochoose-buys.dat`` = ``SessionId,Timestamp,ItemId,Price,Quantity``; timestamps ISO 8601 UTC
(``2014-04-07T10:51:09.277Z``).

Preprocessing: sessions with >= 3 clicks; ``rc15`` samples ``n_sessions`` (200,000) of them
without replacement with ``numpy.random.default_rng(seed)`` (the papers set no seed);
``yoochoose`` keeps them all. Buys of the kept sessions are merged as purchases (r = 1.0; clicks
r = 0.2), events sorted by (session, time), a click before a buy on equal times; items
label-encoded over clicks and buys (sorted raw ids). 26,702 items for rc15 on the full data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.rewards import click_purchase
from recgym.data.sources._common import RawFileError, build_log, encode, read_table, require_file
from recgym.data.session_log import SessionLog

HOW = (
    "The RecSys Challenge 2015 site is gone and there is no official download: get yoochoose-data.7z "
    "(mirrored on Kaggle as 'RecSys Challenge 2015') and put "
    "yoochoose-clicks.dat and yoochoose-buys.dat in this folder."
)
CLICKS = "yoochoose-clicks.dat"
BUYS = "yoochoose-buys.dat"


def raw_files(root: Path, source: str = "rc15") -> list[Path]:
    return [require_file(root / f, source, HOW) for f in (CLICKS, BUYS)]


def _read(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df = read_table(
        path, names=names, kinds={"session": "int", "time": "str", "item": "int"}, only_kinds=True
    )
    ts = pd.to_datetime(df["time"], format="ISO8601", utc=True, errors="coerce")
    bad = ts.isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise RawFileError(f"{path}, line {r + 1}: column 'time' is not an ISO 8601 timestamp: {df['time'].iloc[r]!r}")
    seconds = (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    return df["session"].to_numpy(np.int64), seconds, df["item"].to_numpy(np.int64)


def load_yoochoose(
    root: str | Path, n_sessions: int | None = 200_000, seed: int = 0, min_clicks: int = 3, source: str = "rc15"
) -> SessionLog:
    """Build the rc15 sample (``n_sessions`` sessions) or, with ``n_sessions=None``, the full log.

    If fewer eligible sessions exist than ``n_sessions``, all of them are kept (``meta`` says so).
    """
    root = Path(root)
    cpath, bpath = raw_files(root, source)
    cs, ct, ci = _read(cpath, ["session", "time", "item", "category"])
    bs, bt, bi = _read(bpath, ["session", "time", "item", "price", "quantity"])
    sess, counts = np.unique(cs, return_counts=True)
    eligible = sess[counts >= min_clicks]
    if len(eligible) == 0:
        raise RawFileError(f"{cpath}: no session has >= {min_clicks} clicks")
    if n_sessions is not None:
        if n_sessions < 1:
            raise ValueError(f"n_sessions must be >= 1, got {n_sessions}")
        take = min(int(n_sessions), len(eligible))
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, size=take, replace=False))
    cm = np.isin(cs, eligible)
    bm = np.isin(bs, eligible)
    sessions = np.concatenate([cs[cm], bs[bm]])
    times = np.concatenate([ct[cm], bt[bm]])
    is_buy = np.r_[np.zeros(cm.sum(), bool), np.ones(bm.sum(), bool)]
    items, uniq = encode(np.concatenate([ci[cm], bi[bm]]))
    kinds, rewards = click_purchase(is_buy)
    # build_log sorts by (session, time, row): clicks precede buys on equal times
    return build_log(
        sessions, items, times, kinds, rewards, len(uniq), item_ids=uniq.astype(str), name=source,
        meta={"source": source, "reward_scheme": "click-purchase", "n_sessions_requested": n_sessions,
              "n_sessions_eligible": int((counts >= min_clicks).sum()), "seed": seed},
    )  # fmt: skip
