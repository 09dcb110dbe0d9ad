"""The integer reference model: the bit-exact software twin of the accelerator.

Layers: :class:`Dense`, :class:`Conv2D` and :class:`MaxPool2D`; each follows
:mod:`training.fixedpoint` to the bit, including its tensor layout (channel-major
``(C, H, W)``, flattened row-major, so a Dense after a conv/pool reads the activations in
exactly their memory order). Products and sums of Dense and Conv2D are computed in
float64, which is exact here: every product is an integer of magnitude <= 128 * 255 and
every partial sum, in any order, is bounded by 255 * sum|w| + |bias| < 2**33 (the full sum
even fits int32, see :func:`fixedpoint.check_accumulator_range`), far inside float64's
53-bit mantissa, so each float64 operation is exact and BLAS makes it fast. Max-pooling
is a comparison on uint8 values and is exact by construction.
"""
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import fixedpoint as fx

CONV_CHUNK_ELEMENTS = 1 << 22    # bounds the float64 im2col buffer of Conv2D (32 MiB)


@dataclass
class _Requantized:
    """What dense and conv layers share: int8 weights, then per-output requantization."""
    weights: np.ndarray   # int8, output channel first
    bias: np.ndarray      # int32 [outputs]
    mult: np.ndarray      # uint16 [outputs]
    shift: np.ndarray     # uint8 [outputs]
    output: str           # fx.OUTPUT_U8 (hidden) or fx.OUTPUT_I32 (logits)

    def __call__(self, x):
        return _output_stage(self, self.accumulate(x))


@dataclass
class Dense(_Requantized):
    """weights int8 [n_out, n_in]; one bias, mult and shift per output."""

    @property
    def n_in(self):
        return self.weights.shape[1]

    @property
    def n_out(self):
        return self.weights.shape[0]

    @property
    def macs(self):
        return self.weights.size

    def accumulate(self, x):
        """int32 accumulators for uint8 inputs x [N, n_in] (or [N, C, H, W], flattened C-major)."""
        x = x.reshape(len(x), -1)
        acc = x.astype(np.float64) @ self.weights.T.astype(np.float64) + self.bias
        return acc.astype(np.int64)

    def out_shape(self, index, in_shape):
        """Activation shape after this layer given the previous stage's; raises if they do not chain."""
        expected = int(np.prod(in_shape))
        if self.n_in != expected:
            raise ValueError(f"layer {index} takes {self.n_in} inputs but the previous "
                             f"stage produces {expected}: the shapes do not chain")
        return (self.n_out,)

    def validate(self, index):
        """Raise ValueError naming what is wrong with this layer."""
        where = f"layer {index} (dense)"
        if self.weights.ndim != 2 or 0 in self.weights.shape:
            raise ValueError(f"{where}: weights must be a non-empty 2-D array, got {self.weights.shape}")
        _check_requantization(where, self, self.n_out)


def _output_stage(layer, acc):
    """int32 logits, or per-output requantization to uint8 (over the channel axis 1 of acc)."""
    if layer.output == fx.OUTPUT_I32:
        return acc.astype(np.int32)
    per_output = (-1,) + (1,) * (acc.ndim - 2)
    return fx.requantize(acc, layer.mult.reshape(per_output), layer.shift.reshape(per_output))


def _check_requantization(where, layer, n_outputs):
    """The checks dense and conv layers share: per-output parameters, output kind, ranges."""
    for name in ("bias", "mult", "shift"):
        arr = getattr(layer, name)
        if arr.shape != (n_outputs,):
            raise ValueError(f"{where}: {name} has shape {arr.shape}, expected ({n_outputs},)")
    if layer.output not in fx.OUTPUT_KINDS:
        raise ValueError(f"{where}: output kind {layer.output!r} is not one of {fx.OUTPUT_KINDS}")
    if layer.output == fx.OUTPUT_U8 and (layer.shift.min() < fx.SHIFT_MIN or layer.shift.max() > fx.SHIFT_MAX):
        raise ValueError(f"{where}: shifts must lie in [{fx.SHIFT_MIN}, {fx.SHIFT_MAX}]")
    fx.check_accumulator_range(layer.weights, layer.bias)


