"""Firmware builds keyed by their content: two checkouts with different firmware sharing one
NNHIL_HOME each build and run their own; deleting one leaves the other's build working, even
against a SoC build made by a venv that is gone; a binary that is not the build recorded
beside it is refused on boot; bad defines are named before anything starts."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from nnhil.host import firmware_build
from nnhil.host.dut import DUT, open_dut
from nnhil.host.firmware import Firmware
from nnhil.host.firmware_abi import MB, FirmwareError

pytestmark = pytest.mark.board

ROOT = Path(__file__).resolve().parents[2]
UNKNOWN_COMMAND = 99
# checkout B's firmware answers an unknown command with another status than A's
A_ANSWER, B_ANSWER = "status = STATUS_BAD_COMMAND;", "status = STATUS_BAD_MODEL;"
BUILD = """
import json, sys
from nnhil.host import firmware_build
print(firmware_build.FIRMWARE_DIR)
print(firmware_build.build_firmware(sys.argv[1], json.loads(sys.argv[2])))
"""


def checkout(where):
    """This checkout's tracked package files copied to ``where/nnhil``: importable as nnhil,
    the package's layout, with nothing of this checkout's (its editable install) in the way."""
    tracked = subprocess.run(["git", "ls-files", "host", "gateware", "training", "firmware"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    tree = where / "nnhil"
    for name in tracked:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    return tree


def build_in(tree, soc_dir, home, defines=None):
    """build_firmware run by the checkout ``tree`` (a process of its own, no site: no editable
    finder of this checkout) with NNHIL_HOME ``home``; the .bin path."""
    env = dict(os.environ, PYTHONPATH=f"{tree.parent}{os.pathsep}{sysconfig.get_paths()['purelib']}",
               NNHIL_HOME=str(home))
    r = subprocess.run([sys.executable, "-S", "-P", "-c", BUILD, str(soc_dir), json.dumps(defines or {})],
                       cwd=tree.parent, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    source, binary = r.stdout.split()
    assert Path(source) == tree / "firmware"               # it built its own sources
    return Path(binary)


def status_of_unknown_command(fw):
    with pytest.raises(FirmwareError, match="command 99 failed: ") as e:
        fw.run(UNKNOWN_COMMAND)
    return str(e.value).split(": ", 1)[1]


@pytest.fixture
def rebooted(firmware):
    """The session's firmware, booted again after the test boots others: the tests after it
    find it serving, in any order."""
    yield firmware
    firmware.boot()


def moved_venv_copy(soc_dir, where):
    """The SoC build's software headers and libraries, as a build made by a venv since deleted
    records them: its variables.mak points into a directory that no longer exists."""
    copy = where / "soc"
    for name in [*firmware_build.generated_headers(soc_dir), *firmware_build.LIBRARIES]:
        src = soc_dir / "software" / name
        (copy / src.relative_to(soc_dir)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, copy / src.relative_to(soc_dir))
    variables = copy / "software" / "include" / "generated" / "variables.mak"
    site = str(Path(firmware_build._variables(soc_dir)["SOC_DIRECTORY"]).parent.parent)   # .../litex/soc
    gone = str(where / "deleted-venv" / "site-packages")
    variables.write_text(variables.read_text().replace(site, gone))
    assert "PICOLIBC_DIRECTORY=" + gone in variables.read_text()
    return copy


def test_two_checkouts_sharing_a_home_each_run_their_own_firmware(rebooted, dut, sims_frozen, tmp_path):
    home, soc_dir = tmp_path / "home", dut.build_dir
    a, b = checkout(tmp_path / "a"), checkout(tmp_path / "b")
    main_c = b / "firmware" / "main.c"
    assert main_c.read_text().count(A_ANSWER) == 1
    main_c.write_text(main_c.read_text().replace(A_ANSWER, B_ANSWER))
    with sims_frozen([dut.sim] if dut.sim else []):       # compiles: the session sim frozen, not spinning
        bin_a, bin_b = build_in(a, soc_dir, home), build_in(b, soc_dir, home)
    assert bin_a.parent != bin_b.parent and {bin_a.parent.parent, bin_b.parent.parent} == {home / "build" / "firmware"}

    answers = {}
    for name, binary in (("a", bin_a), ("b", bin_b)):
        fw = Firmware(rebooted.bridge, binary)
        fw.boot()                                          # refuses a firmware of another build ID
        assert fw.bridge.read_word(fw.mailbox + MB["build_id"]) == firmware_build.build_id(binary)
        answers[name] = status_of_unknown_command(fw)
    assert answers == {"a": "unknown command", "b": "a model the firmware cannot run (its geometry or width)"}
    assert firmware_build.build_id(bin_a) != firmware_build.build_id(bin_b)

    # A's binary with B's record beside it: what starts is not the build recorded
    stale = tmp_path / "stale"
    shutil.copytree(bin_a.parent, stale)
    shutil.copy2(bin_b.parent / firmware_build.RECORD, stale / firmware_build.RECORD)
    with pytest.raises(FirmwareError, match=f"reports build {firmware_build.build_id(bin_a):08x}, but .* "
                                            f"is recorded as build {firmware_build.build_id(bin_b):08x}"):
        Firmware(rebooted.bridge, stale / bin_a.name).boot()

    shutil.rmtree(a.parent)                                # checkout A is deleted
    for f in (home / "build" / "firmware").rglob("*"):     # nothing of it survives in the home
        assert not f.is_file() or str(a).encode() not in f.read_bytes(), f
    with sims_frozen([dut.sim] if dut.sim else []):
        assert build_in(b, soc_dir, home) == bin_b         # B's build: its own, from the cache
        # and a fresh compile of B's, against a SoC build whose venv is gone: B's venv's LiteX is used
        moved = build_in(b, moved_venv_copy(soc_dir, tmp_path), home)
    assert moved.parent.parent == bin_b.parent.parent and moved != bin_b


def test_firmware_defines_reach_the_build_and_bad_ones_are_refused_first(rebooted, dut):
    d = DUT(dut.target, rebooted.bridge, dut.build_dir, firmware_defines={"NNHIL_PROBE": 7})
    binary = d.firmware.binary                              # built and booted: its ID checked
    record = json.loads((binary.parent / firmware_build.RECORD).read_text())
    assert record["key"]["defines"] == ["#define NNHIL_PROBE 7"]
    assert b"#define NNHIL_PROBE 7\n" in (binary.parent / firmware_build.BUILD_HEADER).read_bytes()
    assert binary != firmware_build.build_firmware(dut.build_dir)
    for bad in ({"1st": 1}, {"FW_BUILD_ID": 1}, {"X": 1.5}, {"X": "two\nlines"}):
        with pytest.raises(ValueError, match="firmware define"):
            with open_dut(firmware_defines=bad, sim=object()):     # refused before the sim is touched
                pass
