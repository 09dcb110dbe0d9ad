"""The firmware on the VexRiscv: CPU inference bit-exact with the reference, and its failures."""
import struct

import numpy as np
import pytest

from nnhil.gateware import layout
from nnhil.host.cpu_model import cpu_cycles_bound, pack_cpu_model
from nnhil.host.firmware import CTRL_CPU_RESET, Firmware, batch_timing
from nnhil.host.firmware_abi import CMD_CPU_INFER, CPU_CODES, FIRMWARE_MAX, LAYER_FIELDS, FirmwareError
from nnhil.host.testmodels import random_default_model
from tests.gateware import accel_models
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D

pytestmark = pytest.mark.board


@pytest.fixture(params=sorted(CPU_CODES))
def code(request):
    """Each of the firmware's C inferences: the plain one and the optimised one."""
    return request.param


def test_cpu_inference_of_random_weights_is_bit_exact(firmware, fashion, code):
    """Random int8 weights drive hidden layers into saturation: the edges the trained model avoids."""
    model = random_default_model()
    images = fashion.test[0][:2]
    r = firmware.cpu_infer(model, images, code=code)
    np.testing.assert_array_equal(r.logits, model.logits(images))
    np.testing.assert_array_equal(r.argmax, model.predict(images))
    assert (model.activations(images)[0] == 255).any()


def odd_cnn(rng):
    """Odd sizes everywhere: a 3x9x7 input, a 2x2 conv pooled with a row and a column dropped,
    a 3x3 conv over 5 channels, then dense; random int8 weights saturate many outputs."""
    w = lambda *shape: rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, shape).astype(np.int8)
    rq = lambda n, shift: (rng.integers(-5000, 5000, n).astype(np.int32),
                           rng.integers(1 << 15, 1 << 16, n).astype(np.uint16), np.full(n, shift, np.uint8))
    c1 = Conv2D(w(5, 3, 2, 2), *rq(5, 18), fx.OUTPUT_U8, (3, 9, 7))          # -> (5, 8, 6)
    p1 = MaxPool2D(c1.shape_out)                                               # -> (5, 4, 3)
    c2 = Conv2D(w(7, 5, 3, 3), *rq(7, 19), fx.OUTPUT_U8, p1.shape_out)         # -> (7, 2, 1)
    return IntModel([c1, p1, c2, Dense(w(4, 14), *rq(4, 1), fx.OUTPUT_I32)], input_shape=(3, 9, 7))


def pooled_3x3_cnn(rng):
    """A pooled 3x3 conv (the optimised C's path for kernels other than 2x2) over a 2x8x9 input,
    its pool dropping a column, then a dense layer of 36 inputs and fewer than four outputs."""
    w = lambda *shape: rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, shape).astype(np.int8)
    rq = lambda n, shift: (rng.integers(-5000, 5000, n).astype(np.int32),
                           rng.integers(1 << 15, 1 << 16, n).astype(np.uint16), np.full(n, shift, np.uint8))
    c1 = Conv2D(w(4, 2, 3, 3), *rq(4, 18), fx.OUTPUT_U8, (2, 8, 9))          # -> (4, 6, 7)
    p1 = MaxPool2D(c1.shape_out)                                               # -> (4, 3, 3)
    return IntModel([c1, p1, Dense(w(3, 36), *rq(3, 1), fx.OUTPUT_I32)], input_shape=(2, 8, 9))


@pytest.mark.parametrize("make", [lambda rng: random_default_model("cnn", rng), odd_cnn, pooled_3x3_cnn],
                         ids=["headline-shape", "odd-sizes", "pooled-3x3"])
def test_cpu_inference_of_random_cnns_is_bit_exact(firmware, make, code):
    rng = np.random.default_rng(3)
    model = make(rng)
    images = rng.integers(0, 256, (2,) + model.input_shape).astype(np.uint8)
    images[1] = 255                                       # the brightest image saturates most
    r = firmware.cpu_infer(model, images, code=code)
    np.testing.assert_array_equal(r.logits, model.logits(images))
    np.testing.assert_array_equal(r.argmax, model.predict(images))
    hidden = np.concatenate([a.ravel() for a in model.activations(images)[:-1]])
    assert (hidden == 255).any() and (hidden == 0).any()   # saturation and ReLU both exercised


def _extreme_models():
    """The cocotb suite's edge cases (tests/gateware/accel_models.py), sized for the default build."""
    rng = np.random.default_rng(5)
    cfg = layout.AccelConfig()
    cases = {"requantization-extremes": accel_models.requantization_extremes(
        rng, min(cfg.act_bytes, 2 * cfg.lanes + 1), cfg.lanes + 1)}
    for name, model in zip(("ties-two-groups", "ties-all-equal"),
                           accel_models.argmax_ties(rng, min(cfg.logit_words, cfg.lanes + 2))):
        cases[name] = model
    for i, kw in enumerate(accel_models.EDGE_VALUES):
        cases[f"conv-edge-{i}"] = accel_models.cnn(rng, (1, 5, 5), [(3, 2, True)], 3, **kw)
    return cases


