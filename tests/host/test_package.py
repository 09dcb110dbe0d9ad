"""nnhil installed as a package (not this checkout): its modules under the nnhil namespace,
its data files (firmware and sim module sources) inside it, no top-level names of its own."""
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import importlib, importlib.util, pkgutil, sys
from pathlib import Path
for name in ("training", "gateware", "host"):
    assert importlib.util.find_spec(name) is None, f"the package installs a top-level {name!r}"
import nnhil.gateware, nnhil.host, nnhil.training
for pkg in (nnhil.training, nnhil.gateware, nnhil.host):     # every module imports from nnhil.*
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
import nnhil.gateware.simsoc, nnhil.host.firmware_abi as abi, nnhil.host.firmware_build as fw
root = Path(nnhil.host.__path__[0]).parent
assert root == Path(sys.argv[1]) / "nnhil", root
assert (fw.FIRMWARE_DIR / "main.c").exists() and (fw.FIRMWARE_DIR / "Makefile").exists(), fw.FIRMWARE_DIR
assert (nnhil.gateware.simsoc.SIM_MODULE_DIR / "sim_tcp.c").exists()
print(abi.mailbox_header())
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip install of the checkout's tracked files (a clean clone's), into a directory of its own."""
    source, target = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("site")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(source)], check=True, timeout=300, cwd=target)
    return target


def test_the_installed_package_is_self_contained(installed):
    """Run without site (no editable finder of this checkout) and outside the checkout."""
    site = sysconfig.get_paths()["purelib"]
    r = subprocess.run([sys.executable, "-S", "-P", "-c", CHECK, str(installed)], cwd=installed,
                       env={"PYTHONPATH": f"{installed}:{site}", "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "#define" in r.stdout
