"""Do two result JSONs hold the same numbers? Prints every differing value and a count.

    python docs/results/same_numbers.py docs/results/lpi/converged/results.json <fresh-run>/results.json

Keys holding timings (``seconds``, ``*_s``, ``*_time``), folders, the command line or the code
version are skipped: they differ between any two runs. Exit status 0 when every other value is
equal, 1 otherwise.
"""
import json
import sys

SKIP = {"argv", "command", "code_version", "code_versions", "data_file", "dir", "out", "path", "runs"}


def skipped(key) -> bool:
    k = str(key).lower()
    return k in SKIP or k.endswith(("seconds", "_s", "_time"))


def compare(x, y, where: str, tally: dict) -> None:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in x:
            if skipped(k):
                continue
            if k not in y:
                tally["differ"] += 1
                print(f"only in the first: {where}/{k}")
            else:
                compare(x[k], y[k], f"{where}/{k}", tally)
        for k in y:
            if k not in x and not skipped(k):
                tally["differ"] += 1
                print(f"only in the second: {where}/{k}")
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            compare(u, v, f"{where}[{i}]", tally)
    elif x == y:
        tally["same"] += 1
    else:
        tally["differ"] += 1
        print(f"{where}: {x!r} != {y!r}")


if __name__ == "__main__":
    a, b = (json.load(open(f)) for f in sys.argv[1:3])
    tally = {"same": 0, "differ": 0}
    compare(a, b, "", tally)
    print(f"{tally['same']} values equal, {tally['differ']} differ")
    sys.exit(1 if tally["differ"] else 0)
