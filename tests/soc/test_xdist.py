"""The HIL suite sharded over two pytest-xdist workers: a simulation each, their history records,
latency baselines and JUnit suite properties merged, and every process of the run gone at the end."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from xml.etree import ElementTree

import pytest

from nnhil.host import history, latency

pytestmark = pytest.mark.sim
REPO = Path(__file__).resolve().parents[2]


def processes_with(variable):
    """(pid, command) of every live process whose environment has ``variable`` (NAME=value):
    a run's descendants, whatever session or process group they moved to."""
    found = []
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if d.name.isdigit() and variable in (d / "environ").read_bytes().split(b"\0"):
                stat = (d / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
    return found


def test_two_workers_share_a_hil_run(trained, sim_build, tmp_path):
    """The latency test of two model files (copies of the MLP: the path is the same for any
    model), one on each worker: each appends to the run's history and records its baseline in
    one baselines file at the same time."""
    files = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        files.append(str(shutil.copy(trained("mlp").out_dir / "quantized.npz", tmp_path / name)))
    tag = f"NNHIL_XDIST_RUN={uuid.uuid4().hex}"
    baselines, base = tmp_path / "baselines.json", tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/hil/test_inference.py", "-n", "2", "-v",
                        "-p", "no:cacheprovider", "-k", "latency_against_baseline",
                        *(a for f in files for a in ("--model", f)), "--images", "20",
                        "--baselines", str(baselines), "--update-baselines", "--basetemp", str(base),
                        "--junitxml", str(tmp_path / "junit.xml")],
                       cwd=REPO, env=dict(os.environ, **dict([tag.split("=")])), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    passed = re.findall(r"^\[(gw\d+)\] .*?PASSED \S+::test_latency_against_baseline\[(.+)\] *$", r.stdout, re.M)
    assert sorted(model for _, model in passed) == files, r.stdout[-3000:]
    assert sorted(worker for worker, _ in passed) == ["gw0", "gw1"], r.stdout[-3000:]
    records = history.read(base / "history.jsonl")
    assert sorted(rec["model"] for rec in records) == files
    assert all(rec["target"] == "sim" and rec["images"] == 20 for rec in records)
    assert sorted(latency.load(baselines)) == sorted(latency.key(f, "fashion-mnist", "sim") for f in files)
    suite = {p.get("name") for p in ElementTree.parse(tmp_path / "junit.xml").iter("property")}
    assert {"sim_boot_to_answer_s[gw0]", "sim_boot_to_answer_s[gw1]", "target[gw1]"} <= suite, suite
    assert processes_with(tag.encode()) == []
