"""Build the standalone accelerator for Icarus and run the cocotb tests on it.

``build`` writes the Verilog and a JSON map (configuration and CSR word addresses) for
cocotb_accelerator.py and compiles it under the testbench top nnhil_accel_tb.v (its clock and
Wishbone master), whose command buffer is as deep as the build's largest region (a Verilog
parameter, through the runner). A build lives in build/gateware_sim/<name>-<hash>/, keyed by
everything compiled (the generated Verilog, the testbench, its parameters, the Icarus and
cocotb versions): the workers of ``pytest -n`` share it, the first builds it under the build's
lock and the others wait for it and reuse it. ``run`` runs one of its tests, passing the
build's name and its map as plusargs; runs only read the build (each writes its own results
file), so any worker runs any test, several at a time on one build.
"""
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import cocotb

from nnhil.gateware.standalone import Standalone
from nnhil.training import filelock

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "gateware_sim"
TOPLEVEL = "nnhil_accel_top"
TESTBENCH = Path(__file__).resolve().with_name("nnhil_accel_tb.v")
TB_TOPLEVEL = "nnhil_accel_tb"
LOCK_TIMEOUT_S = 300          # another worker's build of the same configuration (seconds at most)


def _icarus_version():
    return subprocess.run(["iverilog", "-V"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]


def build(cfg, name):
    """Generate the top for ``cfg`` and compile it with the testbench, unless that exact build
    exists; return the runner and the build's directory."""
    from cocotb.runner import get_runner
    top = Standalone(cfg)
    verilog = top.verilog(TOPLEVEL)
    parameters = {"DEPTH": max(cfg.region_words.values())}
    key = {"verilog": hashlib.sha256(verilog.encode()).hexdigest(),
           "testbench": hashlib.sha256(TESTBENCH.read_bytes()).hexdigest(),
           "parameters": parameters, "icarus": _icarus_version(), "cocotb": cocotb.__version__}
    out = BUILD_DIR / f"{name}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}"
    runner = get_runner("icarus")
    with filelock.held(out / ".lock", LOCK_TIMEOUT_S, f"building the cocotb build {out.name}"):
        if not (out / "sim_build" / "sim.vvp").exists():   # the key covers everything compiled
            source = out / f"{TOPLEVEL}.v"
            source.write_text(verilog)
            (out / "map.json").write_text(json.dumps({"config": cfg.to_dict(), "csr": top.csr_map()}))
            partial = out / "sim_build.partial"     # renamed when complete: never half a build
            shutil.rmtree(partial, ignore_errors=True)
            runner.build(verilog_sources=[source, TESTBENCH], hdl_toplevel=TB_TOPLEVEL,
                         build_dir=partial, parameters=parameters, always=True)
            os.replace(partial, out / "sim_build")
    return runner, out


def run(runner, out, testcase, build):
    """Run one cocotb test of cocotb_accelerator.py on the build ``build``; raises if it fails."""
    runner.test(test_module="cocotb_accelerator", hdl_toplevel=TB_TOPLEVEL, testcase=testcase,
                build_dir=out / "sim_build", test_dir=out,
                plusargs=[f"+build={build}", f"+map={out / 'map.json'}"],
                # cocotb's assertion rewriting builds a pytest Config, which would import
                # every installed pytest11 plugin (labgrid's takes seconds) in each simulator
                # run; the tests need no BLAS threads
                extra_env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "OPENBLAS_NUM_THREADS": "1"})
