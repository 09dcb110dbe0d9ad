"""Build the nnhil SoC, cached by what shapes it: a Verilator model for the sim, or the Arty A7 gateware.

The sim build is keyed by a hash of everything that shapes the model (AccelConfig, the
SoC parameters, the LiteX version and our gateware and sim-module sources) and lives in
``build/sim-<hash>/``; an unchanged configuration returns at once without touching
Migen. Weights, images and firmware are loaded over the bridge at run time, so they
never cause a rebuild. LiteX's toolchain only generates here (its build script deletes
obj_dir); we run the compile ourselves to stream its progress.
"""
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from nnhil.training import filelock, home

from . import layout
from .simsoc import BRIDGE_CLK_FREQ, MAIN_RAM_SIZE, SIM_CLK_FREQ, SIM_MODULE, SIM_MODULE_DIR, sim_soc

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 30 * 60        # seconds for one Verilator compile

# Every source whose text shapes the sim model.
SOURCES = [Path(__file__).resolve().parent / n for n in
           ("soc.py", "simsoc.py", "buildcache.py", "accelerator.py", "layout.py", "cyclemodel.py",
            "wishbone_window.py", "sequencer.py", "validator.py", "addrgen.py", "macarray.py",
            "requantizer.py", "tracewindow.py")] + \
          [REPO / "training" / "fixedpoint.py"]


@dataclasses.dataclass(frozen=True)
class SimVariant:
    """What kind of sim model to build, beside the accelerator's configuration.

    ``trace``: verilated with FST trace support, run by sim_tcp/sim_trace_main.cpp, which dumps
    only while the gateware.tracewindow window is open, to the file $NNHIL_TRACE_FILE names
    (host.wave). ``faults``: the accelerator with fault injection.
    """
    trace: bool = False
    faults: bool = False


TRACE_MAIN = SIM_MODULE_DIR / "sim_trace_main.cpp"     # the traced model's main (see its header)
TRACE_SIGNALS = SIM_MODULE_DIR / "trace_signals.vlt"   # and the signals it dumps


class BuildError(RuntimeError):
    """A build step failed; the message carries the tail of its output."""


@dataclasses.dataclass(frozen=True)
class SimBuild:
    """A finished sim build: where the model, its CSR map and the software headers are."""
    dir: Path

    @property
    def gateware_dir(self):
        return self.dir / "gateware"         # the model runs here (it reads sim_config.js)

    @property
    def vsim(self):
        return self.gateware_dir / "obj_dir" / "Vsim"

    @property
    def csr_json(self):
        return self.dir / "csr.json"

    @property
    def software_dir(self):
        return self.dir / "software"


def _file_digest(paths):
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def build_key(target, cfg, sim_variant=SimVariant(), **params):
    """The inputs that determine a build, and their hash (an Arty build's include its variant,
    a sim build's its SimVariant)."""
    from . import soc as nnsoc, variants
    if target == "arty":
        params = {"variant": variants.DEFAULT, **params}
    key = {
        "target": target,
        "accel": cfg.to_dict(),
        "soc": {**nnsoc.SOC_KWARGS, "origin": nnsoc.ORIGIN, **params},
        "litex": importlib.metadata.version("litex"),
        "sources": _file_digest(SOURCES),
    }
    if target == "sim":
        key["sim"] = {"clk": SIM_CLK_FREQ, "bridge_clk": BRIDGE_CLK_FREQ,
                      "verilator": _tool_version("verilator"),
                      "module": _file_digest([p for p in SIM_MODULE_DIR.iterdir() if p.is_file()])}
        if sim_variant != SimVariant():
            key["sim"]["variant"] = dataclasses.asdict(sim_variant)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return key, digest


def _tool_version(tool):
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except FileNotFoundError:
        raise BuildError(f"{tool} is not installed (run `make setup`)")


