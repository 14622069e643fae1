"""``yoochoose-100k``: the YooChoose click sample as prepared by the session-rec framework.

Raw: four TAB-separated files with header ``SessionId  ItemId  Time`` (unix seconds, float):
``<prefix>_train_full.txt``, ``<prefix>_test.txt`` and the sub-split of train_full
``<prefix>_train_tr.txt`` + ``<prefix>_train_valid.txt`` (prefix ``yoochoose-clicks-100k``).

Clicks only (no buy events): every event is a click with reward 0.2 (the click-purchase
scheme's click reward, so rewards are comparable with rc15; there are no purchase events).
The catalogue is every item of any of the four files (sorted raw ids), shared by all parts.
``load`` gives train_full + test as one log; the split is the framework's own: train =
train_tr, valid = train_valid, test = test (protocol ``"session"``).
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
)
from recgym.data.session_log import SessionLog

HOW = (
    "Get it with recgym.data.load('yoochoose-100k', download=True) or from the session-rec repository "
    "(https://github.com/rn5l/session-rec, data/rsc15/prepared/yoochoose-clicks-100k_*.txt) into this folder."
)
PARTS = ("train_full", "test", "train_tr", "train_valid")
HEADER = ("SessionId", "ItemId", "Time")


def raw_files(root: Path, **_) -> list[Path]:
    """The four files ``*_{train_full,test,train_tr,train_valid}.txt`` (exactly one each)."""
    out = []
    for part in PARTS:
        found = sorted(root.glob(f"*_{part}.txt"))
        if not found:
            raise FileNotFoundError(
                f"yoochoose-100k: raw file '*_{part}.txt' (e.g. yoochoose-clicks-100k_{part}.txt) not found in {root}/ . {HOW}"
            )
        if len(found) > 1:
            raise RawFileError(f"yoochoose-100k: several files match '*_{part}.txt' in {root}: {[f.name for f in found]}")
        out.append(found[0])
    return out


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    check_header(path, HEADER, "\t")
    df = read_table(path, names=HEADER, kinds={"SessionId": "int", "ItemId": "int", "Time": "float"}, sep="\t", skip_header=True)
    if len(df) == 0:
        raise RawFileError(f"{path}: file has no events")
    check_timestamps(df["Time"].to_numpy(np.float64), str(path), lambda r: r + 2, "Time")
    return df["SessionId"].to_numpy(np.int64), df["ItemId"].to_numpy(np.int64), df["Time"].to_numpy(np.float64)


def load_parts(root: str | Path, parts: tuple[str, ...] = PARTS) -> dict[str, SessionLog]:
    """``{part: SessionLog}`` for the requested parts, all over the same catalogue."""
    files = dict(zip(PARTS, raw_files(Path(root))))
    raw = {p: _read(f) for p, f in files.items()}
    catalogue = np.unique(np.concatenate([r[1] for r in raw.values()]))
    out = {}
    for p in parts:
        s, i, t = raw[p]
        items, _ = encode(i, catalogue)
        kinds, rewards = click_purchase(np.zeros(len(i), bool))
        out[p] = build_log(
            s, items, t, kinds, rewards, len(catalogue), item_ids=catalogue.astype(str), name=f"yoochoose-100k:{p}",
            meta={"source": "yoochoose-100k", "reward_scheme": "click-purchase", "file": files[p].name},
        )  # fmt: skip
    return out


def load_yoochoose100k(root: str | Path) -> SessionLog:
    """train_full + test as one log (83,846 clicks, 21,210 sessions, 2,933 items on the real data)."""
    files = dict(zip(PARTS, raw_files(Path(root))))
    raw = {p: _read(f) for p, f in files.items()}
    catalogue = np.unique(np.concatenate([r[1] for r in raw.values()]))
    s = np.concatenate([raw["train_full"][0], raw["test"][0]])
    overlap = np.intersect1d(raw["train_full"][0], raw["test"][0])
    if len(overlap):
        raise RawFileError(f"yoochoose-100k: session {overlap[0]} appears in both {files['train_full'].name} and {files['test'].name}")
    i = np.concatenate([raw["train_full"][1], raw["test"][1]])
    t = np.concatenate([raw["train_full"][2], raw["test"][2]])
    items, _ = encode(i, catalogue)
    kinds, rewards = click_purchase(np.zeros(len(i), bool))
    return build_log(
        s, items, t, kinds, rewards, len(catalogue), item_ids=catalogue.astype(str), name="yoochoose-100k",
        meta={"source": "yoochoose-100k", "reward_scheme": "click-purchase"},
    )  # fmt: skip
