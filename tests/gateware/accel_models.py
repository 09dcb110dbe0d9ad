"""Random and extreme integer models, shared by the accelerator's cocotb tests and the
firmware's CPU-inference tests, so that both run the same edge cases."""
import copy

import numpy as np

from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D


def _requant(rng, n_out, n_in, gain):
    """bias, mult, shift that spread typical outputs of n_in-input neurons over 0..255.

    ``gain`` shifts fewer bits (more saturation at 255) when positive, more when negative.
    """
    spread = 128.0 * 75 * np.sqrt(n_in)
    mult = rng.integers(1 << (fx.MULT_BITS - 1), fx.MULT_MAX + 1, n_out).astype(np.uint16)
    shift = int(np.ceil(np.log2(spread))) + fx.MULT_BITS - fx.ACT_BITS - gain
    shift = np.clip(shift + rng.integers(-1, 2, n_out), fx.SHIFT_MIN, fx.SHIFT_MAX).astype(np.uint8)
    return mult, shift, spread


def _weights(rng, shape, wlo, whi):
    return rng.integers(wlo, whi + 1, size=shape, dtype=np.int64).astype(np.int8)


def dense(rng, n_in, n_out, last, wlo=fx.WEIGHT_MIN, whi=fx.WEIGHT_MAX, bias_scale=1.0, gain=0):
    """A random dense layer whose requantization spreads typical outputs over 0..255."""
    mult, shift, spread = _requant(rng, n_out, n_in, gain)
    bias = np.rint(rng.normal(0, bias_scale * spread, n_out)).astype(np.int32)
    return Dense(_weights(rng, (n_out, n_in), wlo, whi), bias, mult, shift,
                 fx.OUTPUT_I32 if last else fx.OUTPUT_U8)


def conv(rng, in_shape, c_out, k, wlo=fx.WEIGHT_MIN, whi=fx.WEIGHT_MAX, bias_scale=1.0, gain=0):
    """A random hidden conv layer, requantized like :func:`dense`."""
    mult, shift, spread = _requant(rng, c_out, in_shape[0] * k * k, gain)
    bias = np.rint(rng.normal(0, bias_scale * spread, c_out)).astype(np.int32)
    return Conv2D(_weights(rng, (c_out, in_shape[0], k, k), wlo, whi), bias, mult, shift,
                  fx.OUTPUT_U8, in_shape)


def cnn(rng, in_shape, blocks, dense_sizes, **kw):
    """conv (-> pool) blocks given as (c_out, k, pool), then dense layers of the given sizes
    (an int: one dense layer to that many classes)."""
    layers, shape = [], tuple(in_shape)
    for c_out, k, pooled in blocks:
        layers.append(conv(rng, shape, c_out, k, **kw))
        shape = layers[-1].shape_out
        if pooled:
            layers.append(MaxPool2D(shape))
            shape = layers[-1].shape_out
    sizes = [int(np.prod(shape))] + list(np.atleast_1d(dense_sizes))
    layers += [dense(rng, int(a), int(b), i == len(sizes) - 2, **kw)
               for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    return IntModel(layers, input_shape=in_shape)


def model_of(layers):
    return IntModel(layers, input_shape=(layers[0].n_in,))


def random_model(rng, sizes, **kw):
    return model_of([dense(rng, a, b, i == len(sizes) - 2, **kw)
                     for i, (a, b) in enumerate(zip(sizes, sizes[1:]))])


EDGE_VALUES = [   # keyword arguments of dense, conv and cnn
    dict(wlo=fx.WEIGHT_MIN, whi=fx.WEIGHT_MIN),    # all weights -128
    dict(wlo=fx.WEIGHT_MAX, whi=fx.WEIGHT_MAX),    # all 127
    dict(wlo=fx.WEIGHT_MIN, whi=-1),               # all negative: ReLU clamps to 0
    dict(gain=6),                                  # saturates at 255
    dict(bias_scale=0),                            # zero bias
]


def requantization_extremes(rng, n_in, n_out):
    """A hidden layer at shift 1 and 47, mult 0 and MULT_MAX, accumulators near the int32
    limits, then logits near 2**31."""
    hidden = dense(rng, n_in, n_out, False)
    # |acc| near 2**31 times mult up to 2**16: shifts around 39 land inside 0..255, smaller saturate
    hidden.shift[:] = rng.choice([fx.SHIFT_MIN, 38, 39, 40, 41, fx.SHIFT_MAX], n_out)
    hidden.mult[:] = rng.choice([0, 1, 12345, 1 << (fx.MULT_BITS - 1), fx.MULT_MAX], n_out)
    bound = fx.accumulator_bound(hidden.weights, np.zeros(n_out))
    hidden.bias[:] = np.clip(rng.choice([-1, 1], n_out) * (fx.ACC_MAX - bound), -fx.ACC_MAX, fx.ACC_MAX)
    last = dense(rng, n_out, 3, True)
    last.bias[:] = fx.ACC_MAX - fx.accumulator_bound(last.weights, np.zeros(3))   # logits near 2**31
    return model_of([hidden, last])


def argmax_ties(rng, n_out):
    """Two models whose logits tie for every image: in two groups, the later one larger (its
    first index wins), and all equal (index 0 wins)."""
    last = dense(rng, 8, n_out, True)
    last.weights[:] = last.weights[0]
    last.bias[:] = last.bias[0]
    last.bias[n_out // 2:] += 1
    groups = model_of([dense(rng, 5, 8, False), last])
    equal = copy.deepcopy(groups)
    equal.layers[-1].bias[:] = equal.layers[-1].bias[0]
    return [groups, equal]
