"""nnhil as a user gets it: a wheel built from a clean copy of the tracked files, installed with
``-c requirements.txt`` into a fresh venv outside the checkout beside pytest-embedded, running
examples/my-model with plain ``pytest`` on the simulation; then the checkout still builds its
firmware. The venv reuses this checkout's sim build: an installed wheel and a checkout compute
the same build key for the same sources. One venv for the module (pip's cache makes it a matter
of unpacking); its tests share one xdist worker."""
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from nnhil.host import doctor, firmware_build
from nnhil.training import home as nnhil_home

pytestmark = [pytest.mark.sim, pytest.mark.xdist_group("package")]
ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = "pytest-embedded"        # Espressif's pytest plugin: --port, --baud, --build-dir, dut
KEY = ("from nnhil.gateware import buildcache, simsoc, variants; "
       "print(buildcache.build_key('sim', variants.get(variants.DEFAULT).accel, "
       "main_ram_size=simsoc.MAIN_RAM_SIZE)[1])")


def tracked(prefix=""):
    r = subprocess.run(["git", "ls-files", "--", prefix or "."], cwd=ROOT, capture_output=True, text=True,
                       check=True)
    return [n for n in r.stdout.splitlines() if (ROOT / n).is_file()]


def run(cmd, timeout, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The sdist and the wheel (built from the sdist) of a clean copy of the tracked files."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in tracked():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], timeout=300)
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory):
    """A fresh venv outside the checkout with the wheel and pytest-embedded, pinned by requirements.txt."""
    where = tmp_path_factory.mktemp("venv") / "venv"
    assert not where.is_relative_to(ROOT)
    run([sys.executable, "-m", "venv", where], timeout=120)
    run([where / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
         dist[0], EMBEDDED, "-c", ROOT / "requirements.txt"], timeout=900)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_the_wheel_holds_the_package_its_sources_and_no_tests(dist):
    wheel, sdist = dist
    names = zipfile.ZipFile(wheel).namelist()
    for prefix, into in (("firmware/", "nnhil/firmware/"), ("gateware/sim_tcp/", "nnhil/gateware/sim_tcp/")):
        for name in tracked(prefix):
            assert into + name.removeprefix(prefix) in names, f"the wheel lacks {name}"
    assert {"nnhil/__init__.py", "nnhil/__main__.py", "nnhil/host/pytest_plugin.py", "nnhil/host/doctor.py"} <= set(names)
    assert not [n for n in names if "tests/" in n or "conftest" in n or "examples/" in n], names
    assert {n.split("/")[0] for n in names} == {"nnhil", wheel.name.split("-py3")[0] + ".dist-info"}
    out = run([sys.executable, "-m", "twine", "check", "--strict", wheel, sdist], timeout=120)
    assert out.count("PASSED") == 2, out


def test_installed_cli_version_api_and_plugin_beside_pytest_embedded(venv, tmp_path):
    python, bin_ = venv / "bin" / "python", venv / "bin"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert run([bin_ / "nnhil", "--version"], 60, cwd=venv).split() == ["nnhil", version]
    assert run([python, "-m", "nnhil", "--version"], 60, cwd=venv).split() == ["nnhil", version]
    # the public API: a model made, saved, loaded back and run by the integer reference
    out = run([python, "-c", "import nnhil, numpy as np; m = nnhil.IntModel([nnhil.Dense("
               "np.full((2, 3), -128, np.int8), np.array([7, -2**31 + 195840], np.int32), np.ones(2, np.uint16), "
               "np.zeros(2, np.uint8), nnhil.OUTPUT_I32)], (3,)); nnhil.save_model('m.npz', m); "
               "print(nnhil.__file__, nnhil.__version__, nnhil.load_model('m.npz').logits(np.full((1, 3), 255, np.uint8)).tolist(), "
               "nnhil.open_dut.__module__, nnhil.Results.__module__, nnhil.Conv2D.__module__, sep='|')"], 60, cwd=tmp_path)
    file, got, logits, *modules = out.strip().split("|")
    assert Path(file).is_relative_to(venv) and got == version, out
    # 3 * 255 * -128 = -97920, plus the biases (the second's worst case 97920 inside int32)
    assert logits == str([[-97913, -2**31 + 97920]]), out
    assert modules == ["nnhil.host.dut", "nnhil.host.results", "nnhil.training.intmodel"], out
    # both plugins load: each one's options are there, pytest starts
    help_ = run([bin_ / "pytest", "--help"], 120, cwd=venv)
    assert "--nnhil-port=PORT" in help_ and "--nnhil-target={sim,arty}" in help_, help_[-2000:]
    assert "--port=PORT" in help_ and "--build-dir=BUILD_DIR" in help_, help_[-2000:]


