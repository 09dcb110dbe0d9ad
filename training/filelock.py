"""An exclusive lock between processes, on a lock file, with a bounded wait.

It is an ``fcntl.flock`` lock: the kernel drops it when its holder exits, however it exits
(a crash, SIGKILL), so a lock is never left stale. The lock file records who holds it (process,
command, since when, what for), so a waiter can say whom it waits for, and whether that one
is gone.
"""
import contextlib
import datetime
import fcntl
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

POLL_S = (0.001, 0.1)         # the wait between tries: from a short lock's to a long one's
RECORD_BYTES = 512            # the holder's record, padded: written in place, never truncated


class LockTimeout(TimeoutError):
    """The lock stayed held longer than the wait allowed."""


def holder(path):
    """The record the lock's current (or last) holder wrote: {"pid", "command", "since", "for"}."""
    try:
        return json.loads(Path(path).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}


def describe(record):
    """'process 123 (python -m pytest, since 00:12:03 UTC, training X)', or 'an unknown process'."""
    if not record.get("pid"):
        return "an unknown process"
    return (f"process {record['pid']} ({record.get('command', '?')}, since {record.get('since', '?')}, "
            f"{record.get('for', '?')})")


def alive(pid):
    """Whether process ``pid`` is running (False for no pid, and for a zombie: it has exited)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _try(fd):
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _record(purpose):
    record = json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:200], "for": purpose[:200],
                         "since": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S UTC")})
    return record.encode()[:RECORD_BYTES].ljust(RECORD_BYTES)


@contextlib.contextmanager
def held(path, timeout, purpose):
    """Hold the lock at ``path`` for the block; wait at most ``timeout`` seconds for it.

    Yields the record of the holder it waited for, or None if the lock was free at once.
    Raises LockTimeout naming the holder when the wait runs out.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited_for = None
        if not _try(fd):
            waited_for = holder(path)
            log.info(f"waiting up to {timeout:.0f} s for {describe(waited_for)} to release {path}")
            deadline, pause = time.monotonic() + timeout, POLL_S[0]
            while not _try(fd):
                if time.monotonic() > deadline:
                    raise LockTimeout(f"{path} is still held by {describe(holder(path))} after {timeout:.1f} s "
                                      f"of waiting to use it for {purpose}; if that process hangs, stop it")
                time.sleep(pause)
                pause = min(2 * pause, POLL_S[1])
        os.pwrite(fd, _record(purpose), 0)
        yield waited_for
    finally:
        os.close(fd)              # closing the file releases the lock
