"""Compile an IntModel into the accelerator's memory image (pure Python, see layout.py).

The host compiles a model once (:class:`gateware.compiled.CompiledModel`: these functions on
one :func:`layer_shapes`), which refuses it before anything is written if it does not fit,
then writes the regions of its memory image, the input from :func:`pack_input`, sets
``n_layers`` and starts.
"""
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from nnhil.training.intmodel import Conv2D, Dense, MaxPool2D

from . import layout
from .layout import LayerShape


class ModelDoesNotFit(ValueError):
    """The model exceeds a capacity of the accelerator build; the message lists each one."""


@dataclass
class MemoryImage:
    """32-bit words to write at the start of each region, the program length, each layer's
    out_base (layout.DESCRIPTOR) and the input slots a batch may use: 2 when the outputs
    written into act0 leave both image slots free (see :func:`place_outputs`), else 1.

    Loading it writes the model, :attr:`regions` and :attr:`csrs`, which only another load
    changes, so a check of the load reads them back; and resets :attr:`RUN_STATE`, the CSRs
    that runs change and a check must not read as the model's: ``stop_after`` (the driver's
    layer-by-layer runs set it) and ``slot`` (the firmware's double-buffered batch leaves it
    at its last image's slot). The firmware's batch writes ``n_layers`` too, the same value.
    act0, act1 and the logits are a run's, never part of the image."""
    regions: dict = field(default_factory=dict)
    n_layers: int = 0
    out_bases: list = field(default_factory=list)
    slots: int = 1
    RUN_STATE: ClassVar[dict] = {"stop_after": 0, "slot": 0}    # CSR -> the value a load sets

    @property
    def csrs(self):
        """The model's CSRs and their values."""
        return {"n_layers": self.n_layers}


def layer_shapes(model):
    """[(LayerShape, the conv or dense layer it runs)] of an IntModel, each max-pool fused
    into the conv before it (the hardware pools the conv's output as it is produced)."""
    out = []
    for i, layer in enumerate(model.layers):
        last = i == len(model.layers) - 1
        if isinstance(layer, MaxPool2D):
            prev = out[-1][0] if out else None
            if not (i and isinstance(model.layers[i - 1], Conv2D)) or prev.pool:
                raise ModelDoesNotFit(f"layer {i} is a max-pool that does not follow a conv layer: "
                                      "the accelerator pools a conv's output as it is produced")
            out[-1] = (LayerShape(**{**prev.__dict__, "pool": True}), out[-1][1])
        elif isinstance(layer, Conv2D):
            out.append((LayerShape(*layer.in_shape, layer.kernel, layer.c_out, logits=last), layer))
        elif isinstance(layer, Dense):
            out.append((LayerShape.dense(layer.n_in, layer.n_out, logits=last), layer))
        else:
            raise ModelDoesNotFit(f"layer {i} is a {type(layer).__name__}, which the accelerator does not run")
    return out


def _needs(shapes, cfg):
    """(what, needed, capacity) for every capacity the model uses; a capacity given as a
    string is that AccelConfig field."""
    last = shapes[-1]
    return [
        ("layers (a max-pool shares its conv's)", len(shapes), "max_layers"),
        ("inputs of a layer (activation buffer bytes)", max(s.n_in for s in shapes), "act_bytes"),
        ("outputs of a hidden layer (activation buffer bytes)",
         max((s.n_out for s in shapes[:-1]), default=0), "act_bytes"),
        ("logits", last.n_out, "logit_words"),
        ("output positions of the last layer (it must be dense)", last.plane * last.phases, 1),
        (f"weight words ({cfg.lanes} int8 each)", sum(s.weight_words(cfg.lanes) for s in shapes),
         "weight_words"),
        ("bias entries", sum(s.c_out for s in shapes), "bias_entries"),
        ("channels of a layer (descriptor field)", max(max(s.c_in, s.c_out) for s in shapes),
         (1 << layout.DIM_BITS) - 1),
        ("height, width or kernel of a layer (descriptor field)",
         max(max(s.height, s.width, s.kernel) for s in shapes), (1 << layout.GEOM_BITS) - 1),
    ]


def check_fits(model, cfg):
    """Raise ModelDoesNotFit naming every capacity the model exceeds, and by how much."""
    return check_shapes([s for s, _ in layer_shapes(model)], cfg)


def check_shapes(shapes, cfg):
    """check_fits of a program of layout.LayerShape layers; returns them."""
    over = [f"{what}: needs {need}, the accelerator has {cap} ({need - cap} too many)"
            for what, need, cap in ((w, n, getattr(cfg, c) if isinstance(c, str) else c)
                                    for w, n, c in _needs(shapes, cfg)) if need > cap]
    if over:
        raise ModelDoesNotFit(f"the model does not fit the accelerator ({cfg}):\n  " + "\n  ".join(over))
    return shapes


