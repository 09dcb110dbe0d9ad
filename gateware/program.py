"""Compile an IntModel into the accelerator's memory image (pure Python, see layout.py).

The host calls :func:`check_fits` before writing anything, then writes the regions of
:func:`compile_model`, the input from :func:`pack_input`, sets ``n_layers`` and starts.
"""
from dataclasses import dataclass, field

import numpy as np

from training import fixedpoint as fx
from training.intmodel import Dense

from . import layout


class ModelDoesNotFit(ValueError):
    """The model exceeds a capacity of the accelerator build; the message lists each one."""


@dataclass
class Image:
    """32-bit words to write at the start of each region, and the program length."""
    regions: dict = field(default_factory=dict)
    n_layers: int = 0


def _needs(model, cfg):
    """(what, needed, capacity) for every capacity the model uses."""
    layers = model.layers
    hidden = layers[:-1]
    return [
        ("layers", len(layers), cfg.max_layers),
        ("inputs of a layer (activation buffer bytes)", max(l.n_in for l in layers), cfg.act_bytes),
        ("outputs of a hidden layer (activation buffer bytes)",
         max((l.n_out for l in hidden), default=0), cfg.act_bytes),
        ("logits", layers[-1].n_out, cfg.logit_words),
        (f"weight words ({cfg.lanes} int8 each)",
         sum(layout.tiles(l.n_out, cfg.lanes) * l.n_in for l in layers), cfg.weight_words),
        ("bias entries", sum(l.n_out for l in layers), cfg.bias_entries),
        ("inputs or outputs of a layer (descriptor field)",
         max(max(l.n_in, l.n_out) for l in layers), (1 << layout.DIM_BITS) - 1),
    ]


def check_fits(model, cfg):
    """Raise ModelDoesNotFit naming every capacity the model exceeds, and by how much."""
    other = [f"layer {i} is {type(l).__name__}" for i, l in enumerate(model.layers) if not isinstance(l, Dense)]
    if other:
        raise ModelDoesNotFit(f"this accelerator runs dense layers only: {', '.join(other)}")
    over = [f"{what}: needs {need}, the accelerator has {cap} ({need - cap} too many)"
            for what, need, cap in _needs(model, cfg) if need > cap]
    if over:
        raise ModelDoesNotFit(f"the model does not fit the accelerator ({cfg}):\n  " + "\n  ".join(over))


def _words(data):
    """Little-endian 32-bit words of a byte array (length a multiple of 4)."""
    return np.frombuffer(np.ascontiguousarray(data, dtype=np.uint8).tobytes(), dtype="<u4").tolist()


def pack_weights(weights, lanes):
    """Words of one layer: per tile, per input, the weights to its ``lanes`` outputs."""
    n_out, n_in = weights.shape
    t = layout.tiles(n_out, lanes)
    padded = np.zeros((t * lanes, n_in), dtype=np.int8)
    padded[:n_out] = weights
    return _words(padded.reshape(t, lanes, n_in).transpose(0, 2, 1).view(np.uint8))


def pack_bias(layer):
    """Two words per output: the int32 bias, then mult | shift << 16."""
    words = np.empty((layer.n_out, 2), dtype=np.uint32)
    words[:, 0] = layer.bias.astype(np.int32).view(np.uint32)
    words[:, 1] = layer.mult.astype(np.uint32) | (layer.shift.astype(np.uint32) << 16)
    return words.ravel().tolist()


def compile_model(model, cfg):
    """The memory image of ``model``: weights, bias and program regions, and n_layers."""
    check_fits(model, cfg)
    weights, bias, program = [], [], []
    w_base = b_base = 0
    for i, layer in enumerate(model.layers):
        logits = layer.output == fx.OUTPUT_I32
        program += layout.encode_layer(layer.n_in, layer.n_out, w_base, b_base, logits)
        weights += pack_weights(layer.weights, cfg.lanes)
        bias += pack_bias(layer)
        w_base += layout.tiles(layer.n_out, cfg.lanes) * layer.n_in
        b_base += layer.n_out
    return Image({"weights": weights, "bias": bias, "program": program}, len(model.layers))


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


def check_program(descriptors, n_layers, cfg):
    """(ERR_* code, failing layer) the accelerator reports for a program: its validation's reference.

    ``descriptors`` is the program region as a list of words. The layer count is checked
    first (failing layer None), then layer by layer, within a layer in the order of the
    error codes; the first failure is reported. A valid program gives (ERR_NONE, None).
    """
    if not 1 <= n_layers <= cfg.max_layers:
        return layout.ERR_LAYER_COUNT, None
    mask = (1 << layout.DIM_BITS) - 1
    prev = None
    for l in range(n_layers):
        d0, w_base, b_base, flags = descriptors[4 * l:4 * l + 4]
        n_in, n_out = d0 & mask, (d0 >> layout.DIM_BITS) & mask
        last = l == n_layers - 1
        checks = [
            (layout.ERR_EMPTY_LAYER, n_in == 0 or n_out == 0),
            (layout.ERR_ACT_CAPACITY, n_in > cfg.act_bytes or (not last and n_out > cfg.act_bytes)),
            (layout.ERR_WEIGHT_RANGE, w_base + layout.tiles(n_out, cfg.lanes) * n_in > cfg.weight_words),
            (layout.ERR_BIAS_RANGE, b_base + n_out > cfg.bias_entries),
            (layout.ERR_CHAIN, prev is not None and n_in != prev),
            (layout.ERR_OUTPUT_KIND, bool(flags & layout.FLAG_LOGITS) != last
                                     or (last and n_out > cfg.logit_words)),
        ]
        for code, failed in checks:
            if failed:
                return code, l
        prev = n_out
    return layout.ERR_NONE, None
