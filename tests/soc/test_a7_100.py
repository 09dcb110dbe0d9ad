"""The Arty A7-100 through its sim twin: the HIL suite with --nnhil-target arty --nnhil-variant a7-100 on the
board's code path, and the seed's 90% MLP, which only the larger part holds, bit-exact."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import cyclemodel, buildcache, program, variants
from nnhil.host import dut as duts
from nnhil.host.simulator import Simulator
from nnhil.training import workflow
from nnhil.training.train import TrainConfig

A7_100 = variants.get("a7-100")
# The 90% MLP of the A7-100: 784-384-128-10 takes 2,864 of its 3,072 weight words (the README's
# 784-512-256-10 needs 4,224).
MLP_90 = dataclasses.replace(TrainConfig(), layers=(784, 384, 128, 10), dropout=0.2, seed=0)
# On-board accuracy is the integer model's (bit-exact). Float / integer %, numpy 2.4.6, OpenBLAS
# 0.3.31 on one thread, AMD EPYC, 2026-12-07 (tests/benchmarks/seed_table.py, docs/accuracy.md):
# SkylakeX seeds 0-4 90.30/90.33  90.25/90.23  90.38/90.40  90.58/90.53  90.34/90.33; Haswell seed 0
# 90.50/90.51. Integer: worst 90.23, spread 30 test images, another CPU kind 43 (the most two BLAS
# kernels moved an integer result of any model at one seed): at most 89.50%, target 89.5%.
BOARD_TARGET = 0.895


@pytest.fixture(scope="module")
def twin():
    """The A7-100's sim twin: the sim SoC with that variant's accelerator."""
    with Simulator(buildcache.build_sim(A7_100.accel)) as s:
        yield s


@pytest.mark.slow        # a second SoC build (the twin, which the 90% run below needs too) and a nested suite
def test_hil_suite_with_variant_a7_100_on_its_sim_twin(twin, headline):
    """The HIL suite with --nnhil-target arty --nnhil-variant a7-100 against the twin behind a pty (the
    /dev/ttyUSB1 path), as test_bridge's board-path run does for the A7-35: the MLP only (headline
    caches it in out/), the tests of the simulation itself left out; its latency baselines are
    the twin's own."""
    with twin.pty() as tty:
        r = subprocess.run([sys.executable, "-m", "pytest", str(Path(__file__).parents[1] / "hil"), "-q",
                            "-p", "no:cacheprovider", "-m", "not sim", "-k", "not cnn",
                            "--nnhil-target", "arty", "--nnhil-variant", "a7-100", "--nnhil-port", tty,
                            "--nnhil-build-dir", str(twin.build.dir), "--images", "100"],
                           capture_output=True, text=True, timeout=600)
    summary = r.stdout.strip().splitlines()[-1]
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary, summary


def test_variant_that_the_soc_does_not_run_is_refused(sim, sim_build):
    """--variant a7-100 against the A7-35's SoC: refused, naming both configurations."""
    with sim.pty() as tty:
        with pytest.raises(duts.VariantMismatch, match=r"--variant a7-100 has the accelerator "
                           r"AccelConfig\(lanes=128.*runs AccelConfig\(lanes=64.*that is --variant a7-35"):
            with duts.open_dut("arty", tty, build_dir=sim_build.dir, variant="a7-100"):
                pass


def test_readme_large_mlp_does_not_fit_and_says_why():
    """784-512-256-10 needs more weight words than even the A7-100 has: the error says how many."""
    mlp = _random_mlp((784, 512, 256, 10))
    # 4 tiles x 784 + 2 x 512 + 256 / 4 (the logits layer's fan-in split over four lane groups)
    needs = sum(s.weight_words(A7_100.accel.lanes) for s, _ in program.layer_shapes(mlp))
    with pytest.raises(program.ModelDoesNotFit,
                       match=rf"weight words \(128 int8 each\): needs {needs}, the accelerator has 3072"):
        program.check_fits(mlp, A7_100.accel)
    program.check_fits(_random_mlp(MLP_90.layers), A7_100.accel)      # the 90% MLP does fit


def _random_mlp(sizes):
    from nnhil.training import fixedpoint as fx
    from nnhil.training.intmodel import Dense, IntModel
    rng = np.random.default_rng(0)
    return IntModel([Dense(rng.integers(-127, 128, (b, a)).astype(np.int8), np.zeros(b, np.int32),
                           np.ones(b, np.uint16), np.ones(b, np.uint8),
                           fx.OUTPUT_I32 if i == len(sizes) - 2 else fx.OUTPUT_U8)
                     for i, (a, b) in enumerate(zip(sizes, sizes[1:]))], input_shape=(sizes[0],))


@pytest.mark.slow
def test_mlp_of_90_percent_runs_bit_exact_on_the_a7_100(twin, fashion, record_property):
    """The seed's 90% MLP on the A7-100: trained (or taken from out/) by training.workflow, all
    10,000 Fashion-MNIST test images on the twin, every logit bit-exact, every image in the
    modelled cycles, on-board accuracy BOARD_TARGET or more (every seed and kernel measured gives 90.2%
    or more)."""
    model, _ = workflow.ensure_model(MLP_90, fashion)
    images, labels = fashion.test
    with duts.open_dut(sim=twin, variant="a7-100") as d:
        d.load(model)
        r = d.infer(images)
        cpu = d.cpu_infer(model, images[:1])
    exact = r.exact(model, images)
    assert exact.all(), f"{int((~exact).sum())} of {len(images)} images differ, first {np.flatnonzero(~exact)[0]}"
    assert set(r.cycles.tolist()) == {cyclemodel.cycles(model, A7_100.accel)}
    accuracy = float((r.argmax == labels).mean())
    figures = {"board_accuracy": accuracy, "accelerator_cycles": int(r.cycles[0]),
               "batch_cycles_per_image": int(np.median(r.driver_cycles)),
               "cpu_optimised_cycles_per_inference": int(cpu.driver_cycles[0]),
               "weight_words_used": program.usage(model, A7_100.accel)["weight_words"]}
    for k, v in figures.items():
        record_property(k, v)
    print(f"\nA7-100 twin, {'-'.join(map(str, MLP_90.layers))}: {figures}")
    assert accuracy >= BOARD_TARGET
