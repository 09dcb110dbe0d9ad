"""What a model's images drive through the accelerator: per layer, how many of each datapath
edge they reached, from the integer model (training.intmodel) and the compiled schedule
(gateware.compiled). ``nnhil selftest`` reads it to say why a fault was not exercised, and
prints it so a user can pick images that reach more.

Each edge counts values (outputs, accumulators, windows or images, as its description says)
over all images; a fault of gateware.faults names the edge that exercises it.
"""
import dataclasses

import numpy as np

from nnhil.gateware import layout
from nnhil.training import fixedpoint as fx
from nnhil.training.intmodel import Conv2D

# edge: (what is counted, why a fault needing it was not exercised when the count is 0)
EDGES = {
    "negative":         ("hidden outputs negative before the ReLU",
                         "no image drove a negative value into a hidden layer's ReLU"),
    "positive":         ("hidden outputs positive before the ReLU", "no hidden output was positive"),
    "saturated_0":      ("hidden outputs clamped to 0", "no hidden output was clamped to 0"),
    "saturated_255":    ("hidden outputs clamped to 255", "no hidden output saturated at 255"),
    "saturation_wrap":  ("hidden outputs between 256 and 511 before the clamp",
                         "no hidden output reached 256..511 before the clamp"),
    "rounding":         ("hidden outputs the rounding constant changes",
                         "no hidden output depends on the rounding constant"),
    "rounding_high":    ("hidden outputs a doubled rounding constant would change",
                         "no hidden output is sensitive to a doubled rounding constant"),
    "beyond_2_23":      ("MAC accumulators (lane-group sums) beyond +-2**23",
                         "no MAC accumulator went beyond +-2**23"),
    "lanes":            ("lanes that hold a channel (of the build's lanes)", "the layer uses no lane"),
    "lane_groups":      ("lane groups: a split fan-in's, or a pair's two positions", "one lane group"),
    "last_lane":        ("outputs weight bit 0 of the last lane stuck at 1 would change",
                         "no output depends on the last lane's even weights (the lane unused, or clamped)"),
    "partial_tile":     ("layers whose last tile has 2 or more channels but not all lanes",
                         "no layer has a partial last tile of two channels or more"),
    "requant_differs":  ("channels whose next channel has another bias, mult or shift",
                         "every layer's neighbouring channels share bias, mult and shift"),
    "kernel_rows":      ("conv outputs of a kernel of two rows or more",
                         "the model has no conv layer with a kernel of 2 or more"),
    "split_last_group": ("outputs whose last lane group of a split fan-in sums to non-zero",
                         "no split fan-in layer's last lane group contributes"),
    "pairs":            ("conv windows of two positions", "the model has no conv running position pairs"),
    "two_slots":        ("images run in input slot 1", "single-slot program (or a single image)"),
    "out_base":         ("layers writing from a non-zero out_base",
                         "no layer writes from a non-zero out_base (that takes two slots and three layers)"),
    "pool_differs":     ("pool windows whose four outputs are not all equal",
                         "the model has no max-pool whose window values differ"),
    "pool_tie":         ("pool windows whose maximum is tied", "no pool window has a tied maximum"),
    "argmax_tie":       ("images whose largest logit is tied", "no image's largest logit is tied"),
    "second_image":     ("images run after another", "a single image"),
    "image_tail":       ("images whose logits depend on their last input word",
                         "no image's logits change with its last input word (unread, or the same in every image)"),
}


@dataclasses.dataclass
class Coverage:
    """Per accelerator layer, {edge: count}; ``run`` the edges of the whole run; ``first``
    the first image that reached each edge (the one to trace layer by layer)."""
    layers: list                       # [(description, {edge: count})]
    run: dict
    first: dict = dataclasses.field(default_factory=dict)

    def total(self, edge):
        return self.run.get(edge, 0) + sum(c.get(edge, 0) for _, c in self.layers)

    def reason(self, edge):
        """None if the images reached ``edge`` (or it is "": every run does), else why not."""
        if not edge or self.total(edge):
            return None
        return EDGES[edge][1]

    def to_dict(self):
        return {"layers": [{"layer": k, "kind": kind, **counts} for k, (kind, counts) in enumerate(self.layers)],
                "run": self.run}

    def text(self):
        edges = [e for e in EDGES if any(e in c for _, c in self.layers)]
        width = max(len(kind) for kind, _ in self.layers)
        lines = ["coverage of the images (per layer: " + ", ".join(edges) + ")"]
        for k, (kind, counts) in enumerate(self.layers):
            lines.append(f"  layer {k} {kind:<{width}} " + " ".join(f"{e}={counts.get(e, '-')}" for e in edges))
        lines.append("  run: " + ", ".join(f"{e}={v}" for e, v in self.run.items()))
        return "\n".join(lines)


