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


def accumulator_extremes(rng, n_in, n_extreme, n_aimed, n_logits):
    """A model and images that drive every datapath register to the width the spec allows.

    A hidden dense layer of ``n_in`` inputs (the largest fan-in the build's buffers allow),
    each channel's weights all 127 or all -128, so its sum on the all-255 image is the
    largest of its sign. The first ``n_extreme`` channels have biases that put their
    worst-case accumulator within 2**8 of ACC_MAX or of ACC_MIN, which
    ``fixedpoint.check_accumulator_range`` still accepts; lane by lane they alternate the
    bound, then the mult (1, 2**15, MULT_MAX, random: products at both extremes), then the
    weight sign. The next ``n_aimed`` channels (a lane's other weight sign when n_extreme is
    the lane count) have biases that put their accumulator on the targeted image where
    their shift gives a value inside 1..254, so the shifter and the rounding see real
    values. Shifts run through SHIFT_MIN..SHIFT_MAX over the channels. The logits: one
    within 2**8 of ACC_MAX and one of ACC_MIN on the all-255 image, the rest random.

    Returns (model, images): all-255, all-zero and the image the aimed channels are aimed at.
    """
    n_out = n_extreme + n_aimed
    target = rng.integers(0, fx.ACT_MAX + 1, n_in).astype(np.uint8)
    images = [np.full(n_in, fx.ACT_MAX, np.uint8), np.zeros(n_in, np.uint8), target]

    j = np.arange(n_out)
    high = j % 2 == 0
    mults = np.array([1, 1 << (fx.MULT_BITS - 1), fx.MULT_MAX, int(rng.integers(1, fx.MULT_MAX + 1))])
    negative = ((j // 8) + (j >= n_extreme)) % 2 == 1
    hidden = dense(rng, n_in, n_out, False)
    w = hidden.weights
    w[:] = np.where(negative, fx.WEIGHT_MIN, fx.WEIGHT_MAX)[:, None]
    hidden.mult[:] = mults[(j // 2) % 4]
    hidden.shift[:] = fx.SHIFT_MIN + j % (fx.SHIFT_MAX - fx.SHIFT_MIN + 1)

    wj = w.astype(np.int64)
    pos = np.where(wj > 0, wj, 0).sum(axis=1) * fx.ACT_MAX
    neg = np.where(wj < 0, -wj, 0).sum(axis=1) * fx.ACT_MAX
    margin = rng.integers(0, 1 << 8, n_out)
    extreme = np.where(high, fx.ACC_MAX - margin - pos, fx.ACC_MIN + 1 + margin + neg)

    # the aimed channels: the accumulator on `target` in the middle of a value in 1..254
    room = fx.ACC_MAX - int((pos + neg).max())             # any image stays in range
    shift, mult = hidden.shift.astype(np.int64), hidden.mult.astype(np.int64)
    reach = np.minimum(254, (room * mult) >> shift)
    y = np.array([int(rng.integers(1, max(1, r) + 1)) for r in reach])
    aimed = np.minimum(((2 * y + 1) << (shift - 1)) // mult, room) - wj @ target.astype(np.int64)
    hidden.bias[:] = np.where(j < n_extreme, extreme, aimed)
    fx.check_accumulator_range(hidden.weights, hidden.bias)

    # logits: the hidden outputs of the all-255 image are known; weight them at the limits
    acc255 = wj.sum(axis=1) * fx.ACT_MAX + hidden.bias.astype(np.int64)
    h = fx.requantize(acc255, hidden.mult, hidden.shift).astype(np.int64)
    last = dense(rng, n_out, n_logits, True)
    for i, up in enumerate((True, False)[:n_logits]):
        on, off = (fx.WEIGHT_MAX, fx.WEIGHT_MIN) if up else (fx.WEIGHT_MIN, fx.WEIGHT_MAX)
        last.weights[i] = np.select([h == fx.ACT_MAX, h == 0], [on, off], 0)
        lw = last.weights[i].astype(np.int64)
        r = int(rng.integers(0, 1 << 8))
        last.bias[i] = (fx.ACC_MAX - r - fx.ACT_MAX * lw[lw > 0].sum() if up
                        else fx.ACC_MIN + 1 + r - fx.ACT_MAX * lw[lw < 0].sum())
    fx.check_accumulator_range(last.weights, last.bias)
    return model_of([hidden, last]), images
