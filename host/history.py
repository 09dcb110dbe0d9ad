"""Run history: every demo and HIL run appends one JSON line; ``nnhil report`` plots them.

The history lives in ``history.jsonl`` of the output directory (``training.home.out()``
by default; append-only: nothing removes a line). Each record carries when, which commit,
which target and model, and the figures. Several processes may append to one history at
once (the workers of ``pytest -n``): each record is one write under the history's lock, so
records are neither lost nor interleaved.
"""
import datetime
import json
import os
import subprocess
from pathlib import Path

from nnhil.training import filelock, home

REPO = Path(__file__).resolve().parent.parent
NAME = "history.jsonl"
LOCK_TIMEOUT_S = 30           # an append holds the lock for one write
# Keys renamed since records were first written, old: new. Lines are never rewritten (the history
# is append-only), so read() gives an old record the new names.
RENAMED = {"cpu_cycles_per_inference": "cpu_plain_cycles_per_inference"}   # it always held the plain C's


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
    data = (json.dumps(line, sort_keys=True) + "\n").encode()
    with filelock.held(lock_of(path), LOCK_TIMEOUT_S, f"appending to {path}"):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
    if written != len(data):
        raise OSError(f"{path}: wrote {written} of the record's {len(data)} bytes (disk full?)")
    return line


def lock_of(path):
    """The lock file beside a history: history.jsonl.lock."""
    return Path(path).with_name(Path(path).name + ".lock")


def upgrade(record):
    """``record`` with today's key names (:data:`RENAMED`); where both are there, the new one's value."""
    return {RENAMED.get(k, k): v for k, v in record.items() if RENAMED.get(k) not in record}


def read(path=None):
    """Every record of a history, in the order appended, with today's key names (:func:`upgrade`)."""
    path = Path(path or default_path())
    if not path.exists():
        return []
    with filelock.held(lock_of(path), LOCK_TIMEOUT_S, f"reading {path}"):
        text = path.read_text()          # whole records only: an append is under the same lock
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            records.append(upgrade(json.loads(line)))
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{n} is not a JSON record; fix or remove that line") from None
    return records
