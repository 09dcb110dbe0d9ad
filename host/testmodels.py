"""Test models: a random IntModel of an architecture's default shape (training.workflow.ARCHS),
for what does not depend on the weights' values (cycle counts, capacities, packing)."""
import numpy as np

from nnhil.training import fixedpoint as fx, workflow
from nnhil.training.intmodel import Conv2D, Dense, IntModel, MaxPool2D


def _requant(rng, n):
    return (np.zeros(n, np.int32), np.full(n, 1 << (fx.MULT_BITS - 1), np.uint16), np.full(n, 24, np.uint8))


def random_default_model(arch="mlp", rng=None):
    """A random IntModel of the default shape of ``arch`` (workflow.ARCHS): cycles do not depend
    on the values, and random int8 weights drive layers into saturation."""
    rng = rng or np.random.default_rng(0)
    cfg = workflow.ARCHS[arch]()
    weights = lambda *shape: rng.integers(fx.WEIGHT_MIN, fx.WEIGHT_MAX + 1, shape).astype(np.int8)
    layers, shape = [], tuple(getattr(cfg, "input_shape", cfg.layers[:1]))
    for c in getattr(cfg, "channels", ()):
        layers.append(Conv2D(weights(c, shape[0], cfg.kernel, cfg.kernel), *_requant(rng, c),
                             fx.OUTPUT_U8, shape))
        layers.append(MaxPool2D(layers[-1].shape_out))
        shape = layers[-1].shape_out
    sizes = [int(np.prod(shape))] + list(cfg.layers[1:] if arch == "mlp" else cfg.layers)
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(Dense(weights(b, a), *_requant(rng, b), fx.OUTPUT_I32 if last else fx.OUTPUT_U8))
    return IntModel(layers, input_shape=tuple(getattr(cfg, "input_shape", (cfg.layers[0],))))