def _stream(cmd, cwd, log, timeout, what):
    """Run ``cmd`` in its own process group, pass each output line to ``log``, kill it on timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)
    tail = deque(maxlen=40)
    timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            log(line.rstrip())
        rc = proc.wait(timeout=30)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        raise
    finally:
        timer.cancel()
    if rc != 0:
        why = f"timed out after {timeout} s" if rc == -signal.SIGKILL else f"exit status {rc}"
        raise BuildError(f"{what} failed ({why}):\n" + "\n".join(tail))


def _compile_sim(gateware_dir, log, variant=SimVariant()):
    """Run LiteX's generated build script minus its ``rm -rf obj_dir``, streaming the output;
    a traced variant's model has our TRACE_MAIN in place of LiteX's veril.cpp, and traces
    only the signals TRACE_SIGNALS names."""
    script = (gateware_dir / "build_sim.sh").read_text().splitlines()
    make = [line for line in script if line.strip() and not line.startswith("rm ")]
    if variant.trace:
        make = [line.replace('CC_SRCS="', f'CC_SRCS="{TRACE_SIGNALS} ') + f' SRCS_SIM_CPP="sim_init.cpp {TRACE_MAIN}"'
                if line.startswith("make ") else line for line in make]
    _stream(["bash", "-c", "\n".join(make)], gateware_dir, log, BUILD_TIMEOUT, "Verilator build")


def _tools_on_path():
    """LiteX finds meson and ninja (pip-installed beside this Python) on PATH: a venv's
    tools are there only when it is activated, so put them there when it is not."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def build_sim(cfg=layout.AccelConfig(), main_ram_size=MAIN_RAM_SIZE, out_root=None,
              jobs=2, log=print, variant=SimVariant()):
    """The sim model of ``variant`` for ``cfg``, built or taken from the cache; returns a :class:`SimBuild`."""
    from litex.build.sim.config import SimConfig
    from litex.soc.integration.builder import Builder

    _tools_on_path()
    key, digest = build_key("sim", cfg, variant, main_ram_size=main_ram_size)
    out_root = Path(out_root or home.builds())
    result = SimBuild(out_root / f"sim-{digest}")
    # a second builder of the same model waits for the first (at most one build) and reuses it
    with filelock.held(out_root / f"sim-{digest}.lock", BUILD_TIMEOUT + 60, f"building sim model {digest}", log):
        if (result.dir / "build.json").exists() and result.vsim.exists():
            log(f"sim model {digest} is up to date in {result.dir}")
            return result
        log(f"building sim model {digest} in {result.dir}")
        t0 = time.perf_counter()
        if result.dir.exists():
            shutil.rmtree(result.dir)          # a leftover of an interrupted build
        mods = result.dir / "sim_mods"         # LiteX writes variables.mak beside the modules
        shutil.copytree(SIM_MODULE_DIR, mods / SIM_MODULE)
        sim_config = SimConfig()
        sim_config.add_clocker("sys_clk", freq_hz=SIM_CLK_FREQ)
        sim_config.add_module(SIM_MODULE, "serial", args={"port": 0})
        soc = sim_soc(cfg, main_ram_size, variant)
        builder = Builder(soc, output_dir=str(result.dir), compile_gateware=False,
                          csr_json=str(result.csr_json), csr_csv=str(result.dir / "csr.csv"))
        builder.build(sim_config=sim_config, extra_mods=[SIM_MODULE], extra_mods_path=str(mods),
                      jobs=jobs, opt_level="O3", interactive=False,
                      trace=variant.trace, trace_fst=variant.trace)
        t1 = time.perf_counter()
        log(f"gateware and BIOS generated in {t1 - t0:.1f} s; compiling the Verilator model")
        _compile_sim(result.gateware_dir, lambda line: log(f"  | {line}"), variant)
        if not result.vsim.exists():
            raise BuildError(f"the Verilator build finished without producing {result.vsim}")
        t2 = time.perf_counter()
        (result.dir / "build.json").write_text(json.dumps(
            {"key": key, "hash": digest, "generate_s": round(t1 - t0, 1),
             "compile_s": round(t2 - t1, 1)}, indent=2))
        log(f"sim model {digest} built in {t2 - t0:.1f} s")
        return result


def arty_dir(variant="a7-35", cfg=None, out_root=None):
    """``build/arty-<hash>/``: the Arty build of ``cfg`` (default: the variant's) for ``variant``."""
    from . import variants

    v = variants.get(variant)
    return Path(out_root or home.builds()) / f"arty-{build_key('arty', cfg or v.accel, variant=v.name)[1]}"


def build_arty(cfg=None, variant="a7-35", out_root=None, log=print):
    """The Arty build of ``cfg`` for ``variant`` (see gateware.arty) in ``build/arty-<hash>/``."""
    from . import arty, variants

    _tools_on_path()
    cfg = cfg or variants.get(variant).accel
    return arty.build(cfg, arty_dir(variant, cfg, out_root), variant, log)


def build(target="sim", cfg=layout.AccelConfig(), log=print, **kwargs):
    """Build for ``target`` ("sim" or "arty"); see build_sim and build_arty."""
    if target == "sim":
        return build_sim(cfg, log=log, **kwargs)
    if target == "arty":
        return build_arty(cfg, log=log, **kwargs)
    raise ValueError(f"unknown target {target!r}: expected 'sim' or 'arty'")