SIGTERM_TESTS = """
import signal

def test_before_nnhil_holds_a_target():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

def test_while_it_holds_one(nnhil_dut):
    assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
"""


def test_a_users_project_runs_on_the_sim_and_leaves_the_checkout_building(venv, sim_build, tmp_path):
    """examples/my-model with plain ``pytest``; the ini's nnhil_target and a bad value of it; the
    venv's sim build key is this checkout's (so it builds nothing); after the venv is gone, the
    checkout's own firmware still builds. The venv shares this run's NNHIL_HOME, as a user's
    venvs share theirs: firmware builds are keyed by content in directories of their own, so
    nothing of the deleted venv stays behind for the checkout's build to trip on."""
    bin_ = venv / "bin"
    env = dict(os.environ, PATH=f"{bin_}{os.pathsep}{os.environ['PATH']}", NNHIL_HOME=str(nnhil_home.root()))
    project = shutil.copytree(ROOT / "examples" / "my-model", tmp_path / "my-model")
    key = run([bin_ / "python", "-c", KEY], 120, cwd=project, env=env).strip()
    assert key == sim_build.dir.name.removeprefix("sim-")
    built = (sim_build.dir / "build.json").stat().st_mtime_ns
    run([bin_ / "python", "make_model.py"], 120, cwd=project, env=env)
    out = run([bin_ / "pytest", "-q", "-p", "no:cacheprovider", "-rs"], 900, cwd=project, env=env)
    assert "1 passed" in out, out[-3000:]
    assert (sim_build.dir / "build.json").stat().st_mtime_ns == built       # taken, not rebuilt
    # SIGTERM is the project's own until nnhil holds a target, then a kill unwinds like Ctrl-C
    (project / "test_sigterm.py").write_text(SIGTERM_TESTS)
    out = run([bin_ / "pytest", "-q", "-p", "no:cacheprovider", "test_sigterm.py"], 300, cwd=project, env=env)
    assert "2 passed" in out, out[-3000:]
    (project / "test_sigterm.py").unlink()
    # the ini selects a board: none attached, so the test skips naming the plugin's options
    out = run([bin_ / "pytest", "-q", "-p", "no:cacheprovider", "-rs", "-o", "nnhil_target=arty"], 120,
              cwd=project, env=env)
    assert "1 skipped" in out and "--nnhil-target arty: no board found" in out and "pass --nnhil-port" in out, out
    r = subprocess.run([bin_ / "pytest", "-q", "-p", "no:cacheprovider", "-o", "nnhil_baud=fast"], cwd=project,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR and "nnhil_baud = 'fast' in the ini file: expected int" \
        in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    venv_sources = str(venv)
    shutil.rmtree(venv)
    binary = firmware_build.build_firmware(sim_build.dir)
    assert binary.stat().st_size > 0
    stale = [p for p in firmware_build.root().rglob("*") if p.is_file() and p.suffix in (".d", ".mk", ".json")
             and venv_sources in p.read_text(errors="replace")]
    assert not stale, f"files of the firmware builds that name the deleted venv: {stale}"


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    """The wheel unpacked by pip into a directory of its own (no dependencies: they come from this venv)."""
    target = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", target, dist[0]],
        timeout=300, cwd=target)
    return target


