"""Post-training quantization of a float MLP into the integer model of :mod:`fixedpoint`.

The input standardisation is folded into the first layer, so the hardware sees raw
uint8 pixels. Hidden layers get per-neuron int8 weight scales; the output layer gets
one scale for the whole layer so that its int32 logits keep the float model's argmax.
Activation scales are calibrated on training images (never the test set) by choosing,
per layer, the clipping percentile that minimises the integer model's error.
"""
import numpy as np

from . import fixedpoint as fx
from .intmodel import Conv2D, Dense, IntModel, MaxPool2D

CLIP_PERCENTILES = (99.9, 99.99, 99.999, 100.0)


def fold_standardizer(model, standardizer):
    """Float weights/biases that take raw pixels (0..255) instead of standardised inputs."""
    a = 1.0 / (255.0 * standardizer.std)
    c = standardizer.mean / standardizer.std
    w0 = model.weights[0].astype(np.float64)
    weights = [w0 * a] + [w.astype(np.float64) for w in model.weights[1:]]
    biases = [model.biases[0] - c * w0.sum(axis=0)] + [b.astype(np.float64) for b in model.biases[1:]]
    return weights, biases


def quantize_weights(w, per_neuron):
    """Symmetric int8 weights for float w [n_in, n_out]; returns (int8 [n_out, n_in], scales)."""
    amax = np.abs(w).max(axis=0) if per_neuron else np.full(w.shape[1], np.abs(w).max())
    scale = np.where(amax > 0, amax / fx.WEIGHT_MAX, 1.0)
    q = np.clip(np.rint(w / scale), -fx.WEIGHT_MAX, fx.WEIGHT_MAX).astype(np.int8)
    return q.T.copy(), scale


def quantize_bias(b, acc_scale):
    return np.clip(np.rint(b / acc_scale), fx.ACC_MIN, fx.ACC_MAX).astype(np.int32)


def quantize(model, standardizer, calib_images, classes=None, meta=None):
    """IntModel for a float MLP (or a CNN, see quantize_cnn), calibrated on uint8 images [N, 28, 28]."""
    if hasattr(model, "conv_w"):
        return quantize_cnn(model, standardizer, calib_images, classes, meta)
    weights, biases = fold_standardizer(model, standardizer)
    x_q = calib_images.reshape(len(calib_images), -1)
    x_f = x_q.astype(np.float64)            # float activations of the folded model
    in_scale = 1.0                           # real value of one input step
    layers, act_scales = [], []
    for i, (w, b) in enumerate(zip(weights, biases)):
        last = i == len(weights) - 1
        wq, w_scale = quantize_weights(w, per_neuron=not last)
        acc_scale = in_scale * w_scale
        bq = quantize_bias(b, acc_scale)
        if last:
            layers.append(Dense(wq, bq, np.zeros(len(bq), np.uint16), np.zeros(len(bq), np.uint8),
                                fx.OUTPUT_I32))
            break
        y_f = np.maximum(x_f @ w + b, 0)
        acc = Dense(wq, bq, np.zeros_like(bq, np.uint16), np.ones_like(bq, np.uint8),
                    fx.OUTPUT_U8).accumulate(x_q)
        best = None
        for pct in CLIP_PERCENTILES:
            out_scale = max(np.percentile(y_f, pct), 1e-12) / fx.ACT_MAX
            mult, shift = fx.quantize_multiplier(acc_scale / out_scale)
            y_q = fx.requantize(acc, mult, shift)
            err = np.mean((y_q * out_scale - y_f) ** 2)
            if best is None or err < best[0]:
                best = (err, out_scale, mult, shift, y_q)
        _, out_scale, mult, shift, y_q = best
        layers.append(Dense(wq, bq, mult, shift, fx.OUTPUT_U8))
        act_scales.append(float(out_scale))
        x_q, x_f, in_scale = y_q, y_f, out_scale
    meta = dict(meta or {}, activation_scales=act_scales)
    return IntModel(layers, (28, 28), classes, meta)


# CNNs ---------------------------------------------------------------------------------------
CNN_CALIBRATION_IMAGES = 1000     # conv activations are large; the first 1000 images suffice


def fold_standardizer_cnn(model, standardizer):
    """Float64 conv and dense weights/biases of a CNN taking raw pixels (0..255).

    Exact because the convolutions have no padding: every output sees a full window, so
    the constant offset -mean/std of each input contributes c * sum(w) to every output.
    """
    a = 1.0 / (255.0 * standardizer.std)
    c = standardizer.mean / standardizer.std
    w0 = model.conv_w[0].astype(np.float64)
    conv_w = [w0 * a] + [w.astype(np.float64) for w in model.conv_w[1:]]
    conv_b = [model.conv_b[0] - c * w0.sum(axis=(1, 2, 3))] + [b.astype(np.float64) for b in model.conv_b[1:]]
    return (conv_w, conv_b, [w.astype(np.float64) for w in model.dense_w],
            [b.astype(np.float64) for b in model.dense_b])


