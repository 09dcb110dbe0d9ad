"""A fault on the device is traced to its layer, channel and position (host.divergence).

After a verified load, one weight byte of a small random CNN is overwritten through the bus.
The fault is chosen so that it matters (the integer model with the same weight changed gives
other logits for image 0); the test first asserts that the board's logits really differ,
and equal that corrupted model's, then that the report names the corrupted layer and channel
and the first position where the corrupted model's layer output differs from the model's.
"""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnhil.gateware import cyclemodel, layout, program
from nnhil.host import divergence, driver as drv
from nnhil.host.pytest_plugin import assert_bit_exact
from nnhil.training import modelfile

pytestmark = pytest.mark.board

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"conv": 1, "dense": 2}   # of the model below: conv 2x2 (6,4,4)->8, dense 72->12


def choose_fault(model, image, layer, rng):
    """(channel, window element, new weight, the model with it) for a weight of accelerator
    layer ``layer`` whose change alters the logits of ``image``."""
    shape, target = program.layer_shapes(model)[layer]
    index = next(i for i, l in enumerate(model.layers) if l is target)
    for flat in rng.permutation(target.weights.size):
        channel, element = divmod(int(flat), target.weights[0].size)
        old = int(target.weights.reshape(len(target.weights), -1)[channel, element])
        value = 127 if old < 0 else -128
        bad = copy.deepcopy(model)
        bad.layers[index].weights.reshape(len(target.weights), -1)[channel, element] = value
        if (bad.logits(image[None]) != model.logits(image[None])).any():
            return channel, element, value, bad
    raise AssertionError(f"no weight of layer {layer} changes the logits of this image")


def weight_bytes(dut, model, layer, channel, element):
    """[(bus address of the 32-bit word, byte in it)] of each lane holding one weight (layout.py's
    weight packing: a dense layer narrow enough for G lane groups keeps input G i + g of output c
    in word i, lane g lanes/G + c; a conv of position pairs in lanes c and lanes/2 + c)."""
    lanes = dut.config.lanes
    shapes = program.check_fits(model, dut.config)
    groups = shapes[layer].groups(lanes)
    word = (sum(s.weight_words(lanes) for s in shapes[:layer])
            + channel // lanes * shapes[layer].steps(lanes) + element // groups)
    lane = element % groups * (lanes // groups) + channel % lanes
    return [(dut.accelerator.region_addr("weights", word * (lanes // 4) + copy // 4), copy % 4)
            for copy in range(lane, lanes, lanes // 2)[:shapes[layer].pairs(lanes)]]


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_a_corrupted_weight_is_traced_to_its_layer_and_channel(dut, model, images, kind, tmp_path):
    layer = LAYERS[kind]
    compiled = dut.load(model)                             # verified by read-back
    channel, element, value, bad = choose_fault(model, images[0], layer, np.random.default_rng(layer))
    goods = []
    for addr, byte in weight_bytes(dut, model, layer, channel, element):   # two copies in the same word too
        good = dut.bridge.read(addr)[0]
        goods.append((addr, good))
        dut.bridge.write(addr, [good & ~(0xFF << 8 * byte) | (value & 0xFF) << 8 * byte])
    try:
        r = dut.infer(images)
        assert (r.logits[0] != model.logits(images[:1])[0]).any()       # the fault matters
        np.testing.assert_array_equal(r.logits, bad.logits(images))     # and is that one weight

        with pytest.raises(pytest.fail.Exception) as failed:
            assert_bit_exact(dut, images, r, tmp_path)
        report = divergence.trace(dut, images[0], 0)
        assert report.text() in str(failed.value)                       # image 0 is traced first
        assert (tmp_path / "trace-0.png").stat().st_size > 0
        assert (tmp_path / "trace-0.npz").exists()

        d = report.first
        shape = program.layer_shapes(model)[layer][0]
        ref, faulty = (program.layer_outputs(m, images[:1])[layer][0] for m in (model, bad))
        assert (d.index, d.kind, d.shape) == (layer, str(shape), ref.shape)
        first = tuple(int(v) for v in np.argwhere(ref != faulty)[0])
        assert d.first == first and d.first[0] == channel
        assert set(d.channels) == {channel} and d.n_differ == int((ref != faulty).sum())
        assert (d.expected[first], d.measured[first]) == (ref[first], faulty[first])
        where = f"neuron {channel}" if kind == "dense" else \
            f"channel {channel}, row {first[1]}, column {first[2]}"
        assert f"layer {layer} of 4 diverges first" in report.text()
        assert f"the first at {where}: expected {ref[first]}, measured {faulty[first]}" in report.text()
        assert all(x.n_differ == 0 for x in report.layers[:layer]) and report.cycles_exact
    finally:
        for addr, good in reversed(goods):
            dut.bridge.write(addr, [good])
    dut.accelerator.verify(compiled.memory_image)


@pytest.mark.sim
def test_nnhil_run_traces_an_image_on_demand(model, images, tmp_path):
    """`nnhil run --trace 1` on a passing run: every layer's board and model outputs side by
    side in trace-1.npz, equal, in the modelled cycles, and the report, though nothing differs."""
    modelfile.save_quantized(tmp_path / "m.npz", model)
    np.save(tmp_path / "x.npy", images)
    r = subprocess.run([sys.executable, "-m", "nnhil.host.cli", "run", tmp_path / "m.npz", "--images-npy",
                        tmp_path / "x.npy", "--trace", "1", "--results-dir", tmp_path / "run"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "image 1: every layer's on-board output equals the integer model's (4 layers)" in r.stdout
    (board,) = (tmp_path / "run" / "board").iterdir()
    trace = np.load(board / "trace-1.npz")
    expected = program.layer_outputs(model, images[1:2])
    for k, ref in enumerate(expected):
        np.testing.assert_array_equal(trace[f"board_{k}"], ref[0])
        np.testing.assert_array_equal(trace[f"model_{k}"], ref[0])
    cfg = layout.AccelConfig()
    assert trace["cycles"].tolist() == [cyclemodel.cycles(model, cfg, k) for k in range(1, 5)]
    assert (board / "trace-1.txt").read_text() in r.stdout
    assert not (board / "trace-1.png").exists()          # no differences to draw


def test_stopping_past_the_program_is_refused(dut, model, images):
    """stop_after beyond n_layers: the accelerator's ERR_STOP_AFTER, and the next run is whole."""
    dut.load(model)
    refused = rf"rejected the program: stop_after \(code {layout.ERR_STOP_AFTER}\)"
    with pytest.raises(drv.AcceleratorError, match=refused):
        dut.accelerator.run_layers(images[0], 5)
    with pytest.raises(ValueError, match="give 1 up to the program's n_layers"):
        dut.accelerator.run_layers(images[0], 0)
    assert dut.accelerator.read_csr("cycles") == cyclemodel.rejected_cycles()
    assert dut.accelerator.read_csr("stop_after") == 0
    np.testing.assert_array_equal(dut.accelerator.infer(images[0]).logits, model.logits(images[:1])[0])