def usage(model, cfg):
    """How much of each accelerator memory the model takes, by AccelConfig field."""
    return shape_usage(check_fits(model, cfg), cfg)


def shape_usage(shapes, cfg):
    """usage of a program of layout.LayerShape layers."""
    used = {}
    for _, need, field in _needs(shapes, cfg):
        if isinstance(field, str):
            used[field] = max(used.get(field, 0), need)
    return used


def _words(data):
    """Little-endian 32-bit words of a byte array (length a multiple of 4)."""
    return np.frombuffer(np.ascontiguousarray(data, dtype=np.uint8).tobytes(), dtype="<u4").tolist()


def pack_weights(weights, lanes, groups=1, pairs=1):
    """Words of one layer: per tile, per window step, the weights to its ``lanes`` lanes: the
    tile's channels, or with ``groups`` G (LayerShape.groups) G groups of lanes/G channels,
    group g taking window element G i + g at step i; with ``pairs`` 2 (LayerShape.pairs)
    both halves of the lanes hold the same channels (two output positions)."""
    weights = weights.reshape(len(weights), -1)            # [c_out, c_in * k * k]
    n_out, n_in = weights.shape
    width = lanes // pairs
    t = layout.tiles(n_out, width)
    steps = -(-n_in // groups)
    padded = np.zeros((t * width // groups, steps * groups), dtype=np.int8)
    padded[:n_out, :n_in] = weights
    # [tile, channel, step, group] -> [tile, step, group, channel]: lane g * lanes/G + c
    split = padded.reshape(t, width // groups, steps, groups).transpose(0, 2, 3, 1)
    return _words(np.tile(split.reshape(t * steps, width), (1, pairs)).view(np.uint8))


def pack_bias(layer):
    """Two words per output channel: its layout.BIAS entry (bias, mult, shift), low word first."""
    entries = layout.BIAS.encode(bias=layer.bias, mult=layer.mult, shift=layer.shift)
    return np.asarray(entries, dtype="<u8").view("<u4").tolist()


def place_outputs(shapes, cfg):
    """(out_base of each layer, slots): where each layer's output starts in the buffer it
    writes, and whether a batch can double-buffer the input (slots 2).

    With two slots, act0 holds the input at word 0 and at cfg.slot_words (layout.py) and the
    logits go to two banks, so the input must fit half of act0 and the logits half of the
    logits region; every hidden output written into act0 (odd layers) then goes after slot
    0's image, before slot 1, at one base for all of them (a layer's act0 output is dead once
    the next layer has read it). act1 outputs and the logits start at word 0. A model that
    does not leave that room runs with one slot, all bases 0 as before."""
    in_words = -(-shapes[0].n_in // 4)
    need = max((-(-s.n_out // 4) for l, s in enumerate(shapes[:-1]) if l % 2), default=0)
    if in_words + need > cfg.slot_words or shapes[-1].c_out > cfg.slot_logits:
        return [0] * len(shapes), 1
    return [in_words if l % 2 and l < len(shapes) - 1 else 0 for l in range(len(shapes))], 2


def compile_model(model, cfg):
    """The memory image of ``model``: weights, bias and program regions, n_layers, the
    outputs' bases and slots (:func:`place_outputs`)."""
    layers = layer_shapes(model)
    check_shapes([s for s, _ in layers], cfg)
    return compile_layers(layers, cfg)


def compile_layers(layers, cfg):
    """compile_model of its layer_shapes entries, once they are known to fit ``cfg``."""
    shapes = [s for s, _ in layers]
    out_bases, slots = place_outputs(shapes, cfg)
    weights, bias, program = [], [], []
    w_base = b_base = 0
    for shape, out_base, (_, layer) in zip(shapes, out_bases, layers):
        program += shape.encode(w_base, b_base, out_base)
        weights += pack_weights(layer.weights, cfg.lanes, shape.groups(cfg.lanes), shape.pairs(cfg.lanes))
        bias += pack_bias(layer)
        w_base += shape.weight_words(cfg.lanes)
        b_base += shape.c_out
    return MemoryImage({"weights": weights, "bias": bias, "program": program}, len(shapes), out_bases, slots)


def pack_input(image):
    """act0 words of one uint8 image (any shape), four pixels per word, first in the low byte."""
    x = np.asarray(image)
    if x.dtype != np.uint8:
        raise TypeError(f"inputs must be uint8 pixels, got {x.dtype}")
    x = x.ravel()
    return _words(np.concatenate([x, np.zeros(-len(x) % 4, dtype=np.uint8)]))


def unpack_acts(words, n):
    """The first n uint8 values of activation-buffer words."""
    return np.asarray(words, dtype="<u4").view(np.uint8)[:n]


def unpack_logits(words):
    """int32 logits from logits-region words."""
    return np.asarray(words, dtype=np.uint32).view(np.int32)


@dataclass(frozen=True)
class Limits:
    """What a runner of layer programs holds, for :func:`check_layers`: the accelerator build
    (:meth:`accelerator`) or the firmware's CPU inference (host.cpu_model.cpu_limits). A limit
    of None is not checked (the CPU reads its arrays by address, and writes conv logits)."""
    max_layers: int
    input_bytes: int                 # the first layer's input
    act_bytes: int                   # a hidden layer's output (and so every later input)
    lanes: int = 1                   # weight words per channel tile
    weight_words: int | None = None
    bias_entries: int | None = None
    logit_words: int | None = None
    field_max: int | None = None     # bound on c_in, c_out, height and width
    dense_logits: bool = True        # the last layer has a single output position
    slot_words: int = 0              # words before input slot 1 (layout.AccelConfig.slot_words)
    slot_logits: int = 0             # words before logits bank 1

    @classmethod
    def accelerator(cls, cfg):
        return cls(cfg.max_layers, cfg.act_bytes, cfg.act_bytes, cfg.lanes, cfg.weight_words,
                   cfg.bias_entries, cfg.logit_words, slot_words=cfg.slot_words,
                   slot_logits=cfg.slot_logits)


def check_layers(n_layers, layer, limits, stop_after=0, slot=0):
    """(ERR_* code, failing layer) of a program of ``n_layers`` layers run in input ``slot``;
    ``layer(l)`` gives layer l as (LayerShape, w_base, b_base) or (LayerShape, w_base, b_base,
    out_base) (out_base 0 if not given; see layout.DESCRIPTOR). The one statement of the
    validation rules: the accelerator's ProgramValidator, the firmware's model_ok and
    host.cpu_model.cpu_layers are
    tested against it.

    The layer count is checked first, then ``stop_after`` against it (failing layer None),
    then layer by layer, within a layer in the order of the error codes; the first failure
    is reported. A valid program gives (ERR_NONE, None). A prefix (0 < stop_after <
    n_layers: the run ends at a hidden layer) is legal: the whole program is checked, so it
    still ends in its logits layer, and the checks already fit every hidden output in an
    activation buffer.
    """
    if not 1 <= n_layers <= limits.max_layers:
        return layout.ERR_LAYER_COUNT, None
    if stop_after > n_layers:
        return layout.ERR_STOP_AFTER, None
    over = lambda value, limit: limit is not None and value > limit
    prev, in_base = None, slot * limits.slot_words
    for l in range(n_layers):
        s, w_base, b_base, out_base = (*layer(l), 0)[:4]
        last = l == n_layers - 1
        out_base += slot * limits.slot_logits if last else 0
        ch, cw = s.conv_hw
        checks = [
            (layout.ERR_EMPTY_LAYER, lambda: 0 in (s.c_in, s.c_out, s.height, s.width, s.kernel)),
            (layout.ERR_SHAPE, lambda: over(max(s.c_in, s.c_out, s.height, s.width), limits.field_max)
                or ch < 1 or cw < 1 or (s.pool and (ch < 2 or cw < 2))),
            (layout.ERR_ACT_CAPACITY, lambda: s.n_in + 4 * in_base > (limits.act_bytes if l else limits.input_bytes)
                or (not last and s.n_out + 4 * out_base > limits.act_bytes)),
            (layout.ERR_WEIGHT_RANGE, lambda: over(w_base + s.weight_words(limits.lanes), limits.weight_words)),
            (layout.ERR_BIAS_RANGE, lambda: over(b_base + s.c_out, limits.bias_entries)),
            (layout.ERR_CHAIN, lambda: prev is not None and s.n_in != prev),
            (layout.ERR_OUTPUT_KIND, lambda: s.logits != last or (last and (
                s.pool or (limits.dense_logits and s.plane != 1) or over(s.c_out + out_base, limits.logit_words)))),
        ]
        for code, failed in checks:
            if failed():
                return code, l
        prev, in_base = s.n_out, out_base
    return layout.ERR_NONE, None


def check_program(descriptors, n_layers, cfg, stop_after=0, slot=0):
    """(ERR_* code, failing layer) the accelerator reports for a program run with
    ``stop_after`` in input ``slot`` (see :func:`check_layers`).

    ``descriptors`` is the program region as a list of words.
    """
    words = lambda l: descriptors[4 * l:4 * l + 4]
    return check_layers(n_layers, lambda l: (*LayerShape.decode(words(l)), layout.out_base(words(l))),
                        Limits.accelerator(cfg), stop_after, slot)


def layer_outputs(model, images):
    """The integer model's output of each accelerator layer (a max-pool's, for a conv it is
    fused into) for uint8 images: [N, C, H, W] of a conv, [N, n] of a dense layer, the last
    one the logits. A run stopped after layer k holds entry k of one image, flattened."""
    acts = model.activations(images)
    pooled = lambda i: i + 1 < len(model.layers) and isinstance(model.layers[i + 1], MaxPool2D)
    return [acts[i + 1 if pooled(i) else i]
            for i, layer in enumerate(model.layers) if not isinstance(layer, MaxPool2D)]
