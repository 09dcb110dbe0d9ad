"""The integer reference model: the bit-exact software twin of the accelerator.

Dense layers only for now; each follows :mod:`training.fixedpoint` to the bit. Products
and sums are computed in float64, which is exact here: every partial sum is bounded by
255 * sum|w| + |bias| < 2**33, far inside float64's 53-bit mantissa, and BLAS makes it fast.
"""
from dataclasses import dataclass

import numpy as np

from . import fixedpoint as fx


@dataclass
class Dense:
    weights: np.ndarray   # int8 [n_out, n_in]
    bias: np.ndarray      # int32 [n_out]
    mult: np.ndarray      # uint16 [n_out]
    shift: np.ndarray     # uint8 [n_out]
    output: str           # fx.OUTPUT_U8 (hidden) or fx.OUTPUT_I32 (logits)

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
        """int32 accumulators for uint8 inputs x [N, n_in]."""
        acc = x.astype(np.float64) @ self.weights.T.astype(np.float64) + self.bias
        return acc.astype(np.int64)

    def __call__(self, x):
        acc = self.accumulate(x)
        if self.output == fx.OUTPUT_I32:
            return acc.astype(np.int32)
        return fx.requantize(acc, self.mult, self.shift)

    def validate(self, index):
        """Raise ValueError naming what is wrong with this layer."""
        where = f"layer {index} (dense)"
        if self.weights.ndim != 2 or 0 in self.weights.shape:
            raise ValueError(f"{where}: weights must be a non-empty 2-D array, got {self.weights.shape}")
        for name, arr in (("bias", self.bias), ("mult", self.mult), ("shift", self.shift)):
            if arr.shape != (self.n_out,):
                raise ValueError(f"{where}: {name} has shape {arr.shape}, expected ({self.n_out},)")
        if self.output not in fx.OUTPUT_KINDS:
            raise ValueError(f"{where}: output kind {self.output!r} is not one of {fx.OUTPUT_KINDS}")
        if self.output == fx.OUTPUT_U8 and (self.shift.min() < fx.SHIFT_MIN or self.shift.max() > fx.SHIFT_MAX):
            raise ValueError(f"{where}: shifts must lie in [{fx.SHIFT_MIN}, {fx.SHIFT_MAX}]")
        fx.check_accumulator_range(self.weights, self.bias)


LAYER_TYPES = {"dense": Dense}


class IntModel:
    """A quantized network: uint8 image in, int32 logits out."""

    def __init__(self, layers, input_shape=(28, 28), classes=None, meta=None):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.classes = list(classes) if classes is not None else None
        self.meta = dict(meta or {})
        self.validate()

    def validate(self):
        if not self.layers:
            raise ValueError("a model needs at least one layer")
        expected = int(np.prod(self.input_shape))
        for i, layer in enumerate(self.layers):
            layer.validate(i)
            if layer.n_in != expected:
                raise ValueError(f"layer {i} takes {layer.n_in} inputs but the previous "
                                 f"stage produces {expected}: the shapes do not chain")
            last = i == len(self.layers) - 1
            want = fx.OUTPUT_I32 if last else fx.OUTPUT_U8
            if layer.output != want:
                raise ValueError(f"layer {i} outputs {layer.output!r}; "
                                 f"{'the last layer' if last else 'a hidden layer'} must output {want!r}")
            expected = layer.n_out

    @property
    def n_in(self):
        return self.layers[0].n_in

    @property
    def n_out(self):
        return self.layers[-1].n_out

    @property
    def macs(self):
        return sum(layer.macs for layer in self.layers)

    def activations(self, images):
        """Every layer's output for uint8 images [N, ...]: the last entry is the logits."""
        x = np.asarray(images)
        if x.dtype != np.uint8:
            raise TypeError(f"inputs must be uint8 pixels, got {x.dtype}")
        x = x.reshape(len(x), -1)
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
