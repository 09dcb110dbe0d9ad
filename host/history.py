"""Run history: every demo and HIL run appends one JSON line; ``nnhil report`` plots them.

The history lives in ``history.jsonl`` of the output directory (``training.home.out()``
by default; append-only: nothing removes a line). Each record carries when, which commit, which target and model, and the figures.
"""
import datetime
import json
import subprocess
from pathlib import Path

from training import home

REPO = Path(__file__).resolve().parent.parent
NAME = "history.jsonl"


def default_path():
    return home.out() / NAME


def git_commit():
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def append(kind, record, path=None):
    path = Path(path or default_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "kind": kind, **record}
    with open(path, "a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")
    return line


def read(path=None):
    path = Path(path or default_path())
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{n} is not a JSON record; fix or remove that line") from None
    return records
