"""The integer model as the firmware's CPU inferences take it: the blob of :func:`pack_cpu_model`,
what the firmware accepts (:func:`cpu_limits`) and a bound on its cycles.

One record per layer of :func:`gateware.program.layer_shapes` (a k x k valid stride-1 conv
over a (c_in, height, width) uint8 tensor, c_out channels, optionally a fused 2x2/2 max-pool
of its requantized output; a dense layer is the 1x1 conv over (n_in, 1, 1)), in the tensor
layout of :mod:`training.fixedpoint`. Hidden activations live in two MAX_WIDTH-byte buffers;
the input image is read in place from main RAM and the logits go straight to the results.
"""
import struct

import numpy as np

from nnhil.gateware import layout, program
from nnhil.training import fixedpoint as fx

from .firmware_abi import LAYER_FIELDS, LAYER_WORDS, MAX_DIM, MAX_WIDTH, FirmwareError

CPU_CYCLES_PER_MAC, CPU_CYCLES_PER_VALUE = 25, 250    # bounds for timeouts, see cpu_cycles_bound


def cpu_limits(image_bytes):
    """What the firmware's model_ok accepts, as gateware.program.Limits: records of fields up
    to MAX_DIM, hidden outputs up to MAX_WIDTH, a first layer reading at most the
    ``image_bytes`` of an image; logits may have several positions (a conv)."""
    return program.Limits(max_layers=MAX_DIM, input_bytes=image_bytes, act_bytes=MAX_WIDTH,
                          field_max=MAX_DIM, dense_logits=False)


def cpu_layers(model):
    """[(LayerShape, conv or dense layer)] the firmware runs; FirmwareError if it cannot.

    The firmware answers STATUS_BAD_MODEL to a blob failing gateware.program.check_layers
    with :func:`cpu_limits`; this names what is too large and the limit.
    """
    try:
        shapes = program.layer_shapes(model)
    except program.ModelDoesNotFit as e:
        raise FirmwareError(f"the firmware, like the accelerator, fuses each max-pool into the "
                            f"conv before it and cannot run this model: {e}") from None
    code, l = program.check_layers(len(shapes), lambda l: (shapes[l][0], 0, 0), cpu_limits(model.n_in))
    if code == layout.ERR_NONE:
        return shapes
    s, layer = shapes[l]
    j = next(j for j, other in enumerate(model.layers) if other is layer)
    what = f"layer {j} ({type(layer).__name__}{' and the max-pool after it' if s.pool else ''})"
    if code == layout.ERR_ACT_CAPACITY:
        dims = "" if s.plane == 1 else " x ".join(str(d) for d in (s.c_out, *s.out_hw)) + " = "
        raise FirmwareError(f"{what} outputs {dims}{s.n_out} activations, more than the "
                            f"{MAX_WIDTH} bytes of each hidden-activation buffer of the "
                            f"firmware's CPU inference (MAX_WIDTH)")
    raise FirmwareError(f"{what} is {s}, which the firmware's CPU inference cannot run: "
                        f"{layout.ERROR_NAMES[code]} (fields up to MAX_DIM = {MAX_DIM})")


def cpu_cycles_bound(model):
    """A generous bound on the CPU cycles of one inference, for timeouts.

    Measured on the VexRiscv: ~11.5 cycles per MAC for dense layers, ~19 for 2x2 convs
    (short contiguous runs), plus ~100 per conv value computed (call, requantization),
    which dominates 1x1 convs over few channels. A pooled layer computes 4 values per output.
    """
    return sum(CPU_CYCLES_PER_MAC * s.macs + CPU_CYCLES_PER_VALUE * s.phases * s.n_out
               for s, _ in cpu_layers(model))


def pack_cpu_model(model, base):
    """The CPU model blob at address ``base``: n_layers, then LAYER_WORDS words per layer
    (:data:`LAYER_FIELDS`: its geometry, its layout.FLAGS word and the addresses of its int8
    weights [c_out][c_in][k][k], int32 bias and layout.REQUANT words), then the arrays.

    Records are :func:`gateware.program.layer_shapes` entries, each max-pool fused into its conv.
    """
    shapes = cpu_layers(model)
    head = 4 * (1 + LAYER_WORDS * len(shapes))
    desc, arrays = [len(shapes)], bytearray()

    def put(data):
        arrays.extend(bytes(-len(arrays) % 4))
        addr = base + head + len(arrays)
        arrays.extend(data)
        return addr

    for s, layer in shapes:
        w = put(np.ascontiguousarray(layer.weights, dtype=np.int8).tobytes())
        b = put(np.asarray(layer.bias, dtype="<i4").tobytes())
        rq = np.asarray(layout.REQUANT.encode(mult=layer.mult, shift=layer.shift), dtype="<u4")
        r = put(rq.tobytes())
        flags = layout.FLAGS.encode(logits=int(layer.output == fx.OUTPUT_I32), pool=int(s.pool))
        record = dict(c_in=s.c_in, height=s.height, width=s.width, kernel=s.kernel, c_out=s.c_out,
                      flags=flags, weights=w, bias=b, requant=r)
        desc += [record[name] for name in LAYER_FIELDS]
    return struct.pack(f"<{len(desc)}I", *desc) + bytes(arrays)