def _calibrate(acc, y_f, acc_scale, pool=None):
    """Best (err, out_scale, mult, shift, y_q) over CLIP_PERCENTILES for one ReLU layer.

    acc: int accumulators with channels on axis 1; y_f: the float activations after
    ReLU (and after pool, if the integer path pools with `pool`).
    """
    bshape = (-1,) + (1,) * (acc.ndim - 2)
    best = None
    for pct in CLIP_PERCENTILES:
        out_scale = max(np.percentile(y_f, pct), 1e-12) / fx.ACT_MAX
        mult, shift = fx.quantize_multiplier(acc_scale / out_scale)
        y_q = fx.requantize(acc, mult.reshape(bshape), shift.reshape(bshape))
        if pool is not None:
            y_q = pool(y_q)
        err = np.mean((y_q * out_scale - y_f) ** 2)
        if best is None or err < best[0]:
            best = (err, out_scale, mult, shift, y_q)
    return best


def quantize_cnn(model, standardizer, calib_images, classes=None, meta=None):
    """IntModel for a float CNN: [Conv2D, MaxPool2D] * B, then Dense layers.

    Conv layers get per-output-channel weight scales, hidden dense layers per-neuron
    ones, the output layer one scale (argmax-preserving int32 logits). Activation scales
    are calibrated on the first CNN_CALIBRATION_IMAGES of calib_images, choosing per
    layer the clipping percentile that minimises the error of the pooled uint8 outputs.
    """
    from .cnn import conv_forward, pool_forward
    conv_w, conv_b, dense_w, dense_b = fold_standardizer_cnn(model, standardizer)
    imgs = np.asarray(calib_images)[:CNN_CALIBRATION_IMAGES]
    shape = model.input_shape
    x_q = imgs.reshape((len(imgs),) + shape)                 # uint8 NCHW
    x_f = x_q.transpose(0, 2, 3, 1).astype(np.float64)        # float NHWC of the folded model
    in_scale = 1.0
    layers, act_scales = [], []
    for w, b, pooled in zip(conv_w, conv_b, getattr(model, "pools", [True] * len(conv_w))):
        co = w.shape[0]
        wq, w_scale = quantize_weights(w.reshape(co, -1).T, per_neuron=True)
        wq = wq.reshape(w.shape)
        acc_scale = in_scale * w_scale
        bq = quantize_bias(b, acc_scale)
        probe = Conv2D(wq, bq, np.zeros(co, np.uint16), np.ones(co, np.uint8), fx.OUTPUT_U8, shape)
        pool = MaxPool2D(probe.shape_out) if pooled else None
        z, _ = conv_forward(x_f, w, b)
        np.maximum(z, 0, out=z)
        p_f = pool_forward(z)[0] if pooled else z              # NHWC
        p_f = p_f.transpose(0, 3, 1, 2)                        # NCHW, like the integer path
        _, out_scale, mult, shift, y_q = _calibrate(probe.accumulate(x_q), p_f, acc_scale, pool)
        layers += [Conv2D(wq, bq, mult, shift, fx.OUTPUT_U8, shape)] + ([pool] if pooled else [])
        act_scales.append(float(out_scale))
        shape = layers[-1].shape_out
        x_q, x_f, in_scale = y_q, p_f.transpose(0, 2, 3, 1), out_scale
    x_q = x_q.reshape(len(x_q), -1)
    x_f = x_f.transpose(0, 3, 1, 2).reshape(len(x_f), -1)     # channel-major flatten
    for i, (w, b) in enumerate(zip(dense_w, dense_b)):
        last = i == len(dense_w) - 1
        wq, w_scale = quantize_weights(w, per_neuron=not last)
        acc_scale = in_scale * w_scale
        bq = quantize_bias(b, acc_scale)
        n = len(bq)
        if last:
            layers.append(Dense(wq, bq, np.zeros(n, np.uint16), np.zeros(n, np.uint8), fx.OUTPUT_I32))
            break
        y_f = np.maximum(x_f @ w + b, 0)
        acc = Dense(wq, bq, np.zeros(n, np.uint16), np.ones(n, np.uint8), fx.OUTPUT_U8).accumulate(x_q)
        _, out_scale, mult, shift, y_q = _calibrate(acc, y_f, acc_scale)
        layers.append(Dense(wq, bq, mult, shift, fx.OUTPUT_U8))
        act_scales.append(float(out_scale))
        x_q, x_f, in_scale = y_q, y_f, out_scale
    meta = dict(meta or {}, activation_scales=act_scales)
    return IntModel(layers, model.input_shape, classes, meta)
