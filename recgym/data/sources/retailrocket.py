"""RetailRocket e-commerce events (``events.csv``), preprocessed as in SQN / SA2C / PRL / CCQL.

Raw: header ``timestamp,visitorid,event,itemid,transactionid``; ``timestamp`` in milliseconds;
``event`` in {view, addtocart, transaction}.

Preprocessing: drop ``transaction`` rows; session = visitor; keep sessions with more than 2
events, then items with more than 2 events (one pass, so a few sessions end shorter than 3;
sessions left empty are dropped); view = click (r = 0.2), addtocart = purchase (r = 1.0);
events sorted by time inside each session (stable on file order); sessions in visitor-id
order; items label-encoded (sorted raw ids). 70,852 items on the full data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recgym.data.rewards import click_purchase
from recgym.data.sources._common import (
    RawFileError,
    build_log,
    check_header,
    check_timestamps,
    encode,
    read_table,
    require_file,
)
from recgym.data.session_log import SessionLog

HOW = (
    "RetailRocket has no direct download (Kaggle, login required): get events.csv from "
    "https://www.kaggle.com/datasets/retailrocket/ecommerce-dataset and put it in this folder."
)
HEADER = ("timestamp", "visitorid", "event", "itemid", "transactionid")
EVENTS = ("view", "addtocart", "transaction")


def raw_files(root: Path, **_) -> list[Path]:
    return [require_file(root / "events.csv", "retailrocket", HOW)]


def load_retailrocket(root: str | Path, min_session: int = 3, min_item: int = 3) -> SessionLog:
    """Build the RetailRocket log. ``min_session``/``min_item``: keep sessions / items with at least
    that many events (the papers' ">2" is the default 3)."""
    path = require_file(Path(root) / "events.csv", "retailrocket", HOW)
    check_header(path, HEADER, ",")
    df = read_table(
        path,
        names=HEADER,
        kinds={"timestamp": "int", "visitorid": "int", "event": "category", "itemid": "int"},
        skip_header=True,
    )
    event = df["event"]
    unknown = ~event.isin(EVENTS).to_numpy()
    if unknown.any():
        r = int(np.flatnonzero(unknown)[0])
        raise RawFileError(f"{path}, line {r + 2}: unknown event {event.iloc[r]!r} (expected one of {EVENTS})")
    check_timestamps(df["timestamp"].to_numpy(np.int64), str(path), lambda r: r + 2)
    is_cart = (event == "addtocart").to_numpy()
    keep = (event != "transaction").to_numpy()
    ts = df["timestamp"].to_numpy(np.int64)[keep]
    visitor = df["visitorid"].to_numpy(np.int64)[keep]
    item = df["itemid"].to_numpy(np.int64)[keep]
    is_cart = is_cart[keep]
    # sessions with > 2 events, then items with > 2 events among those (one pass, as the papers)
    vcode, _ = encode(visitor)
    m = np.bincount(vcode)[vcode] >= min_session
    icode, _ = encode(item[m])
    m[m] = np.bincount(icode)[icode] >= min_item
    if not m.any():
        raise RawFileError(f"{path}: no events left after filtering (sessions >= {min_session}, items >= {min_item} events)")
    items, uniq = encode(item[m])
    kinds, rewards = click_purchase(is_cart[m])
    return build_log(
        visitor[m], items, ts[m] / 1000.0, kinds, rewards, len(uniq),
        item_ids=uniq.astype(str), name="retailrocket",
        meta={"source": "retailrocket", "reward_scheme": "click-purchase"},
    )  # fmt: skip