class _Edges(dict):
    """{edge: count} of one layer, and the first image of each edge in ``first``."""

    def __init__(self, first):
        super().__init__()
        self.first = first

    def add(self, edge, mask):
        """Count the true entries of ``mask`` [N images, ...]."""
        mask = np.asarray(mask).reshape(len(mask), -1)
        self[edge] = int(mask.sum())
        hit = np.flatnonzero(mask.any(axis=1))
        if hit.size:
            self.first[edge] = min(self.first.get(edge, int(hit[0])), int(hit[0]))


def _requant(acc, layer):
    """(uint8 outputs, the value before the clamp, acc * mult, the rounding constant) of a hidden layer."""
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    mult = layer.mult.astype(np.int64).reshape(shape)
    shift = layer.shift.astype(np.int64).reshape(shape)
    prod = acc * mult
    half = np.int64(1) << (shift - 1)
    q = (prod + half) >> shift
    return np.clip(q, 0, fx.ACT_MAX), q, prod, half, shift


def _requant_edges(acc, layer, counts):
    """The edges of requantizing int64 accumulators [N, C, ...] of a hidden layer."""
    y, q, prod, half, shift = _requant(acc, layer)
    counts.add("negative", prod + half < 0)
    counts.add("positive", q > 0)
    counts.add("saturated_0", q <= 0)
    counts.add("saturated_255", q >= fx.ACT_MAX)
    counts.add("saturation_wrap", (q > fx.ACT_MAX) & (q < 2 * (fx.ACT_MAX + 1)))
    counts.add("rounding", np.clip(prod >> shift, 0, fx.ACT_MAX) != y)
    counts.add("rounding_high", np.clip((prod + (half << 1)) >> shift, 0, fx.ACT_MAX) != y)


