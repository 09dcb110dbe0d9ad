"""The files the workers of ``pytest -n`` (and several nnhil runs) write at once: the run history
and the latency baselines. Real processes, started together, each writing many records."""
import json
import subprocess
import sys
from pathlib import Path

from nnhil.host import history, latency

REPO = Path(__file__).resolve().parents[2]
WRITERS = 4


def at_once(code, *args, timeout=60):
    """Run ``code`` in WRITERS Python processes (sys.argv[1] is its number 0..WRITERS-1), released
    together once every one has started: they write at the same time."""
    procs = [subprocess.Popen([sys.executable, "-c", f"import sys; sys.stdin.readline()\n{code}",
                               str(k), *map(str, args)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(WRITERS)]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-2000:]


def test_concurrent_appends_keep_every_record_whole_and_in_order(tmp_path):
    """Records of 15 kB (larger than a pipe's atomic write, and than Python's file buffer), as
    fast as they go: the commit is given, not asked of git for each."""
    path, n = tmp_path / "history.jsonl", 200
    at_once("from host import history\n"
            "history.git_commit = lambda: 'c0ffee'\n"
            "w, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
            "for i in range(n):\n"
            "    history.append('pytest', {'writer': w, 'seq': i, 'pad': [w] * 5_000}, path)\n", path, n)
    records = history.read(path)
    assert len(records) == WRITERS * n
    for w in range(WRITERS):
        assert [r["seq"] for r in records if r["writer"] == w] == list(range(n))
    assert all(r["pad"] == [r["writer"]] * 5_000 for r in records)


def test_concurrent_baseline_updates_keep_every_baseline(tmp_path):
    """Each writer records its own models' baselines in one file: none is lost."""
    path, n = tmp_path / "latency.json", 40
    path.write_text("{}\n")
    at_once("from host import latency\n"
            "w, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])\n"
            "for i in range(n):\n"
            "    latency.update(f'model {w}.{i}', {'program': [], 'config': {}}, {'accelerator_cycles': i}, path)\n",
            path, n)
    data = json.loads(path.read_text())
    assert sorted(data) == sorted(f"model {w}.{i}" for w in range(WRITERS) for i in range(n))
    assert all(data[f"model {w}.{i}"]["measured"] == {"accelerator_cycles": i}
               for w in range(WRITERS) for i in range(n))
    assert latency.load(path) == data
