"""The profiling run of a profile-guided sim build (GCC -fprofile-generate, then -fprofile-use).

buildcache compiles a profile-guided model twice: instrumented, run on this workload, then
with the profile it wrote. The workload is what the model spends its time on in use: the
CPU booting the BIOS and the firmware (C code, bridge writes), image batches through the
accelerator (an MLP and a CNN, the firmware's batch runner) and an image in C on the CPU.
Its models are random (host.testmodels: cycles and the datapath's activity do not depend on
the weights' values) and its images random pixels of a fixed seed, so it needs no trained
model and no dataset. buildcache keys a profile-guided build by what the SoC executes in
it: this module, the firmware's sources and :func:`digest` of the models and images (the
gateware is in the key already). The host's transport code is not: it shapes only the
run's timing (how often the host polls), which varies from run to run anyway, and a profile
only guides the compiler's choices, never what the model computes.
"""
import dataclasses
import hashlib
import logging
import signal
import subprocess
import time

log = logging.getLogger(__name__)

SEED = 25                      # the random models' and images' seed
ARCHS = ("mlp", "cnn")         # each through the batch runner, if it fits the accelerator
BATCH_IMAGES = 48              # per model: about 85 k cycles of the MLP, 360 k of the CNN
CPU_MODEL = "mlp"              # run in C on the CPU (the CNN's C is millions of cycles an image)
CPU_IMAGES = 1
START_TIMEOUT = 60.0           # s: the instrumented model's start, on a loaded machine
EXIT_TIMEOUT = 120.0           # s: its exit after SIGTERM, writing some 30 profile files


def workload():
    """The run's data: {arch: random model}, {arch: its batch of uint8 images}, the CPU's images."""
    import numpy as np

    from nnhil.host.testmodels import random_default_model

    rng = np.random.default_rng(SEED)
    models = {arch: random_default_model(arch, rng) for arch in ARCHS}
    batches = {arch: rng.integers(0, 256, (BATCH_IMAGES, *m.input_shape), dtype=np.uint8)
               for arch, m in models.items()}
    cpu = rng.integers(0, 256, (CPU_IMAGES, *models[CPU_MODEL].input_shape), dtype=np.uint8)
    return models, batches, cpu


def digest():
    """SHA-256 of the workload's models (every layer's kind and fields) and images."""
    import numpy as np

    models, batches, cpu = workload()
    h = hashlib.sha256()
    for arch in ARCHS:
        h.update(f"{arch} {models[arch].input_shape}".encode())
        for layer in models[arch].layers:
            h.update(type(layer).__name__.encode())
            for f in dataclasses.fields(layer):
                value = np.asarray(getattr(layer, f.name))
                h.update(f"{f.name} {value.dtype.str} {value.shape}".encode() + value.tobytes())
        h.update(batches[arch].tobytes())
    h.update(cpu.tobytes())
    return h.hexdigest()


def run(build):
    """Run the workload on the instrumented model of ``build`` (a buildcache.SimBuild) and stop
    it, so that it writes its profile; returns the simulated cycles it ran. Any failure raises."""
    from nnhil.gateware.program import ModelDoesNotFit, check_fits
    from nnhil.host.dut import DUT
    from nnhil.host.simulator import Simulator

    models, batches, cpu = workload()
    t0 = time.perf_counter()
    with Simulator(build, start_timeout=START_TIMEOUT) as sim:
        with sim.bridge() as bridge:
            dut = DUT("sim", bridge, build.dir, sim=sim)
            dut.firmware                                # built and booted: the BIOS, then ours
            for arch in ARCHS:
                try:
                    check_fits(models[arch], dut.config)
                except ModelDoesNotFit:
                    log.info(f"profiling run: the random {arch} does not fit this accelerator: not run")
                    continue
                dut.load(models[arch])
                dut.infer(batches[arch])
            dut.cpu_infer(models[CPU_MODEL], cpu)
            bridge.csr_write("timer0_uptime_latch", 1)
            cycles = bridge.csr_read("timer0_uptime_cycles")
        _stop(sim)
    log.info(f"profiling run: {cycles:,} cycles in {time.perf_counter() - t0:.1f} s")
    return cycles


def _stop(sim):
    """End the model with SIGTERM (sim_main.cpp then returns from main) and wait for it to
    write its profile, longer than Simulator.stop would before it kills."""
    sim.proc.send_signal(signal.SIGTERM)
    try:
        status = sim.proc.wait(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the instrumented model did not exit within {EXIT_TIMEOUT:.0f} s of SIGTERM") from None
    if status != 0:
        raise RuntimeError(f"the instrumented model exited with status {status} on SIGTERM:\n{sim.tail()}")
