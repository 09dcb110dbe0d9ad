"""Simulated cycles per second of the sim model: the CPU running C, and an image batch.

Opt-in (``make bench-sim``), never part of the suite. It starts the sim model of a build
(default: the cached build of the default variant, built if missing), loads a random model
of the CNN's default shape (cycles and datapath activity do not depend on the weights'
values, so no training is needed) and the first test images of Fashion-MNIST, then times
two phases: one image in optimised C on the VexRiscv (millions of cycles of CPU code) and a
batch through the accelerator (the firmware's batch runner). Each phase's simulated cycles
are the SoC's own 64-bit uptime counter read over the bridge before and after; its seconds
are both wall time and the CPU time of the ``Vsim`` process (from /proc), the second of
which depends far less on what else the machine runs. Prints one line per phase and, with
``--json``, writes the figures.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from nnhil.gateware import buildcache, variants
from nnhil.host.dut import open_dut
from nnhil.host.simulator import Simulator
from nnhil.host.testmodels import random_default_model
from nnhil.training import datasets

TICKS = os.sysconf("SC_CLK_TCK")


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", help="a sim build directory (default: the cached build of --trace)")
    p.add_argument("--trace", action="store_true", help="the traced variant of the default build")
    p.add_argument("--images", type=int, default=400, help="images in the batch (default %(default)s)")
    p.add_argument("--cpu-images", type=int, default=1, help="images in C on the CPU (default %(default)s)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    if args.build_dir:
        build = buildcache.SimBuild(Path(args.build_dir))
    else:
        build = buildcache.build_sim(variants.get(variants.DEFAULT).accel,
                                     variant=buildcache.SimVariant(trace=args.trace))
    model = random_default_model("cnn")
    images = datasets.load_split("fashion-mnist", "test")[0][:max(args.images, args.cpu_images)]
    images = images.reshape((-1,) + tuple(model.input_shape))
    figures = {"build": str(build.dir)}
    with Simulator(build) as sim, open_dut(sim=sim) as dut:
        pid = sim.proc.pid
        dut.load(model)
        dut.firmware                                     # booted before anything is timed
        phases = {"cpu": lambda: dut.cpu_infer(model, images[:args.cpu_images]),
                  "batch": lambda: dut.infer(images[:args.images])}
        for name, fn in phases.items():
            cycles, wall, cpu = measure(dut, pid, fn)
            figures[name] = {"cycles": cycles, "wall_s": round(wall, 3), "vsim_cpu_s": round(cpu, 2),
                             "cycles_per_s": round(cycles / wall), "cycles_per_cpu_s": round(cycles / max(cpu, 1e-9))}
            print(f"{name:6} {cycles:>11,} cycles  {wall:7.2f} s wall  {cpu:7.2f} s Vsim CPU  "
                  f"{cycles / wall / 1e6:6.3f} M cycles/s  {cycles / max(cpu, 1e-9) / 1e6:6.3f} M cycles/CPU-s")
    print(f"load average {os.getloadavg()[0]:.2f}; build {build.dir}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
