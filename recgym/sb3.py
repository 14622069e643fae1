"""Load stable-baselines3 checkpoints without unpickling what the zip holds.

An SB3 ``.zip`` keeps the weights as torch state dicts (``*.pth``, which SB3 loads with
``weights_only=True``) and the rest of the model in a JSON file ``data``, where every value that is
not JSON (spaces, schedules, the policy and buffer classes) is a base64 cloudpickle: unpickling it
runs whatever code the file's author chose. :func:`load_sb3` never unpickles it. It gives SB3's
``load`` a ``custom_objects`` replacement for every pickled entry:

* ``observation_space`` / ``action_space``: the env's (the types recorded in the file must match);
* ``policy_class`` and the buffer classes: looked up by name inside ``stable_baselines3`` /
  ``sb3_contrib`` (the names are in the JSON); the buffers fall back to the algorithm's default;
* learning-rate / clip / exploration schedules: constants read from the JSON (only training uses them).

Any other pickled entry (``policy_kwargs`` holding a class, a custom schedule...) is refused with
the zip and the entry named. A model loaded this way predicts exactly as the saved one (same
weights, same architecture); continuing to *train* it may differ in schedules and ``train_freq``.
``trust_pickle=True`` (or ``RECGYM_TRUST_PICKLE=1`` for the commands) restores SB3's plain
``load``, for files you made yourself.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Sequence

from recgym.errors import BadInputError

__all__ = ["load_sb3", "pickled_entries"]

ALGOS = {"MaskablePPO": "sb3_contrib:MaskablePPO", "PPO": "stable_baselines3:PPO", "DQN": "stable_baselines3:DQN",
         "A2C": "stable_baselines3:A2C"}
_TRUSTED_PACKAGES = ("stable_baselines3.", "sb3_contrib.")
_FAMILY = {"MaskablePPO": "sb3_contrib.common.maskable.", "PPO": "stable_baselines3.common.policies",
           "A2C": "stable_baselines3.common.policies", "DQN": "stable_baselines3.dqn."}
"""Module prefix of each algorithm's policies."""
_CLASSES = ("policy_class", "rollout_buffer_class", "replay_buffer_class")
_SCHEDULES = ("lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule")
_INIT_NAME = re.compile(r"<function (\w+)\.__init__ at ")
_CONSTANT = re.compile(r"ConstantSchedule\(val=([-+0-9.eE]+)\)")


def _read_data(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("data"))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise BadInputError(f"{path}: not a stable-baselines3 checkpoint ({type(e).__name__}: {e})") from None


def pickled_entries(path: str | Path) -> list[str]:
    """Names of the entries of an SB3 zip's ``data`` that SB3 would unpickle on ``load``."""
    return [k for k, v in _read_data(Path(path)).items() if isinstance(v, dict) and ":serialized:" in v]


def _sb3_class(entry: dict[str, Any]) -> type | None:
    """The class a pickled class entry names, if it lives in stable_baselines3 / sb3_contrib."""
    module = entry.get("__module__", "")
    m = _INIT_NAME.search(str(entry.get("__init__", "")))
    if not m or not module.startswith(_TRUSTED_PACKAGES):
        return None
    try:
        cls = getattr(importlib.import_module(module), m.group(1))
    except (ImportError, AttributeError):
        return None
    return cls if isinstance(cls, type) else None


def _schedule(entry: dict[str, Any]) -> Any:
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    if all(isinstance(entry.get(k), (int, float)) for k in ("start", "end", "end_fraction")):
        return LinearSchedule(entry["start"], entry["end"], entry["end_fraction"])
    m = _CONSTANT.search(str(entry.get("value_schedule", "")))
    return FloatSchedule(ConstantSchedule(float(m.group(1)) if m else 0.0))


def _replacements(path: Path, data: dict[str, Any], env: Any) -> dict[str, Any]:
    """``custom_objects`` that replace every pickled entry of ``data``, or ``BadInputError``."""
    out: dict[str, Any] = {}
    hint = "pass trust_pickle=True (RECGYM_TRUST_PICKLE=1) only for a file you made yourself"
    for key, entry in data.items():
        if not (isinstance(entry, dict) and ":serialized:" in entry):
            continue
        if key in ("observation_space", "action_space"):
            if env is None:
                raise BadInputError(f"{path}: loading without unpickling needs the env (for its {key}); {hint}")
            space = getattr(env, key)
            if entry.get(":type:") != str(type(space)):
                raise BadInputError(f"{path}: the model's {key} is {entry.get(':type:')}, the env's is {type(space)}")
            out[key] = space
        elif key in _CLASSES:
            cls = _sb3_class(entry)
            if cls is None and key == "policy_class":
                raise BadInputError(f"{path}: policy_class {entry.get('__init__', '?')!s} from {entry.get('__module__')!r} "
                                    f"is not a stable_baselines3 / sb3_contrib policy; {hint}")
            out[key] = cls  # None = the algorithm's default buffer
        elif key in _SCHEDULES:
            out[key] = _schedule(entry)
        elif key == "train_freq":
            from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

            out[key] = TrainFreq(4, TrainFrequencyUnit.STEP)  # DQN's default; only training reads it
        else:
            raise BadInputError(f"{path}: entry {key!r} ({entry.get(':type:')}) is a pickled object and would run code "
                                f"when loaded; {hint}")
    return out


def load_sb3(path: str | Path, env: Any = None, algos: Sequence[str] = ("MaskablePPO", "PPO", "DQN"),
             trust_pickle: bool | None = None, device: str = "cpu") -> Any:
    """Load an SB3 checkpoint (the first of ``algos`` that fits) without unpickling its ``data``.

    :param env: the env the model will act in (its spaces replace the pickled ones); needed unless
        ``trust_pickle``.
    :param trust_pickle: use SB3's plain ``load`` (unpickles: runs code from the file). ``None`` reads
        ``RECGYM_TRUST_PICKLE`` (``"1"`` = trust).
    :raises BadInputError: naming the zip (and the entry) when it is not a checkpoint, holds a
        pickled entry that has no safe replacement, or fits none of ``algos``.
    """
    path = Path(path)
    if trust_pickle is None:
        trust_pickle = os.environ.get("RECGYM_TRUST_PICKLE", "0") == "1"
    data = _read_data(path)
    custom = None if trust_pickle else _replacements(path, data, env)
    # the policy's module tells the algorithm family: try only those
    module = str(data.get("policy_class", {}).get("__module__", "")) if isinstance(data.get("policy_class"), dict) else ""
    family = [a for a in algos if _FAMILY.get(a, "") and module.startswith(_FAMILY[a])] or list(algos)
    errors = []
    for name in family:
        module, _, attr = ALGOS[name].partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        try:
            return cls.load(path, device=device, custom_objects=custom)
        except Exception as e:  # the checkpoint is of another algorithm: try the next
            errors.append(f"{name}: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    raise BadInputError(f"{path}: cannot load as {'/'.join(family)} ({'; '.join(errors)})")