def as_chw(shape):
    """An activation shape as (C, H, W): a 2-D input image (H, W) is one channel. The one rule
    for an [H, W] input_shape: model files, IntModel, the float CNN and nnhil run's images all
    read it as [1, H, W]."""
    shape = tuple(int(s) for s in shape)
    return (1,) + shape if len(shape) == 2 else shape


def _check_chw(where, in_shape):
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise ValueError(f"{where}: in_shape must be a positive (C, H, W), got {tuple(in_shape)}")


def _chain_chw(index, kind, in_shape, prev_shape):
    prev = as_chw(prev_shape)
    if tuple(in_shape) != prev:
        given = (f"the model's input_shape is {prev} ([H, W] is [1, H, W])" if index == 0 else
                 f"the previous stage produces {prev}")
        raise ValueError(f"layer {index} ({kind}) takes a {tuple(in_shape)} (C, H, W) input but {given}: "
                         f"the shapes do not chain")


@dataclass
class Conv2D(_Requantized):
    """Valid (no padding), stride-1 convolution (cross-correlation), per output channel::

        acc[o, r, c] = bias[o] + sum_{i, ky, kx} weights[o, i, ky, kx] * x[i, r + ky, c + kx]

    then requantized with mult[o], shift[o] exactly like :class:`Dense`. A (C, H, W) input
    gives (c_out, H - k + 1, W - k + 1). Weights are int8 [c_out, c_in, k, k].
    """
    in_shape: tuple       # (C, H, W) of the input

    def __post_init__(self):
        self.in_shape = tuple(int(s) for s in self.in_shape)

    @property
    def c_out(self):
        return self.weights.shape[0]

    @property
    def kernel(self):
        return self.weights.shape[2]

    @property
    def shape_out(self):
        c, h, w = self.in_shape
        return (self.c_out, h - self.kernel + 1, w - self.kernel + 1)

    @property
    def n_in(self):
        return int(np.prod(self.in_shape))

    @property
    def n_out(self):
        return int(np.prod(self.shape_out))

    @property
    def macs(self):
        return int(np.prod(self.shape_out[1:])) * self.weights.size

    def accumulate(self, x):
        """int32 accumulators [N, c_out, Ho, Wo] for uint8 inputs x [N, C, H, W]."""
        x = x.reshape((len(x),) + self.in_shape)
        co, ci, k, _ = self.weights.shape
        _, ho, wo = self.shape_out
        wm = self.weights.reshape(co, -1).T.astype(np.float64)
        out = np.empty((len(x), co, ho, wo), np.int64)
        step = max(1, CONV_CHUNK_ELEMENTS // (ho * wo * ci * k * k))
        for s in range(0, len(x), step):
            win = sliding_window_view(x[s:s + step], (k, k), axis=(2, 3))   # [n, C, Ho, Wo, k, k]
            cols = win.transpose(0, 2, 3, 1, 4, 5).astype(np.float64).reshape(-1, ci * k * k)
            acc = cols @ wm + self.bias
            out[s:s + step] = acc.reshape(-1, ho, wo, co).transpose(0, 3, 1, 2)
        return out

    def out_shape(self, index, in_shape):
        _chain_chw(index, "conv2d", self.in_shape, in_shape)
        return self.shape_out

    def validate(self, index):
        where = f"layer {index} (conv2d)"
        w = self.weights
        if w.ndim != 4 or 0 in w.shape or w.shape[2] != w.shape[3]:
            raise ValueError(f"{where}: weights must be a non-empty [c_out, c_in, k, k] array "
                             f"with a square kernel, got {w.shape}")
        _check_chw(where, self.in_shape)
        c, h, wd = self.in_shape
        if w.shape[1] != c:
            raise ValueError(f"{where}: weights take {w.shape[1]} input channels, in_shape has {c}")
        if self.kernel > h or self.kernel > wd:
            raise ValueError(f"{where}: a {self.kernel}x{self.kernel} kernel does not fit a {h}x{wd} input")
        _check_requantization(where, self, self.c_out)


@dataclass
class MaxPool2D:
    """2x2 max-pooling, stride 2, on uint8 activations, per channel::

        y[c, r, q] = max(x[c, 2r + dy, 2q + dx] for dy, dx in {0, 1})

    A (C, H, W) input gives (C, H // 2, W // 2): an odd last row/column is dropped.
    """
    in_shape: tuple       # (C, H, W) of the input
    output = fx.OUTPUT_U8
    size = 2

    def __post_init__(self):
        self.in_shape = tuple(int(s) for s in self.in_shape)

    @property
    def shape_out(self):
        c, h, w = self.in_shape
        return (c, h // 2, w // 2)

    @property
    def n_in(self):
        return int(np.prod(self.in_shape))

    @property
    def n_out(self):
        return int(np.prod(self.shape_out))

    macs = 0

    def __call__(self, x):
        if x.dtype != np.uint8:
            raise TypeError(f"max-pool takes uint8 activations, got {x.dtype}")
        _, ho, wo = self.shape_out
        x = x.reshape((len(x),) + self.in_shape)
        top = np.maximum(x[:, :, 0:2 * ho:2, 0:2 * wo:2], x[:, :, 0:2 * ho:2, 1:2 * wo:2])
        bottom = np.maximum(x[:, :, 1:2 * ho:2, 0:2 * wo:2], x[:, :, 1:2 * ho:2, 1:2 * wo:2])
        return np.maximum(top, bottom)

    def out_shape(self, index, in_shape):
        _chain_chw(index, "maxpool2d", self.in_shape, in_shape)
        return self.shape_out

    def validate(self, index):
        where = f"layer {index} (maxpool2d)"
        _check_chw(where, self.in_shape)
        if self.in_shape[1] < 2 or self.in_shape[2] < 2:
            raise ValueError(f"{where}: a 2x2 pool needs at least a 2x2 input, got {self.in_shape}")


LAYER_TYPES = {"dense": Dense, "conv2d": Conv2D, "maxpool2d": MaxPool2D}


class IntModel:
    """A quantized network: uint8 image in, int32 logits out."""

    def __init__(self, layers, input_shape=(28, 28), classes=None, meta=None):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        if self.layers and isinstance(self.layers[0], (Conv2D, MaxPool2D)):
            self.input_shape = as_chw(self.input_shape)          # a conv or pool takes (C, H, W)
        self.classes = list(classes) if classes is not None else None
        self.meta = dict(meta or {})
        self.validate()

    def validate(self):
        if not self.layers:
            raise ValueError("a model needs at least one layer")
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            layer.validate(i)
            shape = layer.out_shape(i, shape)
            last = i == len(self.layers) - 1
            want = fx.OUTPUT_I32 if last else fx.OUTPUT_U8
            if layer.output != want:
                raise ValueError(f"layer {i} outputs {layer.output!r}; "
                                 f"{'the last layer' if last else 'a hidden layer'} must output {want!r}")

    @property
    def n_in(self):
        return int(np.prod(self.input_shape))

    @property
    def n_out(self):
        return self.layers[-1].n_out

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    @property
    def weight_count(self):
        return sum(layer.weights.size for layer in self.layers if hasattr(layer, "weights"))

    def activations(self, images):
        """Every layer's output for uint8 images [N, ...]: the last entry is the logits.

        Dense outputs are [N, n_out]; Conv2D and MaxPool2D outputs are [N, C, H, W].
        """
        x = np.asarray(images)
        if x.dtype != np.uint8:
            raise TypeError(f"inputs must be uint8 pixels, got {x.dtype}")
        x = x.reshape((len(x),) + self.input_shape)
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs

    def logits(self, images):
        return self.activations(images)[-1]

    def predict(self, images, batch=2048):
        """Argmax of the logits; ties resolve to the lowest index, as in the hardware."""
        return np.concatenate([self.logits(images[i:i + batch]).argmax(axis=1)
                               for i in range(0, len(images), batch)])
