"""gateware.faults: the fault build's sites, and the ordinary build left exactly as it was.

Whether each fault is caught is the selftest's business (tests/host/test_selftest.py).
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnhil.gateware import faults
from nnhil.gateware.layout import AccelConfig
from nnhil.gateware.standalone import Standalone

REPO = Path(__file__).resolve().parents[2]
GATEWARE = REPO / "gateware"
# The commit the fault sites were added on: its accelerator Verilog is the ordinary build's.
BEFORE_FAULTS = "9450802c07e31a44503a99c671613dc0484a7bd9"
SMALL = AccelConfig(lanes=8, weight_words=256, bias_entries=64, act_bytes=28, logit_words=20, max_layers=3)

# One Verilog per process: Migen's names of clashing signals depend on what the process
# elaborated before.
GENERATE = """
import sys
sys.path.insert(0, sys.argv[1])
from nnhil.gateware import standalone
from nnhil.gateware.layout import AccelConfig
assert standalone.__file__.startswith(sys.argv[1]), standalone.__file__
cfg = AccelConfig(**eval(sys.argv[2]))
sys.stdout.write(standalone.Standalone(cfg).verilog("top"))
"""


def _verilog(root, cfg):
    """The standalone accelerator's Verilog from the tree at ``root`` (a dir holding nnhil/),
    without LiteX's header (it has the date and the commit)."""
    out = subprocess.run([sys.executable, "-c", GENERATE, str(root), repr(cfg.to_dict())], cwd=root,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("//"))


@pytest.mark.parametrize("cfg", [SMALL, AccelConfig()], ids=["p8", "p64"])
def test_ordinary_build_is_unchanged(tmp_path, cfg):
    """faults=False generates byte for byte the Verilog of the commit before the fault sites."""
    if subprocess.run(["git", "cat-file", "-e", BEFORE_FAULTS], cwd=REPO).returncode:
        pytest.fail(f"commit {BEFORE_FAULTS} is not in {REPO}'s history: this test needs the git clone")
    before = tmp_path / "before"
    (before / "nnhil").mkdir(parents=True)
    archive = subprocess.run(["git", "archive", BEFORE_FAULTS, "gateware", "training"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(before / "nnhil")], input=archive, check=True, timeout=60)
    (before / "nnhil" / "__init__.py").write_text("")
    now = tmp_path / "now"
    now.mkdir()
    (now / "nnhil").symlink_to(REPO)
    assert _verilog(now, cfg) == _verilog(before, cfg)


def test_fault_build_adds_its_registers():
    ordinary, faulty = Standalone(SMALL).csr_map(), Standalone(SMALL, faults=True).csr_map()
    assert {"fault_select", "fault_build"} == set(faulty) - set(ordinary)
    # the ordinary registers keep their addresses: a host reads both builds the same way
    assert {k: faulty[k] for k in ordinary} == ordinary


def test_every_hardware_fault_has_one_site():
    """Each hardware fault of the list is named by exactly one site (faults.site or
    faults.active) in the block the list says; firmware and link faults by none."""
    sources = {p.stem: p.read_text() for p in GATEWARE.glob("*.py") if p.stem != "faults"}
    for f in faults.FAULTS:
        where = {m: len(re.findall(rf'"{f.name}"', text)) for m, text in sources.items()}
        found = {m: n for m, n in where.items() if n}
        assert found == ({f.block: 1} if f.kind == "hardware" else {}), f.name


def test_fault_codes_fit_the_select_register():
    codes = [faults.code(f.name) for f in faults.HARDWARE]
    assert codes == list(range(1, len(faults.HARDWARE) + 1))
    assert max(codes) < 1 << faults.SELECT_BITS
    assert all(set(f.checks) <= set(faults.CHECKS) for f in faults.FAULTS)


def test_unknown_fault_names_are_refused():
    with pytest.raises(ValueError, match="unknown fault nope: the faults are round_dropped"):
        faults.get(["relu_broken", "nope"])
    assert faults.get("all") == list(faults.FAULTS)
