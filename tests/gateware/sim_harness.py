"""Build the standalone accelerator for Icarus and run the cocotb tests on it.

``build`` writes the Verilog and a JSON map (configuration and CSR word addresses) for
cocotb_accelerator.py and compiles it under the testbench top nnhil_accel_tb.v (its clock and
Wishbone master), whose command buffer is as deep as the build's largest region (a Verilog
parameter, through the runner). A build lives in build/gateware_sim/<name>-<hash>/, keyed by
what shapes it (:func:`build_key`): the workers of ``pytest -n`` share it, the first builds
it under the build's lock and the others wait for it and reuse it. ``run`` runs one of its tests, passing the
build's name and its map as plusargs; runs only read the build (each writes its own results
file), so any worker runs any test, several at a time on one build.
"""
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
from pathlib import Path

import cocotb

from nnhil.gateware import buildcache
from nnhil.gateware.standalone import Standalone
from nnhil.training import filelock

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / "build" / "gateware_sim"
TOPLEVEL = "nnhil_accel_top"
TESTBENCH = Path(__file__).resolve().with_name("nnhil_accel_tb.v")
TB_TOPLEVEL = "nnhil_accel_tb"
ROOTS = ("nnhil.gateware.standalone",)
LOCK_TIMEOUT_S = 300          # another worker's build of the same configuration (seconds at most)


def _icarus_version():
    return subprocess.run(["iverilog", "-V"], capture_output=True, text=True, timeout=30).stdout.splitlines()[0]


def build_key(cfg):
    """The hash of what shapes a build of ``cfg``: the configuration, the gateware sources the
    standalone top imports and the generating packages' versions (as buildcache keys the SoC;
    Migen's output text itself varies between processes), the testbench and its parameter, the
    Icarus and cocotb versions."""
    key = {"config": cfg.to_dict(), "parameters": _parameters(cfg),
           "sources": {name: hashlib.sha256(path.read_bytes()).hexdigest()
                       for name, path in sorted(buildcache.source_files(ROOTS).items())},
           "packages": {p: importlib.metadata.version(p) for p in buildcache.PACKAGES},
           "testbench": hashlib.sha256(TESTBENCH.read_bytes()).hexdigest(),
           "icarus": _icarus_version(), "cocotb": cocotb.__version__}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _parameters(cfg):
    return {"DEPTH": max(cfg.region_words.values())}


def build(cfg, name):
    """Generate the top for ``cfg`` and compile it with the testbench, unless that build
    exists; return the runner and the build's directory."""
    from cocotb.runner import get_runner
    out = BUILD_DIR / f"{name}-{build_key(cfg)}"
    runner = get_runner("icarus")
    # every source inside the build, older than sim.vvp: the runner never compiles it again
    sources = [out / f"{TOPLEVEL}.v", out / TESTBENCH.name]
    with filelock.held(out / ".lock", LOCK_TIMEOUT_S, f"building the cocotb build {out.name}"):
        complete = (out / "sim_build" / "sim.vvp").exists()
        if not complete:
            top = Standalone(cfg)
            sources[0].write_text(top.verilog(TOPLEVEL))
            shutil.copyfile(TESTBENCH, sources[1])
            (out / "map.json").write_text(json.dumps({"config": cfg.to_dict(), "csr": top.csr_map()}))
        partial = out / "sim_build.partial"     # renamed when complete: never half a build
        if not complete:
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(out / "sim_build", ignore_errors=True)
        runner.build(verilog_sources=sources, hdl_toplevel=TB_TOPLEVEL, parameters=_parameters(cfg),
                     build_dir=out / "sim_build" if complete else partial, always=not complete)
        if not complete:
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