def _pool_max(a):
    """2x2/2 max of [N, C, H, W] (an odd last row or column dropped)."""
    n, c, h, w = a.shape
    a = a[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    return a.max(axis=(3, 5)), a.min(axis=(3, 5)), a


def _output(layer, shape, acc):
    """The layer's output of int64 accumulators (bias included): pooled, then requantized, or logits."""
    if shape.pool:
        acc = _pool_max(acc)[0]
    return acc if shape.logits else _requant(acc, layer)[0]


def _last_lane_changes(layer, shape, xin, acc, lanes, G, pairs):
    """[N, outputs] true where weight bit 0 of the last lane stuck at 1 changes the layer's
    output: lane P - 1 holds channel P/G - 1's group G - 1 (a split fan-in), channel P/2 - 1's
    second position (pairs), or channel P - 1 of every full tile."""
    w = layer.weights.copy()
    if G > 1:
        if shape.c_out != lanes // G:
            return np.zeros((len(xin), 1), bool)
        flat = w.reshape(shape.c_out, -1)
        flat[-1, G - 1::G] |= 1
    else:
        channels = ([lanes // 2 - 1] if shape.c_out == lanes // 2 else []) if pairs == 2 else \
            [t * lanes + lanes - 1 for t in range(shape.c_out // lanes)]
        if not channels:
            return np.zeros((len(xin), 1), bool)
        w[channels] |= 1
    faulty = dataclasses.replace(layer, weights=w).accumulate(xin)
    if pairs == 2:                  # only the pair's second position: odd (pooled) columns
        cols = np.arange(acc.shape[-1])
        second = ((cols // 2) % 2 == 1) if shape.pool else (cols % 2 == 1)
        faulty = np.where(second, faulty, acc)
    return (_output(layer, shape, faulty) != _output(layer, shape, acc)).reshape(len(xin), -1)


def measure(compiled, images, slots_used=None):
    """The Coverage of uint8 ``images`` through a gateware.compiled.CompiledModel.
    ``slots_used``: whether a batch runs images in input slot 1 (default: the program's two
    slots and two images or more, as the firmware's batch does)."""
    model, lanes = compiled.model, compiled.config.lanes
    x = np.asarray(images).reshape((len(images),) + tuple(model.input_shape))
    n = len(x)
    acts = model.activations(x)
    inputs = [x] + acts[:-1]
    out_bases = compiled.memory_image.out_bases
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    first, layers = {}, []
    two = compiled.memory_image.slots == 2 and n >= 2 if slots_used is None else slots_used
    every = np.ones((n, 1), bool)   # a fact of the layer: every image reaches it
    for k, (shape, layer) in enumerate(compiled.layers):
        i = index[id(layer)]
        xin = inputs[i]
        counts = _Edges(first)
        acc = layer.accumulate(xin)                                # bias included
        G, pairs = shape.groups(lanes), shape.pairs(lanes)
        w = layer.weights.reshape(shape.c_out, -1)
        # the MAC accumulators: each lane group's sum of products, each conv position's
        if G > 1:
            flat = xin.reshape(n, -1).astype(np.int64)
            parts = [flat[:, g::G] @ w[:, g::G].T.astype(np.int64) for g in range(G)]
            mac = np.stack(parts, axis=1)
            counts.add("split_last_group", parts[-1] != 0)
        else:
            mac = acc - layer.bias.reshape((1, -1) + (1,) * (acc.ndim - 2))
        counts.add("beyond_2_23", (mac < -(1 << 23)) | (mac >= 1 << 23))
        if shape.logits:
            counts.add("argmax_tie", (acc == acc.max(axis=1, keepdims=True)).sum(axis=1) > 1)
        else:
            _requant_edges(_pool_max(acc)[0] if shape.pool else acc, layer, counts)
        if shape.pool:
            hi, lo, win = _pool_max(acts[i].astype(np.int64))     # requantized, before the pool
            counts.add("pool_differs", hi != lo)
            counts.add("pool_tie", (win == hi[:, :, :, None, :, None]).sum(axis=(3, 5)) > 1)
        if isinstance(layer, Conv2D):
            if layer.kernel >= 2:
                counts.add("kernel_rows", np.ones(acc.shape, bool))
            if pairs == 2:
                h, wo = shape.out_hw
                counts.add("pairs", np.ones((n, h * (wo // 2)), bool))
        counts["lanes"] = min(shape.c_out, lanes) * G * pairs
        counts["lane_groups"] = G * pairs
        # a partial last tile (a split fan-in's or a pair's sweep ends at its c_out channels)
        v = shape.c_out - (layout.tiles(shape.c_out, lanes) - 1) * lanes
        counts.add("partial_tile", every & (2 <= v < lanes))
        counts.add("last_lane", _last_lane_changes(layer, shape, xin, acc, lanes, G, pairs))
        # neighbouring channels' requantization (the logits use the bias alone)
        fields = [layer.bias] if shape.logits else [layer.bias, layer.mult, layer.shift]
        differs = int(sum((f[1:] != f[:-1]) for f in fields).astype(bool).sum())
        counts.add("requant_differs", np.repeat(np.arange(max(1, differs))[None] < differs, n, axis=0))
        counts.add("out_base", every & bool(not shape.logits and out_bases[k]))
        layers.append((str(shape) + (" (logits)" if shape.logits else ""), dict(counts)))
    # images whose logits change if their last input word is the one the image before in
    # the same slot left there
    back, flat = 2 if two else 1, x.reshape(n, -1)
    stale = flat.copy()
    last = slice((flat.shape[1] - 1) // 4 * 4, flat.shape[1])
    stale[back:, last] = flat[:-back, last]
    changed = np.flatnonzero((model.logits(stale.reshape(x.shape)) != acts[-1]).any(axis=1))
    run = {"images": n, "two_slots": n // 2 if two else 0, "second_image": max(0, n - 1),
           "image_tail": len(changed)}
    first.update({e: 1 for e in ("two_slots", "second_image") if run[e]})
    if len(changed):
        first["image_tail"] = int(changed[0])
    return Coverage(layers, run, first)
