"""Fault cases of raw data, caches and downloads: silent data problems become a clear error or a
warning naming the file; a failed download leaves nothing behind (no network: fetches are faked)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from pathlib import Path

import pytest

import recgym.data as rd
from recgym.data import download as rdl
from recgym.data.sources import movielens, retailrocket, session_rec
from recgym.errors import EXIT_BAD_INPUT, BadInputError

GENRES = "unknown|0\nAction|1\nComedy|2\n\n"
ITEMS = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Heat (1995)|01-Jan-1995||http://y|0|1|0\n"
RATINGS = "7\t2\t5\t5\n7\t1\t3\t3\n5\t1\t4\t1\n5\t2\t2\t2\n"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("RECGYM_DATA_DIR", raising=False)
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rdl, "fetch_url", _no_network)


def _no_network(url, dest, timeout=60.0):
    raise AssertionError(f"tests must not reach the network ({url})")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1"))
    return path


def _ml100k(root: Path, ratings: str = RATINGS) -> Path:
    _write(root / "u.genre", GENRES)
    _write(root / "u.item", ITEMS)
    return _write(root / "u.data", ratings)


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _publish(monkeypatch, name: str, files: dict[str, bytes], url: str = "https://example.org/x.zip") -> None:
    """Make ``files`` the published release of ``name``: an archive with these members and md5s."""
    members = {f"{name}/{f}": (f, _md5(b)) for f, b in files.items()}
    monkeypatch.setitem(rdl.DOWNLOADS, name, rdl.Remote(archive=url, members=members))


# ------------------------------------------------------------------ negative timestamps
def test_negative_timestamp_in_movielens_names_file_and_line(tmp_path):
    root = tmp_path / "ml-100k"
    _ml100k(root, "7\t2\t5\t5\n7\t1\t3\t-3\n")
    with pytest.raises(BadInputError, match=r"u\.data, line 2: timestamp -3\.0 is negative or not finite") as e:
        movielens.load_ml100k(root)
    assert e.value.code == EXIT_BAD_INPUT


def test_negative_timestamp_in_retailrocket_and_session_rec(tmp_path):
    _write(tmp_path / "rr" / "events.csv", "timestamp,visitorid,event,itemid,transactionid\n1,2,view,3,\n-1,2,view,3,\n")
    with pytest.raises(BadInputError, match=r"events\.csv, line 3: timestamp -1 is negative"):
        retailrocket.load_retailrocket(tmp_path / "rr")
    root = tmp_path / "yc"
    h = "SessionId\tItemId\tTime\n"
    for part, rows in (("train_full", "1\t10\t5.0\n"), ("train_tr", "1\t10\t5.0\n1\t20\t-4.0\n"),
                       ("train_valid", "3\t20\t9.0\n"), ("test", "7\t40\t20.0\n")):
        _write(root / f"x_{part}.txt", h + rows)
    with pytest.raises(BadInputError, match=r"x_train_tr\.txt, line 3: Time -4\.0 is negative"):
        session_rec.load_yoochoose100k(root)


# ------------------------------------------------------------------ published checksums
def test_a_truncated_raw_file_warns_naming_it(tmp_path, monkeypatch):
    root = tmp_path / "ml-100k"
    data = _ml100k(root)
    _publish(monkeypatch, "ml-100k", {f: (root / f).read_bytes() for f in ("u.data", "u.item", "u.genre")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rd.load("ml-100k", tmp_path)  # the published files: silent
    data.write_bytes(data.read_bytes()[: -len("5\t2\t2\t2\n")])  # the last line lost
    with pytest.warns(UserWarning, match=r"ml-100k: raw file\(s\) differ from the published release .*u\.data \(md5 "):
        log = rd.load("ml-100k", tmp_path)
    assert log.n_events == 3  # used as it is


# ------------------------------------------------------------------ stale cache
@pytest.mark.filterwarnings("ignore:recgym. ml-100k. raw file")
def test_a_file_edited_in_place_with_same_size_and_mtime_is_not_served_from_the_cache(tmp_path):
    root = tmp_path / "ml-100k"
    data = _ml100k(root)
    assert rd.load("ml-100k", tmp_path).ratings.tolist() == [4, 2, 3, 5]
    st = data.stat()
    data.write_bytes(RATINGS.replace("7\t2\t5\t5", "7\t2\t1\t5").encode())  # one rating 5 -> 1, same size
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert data.stat().st_size == st.st_size and data.stat().st_mtime_ns == st.st_mtime_ns
    assert rd.load("ml-100k", tmp_path).ratings.tolist() == [4, 2, 3, 1]


# ------------------------------------------------------------------ downloads
def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, b in files.items():
            z.writestr(name, b)
    return buf.getvalue()


def test_a_download_whose_second_member_fails_its_checksum_writes_nothing(tmp_path, monkeypatch):
    good = {"u.data": RATINGS.encode(), "u.item": ITEMS.encode(), "u.genre": GENRES.encode()}
    _publish(monkeypatch, "ml-100k", good)
    served = {**good, "u.item": b"corrupted"}  # the second member is bad
    monkeypatch.setattr(rdl, "fetch_url", lambda url, dest, timeout=60.0: Path(dest).write_bytes(
        _zip({f"ml-100k/{f}": b for f, b in served.items()})))
    root = tmp_path / "data" / "ml-100k"
    with pytest.raises(rdl.ChecksumError, match=r"u\.item in https://example\.org/x\.zip: md5 [0-9a-f]+ != expected "
                                               r"[0-9a-f]+; nothing was written"):
        rd.load("ml-100k", tmp_path / "data", download=True)
    assert not root.exists() and not (tmp_path / "data").exists()  # not even an empty folder
    served["u.item"] = good["u.item"]
    log = rd.load("ml-100k", tmp_path / "data", download=True)
    assert log.n_events == 4 and sorted(p.name for p in root.iterdir()) == ["u.data", "u.genre", "u.item"]


def test_a_failed_fetch_leaves_no_empty_folder_and_keeps_existing_files(tmp_path, monkeypatch):
    def offline(url, dest, timeout=60.0):
        Path(dest).write_bytes(b"partial")
        raise OSError("network is unreachable")

    monkeypatch.setattr(rdl, "fetch_url", offline)
    with pytest.raises(OSError, match="unreachable"):
        rdl.download("ml-1m", tmp_path / "new" / "ml-1m")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "ml-1m"
    _write(existing / "notes.txt", "mine")
    with pytest.raises(OSError):
        rdl.download("ml-1m", existing)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
