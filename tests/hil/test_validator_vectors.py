"""The firmware's model_ok on the shared validation vectors (gateware/vectors.py): for each, the
firmware refuses the CPU model exactly when program.check_layers with host.cpu_model.cpu_limits
does, and runs an accepted one bit-exact with the integer reference (layer by layer on flat
activations: a vector may reshape between layers, which an IntModel does not).

The accelerator's validator answers the same vectors in tests/gateware (test_validator.py,
test_sequencer.py and the cocotb program_vectors test).
"""
import struct

import numpy as np
import pytest

from nnhil.gateware import layout, program, vectors
from nnhil.gateware.layout import AccelConfig, LayerShape as S
from nnhil.host.cpu_model import CPU_CYCLES_PER_MAC, CPU_CYCLES_PER_VALUE, cpu_limits
from nnhil.host.firmware_abi import LAYER_FIELDS, LAYER_WORDS, MAX_DIM, FirmwareError
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, MaxPool2D

pytestmark = pytest.mark.board

# The vectors of the small 4-lane build: their shapes stay small enough for the CPU.
VECTOR_CFG = AccelConfig(lanes=4, weight_words=512, bias_entries=96, act_bytes=40, logit_words=12,
                         max_layers=4)
IMAGE_BYTES = 20   # the image the firmware is given: the base vector's (1, 4, 5) input


def cpu_vectors():
    """(name, n_layers, [LayerShape]): the shared vectors, and the CPU record's own limits."""
    out = [(name, n, [s for s, *_ in vectors.decode(words, n)])
           for name, n, words in vectors.program_vectors(VECTOR_CFG, np.random.default_rng(1))]
    return out + [
        ("c_out past MAX_DIM", 1, [S(1, 1, 1, 1, MAX_DIM + 1, logits=True)]),
        ("layers past MAX_DIM", MAX_DIM + 1, []),
    ]


def random_layers(shapes, rng):
    """A Conv2D of random weights per shape (Dense when 1x1 over one position), each pooled
    one followed by its MaxPool2D: [(conv or dense, pool or None)]."""
    out = []
    for s in shapes:
        args = (rng.integers(-3000, 3000, s.c_out).astype(np.int32),
                rng.integers(1 << 15, fx.MULT_MAX + 1, s.c_out).astype(np.uint16),
                np.full(s.c_out, 14, np.uint8), fx.OUTPUT_I32 if s.logits else fx.OUTPUT_U8)
        w = rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, (s.c_out, s.c_in, s.kernel, s.kernel)).astype(np.int8)
        if (s.height, s.width, s.kernel) == (1, 1, 1):
            layer = Dense(w.reshape(s.c_out, s.c_in), *args)
        else:
            layer = Conv2D(w, *args, (s.c_in, s.height, s.width))
        out.append((layer, MaxPool2D(layer.shape_out) if s.pool else None))
    return out


def reference_logits(layers, image):
    """The integer reference on flat activations: a layer reads the previous one's values in
    order, whatever its (C, H, W), as the firmware does."""
    x = image
    for layer, pool in layers:
        x = layer(x)
        if pool:
            x = pool(x)
    return x.reshape(len(x), -1)


def cpu_blob(n_layers, shapes, layers, base):
    """The CPU model blob at ``base`` (the format of host.cpu_model.pack_cpu_model): the records
    of ``shapes`` and, when given, the arrays of ``layers`` (else array addresses 0)."""
    head = 4 * (1 + LAYER_WORDS * len(shapes))
    words, arrays = [n_layers], bytearray()

    def put(data):
        arrays.extend(bytes(-len(arrays) % 4))
        arrays.extend(data)
        return base + head + len(arrays) - len(data)

    for s, (layer, _) in zip(shapes, layers or [(None, None)] * len(shapes)):
        addr = dict(weights=0, bias=0, requant=0)
        if layer is not None:
            addr = dict(weights=put(np.ascontiguousarray(layer.weights, dtype=np.int8).tobytes()),
                        bias=put(np.asarray(layer.bias, dtype="<i4").tobytes()),
                        requant=put(np.asarray(layout.REQUANT.encode(mult=layer.mult, shift=layer.shift),
                                               dtype="<u4").tobytes()))
        fields = dict(c_in=s.c_in, height=s.height, width=s.width, kernel=s.kernel, c_out=s.c_out,
                      flags=s.flags, **addr)
        words += [fields[name] for name in LAYER_FIELDS]
    return struct.pack(f"<{len(words)}I", *words) + bytes(arrays)


def test_vectors_discriminate():
    """Both verdicts occur, and some vectors the accelerator refuses the CPU runs: the firmware
    is held to its own limits, not the accelerator's."""
    fw = {name: program.check_layers(n, lambda l: (shapes[l], 0, 0), cpu_limits(IMAGE_BYTES))[0]
          for name, n, shapes in cpu_vectors()}
    accel = {name: program.check_program(w, n, VECTOR_CFG)[0]
             for name, n, w in vectors.program_vectors(VECTOR_CFG, np.random.default_rng(1))}
    ok = layout.ERR_NONE
    assert {v == ok for v in fw.values()} == {True, False}
    assert {n for n in accel if accel[n] != ok and fw[n] == ok} >= {"conv logits", "weights past the end",
                                                                   "too many logits"}
    assert fw["input of act_bytes"] != ok and accel["input of act_bytes"] == ok   # 40 > 20 image bytes


def test_firmware_answers_as_the_validator(firmware):
    rng = np.random.default_rng(7)
    image = rng.integers(0, fx.ACT_MAX + 1, (1, IMAGE_BYTES)).astype(np.uint8)
    answers, expect = {}, {}
    for name, n_layers, shapes in cpu_vectors():
        code, _ = program.check_layers(n_layers, lambda l: (shapes[l], 0, 0), cpu_limits(IMAGE_BYTES))
        expect[name] = code == layout.ERR_NONE
        layers = random_layers(shapes, rng) if expect[name] else None   # refused: no arrays
        blob = cpu_blob(n_layers, shapes, layers, firmware.data)
        n_out = layers[-1][0].n_out if layers else 0
        try:
            # a refused model is answered during the command's setup; an accepted one within
            # the CPU's bound for its layers
            cycles = sum(CPU_CYCLES_PER_MAC * s.macs + CPU_CYCLES_PER_VALUE * s.phases * s.n_out
                         for s in shapes[:n_layers]) if expect[name] else 0
            r = firmware.cpu_infer_blob(blob, image, n_out, cycles, code="plain")
        except FirmwareError as e:
            assert "a model the firmware cannot run" in str(e), (name, e)
            answers[name] = False
            continue
        answers[name] = True
        if layers:
            x = image[:, :shapes[0].n_in]
            np.testing.assert_array_equal(r.logits, reference_logits(layers, x), err_msg=name)
    assert answers == expect
