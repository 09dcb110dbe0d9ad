"""The numeric format: the one definition that gateware, firmware, host and tests share.

Every tensor that flows between layers is an unsigned 8-bit activation: the input
image is raw uint8 pixels and every hidden layer ends in ReLU, so nothing is lost by
dropping the sign bit. Weights are symmetric int8 in [-127, 127]; -128 is legal in a
model file and the hardware handles it, but the quantizer never produces it.

A dense layer computes, for each output ``j``::

    acc_j = bias_j + sum_i w_ji * x_i                      (exact int32, never wraps)
    y_j   = clamp((acc_j * mult_j + 2**(shift_j - 1)) >> shift_j, 0, 255)   hidden layers
    y_j   = acc_j                                            the output layer (int32 logits)

``>>`` is an arithmetic shift, so the rounding is "round half up" (towards +inf) and
the clamp at 0 is the ReLU. ``mult_j`` and ``shift_j`` are per output neuron.

Accumulators never overflow because :func:`check_accumulator_range` rejects any layer
whose worst case does not fit in ``ACC_BITS`` bits; the hardware relies on this.

Tensor layout (the one layout of every activation tensor, for hardware and firmware):
an activation is ``(C, H, W)``, stored channel-major and row-major inside a channel, so
element ``(c, y, x)`` is at offset ``(c * H + y) * W + x``. The input image ``(H, W)`` is
``(1, H, W)``. A dense layer after a conv or pool reads this buffer as its flat input
vector in memory order (flatten is free). Conv weights are ``[c_out][c_in][ky][kx]``.

A conv layer (valid padding, stride 1, k x k kernel) is a dense layer applied at every
output position, with per-output-channel weights, bias, mult and shift::

    acc[o, r, c] = bias[o] + sum_{i, ky, kx} w[o, i, ky, kx] * x[i, r + ky, c + kx]
    y[o, r, c]   = clamp((acc * mult[o] + 2**(shift[o] - 1)) >> shift[o], 0, 255)

so a ``(C, H, W)`` input gives ``(c_out, H - k + 1, W - k + 1)``; the same accumulator
bound (per output channel, over its ``c_in * k * k`` weights) guarantees no overflow.

A max-pool layer (2x2, stride 2) takes uint8 activations to uint8::

    y[c, r, q] = max(x[c, 2r + dy, 2q + dx] for dy, dx in {0, 1})

giving ``(C, H // 2, W // 2)`` (an odd last row/column is dropped). The spec order is
conv -> requantize/ReLU/saturate -> pool. Because requantization is monotonic
non-decreasing within a channel (one ``mult >= 0`` and ``shift`` per channel), pooling
the int32 accumulators first and requantizing the maximum gives the same bits; the
accelerator does that (it requantizes 4x fewer values), the firmware follows the spec order.
"""
import numpy as np

FORMAT_VERSION = 1

ACT_BITS = 8            # unsigned activations, inputs and hidden outputs
ACT_MAX = (1 << ACT_BITS) - 1
WEIGHT_BITS = 8         # signed weights
WEIGHT_MIN, WEIGHT_MAX = -(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1
ACC_BITS = 32           # signed accumulators, biases and logits
ACC_MIN, ACC_MAX = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1
MULT_BITS = 16          # unsigned requantization multiplier
MULT_MAX = (1 << MULT_BITS) - 1
SHIFT_MIN, SHIFT_MAX = 1, 47   # the product acc*mult has ACC_BITS + MULT_BITS bits
PRODUCT_BITS = ACC_BITS + MULT_BITS

OUTPUT_U8 = "u8"        # requantize, ReLU and saturate to uint8 (hidden layers)
OUTPUT_I32 = "i32"      # raw accumulator, the logits (the output layer)
OUTPUT_KINDS = (OUTPUT_U8, OUTPUT_I32)


def requantize(acc, mult, shift):
    """Scale int32 accumulators to uint8 activations exactly as the hardware does."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    y = (acc * mult + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y, 0, ACT_MAX).astype(np.uint8)


def accumulator_bound(weights, bias):
    """Largest |acc| any uint8 input can produce for each output neuron."""
    w = np.asarray(weights, dtype=np.int64).reshape(len(bias), -1)
    pos = np.where(w > 0, w, 0).sum(axis=1) * ACT_MAX
    neg = np.where(w < 0, -w, 0).sum(axis=1) * ACT_MAX
    b = np.asarray(bias, dtype=np.int64)
    return np.maximum(np.abs(b + pos), np.abs(b - neg))


def check_accumulator_range(weights, bias):
    """Raise ValueError if some input could overflow a signed ACC_BITS accumulator."""
    worst = int(accumulator_bound(weights, bias).max(initial=0))
    if worst > ACC_MAX:
        raise ValueError(f"a worst-case accumulator reaches {worst}, beyond the "
                         f"{ACC_BITS}-bit range of the hardware; reduce the bias or weights")


def quantize_multiplier(scale):
    """Best (mult, shift) with mult / 2**shift ~= scale, mult normalised to MULT_BITS bits.

    Scales too small to represent become (0, 1): the neuron outputs a constant 0.
    """
    scale = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(scale)) or np.any(scale < 0):
        raise ValueError("requantization scales must be finite and non-negative")
    mult = np.zeros(scale.shape, dtype=np.int64)
    shift = np.ones(scale.shape, dtype=np.int64)
    nz = scale > 0
    exp = np.floor(np.log2(scale[nz])).astype(np.int64)
    s = (MULT_BITS - 1) - exp          # puts mult in [2**15, 2**16)
    s = np.clip(s, SHIFT_MIN, SHIFT_MAX)
    m = np.rint(scale[nz] * np.exp2(s)).astype(np.int64)
    # rounding up can reach 2**16: halve it rather than overflow the multiplier
    over = m > MULT_MAX
    m[over] = np.rint(m[over] / 2)
    s[over] -= 1
    if np.any(s < SHIFT_MIN) or np.any(m > MULT_MAX):
        raise ValueError(f"requantization scale {scale.max():g} is too large for "
                         f"{MULT_BITS}-bit multiplier and shift >= {SHIFT_MIN}")
    mult[nz], shift[nz] = m, s
    return mult.astype(np.uint16), shift.astype(np.uint8)