CHECK = """
import importlib, importlib.util, pkgutil, sys
from pathlib import Path
for name in ("training", "gateware", "host", "firmware"):
    assert importlib.util.find_spec(name) is None, f"the package installs a top-level {name!r}"
import nnhil, nnhil.gateware, nnhil.host, nnhil.training
for pkg in (nnhil.training, nnhil.gateware, nnhil.host):     # every module imports from nnhil.*
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
for name in nnhil.__all__:
    getattr(nnhil, name)
import nnhil.gateware.simsoc, nnhil.host.firmware_abi as abi, nnhil.host.firmware_build as fw
root = Path(nnhil.__file__).parent
assert root == Path(sys.argv[1]) / "nnhil" and Path(nnhil.host.__path__[0]).parent == root, root
assert (fw.FIRMWARE_DIR / "main.c").exists() and (fw.FIRMWARE_DIR / "Makefile").exists(), fw.FIRMWARE_DIR
assert (nnhil.gateware.simsoc.SIM_MODULE_DIR / "sim_tcp.c").exists()
print(abi.mailbox_header())
"""


def test_the_installed_package_is_self_contained(installed):
    """Run without site (no editable finder of this checkout) and outside the checkout."""
    site = sysconfig.get_paths()["purelib"]
    r = subprocess.run([sys.executable, "-S", "-P", "-c", CHECK, str(installed)], cwd=installed,
                       env={"PYTHONPATH": f"{installed}:{site}", "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "#define" in r.stdout


def path_without(tool, where):
    """A PATH of symlinks to every executable of this PATH (this venv's first) but ``tool``."""
    where.mkdir()
    for d in [str(Path(sys.executable).parent), *os.environ["PATH"].split(os.pathsep)]:
        for f in Path(d).iterdir() if Path(d).is_dir() else ():
            if f.name != tool and not (where / f.name).exists() and os.access(f, os.X_OK):
                (where / f.name).symlink_to(f)
    return str(where)


def test_doctor_names_a_missing_tool_and_commands_stop_before_work(tmp_path):
    nnhil = Path(sys.executable).parent / "nnhil"
    env = dict(os.environ, PATH=path_without("g++", tmp_path / "bin"), NNHIL_HOME=str(tmp_path / "home"))
    r = subprocess.run([nnhil, "doctor"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line and not line.startswith(" ")}
    assert "MISSING" in lines["g++"] and "ok" in lines["riscv64-unknown-elf-gcc"], r.stdout
    assert "libevent" in r.stdout and "2.1" in lines["libevent"], r.stdout
    board_tool = [] if shutil.which("openFPGALoader") else ["openfpgaloader"]    # not on this CI
    assert r.stdout.rstrip().splitlines()[-1].split() == ["sudo", "apt-get", "install", "-y", "build-essential",
                                                          *board_tool], r.stdout
    # a command that needs it stops first, with the same line, having built (or trained) nothing
    for command in (["build", "--target", "sim"], ["demo"], ["run", "model.npz"]):
        r = subprocess.run([nnhil, *command], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("nnhil: error: missing g++, needed to build and run "
                                                         "the Verilator simulation of the SoC.\n"), (command, r.stderr)
        assert "Install with: sudo apt-get install -y build-essential\n" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "home").exists()
    # the plugin's dut says the same, no traceback from LiteX
    project = shutil.copytree(ROOT / "examples" / "my-model", tmp_path / "my-model")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:labgrid"],
                       cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "missing g++, needed to build and run the Verilator simulation" in r.stdout
    assert "sudo apt-get install -y build-essential" in r.stdout and "Traceback" not in r.stdout, r.stdout[-3000:]
    assert "site-packages/litex" not in r.stdout, r.stdout[-3000:]
    # the Makefile's list is the same declaration's
    make = subprocess.run(["make", "-s", "-n", "system-packages"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert " ".join(doctor.apt_packages()) in make.stdout and "openfpgaloader" not in make.stdout, make.stdout
