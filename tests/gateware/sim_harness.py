"""Build the standalone accelerator for Icarus and run the cocotb tests on it.

``build`` writes the Verilog and a JSON map (configuration and CSR word addresses) for
cocotb_accelerator.py and compiles it under the testbench top nnhil_accel_tb.v (its clock and
Wishbone master), whose command buffer is as deep as the build's largest region (a Verilog
parameter, through the runner); ``run`` runs one of its tests, passing the build's name and its
map as plusargs. Both hold the build's lock: the workers of ``pytest -n`` share
its directory (and cocotb's results.xml in it).
"""
import json
from pathlib import Path

from nnhil.gateware.standalone import Standalone
from nnhil.training import filelock

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "gateware_sim"
TOPLEVEL = "nnhil_accel_top"
TESTBENCH = Path(__file__).resolve().with_name("nnhil_accel_tb.v")
TB_TOPLEVEL = "nnhil_accel_tb"
LOCK_TIMEOUT_S = 900          # another worker's build, or one of its cocotb tests


def build(cfg, name):
    """Generate and compile the top for ``cfg`` under build/gateware_sim/<name>; return the runner."""
    from cocotb.runner import get_runner
    out = BUILD_DIR / name
    top = Standalone(cfg)
    verilog = top.verilog(TOPLEVEL)
    source = out / f"{TOPLEVEL}.v"
    runner = get_runner("icarus")
    with _locked(out, "building"):
        if not source.exists() or source.read_text() != verilog:   # keep the timestamp: no rebuild
            source.write_text(verilog)
        (out / "map.json").write_text(json.dumps({"config": cfg.to_dict(), "csr": top.csr_map()}))
        runner.build(verilog_sources=[source, TESTBENCH], hdl_toplevel=TB_TOPLEVEL, build_dir=out / "sim_build",
                     parameters={"DEPTH": max(cfg.region_words.values())})
    return runner, out


def _locked(out, what):
    return filelock.held(out / ".lock", LOCK_TIMEOUT_S, f"{what} the cocotb build {out.name}")


def run(runner, out, testcase, build):
    """Run one cocotb test of cocotb_accelerator.py on the build ``build``; raises if it fails."""
    with _locked(out, f"running {testcase} on"):
        runner.test(test_module="cocotb_accelerator", hdl_toplevel=TB_TOPLEVEL, testcase=testcase,
                    build_dir=out / "sim_build", test_dir=out,
                    plusargs=[f"+build={build}", f"+map={out / 'map.json'}"],
                    # cocotb's assertion rewriting builds a pytest Config, which would import
                    # every installed pytest11 plugin (labgrid's takes seconds) in each simulator
                    # run; the tests need no BLAS threads
                    extra_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "OPENBLAS_NUM_THREADS": "1"})
