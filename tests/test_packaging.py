"""The installed distribution has one import namespace: ``recgym`` (with ``recgym.agents`` and
``recgym.envs``), and nothing generic at the top level of site-packages."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_install_has_one_namespace(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("recgym-*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in top if not t.startswith("recgym")} == set(), top

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, cwd=tmp_path)
    assert not (target / "agents").exists() and not (target / "envs").exists()
    # run from an empty folder with the installed copy first on the path: the repository is not importable there
    code = ("import recgym, recgym.agents, recgym.envs, recgym.experiments, gymnasium as gym; "
            "print(recgym.agents.__file__); print(recgym.envs.__file__); "
            "print(gym.spec('recgym/SlateNextK-ML1M-v0').entry_point)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path, env=env)
    agents_file, envs_file, entry = out.stdout.split()
    assert Path(agents_file).is_relative_to(target) and Path(envs_file).is_relative_to(target)
    assert entry.startswith("recgym.envs.")
