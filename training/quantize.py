"""Post-training quantization of a float MLP into the integer model of :mod:`fixedpoint`.

The input standardisation is folded into the first layer, so the hardware sees raw
uint8 pixels. Hidden layers get per-neuron int8 weight scales; the output layer gets
one scale for the whole layer so that its int32 logits keep the float model's argmax.
Activation scales are calibrated on training images (never the test set) by choosing,
per layer, the clipping percentile that minimises the integer model's error.
"""
import numpy as np

from . import fixedpoint as fx
from .intmodel import Dense, IntModel

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
    """IntModel for a float MLP, calibrated on uint8 images [N, 28, 28]."""
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