EXTREME_MODELS = _extreme_models()


@pytest.mark.parametrize("name", EXTREME_MODELS)
def test_cpu_inference_of_extreme_models_is_bit_exact(firmware, name, code):
    """Shift 1 and 47, mult 0, accumulators and logits near the int32 limits, tied logits (the
    lowest index wins), weights at the int8 limits: a random, a white and a black image."""
    model = EXTREME_MODELS[name]
    rng = np.random.default_rng(7)
    images = np.stack([rng.integers(0, 256, model.input_shape), np.full(model.input_shape, 255),
                       np.zeros(model.input_shape)]).astype(np.uint8)
    r = firmware.cpu_infer(model, images, code=code)
    ref = model.logits(images)
    np.testing.assert_array_equal(r.logits, ref)
    np.testing.assert_array_equal(r.argmax, model.predict(images))
    if name.startswith("ties"):
        assert ((ref == ref.max(axis=1, keepdims=True)).sum(axis=1) > 1).all()   # every image ties
    if name == "requantization-extremes":
        hidden = model.layers[0]
        assert {fx.SHIFT_MIN, fx.SHIFT_MAX} <= set(hidden.shift.tolist()) and 0 in hidden.mult
        assert np.abs(ref).max() > 2**30


def test_cpu_model_the_firmware_cannot_run_is_refused(firmware):
    """A record whose kernel is taller than its input: refused before anything runs."""
    model = odd_cnn(np.random.default_rng(0))
    blob = bytearray(pack_cpu_model(model, firmware.data))
    field = 4 * (1 + LAYER_FIELDS.index("kernel"))       # the first record's kernel
    struct.pack_into("<I", blob, field, 10)
    with pytest.raises(FirmwareError, match="a model the firmware cannot run"):
        firmware.cpu_infer_blob(bytes(blob), np.zeros((1, model.n_in), np.uint8), model.n_out,
                                cpu_cycles_bound(model), code="plain")
    r = firmware.cpu_infer(model, np.zeros((1,) + model.input_shape, np.uint8))   # still serving
    np.testing.assert_array_equal(r.logits, model.logits(np.zeros((1,) + model.input_shape, np.uint8)))


def test_missing_and_oversized_firmware_are_refused(firmware, tmp_path):
    with pytest.raises(FirmwareError, match="no firmware"):
        Firmware(firmware.bridge, tmp_path / "absent.bin").boot()
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(FIRMWARE_MAX + 1))
    with pytest.raises(FirmwareError, match="more than"):
        Firmware(firmware.bridge, big).boot()


@pytest.fixture
def held_cpu(firmware):
    """The CPU held in reset for one test (nobody serves the mailbox), the firmware booted again
    after it, pass or fail: the tests after it find it serving, in any order."""
    firmware.bridge.csr_write("ctrl_reset", CTRL_CPU_RESET)
    yield firmware
    firmware.boot()


def test_unresponsive_firmware_times_out(held_cpu):
    with pytest.raises(FirmwareError, match="did not finish"):
        held_cpu.run(CMD_CPU_INFER)


@pytest.mark.parametrize("make, slots", [(odd_cnn, 2), (pooled_3x3_cnn, 2),
                                         (lambda rng: accel_models.random_model(rng, [2100, 20, 5]), 1)],
                         ids=["odd-cnn", "pooled-3x3", "input-past-half-act0"])
def test_accel_batch_double_and_single_buffered(firmware, accelerator, make, slots):
    """The firmware's batch of 1, 2, 3 and 5 images is exact double-buffered (two input slots,
    two logits banks), and single-buffered for a program whose input leaves no second slot."""
    rng = np.random.default_rng(5)
    model = make(rng)
    assert accelerator.load(model).memory_image.slots == slots
    cycles = accelerator.model_cycles
    for n in (1, 2, 3, 5):
        images = rng.integers(0, 256, (n, *model.input_shape)).astype(np.uint8)
        r = firmware.accel_batch(accelerator, images)
        np.testing.assert_array_equal(r.logits, model.logits(images))
        np.testing.assert_array_equal(r.argmax, model.predict(images))
        assert set(r.cycles.tolist()) == {cycles}
        assert (r.driver_cycles >= cycles).all()
        assert batch_timing(r, model.n_in, model.n_out) == []
    # a single image from the host afterwards: slot 0, the logits of bank 0
    out = accelerator.infer(images[0])
    np.testing.assert_array_equal(out.logits, model.logits(images[:1])[0])
