"""Downloads of raw source files from their owners' official addresses, checksum-verified.

Only sources with a stable public address and a known checksum are fetched (MovieLens from
GroupLens, the yoochoose-100k sample from the session-rec repository at a pinned commit).
Every file is fetched into a staging folder and verified (md5); the files are renamed into place
only when all of them match, so a failed or corrupt download leaves nothing behind. The network is
reached only through :func:`fetch_url` (tests replace it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from recgym.data.io import file_digest
from recgym.errors import BadInputError

_SESSION_REC = (
    "https://raw.githubusercontent.com/rn5l/session-rec/5dcd583cbd8d44703a5248b9a308945f24b91390/data/rsc15/prepared/"
)


@dataclass(frozen=True)
class Remote:
    """What to fetch for one source.

    ``archive``: a zip URL whose ``members`` (member path -> (file name, md5)) are extracted;
    otherwise ``files`` maps file name -> (URL, md5) and each is fetched directly.
    """

    archive: str | None = None
    members: dict[str, tuple[str, str]] = field(default_factory=dict)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)


DOWNLOADS: dict[str, Remote] = {
    "ml-100k": Remote(
        archive="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        members={
            "ml-100k/u.data": ("u.data", "6e47046882bad158b0efbb84cd5cb987"),
            "ml-100k/u.item": ("u.item", "c9e7f390115d79079537301d5204f3f7"),
            "ml-100k/u.genre": ("u.genre", "a7578bdb37758741ae9429d2c736af18"),
            "ml-100k/u.user": ("u.user", "1b53539edc13caad0282c8500608a319"),
        },
    ),
    "ml-1m": Remote(
        archive="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        members={
            "ml-1m/ratings.dat": ("ratings.dat", "a89aa3591bc97d6d4e0c89459ff39362"),
            "ml-1m/movies.dat": ("movies.dat", "ef9fd9ff8d1b33faf73e2122c371e910"),
            "ml-1m/users.dat": ("users.dat", "681c0711d0d4548cd3d4718a49c2dcd8"),
        },
    ),
    "yoochoose-100k": Remote(
        files={
            f"yoochoose-clicks-100k_{part}.txt": (f"{_SESSION_REC}yoochoose-clicks-100k_{part}.txt", md5)
            for part, md5 in (
                ("train_full", "28a5217a9a999419ca20c9999b191910"),
                ("test", "d747ead0f66a2712b9b3d3b49447d79b"),
                ("train_tr", "a3e9a37c51c1198009a7634d3bd66eca"),
                ("train_valid", "9e5fe8a18e64d875fce2ffa06d990c58"),
            )
        }
    ),
}


class ChecksumError(BadInputError):
    """A downloaded (or extracted) file does not have the published checksum."""


def fetch_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Stream ``url`` into ``dest`` (the only function here that touches the network)."""
    req = urllib.request.Request(url, headers={"User-Agent": "recgym"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as out:
        shutil.copyfileobj(resp, out, length=1 << 20)


def _md5_copy(src, dst: Path) -> str:
    h = hashlib.md5()
    with open(dst, "wb") as out:
        while block := src.read(1 << 20):
            h.update(block)
            out.write(block)
    return h.hexdigest()


def _verified(tmp: Path, expected: str, name: str, url: str) -> None:
    got = file_digest(tmp, "md5")
    if got != expected:
        raise ChecksumError(f"{name} from {url}: md5 {got} != expected {expected}; nothing was written")


def published_md5s(name: str) -> dict[str, str]:
    """``{file name: published md5}`` of the raw files of a downloadable source (else ``{}``)."""
    remote = DOWNLOADS.get(name)
    if remote is None:
        return {}
    return {**{f: m for f, m in remote.members.values()}, **{f: m for f, (_, m) in remote.files.items()}}


def download(name: str, root: str | Path) -> list[Path]:
    """Fetch the raw files of source ``name`` into folder ``root``; return the written paths.

    All-or-nothing: every missing file is fetched into a staging folder inside ``root`` and
    verified there; only when all of them match their published md5 are they moved into place.
    On any failure nothing is kept, and a ``root`` that this call created is removed again.
    Files already present with the right checksum are kept. Raises ``ValueError`` for a source
    that cannot be downloaded and ``ChecksumError`` on a mismatch.
    """
    if name not in DOWNLOADS:
        raise ValueError(f"source {name!r} has no automatic download (downloadable: {sorted(DOWNLOADS)})")
    remote = DOWNLOADS[name]
    root = Path(root)
    created = [p for p in (root, *root.parents) if not p.exists()]
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmpdir:
            staged = _fetch_all(remote, root, Path(tmpdir))
            for fname in staged:
                os.replace(Path(tmpdir) / fname, root / fname)
    except BaseException:
        for d in created:  # innermost first; only folders left empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return [root / f for f in staged]


def _fetch_all(remote: Remote, root: Path, stage: Path) -> list[str]:
    """Fetch and verify every file missing from ``root`` into ``stage``; return their names."""
    staged: list[str] = []
    if remote.archive is not None:
        wanted = {m: v for m, v in remote.members.items() if not _ok(root / v[0], v[1])}
        if wanted:
            zpath = stage / (".archive-" + Path(remote.archive).name)
            fetch_url(remote.archive, zpath)
            try:
                zf = zipfile.ZipFile(zpath)
            except zipfile.BadZipFile:
                raise ChecksumError(f"{remote.archive}: the download is not a valid zip archive (truncated?); nothing was written") from None
            with zf:
                for member, (fname, md5) in wanted.items():
                    if member not in zf.namelist():
                        raise ChecksumError(f"{remote.archive}: archive has no member {member!r}; nothing was written")
                    with zf.open(member) as src:
                        got = _md5_copy(src, stage / fname)
                    if got != md5:
                        raise ChecksumError(f"{fname} in {remote.archive}: md5 {got} != expected {md5}; nothing was written")
                    staged.append(fname)
            zpath.unlink()
    for fname, (url, md5) in remote.files.items():
        if _ok(root / fname, md5):
            continue
        fetch_url(url, stage / fname)
        _verified(stage / fname, md5, fname, url)
        staged.append(fname)
    return staged


def _ok(path: Path, md5: str) -> bool:
    if not path.is_file():
        return False
    return file_digest(path, "md5") == md5
